import ArgumentParser
import ClawjailCore
import ClawjailRuntime

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an agent from its agent.toml, in the foreground, in its own jail.",
        discussion: """
        The agent runs until it exits or is stopped; clawjail's exit status is the agent's \
        (128+N when it was killed by signal N, 124 when it ran out of wall_time, 137 when \
        it was OOM-killed, 125 when the jail could not be set up). SIGTERM and SIGINT are \
        forwarded to the agent, which gets --grace to exit before it is killed. If \
        clawjail itself is killed, the whole jail dies with it.

        The agent's stdout and stderr are relayed line by line, with terminal control \
        sequences made visible and its credentials redacted. Under systemd, use the \
        clawjail@.service template (see the README): one unit per agent.

        Inside the jail, the agent's command runs as pid 2 under a tiny init (pid 1, \
        "clawjail-init") that forwards signals, reaps orphans and, when the command exits, \
        takes every other process of the jail with it.
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("On SIGTERM/SIGINT, how long the agent gets to exit before SIGKILL (default 10s).", valueName: "DURATION"))
    var grace: String?

    @Option(name: .customLong("record-retry"), help: ArgumentHelp("When the state directory is full (or its disk fails) as the agent exits, how long to keep retrying its record (default 30s, well inside systemd's 90s stop timeout; 0 does not wait; SIGTERM ends the wait). The exit status stays the agent's. An end still unrecorded is kept in STATE_DIR/run-ends/, shows as 'end not recorded' in ps and logs, and is recorded by the next `clawjail ps` or `logs` that can write.", valueName: "DURATION"))
    var recordRetry: String?

    @Argument(help: ArgumentHelp("The agent's config file.", valueName: "agent.toml"))
    var file: String

    func run() throws {
        try runOrExit {
            var request = AgentRunRequest(configPath: file, layout: global.layout)
            if let g = grace {
                request.graceMs = try parseOption("--grace", g) { v throws(Units.ParseError) in try Units.parseDuration(v, allowZero: true) }
            }
            if let v = recordRetry {
                request.recordRetryMs = try parseOption("--record-retry", v) { v throws(Units.ParseError) in try Units.parseDuration(v, allowZero: true) }
            }
            return try AgentRun.run(request)
        }
    }
}
