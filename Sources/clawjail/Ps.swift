import ArgumentParser
import ClawjailCore
import ClawjailOperator
import ClawjailRuntime

struct PsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps",
        abstract: "List the running jails: agents and tool runs.",
        discussion: """
        A jail is running for as long as its supervisor holds its lock in \
        /run/clawjail/jails (the kernel drops the lock when the supervisor dies, however \
        it dies). For each one ps shows the supervisor's pid, the uptime, what its cgroup \
        uses now against the limits of its run (memory, pids), its network mode and its \
        status: running, starting, being killed, or "supervisor stopped" when the \
        supervisor itself is stopped (SIGSTOP, a debugger).

        Below the jails come the runs marked lost in the last 24 hours: their supervisor \
        died (SIGKILL, a crash, a reboot) without recording how the run ended. ps is \
        what marks them. `--all` lists every lost run.

        Examples:
          clawjail ps
          clawjail ps --json | jq '.jails[] | select(.kind == "agent") | .name'
        """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "List every run marked lost, not only those of the last 24 hours.")
    var all = false

    @Flag(help: "Print one JSON object: {\"jails\": [...], \"lost_runs\": [...]}.")
    var json = false

    func run() throws {
        try runOrExit {
            let listing = try JailStatus.list(layout: global.layout, allLost: all)
            OperatorText.out(json ? OperatorText.json(JailStatus.listJSON(listing)) : JailStatus.renderList(listing))
            return 0
        }
    }
}
