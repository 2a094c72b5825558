import ClawjailCgroup
import ClawjailCore
import ClawjailSystem

/// Which jails are alive: each supervisor holds an flock on
/// /run/clawjail/jails/<name>.lock for as long as its jail exists. The kernel drops the
/// lock when the supervisor dies, however it dies, so "a cgroup whose lock nobody
/// holds" is exactly "a leftover of a supervisor that is gone".
public enum JailRegistry {
    public struct Entry: Sendable {
        public var name: String
        public var supervisorPid: pid_t
        public var kind: String
        public var startedAtMs: Int64
        public var cgroupPaths: [String] = []
    }

    public static func path(_ name: String, layout: HostLayout) -> String { "\(layout.jailDirectory)/\(name).lock" }

    /// Takes the jail's lock, or fails because a live supervisor has it.
    public static func acquire(_ name: String, kind: JailSpec.Kind, layout: HostLayout) throws(ClawjailError) -> FileLock {
        try layout.ensureRunDirectories()
        let p = path(name, layout: layout)
        var lock: FileLock?
        // release() unlinks the file before closing it, so the file we locked may have
        // been unlinked meanwhile: only a lock on the inode that is still at the path
        // counts. Retry (bounded) when they differ.
        for _ in 0..<8 {
            do { lock = try FileLock.tryExclusive(p) } catch {
                throw ClawjailError(.setup, "cannot lock \(p)", cause: error)
            }
            guard let l = lock else { break }
            if let held = try? l.fd.stat(), let onDisk = try? FileSystem.stat(p), held.inode == onDisk.inode,
               held.device == onDisk.device {
                break
            }
            l.release()
            lock = nil
        }
        guard let lock else {
            let holder = read(name, layout: layout).map { " (supervisor pid \($0.supervisorPid))" } ?? ""
            throw ClawjailError(.conflict, "\(kind == .agent ? "agent" : "jail") \(name) is already running\(holder)",
                                hint: kind == .agent ? "stop it first with `clawjail stop \(name)`, or give this config another name" : nil)
        }
        let record = "\(ProcessInfoLite.pid) \(kind.rawValue) \(ProcessInfoLite.wallClockMilliseconds)\n"
        // Truncate only a stale record: on ext4 a truncate to 0 marks the file for a
        // flush to disk on close (auto_da_alloc), a write-out per run for a file that
        // lives for one run (when /run is not a tmpfs).
        if let st = try? lock.fd.stat(), st.size > 0 { try? lock.fd.truncate(to: 0) }
        _ = try? lock.fd.writeAll(record)
        return lock
    }

    /// Appends the jail's cgroup directories to its record, so that `kill`, `ps` and
    /// `gc` find it even where no manager would look (a jail inside another unit's
    /// delegated cgroup, for one).
    static func recordCgroup(_ lock: FileLock, paths: [String]) {
        _ = try? lock.fd.seekToEnd()
        _ = try? lock.fd.writeAll(paths.map { "cgroup \($0)\n" }.joined())
    }

    public static func release(_ lock: FileLock, name: String, layout: HostLayout) {
        try? FileSystem.unlink(path(name, layout: layout))
        lock.release()
    }

    public static func read(_ name: String, layout: HostLayout) -> Entry? {
        guard let text = try? FileSystem.readText(path(name, layout: layout), limit: 8192) else { return nil }
        let lines = text.split(separator: "\n")
        guard let first = lines.first else { return nil }
        let f = first.split(separator: " ").map(String.init)
        guard f.count >= 3, let pid = pid_t(f[0]), let ms = Int64(f[2]) else { return nil }
        let paths = lines.dropFirst().filter { $0.hasPrefix("cgroup /") }.map { String($0.dropFirst(7)) }
        return Entry(name: name, supervisorPid: pid, kind: f[1], startedAtMs: ms, cgroupPaths: paths)
    }

    public static func isAlive(_ name: String, layout: HostLayout) -> Bool {
        FileLock.isHeld(path(name, layout: layout))
    }

    /// Live jails, from the lock files whose lock is held.
    public static func running(layout: HostLayout) -> [Entry] {
        let names = ((try? FileSystem.listDirectory(layout.jailDirectory)) ?? []).filter { $0.hasSuffix(".lock") }
            .map { String($0.dropLast(5)) }
        return names.sorted().compactMap { n in isAlive(n, layout: layout) ? read(n, layout: layout) : nil }
    }

    public struct GCReport: Sendable {
        public var removedCgroups: [String] = []
        public var removedLocks: [String] = []
        /// VM agents whose tool-run socket or guest memory report a dead supervisor left.
        public var removedVMFiles: [String] = []
        public var failures: [String] = []
    }

    /// Removes every cgroup and lock file of jails whose supervisor is gone. With `only`,
    /// just that jail (what `run` does for its own name before starting).
    public static func collectGarbage(layout: HostLayout, cgroups: any CgroupManager, only: String? = nil) -> GCReport {
        var report = GCReport()
        let names = only.map { [$0] } ?? cgroups.jailNames()
        for name in names where !isAlive(name, layout: layout) {
            guard let group = cgroups.open(name: name) else { continue }
            do {
                try group.destroy()
                report.removedCgroups.append(name)
            } catch {
                report.failures.append("\(name): \(error)")
            }
        }
        if only == nil { cgroups.removeEmptyParents() }
        let files = (try? FileSystem.listDirectory(layout.jailDirectory)) ?? []
        for file in files {
            let name: String
            if file.hasSuffix(".lock") { name = String(file.dropLast(5)) } else if file.hasSuffix(".killed") {
                name = String(file.dropLast(7))
            } else { continue }
            if let only, only != name { continue }
            if !isAlive(name, layout: layout) {
                try? FileSystem.unlink(layout.jailDirectory + "/" + file)
                if file.hasSuffix(".lock") { report.removedLocks.append(name) }
            }
        }
        // A VM agent's supervisor unlinks its socket and memory report when the agent ends;
        // a SIGKILLed one cannot. (A stale socket refuses connections: exec --agent already
        // says the agent is not running; this only removes the files.)
        for file in (try? FileSystem.listDirectory(layout.vmSocketDirectory)) ?? [] {
            guard let dot = file.lastIndex(of: "."), [".sock", ".memory"].contains(String(file[dot...])) else { continue }
            let name = String(file[..<dot])
            if let only, only != name { continue }
            guard !isAlive(name, layout: layout) else { continue }
            if (try? FileSystem.unlink(layout.vmSocketDirectory + "/" + file)) != nil, !report.removedVMFiles.contains(name) {
                report.removedVMFiles.append(name)
            }
        }
        return report
    }
}
