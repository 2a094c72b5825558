import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The privileged tier runs the real `clawjail` binary as root against the real kernel
/// and asserts from inside the jails it starts, with small probe programs.
enum Harness {
    static let isRoot = getuid() == 0

    /// .build/<config>/clawjail next to the test bundle, or $CLAWJAIL_BIN.
    static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["CLAWJAIL_BIN"] { return b }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = (exe as NSString).deletingLastPathComponent
        for _ in 0..<4 {
            let candidate = dir + "/clawjail"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = (dir as NSString).deletingLastPathComponent
        }
        return "clawjail"
    }()

    static let repository: String = {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<5 {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir.path }
            dir.deleteLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath
    }()

    /// Static probe binaries from probes/*.c, built once per test process with gcc.
    static func probe(_ name: String) throws -> String {
        let out = repository + "/.build/probes"
        let path = out + "/" + name
        let source = repository + "/probes/" + name + ".c"
        let fm = FileManager.default
        if let s = try? fm.attributesOfItem(atPath: source)[.modificationDate] as? Date,
           let b = try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date, b >= s {
            return path
        }
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let r = try run(["/usr/bin/gcc", "-O2", "-static", "-o", path + ".tmp", source])
        guard r.status == 0 else { throw HarnessError("gcc \(name) failed: \(r.stderr)") }
        _ = rename(path + ".tmp", path)
        return path
    }

    struct Result: CustomStringConvertible {
        var status: Int32
        var stdout: String
        var stderr: String
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
        var description: String { "status \(status)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }

        /// The line of a probe check: "write /usr/x EROFS" -> fields after the prefix.
        func line(_ prefix: String) -> String? {
            lines.first { $0 == prefix || $0.hasPrefix(prefix + " ") }
        }
    }

    /// Runs a command with a bounded wait; kills it (by pid, it is ours) on timeout.
    static func run(_ argv: [String], environment: [String: String]? = nil, stdin: String? = nil,
                    timeout: TimeInterval = 60) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try p.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin.data(using: .utf8) ?? Data())
            try? input.fileHandleForWriting.close()
        }
        // Read both pipes on their own threads so a chatty child cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            _ = group.wait(timeout: .now() + 5)
            throw HarnessError("timed out after \(timeout)s: \(argv.joined(separator: " "))")
        }
        p.waitUntilExit()
        _ = group.wait(timeout: .now() + 10)
        let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
        return Result(status: status, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// `clawjail ARGS...` with a clean environment (plus `environment`).
    static func clawjail(_ args: [String], environment: [String: String] = [:], stdin: String? = nil,
                         timeout: TimeInterval = 60) throws -> Result {
        var env = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWJAIL_STATE_DIR": stateDirectory]
        for (k, v) in environment { env[k] = v }
        return try run([binary] + args, environment: env, stdin: stdin, timeout: timeout)
    }

    /// `clawjail exec` with the probe mounted at /probe, running `jailprobe CHECKS...`.
    static func probeInJail(_ checks: [String], options: [String] = [], environment: [String: String] = [:],
                            timeout: TimeInterval = 60) throws -> Result {
        let probe = try probe("jailprobe")
        return try clawjail(["exec", "--quiet", "--ro", probe + ":/probe/jailprobe"] + options + ["--", "/probe/jailprobe"] + checks,
                            environment: environment, timeout: timeout)
    }

    /// A state directory private to this test process, removed when it exits. The
    /// directories of earlier test processes that died without removing theirs
    /// (a crash, a kill) go first.
    static let stateDirectory: String = {
        let fm = FileManager.default
        sweepDeadProcessesDirectories()
        let d = "/tmp/cjt-state-\(getpid())"
        try? fm.createDirectory(atPath: d, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Harness.stateDirectory) }
        return d
    }()

    /// Removes, once per test process, the /tmp directories of earlier test processes
    /// that died without removing theirs (a crash skips every defer): cjt-state-PID and
    /// tempDirectory's cjt-TAG-PID-N, when PID is no longer alive.
    static let sweptDeadProcessesDirectories: Void = {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: "/tmp")) ?? [] where name.hasPrefix("cjt-") {
            let parts = name.split(separator: "-")
            let pidText = name.hasPrefix("cjt-state-") ? parts.last : (parts.count >= 4 && UInt32(parts[parts.count - 1]) != nil ? parts[parts.count - 2] : nil)
            guard let pidText, let pid = Int32(pidText), pid > 1, pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            // Never into a mount point (DiskFullTests mounts its own filesystem there).
            var tmp = stat(), dir = stat()
            guard stat("/tmp", &tmp) == 0, lstat("/tmp/" + name, &dir) == 0, dir.st_dev == tmp.st_dev else { continue }
            try? fm.removeItem(atPath: "/tmp/" + name)
        }
    }()

    static func sweepDeadProcessesDirectories() { _ = sweptDeadProcessesDirectories }

    /// A fresh directory under /tmp, removed by the caller's defer (and, if this process
    /// dies first, by the next test process: sweepDeadProcessesDirectories).
    static func tempDirectory(_ tag: String) throws -> String {
        sweepDeadProcessesDirectories()
        let path = "/tmp/cjt-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    /// Pids of processes whose real uid lies in [base, base + count): the jails' users.
    static func processes(inUidRange base: UInt32, count: UInt32 = 65536) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = s.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return false }
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count > 1, let uid = UInt32(fields[1]) else { return false }
            return uid >= base && uid - base < count
        }
    }

    /// Jail cgroup directories left in any v1 hierarchy or the v2 parent.
    static func leftoverCgroups(named prefix: String = "") -> [String] {
        var out: [String] = []
        for h in ["memory", "pids", "cpu", "cpuacct", "freezer", "blkio", "unified"] {
            let parent = "/sys/fs/cgroup/\(h)/clawjail"
            for e in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where e.hasPrefix(prefix) {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: parent + "/" + e, isDirectory: &isDir), isDir.boolValue {
                    out.append(parent + "/" + e)
                }
            }
        }
        return out
    }

    static let anonymousToolBase: UInt32 = 0x7000_0000

    /// The jail (cgroup) name of a jailed process, from its v1 pids or v2 cgroup line.
    static func jailName(of pid: Int32) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.contains(":pids:") || line.hasPrefix("0::") {
            let path = line.split(separator: ":", maxSplits: 2).last.map(String.init) ?? ""
            if let r = path.range(of: "/clawjail/") { return String(path[r.upperBound...]).split(separator: "/").first.map(String.init) }
        }
        return nil
    }

    /// Waits (bounded) for a condition.
    @discardableResult
    static func eventually(timeout: TimeInterval = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Tests that create namespaces, cgroups and mounts need root; CI is root.
extension Trait where Self == ConditionTrait {
    static var requiresRoot: Self { .enabled(if: Harness.isRoot, "needs root: starts real jails (namespaces, cgroups, mounts)") }
}

/// Every privileged test lives in this suite: they start real jails, share the host's
/// cgroup trees and uid ranges, and check for leftovers, so they run one at a time.
@Suite("privileged tier", .requiresRoot, .serialized)
struct Privileged {}
