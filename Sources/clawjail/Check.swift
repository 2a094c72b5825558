import ArgumentParser
import ClawjailCore
import ClawjailRuntime

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate an agent.toml and print the effective plan.",
        discussion: """
        Nothing is created: check parses the file strictly (unknown keys, wrong types and \
        dangerous values are errors, each with its line and column), applies the defaults \
        and prints the plan `clawjail run` would execute on this host now: every mount \
        step in order (source, target, flags), the uid map (once the agent has a range), \
        rlimits, the cgroup files and values, the seccomp profile and its hash, the \
        network and the process. With --json it prints that plan as one line of JSON, \
        the same plan a run records in its manifest (`clawjail logs NAME --json`). \
        Exit status 0 when the file is valid, 78 when it is not.

        Examples:
          clawjail check agent.toml
          clawjail check --json agent.toml | jq '.mounts[] | select(.step == "attach")'
        """)

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Print the launch plan as JSON (one line).")
    var json = false

    @Argument(help: ArgumentHelp("The agent config to check.", valueName: "agent.toml"))
    var file: String

    func run() throws {
        try runOrExit {
            let report = json ? try CheckReport.json(configPath: file, layout: global.layout)
                              : try CheckReport.make(configPath: file, layout: global.layout)
            print(report, terminator: "")
            return 0
        }
    }
}
