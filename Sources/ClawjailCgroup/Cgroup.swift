import ClawjailCore
import ClawjailPlan
import ClawjailSystem

public struct CgroupEvents: Sendable, Hashable {
    public var oomKills: UInt64 = 0
    public var pidsLimitHits: UInt64 = 0
    public init() {}
}

public struct CgroupStats: Sendable, Hashable {
    public var memoryCurrent: UInt64?
    public var memoryPeak: UInt64?
    public var pidsCurrent: UInt64?
    public var cpuUsageMicros: UInt64?
    public var cpuThrottledPeriods: UInt64?
    public var cpuThrottledMicros: UInt64?
    public init() {}
}

public enum CgroupMode: String, Sendable { case v1, v2 }

/// One manager per host layout. Managers are rooted at a directory so that tests can
/// point them at a temporary tree where that is meaningful.
public protocol CgroupManager: Sendable {
    var mode: CgroupMode { get }
    /// Human description for `doctor` and `check`: "v1 (memory, pids, cpu, cpuacct, freezer) under clawjail/".
    var summary: String { get }
    /// What the planner needs to know about this layout.
    var facts: CgroupFacts { get }
    /// Creates the jail's cgroup in the hierarchies the plan names and writes its
    /// values. Fails if it exists (call `remove` for leftovers first).
    func create(name: String, plan: CgroupPlan) throws(ClawjailError) -> any JailCgroup
    /// An existing jail cgroup (for `kill`, `gc`, `ps`), nil when absent.
    func open(name: String) -> (any JailCgroup)?
    /// Names of every jail cgroup this manager can see.
    func jailNames() -> [String]
    /// The emergency stop: kills every process of every jail at once, whatever state
    /// their supervisors are in. Returns how many processes it signalled (v1) or found
    /// (v2).
    func killEverything() throws(ClawjailError) -> Int
    /// Removes clawjail's own parent cgroups where no jail is left in them (gc).
    func removeEmptyParents()
}

extension CgroupManager {
    /// v2 removes its own top-level directory with the last jail.
    public func removeEmptyParents() {}
}

public protocol JailCgroup: Sendable {
    var name: String { get }
    /// A directory fd for clone3(CLONE_INTO_CGROUP), or nil when the child must be
    /// moved by `join` (v1).
    var cloneTarget: FD? { get }
    /// Places a process (the jail's init, still waiting on its sync pipe).
    func join(pid: pid_t) throws(ClawjailError)
    /// Files a process can write "0" to in order to move itself (v1 `tasks`), which the
    /// kernel does without the global lock a move by another process needs; empty when
    /// the child is placed by clone3 (v2).
    var selfJoinFiles: [String] { get }
    /// Every process in the cgroup, as listed by the kernel.
    func processes() -> [pid_t]
    /// Kills every process in the jail at once, whatever sessions or parents they have.
    func killAll() throws(ClawjailError)
    func events() -> CgroupEvents
    func stats() -> CgroupStats
    /// Kills what is left, waits (bounded) until the cgroup is empty, and removes it.
    func destroy() throws(ClawjailError)
    /// Paths of the cgroup directories (for messages and for `gc`).
    var paths: [String] { get }
}

public enum Cgroups {
    /// Reads /proc/self/mountinfo and returns the manager for this host. An explicit
    /// environment override (CLAWJAIL_CGROUP=v1|v2) exists for the qemu test tier and
    /// for hosts where both are mounted.
    public static func detect(parent: String = "clawjail") throws(ClawjailError) -> any CgroupManager {
        let mounts = CgroupMounts.read()
        let forced = ProcessInfoLite.environment()["CLAWJAIL_CGROUP"]
        let v2 = mounts.unified.flatMap { root -> V2Manager? in
            // Whole words: String.contains(String) is a generic search whose first use
            // costs a few hundred microseconds of runtime set-up on every exec.
            let text = (try? FileSystem.readText(root + "/cgroup.controllers")) ?? ""
            let controllers = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            let usable = controllers.contains { $0 == "memory" } && controllers.contains { $0 == "pids" }
            return usable ? V2Manager.forSupervisor(mountPoint: root, parent: parent) : nil
        }
        if forced == "v2" || (forced == nil && v2 != nil) {
            guard let v2 else {
                throw ClawjailError(.cgroup, "cgroup v2 was requested but no cgroup2 hierarchy with the memory and pids controllers is mounted")
            }
            return v2
        }
        guard mounts.v1["memory"] != nil, mounts.v1["pids"] != nil else {
            throw ClawjailError(.cgroup, "no usable cgroup hierarchy: neither cgroup v2 with memory+pids nor v1 memory and pids controllers are mounted",
                                hint: "mount cgroup2 at /sys/fs/cgroup (systemd does this by default), or the v1 memory, pids, cpu and freezer controllers")
        }
        return V1Manager(mounts: mounts.v1, parent: parent)
    }
}

