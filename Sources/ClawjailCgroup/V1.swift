import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// cgroup v1 (hybrid and legacy hosts). One directory per controller hierarchy at
/// `<hierarchy root>/<parent>/<name>`, as runc and crun lay them out. Nothing is ever
/// created outside `<parent>`, and no cgroup we did not create is touched.
public struct V1Manager: CgroupManager {
    public let mode = CgroupMode.v1
    /// controller -> mount point (only the controllers we use).
    public let mounts: [String: String]
    public let parent: String

    static let wanted = ["memory", "pids", "cpu", "cpuacct", "freezer", "blkio"]

    public init(mounts: [String: String], parent: String) {
        self.mounts = mounts.filter { Self.wanted.contains($0.key) }
        self.parent = parent
    }

    public var summary: String {
        "v1 (" + Self.wanted.filter { mounts[$0] != nil }.joined(separator: ", ") + ") under \(parent)/"
    }

    /// Hierarchy roots without duplicates (cpu and cpuacct may share one mount).
    var hierarchies: [(controllers: [String], root: String)] {
        var seen: [String: [String]] = [:]
        var order: [String] = []
        for c in Self.wanted {
            guard let m = mounts[c] else { continue }
            if seen[m] == nil { order.append(m) }
            seen[m, default: []].append(c)
        }
        return order.map { (seen[$0] ?? [], $0) }
    }

    func directory(_ controller: String, _ name: String) -> String? {
        mounts[controller].map { "\($0)/\(parent)/\(name)" }
    }

    public var facts: CgroupFacts {
        let blkio = mounts["blkio"].flatMap { root in
            ["blkio.weight", "blkio.bfq.weight"].first { FileSystem.exists(root + "/" + $0) }
        }
        return CgroupFacts(mode: .v1, v1Hierarchies: hierarchies.map(\.controllers), v1BlkioWeightFile: blkio,
                           location: summary)
    }

    public func create(name: String, plan: CgroupPlan) throws(ClawjailError) -> any JailCgroup {
        var made: [String] = []
        let roots = hierarchies.filter { plan.hierarchies.contains($0.controllers) }.map(\.root)
        let group = V1Cgroup(name: name, manager: self, roots: roots)
        func undo() { for d in made.reversed() { try? FileSystem.rmdir(d) } }
        for root in roots {
            let base = "\(root)/\(parent)"
            let dir = "\(base)/\(name)"
            do {
                try createBelowParent(base: base, dir: dir)
            } catch {
                undo()
                throw cgroupError("cannot create cgroup", dir, error,
                                  hint: error == .EEXIST ? "a jail named \(name) is running or left over; `clawjail gc` removes leftovers" : nil)
            }
            made.append(dir)
        }
        do {
            try group.apply(plan.writes)
        } catch {
            undo()
            throw error
        }
        return group
    }

    /// The shared parent stays between runs (creating and removing a memcg costs as
    /// much as the jail's own); `clawjail gc` removes it when it is empty, and a
    /// concurrent gc can race with our mkdir: recreate the parent and retry.
    func createBelowParent(base: String, dir: String) throws(Errno) {
        var attempts = 0
        while true {
            do {
                try FileSystem.mkdir(dir, mode: 0o755)
                return
            } catch {
                attempts += 1
                if error != .ENOENT || attempts > 5 { throw error }
            }
            try FileSystem.ensureDirectory(base, mode: 0o755)
        }
    }

    /// Removes the `clawjail` parents when no jail is left in them (EBUSY otherwise,
    /// which is fine). Only gc does this: runs leave the empty parents for the next one.
    public func removeEmptyParents() {
        for (_, root) in hierarchies { try? FileSystem.rmdir("\(root)/\(parent)") }
    }

    public func open(name: String) -> (any JailCgroup)? {
        let roots = hierarchies.map(\.root).filter { FileSystem.exists("\($0)/\(parent)/\(name)") }
        guard !roots.isEmpty else { return nil }
        return V1Cgroup(name: name, manager: self, roots: roots)
    }

    /// Freezes the common parent (the v1 freezer is hierarchical, so every jail stops
    /// at once and nothing can fork), kills every listed pid of every jail through
    /// pidfds, and thaws: the killed processes die as soon as they run again.
    public func killEverything() throws(ClawjailError) -> Int {
        let names = jailNames()
        guard let freezerRoot = mounts["freezer"] else {
            var count = 0
            for n in names { if let g = open(name: n) { count += g.processes().count; try? g.killAll() } }
            return count
        }
        let parentDir = "\(freezerRoot)/\(parent)"
        guard FileSystem.exists(parentDir) else { return 0 }
        do {
            try FileSystem.writeControl(parentDir + "/freezer.state", "FROZEN")
        } catch {
            throw cgroupError("cannot freeze", parentDir, error)
        }
        for _ in 0..<1000 {
            if ((try? FileSystem.readText(parentDir + "/freezer.state")) ?? "").hasPrefix("FROZEN") { break }
            pause(microseconds: 500)
        }
        var pids: [pid_t] = []
        for n in names { pids += readPids("\(parentDir)/\(n)/cgroup.procs") }
        killListed(pids) { _ in true }
        try? FileSystem.writeControl(parentDir + "/freezer.state", "THAWED")
        return pids.count
    }

