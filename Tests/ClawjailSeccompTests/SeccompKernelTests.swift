import Foundation
import Synchronization
import Testing
@testable import ClawjailSeccomp

#if canImport(Glibc)
import Glibc
#endif

/// The compiled filters on the real kernel: probes/seccomp-load loads one (with
/// no_new_privs, no root needed) and execs probes/sysprobe under it.
@Suite("Seccomp on the real kernel", .serialized,
       .enabled(if: SeccompFixtures.gccAvailable, "needs gcc to build probes/sysprobe.c and probes/seccomp-load.c"))
struct SeccompKernelTests {
    /// Every deny-list check of sysprobe, denied with the profile's errno.
    static let deniedEverywhere = [
        "unshare", "unshare_newuser", "setns",
        "clone_newuser", "clone_newns", "clone_newpid", "clone_newnet", "clone_newipc", "clone_newuts",
        "clone_newcgroup", "clone_newtime",
        "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
        "move_mount", "mount_setattr",
        "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
        "keyctl", "add_key", "request_key",
        "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
        "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "open_by_handle_at",
        "name_to_handle_at", "iopl", "ioperm", "sethostname", "setdomainname",
        "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "personality_addr_no_randomize", "personality_read_implies_exec", "personality_uname26",
        "ioctl_tiocsti", "ioctl_tiocsti_highbits", "ioctl_tioclinux", "ioctl_tioclinux_highbits",
        "socket_packet", "socket_alg", "socket_vsock", "socket_netlink_audit", "socket_inet_raw",
        "socket_inet_highbits", "syscall_1000",
    ]

    static let allowedEverywhere: [String: String] = [
        "read": "allowed EBADF", "write": "allowed EBADF", "openat": "allowed EFAULT", "fstat": "allowed EBADF",
        "getpid": "allowed ok", "ioctl_fionread": "allowed EBADF", "ioctl_tcgets": "allowed EBADF",
        "socket_unix": "allowed ok", "socket_inet_stream": "allowed ok", "socket_inet6_dgram": "allowed ok",
        "clone_plain": "allowed ok",
        "syncfs_noop": "allowed ok", // errno 0: succeeds without flushing (EBADF if it reached the kernel)
        // make, file watchers, the JVM and Chromium (issue 20): harmless without capabilities.
        "setresuid_same": "allowed ok", "setresgid_same": "allowed ok", "capset": "allowed EFAULT",
        "inotify_init1": "allowed ok", "inotify_add_watch": "allowed EBADF",
        "sched_setaffinity": "allowed EFAULT", "sched_setattr": "allowed EINVAL",
        "seccomp_action_avail": "allowed EFAULT", "semctl": "allowed EINVAL",
        "socket_netlink_route": "allowed ok",
        "personality_query": "allowed ok", "personality_query_raw64": "allowed ok", "personality_linux": "allowed ok",
    ]

    func probes() throws -> (probe: String, loader: String) {
        try SeccompFixtures.builtProbes.get()
    }

    func runProbe(_ profile: SeccompProfile, notify: ((Int32) throws -> Void)? = nil) throws
        -> (lines: [String: String], result: SeccompFixtures.RunResult) {
        let (probe, loader) = try probes()
        let dir = try SeccompFixtures.tempDir("kernel")
        defer { SeccompFixtures.remove(dir) }
        let filter = try SeccompCompiler.compile(profile)
        try SeccompFixtures.writeFilter(filter, to: dir + "/filter.bpf")
        guard let notify else {
            let r = try SeccompFixtures.run([loader, dir + "/filter.bpf", probe])
            return (SeccompFixtures.parseProbe(r.output), r)
        }
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        defer { close(pair[0]) }
        let r = try SeccompFixtures.run([loader, "--notify-fd", "3", dir + "/filter.bpf", probe], extraFD: pair[1]) {
            close(pair[1])
            try notify(try Self.receiveFD(pair[0]))
        }
        return (SeccompFixtures.parseProbe(r.output), r)
    }