/// Where the cgroup hierarchies are mounted, from /proc/self/mountinfo.
public struct CgroupMounts: Sendable {
    public var unified: String?
    public var v1: [String: String] = [:]   // controller -> mount point

    public static func read(_ text: String? = nil) -> CgroupMounts {
        let body = text.map { Array($0.utf8) } ?? ((try? FileSystem.readFile("/proc/self/mountinfo")) ?? [])
        return parse(body)
    }

    /// Works on bytes: `exec` runs this on every start, and splitting a few dozen lines
    /// as Swift strings cost most of a millisecond.
    static func parse(_ body: [UInt8]) -> CgroupMounts {
        var out = CgroupMounts()
        var fields: [ArraySlice<UInt8>] = []
        fields.reserveCapacity(16)
        var lineStart = 0
        while lineStart < body.count {
            var lineEnd = lineStart
            while lineEnd < body.count && body[lineEnd] != 0x0a { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            fields.removeAll(keepingCapacity: true)
            var f = lineStart
            for i in lineStart...lineEnd where i == lineEnd || body[i] == 0x20 {
                fields.append(body[f..<i])
                f = i + 1
            }
            guard fields.count >= 10, let dash = fields[6...].firstIndex(where: { $0.count == 1 && $0.first == 0x2d }),
                  dash + 3 < fields.count else { continue }
            let fstype = fields[dash + 1]
            if fstype.elementsEqual("cgroup2".utf8) {
                if out.unified == nil { out.unified = unescapeMountinfo(fields[4]) }
            } else if fstype.elementsEqual("cgroup".utf8) {
                var mountPoint: String?
                for opt in fields[dash + 3].split(separator: 0x2c) {
                    let name = String(decoding: opt, as: UTF8.self)
                    guard known.contains(name), out.v1[name] == nil else { continue }
                    if mountPoint == nil { mountPoint = unescapeMountinfo(fields[4]) }
                    out.v1[name] = mountPoint
                }
            }
        }
        return out
    }

    static let known: Set<String> = ["memory", "pids", "cpu", "cpuacct", "freezer", "blkio", "cpuset", "devices"]

    static func unescapeMountinfo(_ u: ArraySlice<UInt8>) -> String {
        guard u.contains(0x5c) else { return String(decoding: u, as: UTF8.self) }
        var bytes: [UInt8] = []
        var i = u.startIndex
        while i < u.endIndex {
            if u[i] == 0x5c, i + 3 < u.endIndex, let v = UInt8(String(decoding: u[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(v)
                i += 4
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

func readUInt(_ path: String) -> UInt64? {
    guard let t = try? FileSystem.readText(path, limit: 4096) else { return nil }
    let s = t.split(separator: "\n").first.map(String.init) ?? ""
    if s == "max" { return UInt64.max }
    return UInt64(s)
}

/// "key value" lines (memory.events, cpu.stat, memory.oom_control, ...).
func readKeyed(_ path: String) -> [String: UInt64] {
    guard let t = try? FileSystem.readText(path, limit: 65536) else { return [:] }
    var out: [String: UInt64] = [:]
    for line in t.split(separator: "\n") {
        let parts = line.split(separator: " ")
        if parts.count == 2, let v = UInt64(parts[1]) { out[String(parts[0])] = v }
    }
    return out
}

func readPids(_ path: String) -> [pid_t] {
    guard let t = try? FileSystem.readText(path) else { return [] }
    return t.split(separator: "\n").compactMap { pid_t($0) }
}

func cgroupError(_ what: String, _ path: String, _ e: Errno, hint: String? = nil) -> ClawjailError {
    ClawjailError(.cgroup, "\(what) \(path)", hint: hint, cause: e)
}

/// Sleeps a little; used by bounded wait loops only.
func pause(microseconds: UInt32) { ProcessInfoLite.sleep(nanoseconds: UInt64(microseconds) * 1000) }

/// Signals the pids of a frozen or dying cgroup through pidfds. A pid is signalled only
/// if, after opening its pidfd, it is still listed in the cgroup: then the pidfd names
/// that very process and a recycled number can never be hit.
func killListed(_ pids: [pid_t], stillListed: (pid_t) -> Bool) {
    for pid in pids {
        guard let pfd = try? PidFD.open(pid) else { continue }
        if stillListed(pid) { try? pfd.signal(.kill) }
        pfd.close()
    }
}
