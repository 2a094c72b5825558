import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// cgroup v2. Two layouts:
/// - delegated (a systemd unit with Delegate=yes, recognised by the `trusted.delegate`
///   or `user.delegate` xattr systemd sets): jails live inside the supervisor's own
///   cgroup, and the supervisor moves itself into a `supervisor` leaf because a cgroup
///   with controllers enabled for its children may hold no processes itself;
/// - otherwise: jails live under `<mount>/<parent>/`, a top-level cgroup of our own,
///   never inside another service's cgroup.
public struct V2Manager: CgroupManager {
    public let mode = CgroupMode.v2
    /// Absolute path of the directory that holds the jail cgroups.
    public let root: String
    /// Delegated layout: the leaf the supervisor moves into before enabling controllers.
    public let supervisorLeaf: String?

    static let controllers = ["memory", "pids", "cpu", "io"]

    public init(root: String, supervisorLeaf: String?) {
        self.root = root
        self.supervisorLeaf = supervisorLeaf
    }

    public static func forSupervisor(mountPoint: String, parent: String) -> V2Manager {
        if let forced = ProcessInfoLite.environment()["CLAWJAIL_CGROUP_ROOT"], forced.hasPrefix("/") {
            return V2Manager(root: forced, supervisorLeaf: nil)
        }
        let own = ownCgroup()
        var ownPath = mountPoint + (own == "/" ? "" : own)
        if Paths.basename(ownPath) == "supervisor" { ownPath = Paths.dirname(ownPath) }
        if own != "/" && isDelegated(ownPath) {
            return V2Manager(root: ownPath, supervisorLeaf: ownPath + "/supervisor")
        }
        return V2Manager(root: mountPoint + "/" + parent, supervisorLeaf: nil)
    }

    /// "/system.slice/clawjail@alice.service" from the "0::" line of /proc/self/cgroup.
    static func ownCgroup() -> String {
        let text = (try? FileSystem.readText("/proc/self/cgroup")) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return "/"
    }

    static func isDelegated(_ path: String) -> Bool {
        for attr in ["trusted.delegate", "user.delegate"] {
            var buf = [UInt8](repeating: 0, count: 8)
            let n = buf.withUnsafeMutableBytes { (try? FileSystem.extendedAttribute(attr, of: path, into: $0)) ?? -1 }
            if n > 0 && buf[0] == 0x31 /* "1" */ { return true }
        }
        return false
    }

    public var summary: String {
        supervisorLeaf != nil ? "v2, delegated: jails inside \(root)" : "v2, jails under \(root)"
    }

    /// Makes `root` usable: exists, the supervisor is out of it (delegated layout), and
    /// the controllers we need are enabled for its children.
    func prepareRoot() throws(ClawjailError) {
        do { try FileSystem.ensureDirectory(root, mode: 0o755) } catch {
            throw cgroupError("cannot create cgroup", root, error)
        }
        if let leaf = supervisorLeaf {
            do { try FileSystem.ensureDirectory(leaf, mode: 0o755) } catch {
                throw cgroupError("cannot create cgroup", leaf, error)
            }
            do { try FileSystem.writeControl(leaf + "/cgroup.procs", "0") } catch {
                throw cgroupError("cannot move the supervisor into", leaf, error)
            }
        }
        enableControllers()
    }

    private func enableControllers() {
        // Our own top-level directory: its parent must hand the controllers down.
        if supervisorLeaf == nil { enable(in: Paths.dirname(root)) }
        enable(in: root)
    }

