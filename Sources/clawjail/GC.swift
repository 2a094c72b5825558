import ArgumentParser
import ClawjailCgroup
import ClawjailCore
import ClawjailRuntime

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove the leftovers of jails whose supervisor is gone.",
        discussion: """
        A supervisor that was SIGKILLed cannot clean up after itself. Its jail's processes \
        die with it (the jail's init is tied to the supervisor), but its cgroup directories \
        its lock file stay, and for a VM agent its tool-run socket and guest memory \
        report under /run/clawjail/vm. gc removes them for every jail whose supervisor no longer \
        holds its lock; running jails are never touched. Network namespaces and mounts \
        need no collection: they exist only as long as a process or fd holds them.
        `clawjail run` does the same for its own agent before it starts.
        """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
        try runOrExit {
            let layout = global.layout
            let cgroups = try Cgroups.detect()
            let report = JailRegistry.collectGarbage(layout: layout, cgroups: cgroups)
            for n in report.removedCgroups { print("removed cgroup of \(n)") }
            for n in report.removedVMFiles { print("removed the tool-run socket and memory report of VM agent \(n)") }
            for f in report.failures { Log.error("could not remove \(f)") }
            if report.removedCgroups.isEmpty && report.removedVMFiles.isEmpty && report.failures.isEmpty { print("nothing to collect") }
            return report.failures.isEmpty ? 0 : 1
        }
    }
}