    public func jailNames() -> [String] {
        var names: Set<String> = []
        for (_, root) in hierarchies {
            let base = "\(root)/\(parent)"
            guard let entries = try? FileSystem.listDirectory(base) else { continue }
            for e in entries where (try? FileSystem.stat(base + "/" + e))?.isDirectory == true {
                names.insert(e)
            }
        }
        return names.sorted()
    }
}

public struct V1Cgroup: JailCgroup {
    public let name: String
    let manager: V1Manager
    /// The hierarchy mount points this jail has a directory in.
    let roots: [String]

    public var cloneTarget: FD? { nil }
    public var selfJoinFiles: [String] { paths.map { $0 + "/tasks" } }

    public var paths: [String] { roots.map { "\($0)/\(manager.parent)/\(name)" } }

    func dir(_ controller: String) -> String? {
        guard let root = manager.mounts[controller], roots.contains(root) else { return nil }
        return "\(root)/\(manager.parent)/\(name)"
    }

    func write(_ controller: String, _ file: String, _ value: String, optional: Bool = false) throws(ClawjailError) {
        guard let d = dir(controller) else { return }
        do {
            try FileSystem.writeControl("\(d)/\(file)", value)
        } catch {
            if optional && (error == .ENOENT || error == .EINVAL || error == .EACCES) { return }
            throw cgroupError("cannot write \(value) to", "\(d)/\(file)", error)
        }
    }

    func apply(_ writes: [CgroupPlan.Write]) throws(ClawjailError) {
        for w in writes {
            guard let c = w.controller else { continue }
            try write(c, w.file, w.value, optional: w.optional)
        }
    }

    public func join(pid: pid_t) throws(ClawjailError) {
        for p in paths {
            do {
                try FileSystem.writeControl("\(p)/cgroup.procs", String(pid))
            } catch {
                throw cgroupError("cannot move pid \(pid) into", p, error)
            }
        }
    }

    public func processes() -> [pid_t] {
        var all: Set<pid_t> = []
        for p in paths { all.formUnion(readPids("\(p)/cgroup.procs")) }
        return all.sorted()
    }

    /// Freeze, kill every listed pid, thaw: frozen processes cannot fork or exit, so
    /// the list is complete and stable while we go through it.
    public func killAll() throws(ClawjailError) {
        guard let freezer = dir("freezer") else {
            // Without a freezer, repeat until the pids cgroup is empty (bounded).
            for _ in 0..<50 {
                let pids = processes()
                if pids.isEmpty { return }
                killListed(pids) { processes().contains($0) }
                pause(microseconds: 2000)
            }
            return
        }
        do {
            try FileSystem.writeControl("\(freezer)/freezer.state", "FROZEN")
        } catch {
            throw cgroupError("cannot freeze", freezer, error)
        }
        // FREEZING -> FROZEN; bounded wait.
        for _ in 0..<500 {
            let state = (try? FileSystem.readText("\(freezer)/freezer.state")) ?? ""
            if state.hasPrefix("FROZEN") { break }
            pause(microseconds: 1000)
        }
        let listed = Set(readPids("\(freezer)/cgroup.procs"))
        killListed(listed.sorted()) { _ in true }
        try? FileSystem.writeControl("\(freezer)/freezer.state", "THAWED")
    }

    public func events() -> CgroupEvents {
        var e = CgroupEvents()
        if let d = dir("memory") { e.oomKills = readKeyed("\(d)/memory.oom_control")["oom_kill"] ?? 0 }
        if let d = dir("pids") {
            // pids.events: "max N" counts forks refused at pids.max.
            e.pidsLimitHits = readKeyed("\(d)/pids.events")["max"] ?? 0
        }
        return e
    }

    public func stats() -> CgroupStats {
        var s = CgroupStats()
        if let d = dir("memory") {
            s.memoryCurrent = readUInt("\(d)/memory.usage_in_bytes")
            s.memoryPeak = readUInt("\(d)/memory.max_usage_in_bytes")
        }
        if let d = dir("pids") { s.pidsCurrent = readUInt("\(d)/pids.current") }
        if let d = dir("cpuacct") { s.cpuUsageMicros = readUInt("\(d)/cpuacct.usage").map { $0 / 1000 } }
        if let d = dir("cpu") {
            let st = readKeyed("\(d)/cpu.stat")
            s.cpuThrottledPeriods = st["nr_throttled"]
            s.cpuThrottledMicros = st["throttled_time"].map { $0 / 1000 }
        }
        return s
    }

    public func destroy() throws(ClawjailError) {
        // The usual case: the jail's init was reaped and took every process with it
        // (pid namespace), so the directories go at once.
        var busy = false
        for p in paths {
            do { try FileSystem.rmdir(p) } catch { if error != .ENOENT { busy = true } }
        }
        if !busy { return }
        var lastError: Errno?
        for attempt in 0..<400 {
            if !processes().isEmpty {
                try? killAll()
                pause(microseconds: attempt < 20 ? 500 : 5000)
                continue
            }
            lastError = nil
            for p in paths where FileSystem.exists(p) {
                do {
                    try FileSystem.rmdir(p)
                } catch {
                    if error != .ENOENT { lastError = error }
                }
            }
            if lastError == nil { return }
            pause(microseconds: attempt < 20 ? 500 : 5000)
        }
        throw cgroupError("cannot remove cgroup", paths.joined(separator: ", "), lastError ?? .EBUSY,
                          hint: "processes are still inside; `clawjail gc` retries")
    }
}
