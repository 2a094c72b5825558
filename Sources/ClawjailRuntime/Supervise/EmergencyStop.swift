import ClawjailCgroup
import ClawjailCore
import ClawjailStore
import ClawjailSystem

/// `clawjail kill`: stop jails now, through their cgroups, whatever their supervisors
/// are doing (even stopped or wedged ones), and record it in the audit chain.
public enum EmergencyStop {
    public struct Report: Sendable {
        public var jails: [String]
        public var processes: Int
        public var elapsedMs: Double
    }

    /// Marks that `name` was killed on purpose, so that its supervisor reports
    /// "killed by clawjail kill" rather than a bare SIGKILL.
    public static func markerPath(_ name: String, layout: HostLayout) -> String { "\(layout.jailDirectory)/\(name).killed" }

    public static func killAll(layout: HostLayout) throws(ClawjailError) -> Report {
        let cgroups = try Cgroups.detect()
        let start = ProcessInfoLite.monotonicNanoseconds
        var names = cgroups.jailNames()
        // Jails this manager does not see (inside another unit's delegated cgroup),
        // from the registry of live supervisors.
        let elsewhere = JailRegistry.running(layout: layout).filter { !names.contains($0.name) && !$0.cgroupPaths.isEmpty }
        names += elsewhere.map(\.name)
        for n in names { try? FileSystem.writeAtomically(markerPath(n, layout: layout), Array("all\n".utf8)) }
        var count = try cgroups.killEverything()
        for e in elsewhere { count += killByPath(e.cgroupPaths) }
        let elapsed = Double(ProcessInfoLite.monotonicNanoseconds - start) / 1e6
        let report = Report(jails: names, processes: count, elapsedMs: elapsed)
        audit(report, agent: "", all: true, layout: layout)
        return report
    }

    public static func kill(_ name: String, layout: HostLayout) throws(ClawjailError) -> Report {
        let cgroups = try Cgroups.detect()
        let start = ProcessInfoLite.monotonicNanoseconds
        let count: Int
        if let group = cgroups.open(name: name) {
            try? FileSystem.writeAtomically(markerPath(name, layout: layout), Array("one\n".utf8))
            count = group.processes().count
            try group.killAll()
        } else if let entry = JailRegistry.read(name, layout: layout), JailRegistry.isAlive(name, layout: layout),
                  !entry.cgroupPaths.isEmpty {
            try? FileSystem.writeAtomically(markerPath(name, layout: layout), Array("one\n".utf8))
            count = killByPath(entry.cgroupPaths)
        } else {
            throw ClawjailError(.notFound, "no running jail named \(name)", hint: "`clawjail ps` lists the running jails")
        }
        let report = Report(jails: [name], processes: count, elapsedMs: Double(ProcessInfoLite.monotonicNanoseconds - start) / 1e6)
        audit(report, agent: name.hasPrefix("exec-") ? "" : name, all: false, layout: layout)
        return report
    }

    /// Kills the processes of cgroup directories given by path: cgroup.kill where the
    /// kernel has it (v2), else each listed pid through a pidfd.
    static func killByPath(_ paths: [String]) -> Int {
        var count = 0
        for p in paths {
            let pids = ((try? FileSystem.readText(p + "/cgroup.procs")) ?? "").split(separator: "\n").compactMap { pid_t($0) }
            count += pids.count
            if (try? FileSystem.writeControl(p + "/cgroup.kill", "1")) != nil { continue }
            for pid in pids {
                if let pfd = try? PidFD.open(pid) {
                    try? pfd.signal(.kill)
                    pfd.close()
                }
            }
        }
        return count
    }

    /// The supervisor side: true (and the marker removed) when `clawjail kill` did it.
    static func consumeMarker(_ name: String, layout: HostLayout) -> Bool {
        let p = markerPath(name, layout: layout)
        guard FileSystem.exists(p) else { return false }
        try? FileSystem.unlink(p)
        return true
    }

    private static func audit(_ r: Report, agent: String, all: Bool, layout: HostLayout) {
        do {
            let store = try Store.open(directory: layout.stateDirectory)
            _ = try store.append(AuditEventInput(agent: agent, kind: "emergency.stop", payload: [
                "scope": .string(all ? "all" : "one"),
                "jails": .array(r.jails.map { .string($0) }),
                "processes": .int(Int64(r.processes)),
                "elapsed_ms": .double((r.elapsedMs * 1000).rounded() / 1000),
                "by_uid": .int(Int64(ProcessInfoLite.userID)),
            ]))
        } catch {
            Log.warning("the emergency stop happened but could not be recorded in the audit log: \(error)")
        }
    }
}
