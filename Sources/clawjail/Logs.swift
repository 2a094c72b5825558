import ArgumentParser
import ClawjailCore
import ClawjailOperator
import ClawjailRuntime

struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Show the supervisor's record of an agent: its runs and its audit events.",
        discussion: """
        Everything clawjail recorded about the agent in the state database: its runs \
        (agent runs and its tool runs, newest first, with how each ended: exit status, \
        signal, OOM kill, timeout, an operator's stop, or "lost" when the supervisor died \
        without recording the end), then its latest audit events (run start and end, \
        seccomp violations, egress decisions, emergency stops, protect snapshots and \
        restores).

        The agent's own output is not here: `clawjail run` relays it to its stdout and \
        stderr, which systemd puts in the journal (`journalctl -u clawjail@NAME`).

        Examples:
          clawjail logs alice
          clawjail logs alice --limit 100
          clawjail logs alice --json | jq '.runs[0].manifest.protect_hashes'
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("How many runs and how many events to show (default 20).", valueName: "N"))
    var limit: Int = 20

    @Flag(help: "Print one JSON object: runs (with their manifests) and events.")
    var json = false

    @Argument(help: ArgumentHelp("The agent.", valueName: "NAME"))
    var name: String

    func validate() throws {
        if limit < 1 || limit > 100_000 { throw ValidationError("--limit must be between 1 and 100000") }
    }

    func run() throws {
        try runOrExit {
            let record = try AgentLogs.collect(name, limit: limit, layout: global.layout)
            OperatorText.out(json ? OperatorText.json(AgentLogs.json(record)) : AgentLogs.render(record))
            return 0
        }
    }
}
