#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// A process we act on only through its pidfd, so a recycled pid number can never be
/// signalled by mistake.
public struct PidFD: Sendable, CustomStringConvertible {
    public let fd: FD
    public let pid: pid_t
    public init(fd: FD, pid: pid_t) {
        self.fd = fd
        self.pid = pid
    }

    public var description: String { "pid \(pid)" }

    /// pidfd_open; the caller checks, where it matters, that the process is still the
    /// one it meant (see `Cgroup` for how v1 does that).
    public static func open(_ pid: pid_t) throws(Errno) -> PidFD {
        PidFD(fd: FD(try syscallRetrying { cj_sys_pidfd_open(pid, 0) }), pid: pid)
    }

    public func signal(_ sig: Int32) throws(Errno) {
        _ = try syscallRetrying { cj_sys_pidfd_send_signal(fd.rawValue, sig) }
    }

    public func signal(_ sig: Signal) throws(Errno) {
        try signal(sig.rawValue)
    }

    /// Non-blocking reap. nil while the process runs.
    public func tryWait() throws(Errno) -> WaitStatus? {
        var status: Int32 = 0
        _ = try syscallRetrying { cj_sys_wait_pidfd(fd.rawValue, &status, WNOHANG) }
        return status == -1 ? nil : WaitStatus(rawValue: status)
    }

    public func wait() throws(Errno) -> WaitStatus {
        var status: Int32 = 0
        _ = try syscallRetrying { cj_sys_wait_pidfd(fd.rawValue, &status, 0) }
        return WaitStatus(rawValue: status)
    }

    /// Duplicates fd `target` of the process into ours (needs ptrace access: root).
    public func getFD(_ target: Int32) throws(Errno) -> FD {
        FD(try syscallRetrying { cj_sys_pidfd_getfd(fd.rawValue, target) })
    }

    public func close() { fd.close() }
}

/// A waitpid-style status word.
public struct WaitStatus: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public var exited: Bool { rawValue & 0x7f == 0 }
    public var exitCode: Int32 { (rawValue >> 8) & 0xff }
    public var signaled: Bool { !exited && rawValue & 0x7f != 0x7f }
    public var signal: Int32 { rawValue & 0x7f }
    public var coreDumped: Bool { rawValue & 0x80 != 0 }
    /// The shell's convention: the code, or 128 + the signal.
    public var shellStatus: Int32 { exited ? exitCode : 128 + signal }
    public var description: String { exited ? "exited \(exitCode)" : "killed by \(signalName(signal))" }
}

public func signalName(_ sig: Int32) -> String {
    let names: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
        8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
        14: "SIGALRM", 15: "SIGTERM", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP",
        24: "SIGXCPU", 25: "SIGXFSZ", 28: "SIGWINCH", 31: "SIGSYS",
    ]
    return names[sig] ?? "signal \(sig)"
}

public enum ProcessInfoLite {
    /// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat),
    /// which together with the pid identifies it for good.
    public static func startTime(of pid: pid_t) -> UInt64? {
        guard let text = try? FileSystem.readText("/proc/\(pid)/stat", limit: 4096),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3), so field 22 is index 19.
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    public static func isAlive(pid: pid_t, startTime: UInt64) -> Bool {
        guard pid > 0 else { return false }
        return ProcessInfoLite.startTime(of: pid) == startTime
    }

    public static var monotonicNanoseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Sleeps the calling thread (nanosleep, resumed after a signal).
    public static func sleep(nanoseconds ns: UInt64) {
        var req = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        var rem = timespec()
        while nanosleep(&req, &rem) != 0 && errno == EINTR { req = rem }
    }

    /// CLOCK_REALTIME in ns: the clock file timestamps come from.
    public static var wallClockNanoseconds: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// This process's pid.
    public static var pid: pid_t { getpid() }

    /// exit(3), not _exit: stdio is flushed and atexit handlers run. Only for the
    /// supervisor's own process; the jail's child ends in C with _exit.
    public static func exit(_ status: Int32) -> Never { Glibc.exit(status) }

    /// The effective uid, which file ownership checks compare with.
    public static var effectiveUserID: uid_t { geteuid() }

    /// The real uid: who ran the command, for the audit log.
    public static var userID: uid_t { getuid() }

    /// gethostname(2); empty when it fails.
    public static var hostName: String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The running kernel's release (uname -r); empty when uname fails.
    public static var kernelRelease: String {
        var uts = utsname()
        _ = uname(&uts)
        return withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public static var wallClockMilliseconds: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The process environment, parsed once: clawjail never calls setenv, and `exec`
    /// asks for it from several places on its hot path.
    public static func environment() -> [String: String] { parsedEnvironment }

    private static let parsedEnvironment: [String: String] = {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                env[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return env
    }()
}

/// A plain child process, for callers outside any jail.
public enum ChildProcess {
    /// Starts `argv` as `uid`:`gid` (no supplementary groups) in a session of its own,
    /// with `stdio` as its 0, 1 and 2 (cj_spawn_process: fork, then only
    /// async-signal-safe calls until execve). `argv[0]` must be a path. The guest's
    /// init starts sessions with it; the host's KVM probe starts its qemu.
    public static func start(_ argv: [String], environment: [String], cwd: String, uid: UInt32, gid: UInt32,
                             stdio: (FD, FD, FD)) throws(Errno) -> pid_t {
        guard let path = argv.first, path.hasPrefix("/") else { throw .ENOENT }
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        let fds: [Int32] = [stdio.0.rawValue, stdio.1.rawValue, stdio.2.rawValue]
        let r = fds.withUnsafeBufferPointer { f in cj_spawn_process(path, cArgv, cEnv, cwd, uid, gid, f.baseAddress) }
        if r < 0 { throw Errno(rawValue: -r) }
        return r
    }
}
