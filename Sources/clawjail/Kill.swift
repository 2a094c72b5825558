import ArgumentParser
import ClawjailCore
import ClawjailRuntime

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Emergency stop: kill a jail, or every jail on the host, at once.",
        discussion: """
        kill acts on the jails' cgroups, not on their supervisors, so it works even when a \
        supervisor is stopped or wedged: with cgroup v1 it freezes the jails, kills every \
        process listed in them and thaws them; with cgroup v2 it writes cgroup.kill. The \
        supervisors then see their jails die and clean up; `clawjail gc` removes what a \
        dead supervisor left. Every emergency stop is recorded in the audit log.

        For an orderly stop that lets the agent exit (SIGTERM, grace, SIGKILL), use \
        `clawjail stop NAME`.

        Examples:
          clawjail kill alice
          clawjail kill --all
        """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Kill every jail on this host.")
    var all = false

    @Argument(help: ArgumentHelp("The jail to kill: an agent name, or exec-ID for a tool run.", valueName: "NAME"))
    var name: String?

    func validate() throws {
        if all == (name != nil) { throw ValidationError("name one jail, or pass --all") }
    }

    func run() throws {
        try runOrExit {
            let layout = global.layout
            let report = all ? try EmergencyStop.killAll(layout: layout) : try EmergencyStop.kill(name ?? "", layout: layout)
            let ms = (report.elapsedMs * 10).rounded() / 10
            print("killed \(report.jails.count) jail\(report.jails.count == 1 ? "" : "s") (\(report.processes) processes) in \(ms) ms")
            return 0
        }
    }
}
