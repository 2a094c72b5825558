import ArgumentParser
import ClawjailCore
import ClawjailOperator
import ClawjailRuntime

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show what one running jail uses and what it is allowed.",
        discussion: """
        From the jail's cgroup: memory now and at its peak, processes, CPU time used and \
        how often the CPU quota throttled it, OOM kills and pids-limit hits. From its run \
        in the state database: the run id and the effective policy it started with \
        (limits, network allowlist, seccomp profile, uid map, workspace, and the hashes \
        of its protected files). `--json` adds the whole manifest.

        NAME is an agent name, or exec-ID for a tool run (see `clawjail ps`).

        Examples:
          clawjail stats alice
          clawjail stats alice --json | jq .memory_current_bytes
        """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print one JSON object, with the run's manifest.")
    var json = false

    @Argument(help: ArgumentHelp("The running jail: an agent name or exec-ID.", valueName: "NAME"))
    var name: String

    func run() throws {
        try runOrExit {
            let entry = try JailStatus.one(name, layout: global.layout)
            OperatorText.out(json ? OperatorText.json(JailStatus.statsJSON(entry)) : JailStatus.renderStats(entry))
            return 0
        }
    }
}