    /// The listener fd that seccomp-load sends (SCM_RIGHTS), within 10 s.
    static func receiveFD(_ socket: Int32) throws -> Int32 {
        var pfd = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 10_000) == 1 else { throw SeccompFixtures.ProbeError("no listener fd from seccomp-load") }
        var byte: UInt8 = 0
        let controlSize = 64
        let control = UnsafeMutableRawPointer.allocate(byteCount: controlSize, alignment: 8)
        defer { control.deallocate() }
        return try withUnsafeMutablePointer(to: &byte) { bp in
            var iov = iovec(iov_base: bp, iov_len: 1)
            return try withUnsafeMutablePointer(to: &iov) { iovp in
                var msg = msghdr()
                msg.msg_iov = iovp
                msg.msg_iovlen = 1
                msg.msg_control = control
                msg.msg_controllen = controlSize
                guard recvmsg(socket, &msg, 0) == 1, msg.msg_controllen >= MemoryLayout<cmsghdr>.size else {
                    throw SeccompFixtures.ProbeError("recvmsg of the listener failed")
                }
                let header = control.load(as: cmsghdr.self)
                guard header.cmsg_level == SOL_SOCKET, header.cmsg_type == Int32(SCM_RIGHTS) else {
                    throw SeccompFixtures.ProbeError("no SCM_RIGHTS")
                }
                return control.load(fromByteOffset: MemoryLayout<cmsghdr>.size, as: Int32.self)
            }
        }
    }

    func expectCommon(_ lines: [String: String], _ label: String) {
        #expect(lines["status.seccomp"] == "2", "\(label)")
        #expect(lines["status.no_new_privs"] == "1", "\(label)")
        for name in Self.deniedEverywhere {
            #expect(lines[name] == "denied EPERM", "\(label): \(name) -> \(lines[name] ?? "missing")")
        }
        for (name, expected) in Self.allowedEverywhere {
            #expect(lines[name] == expected, "\(label): \(name) -> \(lines[name] ?? "missing")")
        }
        // The ABI version, or EOPNOTSUPP where the kernel has Landlock off: either way the kernel answered.
        let landlock = lines["landlock_create_ruleset"] ?? "missing"
        #expect(landlock == "allowed ok" || landlock == "allowed EOPNOTSUPP", "\(label): landlock_create_ruleset -> \(landlock)")
        #expect(lines["clone3"] == "denied ENOSYS", "\(label)")
        #expect(lines["i386_int80_getpid"] == "killed SIGSYS", "\(label)")
        #expect(lines["x32_getpid"] == "killed SIGSYS", "\(label)")
    }

    @Test func agentProfileHoldsTheDenyList() throws {
        let (lines, result) = try runProbe(try SeccompFixtures.load("agent"))
        #expect(result.status == 0, "\(result.output)")
        expectCommon(lines, "agent")
        #expect(lines["io_setup"] == "allowed EFAULT")
    }

    @Test func toolProfileHoldsTheDenyListAndAIO() throws {
        let (lines, result) = try runProbe(try SeccompFixtures.load("tool"))
        #expect(result.status == 0, "\(result.output)")
        expectCommon(lines, "tool")
        #expect(lines["io_setup"] == "denied EPERM")
    }

    /// A check that cannot fail is not a check: without a filter, as root, every
    /// deny-list call reaches the kernel (all arguments are harmless).
    @Test(.enabled(if: getuid() == 0, "needs root: unprivileged, the kernel itself answers EPERM for some checks"))
    func everyCheckCanFailWithoutAFilter() throws {
        let (probe, _) = try probes()
        let r = try SeccompFixtures.run([probe])
        let lines = SeccompFixtures.parseProbe(r.output)
        #expect(lines["status.seccomp"] == "0")
        for name in Self.deniedEverywhere + ["clone3", "i386_int80_getpid", "x32_getpid", "io_setup"] {
            let line = lines[name] ?? "missing"
            #expect(line.hasPrefix("allowed "), "\(name) -> \(line) without a filter")
        }
        #expect(lines["syncfs_noop"] == "allowed EBADF")
    }

    @Test func logModeReportsAndStillDeniesWhatTheProfileRestricts() throws {
        let profile = try SeccompFixtures.load("agent").withViolationMode(.log)
        let seen = Mutex<[SeccompViolation]>([])
        let (lines, result) = try runProbe(profile) { listener in
            let notifier = try SeccompNotifier(listener: listener, policy: profile.violationPolicy) { v in
                seen.withLock { $0.append(v) }
            }
            try notifier.start()
            // Stopped from a detached task once the probe is done (the listener then hangs up).
            Self.keepAlive.withLock { $0.append(notifier) }
        }
        Self.keepAlive.withLock { list in
            list.forEach { $0.stop() }
            list.removeAll()
        }
        #expect(result.status == 0, "\(result.output)")
        // Restricted calls are refused and reported; an unnamed call goes ahead.
        #expect(lines["mount"] == "denied EPERM")
        #expect(lines["clone_newuser"] == "denied EPERM")
        #expect(lines["ioctl_tiocsti_highbits"] == "denied EPERM")
        #expect(lines["syscall_1000"] == "allowed ENOSYS")
        #expect(lines["read"] == "allowed EBADF")
        #expect(lines["i386_int80_getpid"] == "killed SIGSYS")
        let violations = seen.withLock { $0 }
        let mount = violations.first { $0.syscall == "mount" }
        #expect(mount?.response == .denied)
        #expect(mount?.args.first == 1)
        #expect(violations.contains { $0.number == 1000 && $0.response == .continued })
        #expect(violations.contains { $0.syscall == "ioctl" && $0.args[1] == 0x1_0000_5412 && $0.response == .denied })
        #expect(!violations.contains { $0.syscall == "read" || $0.syscall == "clone3" })
        if let mount { #expect(mount.description.hasPrefix("seccomp: pid \(mount.pid) called mount(0x1, 0x1, 0x1")) }
    }

    @Test func killModeKillsTheCaller() throws {
        let profile = try SeccompFixtures.load("agent").withViolationMode(.kill)
        let seen = Mutex<[SeccompViolation]>([])
        let (lines, result) = try runProbe(profile) { listener in
            let notifier = try SeccompNotifier(listener: listener, policy: profile.violationPolicy) { v in
                seen.withLock { $0.append(v) }
            }
            try notifier.start()
            Self.keepAlive.withLock { $0.append(notifier) }
        }
        Self.keepAlive.withLock { list in
            list.forEach { $0.stop() }
            list.removeAll()
        }
        // The probe's first violation is the unknown syscall 1000: SIGKILL.
        #expect(result.status == 128 + SIGKILL, "\(result.output)")
        #expect(lines["read"] == "allowed EBADF")
        #expect(lines["syscall_1000"] == nil)
        let violations = seen.withLock { $0 }
        #expect(violations.count == 1)
        #expect(violations.first?.number == 1000)
        #expect(violations.first?.response == .killed)
    }

    /// Real programs under the filter alone (the lead's jail tests run them in a full jail).
    @Test(arguments: ["agent", "tool"])
    func commonProgramsWork(profileName: String) throws {
        let (_, loader) = try probes()
        let dir = try SeccompFixtures.tempDir("programs")
        defer { SeccompFixtures.remove(dir) }
        try SeccompFixtures.writeFilter(try SeccompCompiler.compile(try SeccompFixtures.load(profileName)), to: dir + "/f.bpf")
        let fm = FileManager.default
        var checks: [(binary: String, args: [String], expect: String)] = [
            ("/bin/bash", ["-c", "cd \(dir) && git init -q r && cd r && echo hi > a && git add a && "
                + "git -c user.email=t@e -c user.name=t commit -qm m && git log --oneline | wc -l && "
                + "(sleep 0.05 & wait) && echo bash-ok"], "bash-ok"),
            ("/usr/bin/curl", ["-sS", "--max-time", "5", "file://\(dir)/f.bpf", "-o", "/dev/null", "-w", "curl-ok"], "curl-ok"),
        ]
        checks.append(("/usr/bin/python3", ["-c", """
            import socket, subprocess, threading, sqlite3
            socket.getaddrinfo('localhost', 80, flags=socket.AI_ADDRCONFIG)
            assert subprocess.run(['true']).returncode == 0
            t = threading.Thread(target=lambda: None); t.start(); t.join()
            sqlite3.connect(':memory:').execute('select 1')
            print('python-ok')
            """], "python-ok"))
        checks.append(("/usr/bin/node", ["-e", """
            const { Worker } = require('worker_threads');
            require('child_process').execSync('true');
            require('http').createServer().listen(0, '127.0.0.1', function () { this.close(); });
            const w = new Worker('require("worker_threads").parentPort.postMessage(1)', { eval: true });
            w.on('message', () => { w.terminate(); console.log('node-ok'); });
            """], "node-ok"))
        for check in checks where fm.isExecutableFile(atPath: check.binary) {
            let r = try SeccompFixtures.run([loader, dir + "/f.bpf", check.binary] + check.args,
                                            environment: ["HOME=\(dir)"], timeout: 60)
            #expect(r.status == 0 && r.output.contains(check.expect), "\(profileName): \(check.binary): \(r.output)")
        }
    }

    @Test func notifierStopsCleanlyWithNoTraffic() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        close(fds[1])
        // A pipe stands in for a listener that never delivers; stop() must still return.
        let notifier = try SeccompNotifier(listener: fds[0], policy: SeccompViolationPolicy(mode: .log, errno: 1, restricted: [])) { _ in }
        try notifier.start()
        notifier.stop()
        notifier.stop()
    }


    static let keepAlive = Mutex<[SeccompNotifier]>([])
}
