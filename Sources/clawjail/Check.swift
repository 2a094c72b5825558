import ArgumentParser
import ClawjailCore
import ClawjailRuntime

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate an agent.toml and print the effective plan.",
        discussion: """
        Nothing is created: check parses the file strictly (unknown keys, wrong types and \
        dangerous values are errors, each with its line and column), applies the defaults \
        and prints what `clawjail run` would set up: mounts, uid map, limits, seccomp \
        profile and network. Exit status 0 when the file is valid, 78 when it is not.
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The agent config to check.", valueName: "agent.toml"))
    var file: String

    func run() throws {
        try runOrExit {
            let report = try CheckReport.make(configPath: file, layout: global.layout)
            print(report, terminator: "")
            return 0
        }
    }
}
