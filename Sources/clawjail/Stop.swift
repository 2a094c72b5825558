import ArgumentParser
import ClawjailCore
import ClawjailOperator
import ClawjailRuntime

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop a jail in order: SIGTERM, a grace period, then SIGKILL.",
        discussion: """
        stop sends SIGTERM to the jail's supervisor, through a pidfd and only after \
        checking in /proc/locks that this process still holds the jail's lock, so a \
        recycled pid is never signalled. The supervisor forwards it to the agent, kills \
        the jail when the agent has not exited after the run's own grace (`run --grace`, \
        10s by default), and records how the run ended.

        If the run has not ended after --grace (plus a second for the teardown), stop \
        sends a second SIGTERM, which makes the supervisor kill the jail at once. If the \
        supervisor still does not respond (it is stopped or wedged), stop kills the \
        jail's cgroup directly, as `clawjail kill NAME` does. It prints which of these \
        ended the run and the run's outcome. The stop is recorded in the audit log.

        Exit status: 0 when the supervisor exited, 1 when it did not (the message says \
        whether the jail's processes are gone anyway).

        Under systemd, stop a unit's agent with `systemctl stop clawjail@NAME`: \
        clawjail@.service sends the same SIGTERM, and does not restart it.

        Examples:
          clawjail stop alice
          clawjail stop alice --grace 30s
          clawjail stop exec-3fa94c0d1e2b
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("How long to wait for the run to end after SIGTERM (default 10s).", valueName: "DURATION"))
    var grace: String = "10s"

    @Flag(help: "Print one JSON object saying how the run ended.")
    var json = false

    @Argument(help: ArgumentHelp("The running jail: an agent name or exec-ID.", valueName: "NAME"))
    var name: String

    func run() throws {
        try runOrExit {
            let graceMs = try parseOption("--grace", grace) { v throws(Units.ParseError) in try Units.parseDuration(v, allowZero: true) }
            let result = try StopJail.stop(name, graceMs: graceMs, layout: global.layout)
            OperatorText.out(json ? OperatorText.json(StopJail.json(result)) : StopJail.render(result, graceMs: graceMs))
            return result.supervisorExited ? 0 : 1
        }
    }
}
