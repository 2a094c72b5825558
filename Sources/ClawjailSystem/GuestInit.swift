#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// The calls the micro-VM guest's init (Sources/ClawjailGuest) makes as PID 1: the
/// classic mount(2), module loading, spawning a command, and power-off.
public enum GuestInit {
    /// mount(2) with a source, a type and data, for the guest's own filesystems
    /// (proc, sysfs, devtmpfs, tmpfs, cgroup2).
    public static func mount(_ source: String, on target: String, type: String, flags: UInt = 0, data: String? = nil) throws(Errno) {
        _ = try syscallRetrying { Glibc.mount(source, target, type, flags, data) }
    }

    /// Moves PID 1 off the initial rootfs, as switch_root does, without copying it:
    /// a tmpfs at `newRoot` gets `keep` bound in (the init binary), `moving` mounts are
    /// moved under it, and it is moved over / and chrooted into. pivot_root(2) refuses to
    /// leave the initial rootfs, and every jail the guest builds pivots.
    public static func leaveRootfs(_ newRoot: String, keep: [String], moving: [String], directories: [String]) throws(Errno) {
        _ = try FileSystem.mkdirs(newRoot, mode: 0o755)
        try mount("root", on: newRoot, type: "tmpfs", flags: 0, data: "mode=0755,size=16m")
        for d in directories { _ = try FileSystem.mkdirs(newRoot + d, mode: 0o755) }
        for path in keep {
            let fd = try FileSystem.open(newRoot + path, [.writeOnly, .create, .closeOnExec], mode: 0o755)
            fd.close()
            _ = try syscallRetrying { Glibc.mount(path, newRoot + path, nil, UInt(MS_BIND), nil) }
        }
        for m in moving {
            _ = try FileSystem.mkdirs(newRoot + m, mode: 0o755)
            _ = try syscallRetrying { Glibc.mount(m, newRoot + m, nil, UInt(MS_MOVE), nil) }
        }
        _ = try syscallRetrying { Glibc.chdir(newRoot) }
        _ = try syscallRetrying { Glibc.mount(".", "/", nil, UInt(MS_MOVE), nil) }
        _ = try syscallRetrying { Glibc.chroot(".") }
        _ = try syscallRetrying { Glibc.chdir("/") }
    }

    public static let mountNoSuid: UInt = UInt(MS_NOSUID)
    public static let mountNoDev: UInt = UInt(MS_NODEV)
    public static let mountNoExec: UInt = UInt(MS_NOEXEC)
    public static let mountReadOnly: UInt = UInt(MS_RDONLY)

    /// kill(2) of a session's whole process group (`pid` leads it: ChildProcess.start
    /// starts each in a session of its own). ESRCH (all gone) is not an error.
    public static func signalGroup(_ pid: pid_t, _ signal: Int32) {
        _ = Glibc.kill(-pid, signal)
    }

    /// kill(2) of one process.
    public static func signal(_ pid: pid_t, _ signal: Int32) {
        _ = Glibc.kill(pid, signal)
    }

    /// finit_module(2) of the open module file `fd`. EEXIST (already loaded) is not an error.
    public static func loadModule(_ fd: FD, parameters: String = "") throws(Errno) {
        do throws(Errno) {
            _ = try syscallRetrying { cj_sys_finit_module(fd.rawValue, parameters, 0) }
        } catch where error == .EEXIST {
            return
        }
    }

    /// Starts `argv` (an absolute path in argv[0]) with stdin on /dev/null and stdout and
    /// stderr on `output`, an unblocked signal mask and default signal handlers.
    /// posix_spawn does the fork and exec in libc, so no Swift runs in the child.
    public static func spawn(_ argv: [String], environment: [String], output: FD) throws(Errno) -> pid_t {
        guard let path = argv.first else { throw .EINVAL }
        var actions = posix_spawn_file_actions_t()
        var attr = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attr)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attr)
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output.rawValue, 1)
        posix_spawn_file_actions_adddup2(&actions, output.rawValue, 2)
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, path, &actions, &attr, cArgv, cEnv)
        if r != 0 { throw Errno(rawValue: r) }
        return pid
    }

    /// symlink(2).
    public static func symlink(_ target: String, at path: String) throws(Errno) {
        _ = try syscallRetrying { Glibc.symlink(target, path) }
    }

    /// Reaps every child that has exited, without blocking: (pid, status) pairs.
    public static func reapExited() -> [(pid_t, WaitStatus)] {
        var out: [(pid_t, WaitStatus)] = []
        while true {
            var status: Int32 = 0
            let r = waitpid(-1, &status, WNOHANG)
            if r <= 0 { return out }
            out.append((r, WaitStatus(rawValue: status)))
        }
    }

    /// Waits for `pid`. As PID 1 the init also inherits orphans: they are reaped here too.
    public static func wait(for pid: pid_t) throws(Errno) -> WaitStatus {
        while true {
            var status: Int32 = 0
            let r = try syscallRetrying { waitpid(-1, &status, 0) }
            if r == pid { return WaitStatus(rawValue: status) }
        }
    }

    /// dup2(2) of `fd` onto 0, 1 and 2: the kernel starts an initramfs's PID 1 without
    /// stdio when the archive has no /dev/console.
    public static func useAsStandardStreams(_ fd: FD) throws(Errno) {
        for target: Int32 in 0...2 where target != fd.rawValue {
            _ = try syscallRetrying { dup2(fd.rawValue, target) }
        }
    }

    /// sync(2), then reboot(RB_POWER_OFF). With `panic=-1` on the kernel's command line
    /// a PID 1 that exits ends the machine too, so a failed power-off exits.
    public static func powerOff() -> Never {
        Glibc.sync()
        _ = cj_sys_power_off()
        Glibc._exit(1)
    }
}