    /// The names in a cgroup.controllers or cgroup.subtree_control file, matched whole
    /// ("cpu" is not enabled because "cpuset" is).
    static func controllerNames(in dir: String, _ file: String) -> Set<String> {
        Set(((try? FileSystem.readText(dir + "/" + file)) ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    private func enable(in dir: String) {
        let available = Self.controllerNames(in: dir, "cgroup.controllers")
        let enabled = Self.controllerNames(in: dir, "cgroup.subtree_control")
        for c in Self.controllers where available.contains(c) && !enabled.contains(c) {
            // One controller per write, so that a missing one does not block the others.
            try? FileSystem.writeControl(dir + "/cgroup.subtree_control", "+" + c)
        }
    }

    public var facts: CgroupFacts { CgroupFacts(mode: .v2, location: summary) }

    public func create(name: String, plan: CgroupPlan) throws(ClawjailError) -> any JailCgroup {
        try prepareRoot()
        let dir = root + "/" + name
        var attempts = 0
        while true {
            do {
                try FileSystem.mkdir(dir, mode: 0o755)
                break
            } catch {
                // Someone removed the emptied root between prepareRoot and here.
                attempts += 1
                if error == .ENOENT && attempts < 5 {
                    try prepareRoot()
                    continue
                }
                throw cgroupError("cannot create cgroup", dir, error,
                                  hint: error == .EEXIST ? "a jail named \(name) is running or left over; `clawjail gc` removes leftovers" : nil)
            }
        }
        // Now that the jail's directory holds it, nobody can remove root; but another
        // supervisor may have removed and recreated it (its last jail ended) before it
        // enabled the controllers again. Enable them once more, then check the jail's own
        // cgroup.
        enableControllers()
        let present = Self.controllerNames(in: dir, "cgroup.controllers")
        for c in ["memory", "pids"] where !present.contains(c) {
            try? FileSystem.rmdir(dir)
            throw ClawjailError(.cgroup, "cgroup v2 controller '\(c)' is not enabled for \(root)",
                                hint: supervisorLeaf == nil ? "enable it in the parent's cgroup.subtree_control" : "run clawjail from a unit with Delegate=yes")
        }
        do {
            let group = try V2Cgroup.open(name: name, directory: dir, manager: self)
            try group.apply(plan.writes)
            return group
        } catch {
            try? FileSystem.rmdir(dir)
            throw error
        }
    }

    public func open(name: String) -> (any JailCgroup)? {
        let dir = root + "/" + name
        guard FileSystem.exists(dir) else { return nil }
        return try? V2Cgroup.open(name: name, directory: dir, manager: self)
    }

    /// cgroup.kill on the common parent kills the whole subtree in one write (our own
    /// top-level directory); in the delegated layout each jail but the supervisor's leaf.
    public func killEverything() throws(ClawjailError) -> Int {
        var count = 0
        for n in jailNames() { count += readPids("\(root)/\(n)/cgroup.procs").count }
        if supervisorLeaf == nil {
            guard FileSystem.exists(root) else { return 0 }
            do {
                try FileSystem.writeControl(root + "/cgroup.kill", "1")
                return count
            } catch where error == .ENOENT {
                // Before Linux 5.14: one jail at a time.
            } catch {
                throw cgroupError("cannot kill", root, error)
            }
        }
        for n in jailNames() { try? open(name: n)?.killAll() }
        return count
    }

    public func jailNames() -> [String] {
        guard let entries = try? FileSystem.listDirectory(root) else { return [] }
        return entries.filter { e in
            e != "supervisor" && (try? FileSystem.stat(root + "/" + e))?.isDirectory == true
        }.sorted()
    }
}

extension Cgroups {
    /// A v2 jail cgroup found by its directory (from the jail registry) rather than by a
    /// manager's layout: a jail inside another unit's delegated cgroup.
    public static func openV2(path: String) -> (any JailCgroup)? {
        guard FileSystem.exists(path + "/cgroup.kill") || FileSystem.exists(path + "/cgroup.events") else { return nil }
        let parent = Paths.dirname(path)
        let manager = V2Manager(root: parent, supervisorLeaf: parent + "/supervisor")
        return try? V2Cgroup.open(name: Paths.basename(path), directory: path, manager: manager)
    }
}

public struct V2Cgroup: JailCgroup {
    public let name: String
    let directory: String
    let fd: FD
    let manager: V2Manager

    static func open(name: String, directory: String, manager: V2Manager) throws(ClawjailError) -> V2Cgroup {
        do {
            let fd = try FileSystem.open(directory, [.readOnly, .directory])
            return V2Cgroup(name: name, directory: directory, fd: fd, manager: manager)
        } catch {
            throw cgroupError("cannot open cgroup", directory, error)
        }
    }

    public var cloneTarget: FD? { fd }
    public var selfJoinFiles: [String] { [] }
    public var paths: [String] { [directory] }

    func write(_ file: String, _ value: String, optional: Bool = false) throws(ClawjailError) {
        do {
            try FileSystem.writeControl("\(directory)/\(file)", value)
        } catch {
            if optional && (error == .ENOENT || error == .EINVAL) { return }
            throw cgroupError("cannot write \(value) to", "\(directory)/\(file)", error)
        }
    }

    func apply(_ writes: [CgroupPlan.Write]) throws(ClawjailError) {
        for w in writes { try write(w.file, w.value, optional: w.optional) }
    }

    public func join(pid: pid_t) throws(ClawjailError) {
        do {
            try FileSystem.writeControl("\(directory)/cgroup.procs", String(pid))
        } catch {
            throw cgroupError("cannot move pid \(pid) into", directory, error)
        }
    }

    public func processes() -> [pid_t] { readPids("\(directory)/cgroup.procs") }

    public func killAll() throws(ClawjailError) {
        do {
            try FileSystem.writeControl("\(directory)/cgroup.kill", "1")
        } catch where error == .ENOENT {
            // Kernels before 5.14 have no cgroup.kill: freeze, kill the listed pids, thaw.
            try? FileSystem.writeControl("\(directory)/cgroup.freeze", "1")
            killListed(processes()) { _ in true }
            try? FileSystem.writeControl("\(directory)/cgroup.freeze", "0")
        } catch {
            throw cgroupError("cannot kill", directory, error)
        }
    }

    public func events() -> CgroupEvents {
        var e = CgroupEvents()
        e.oomKills = readKeyed("\(directory)/memory.events")["oom_kill"] ?? 0
        e.pidsLimitHits = readKeyed("\(directory)/pids.events")["max"] ?? 0
        return e
    }

    public func stats() -> CgroupStats {
        var s = CgroupStats()
        s.memoryCurrent = readUInt("\(directory)/memory.current")
        s.memoryPeak = readUInt("\(directory)/memory.peak")
        s.pidsCurrent = readUInt("\(directory)/pids.current")
        let cpu = readKeyed("\(directory)/cpu.stat")
        s.cpuUsageMicros = cpu["usage_usec"]
        s.cpuThrottledPeriods = cpu["nr_throttled"]
        s.cpuThrottledMicros = cpu["throttled_usec"]
        return s
    }

    var populated: Bool { (readKeyed("\(directory)/cgroup.events")["populated"] ?? 0) != 0 }

    public func destroy() throws(ClawjailError) {
        var last: Errno = .EBUSY
        for attempt in 0..<400 {
            if populated {
                try? killAll()
                pause(microseconds: attempt < 20 ? 500 : 5000)
                continue
            }
            do {
                try FileSystem.rmdir(directory)
                fd.close()
                // Our own top-level directory goes when the last jail does.
                if manager.supervisorLeaf == nil { try? FileSystem.rmdir(manager.root) }
                return
            } catch {
                if error == .ENOENT {
                    fd.close()
                    return
                }
                last = error
            }
            pause(microseconds: attempt < 20 ? 500 : 5000)
        }
        throw cgroupError("cannot remove cgroup", directory, last, hint: "processes are still inside; `clawjail gc` retries")
    }
}
