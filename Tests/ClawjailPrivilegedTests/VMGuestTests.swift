import ClawjailCore
import ClawjailRuntime
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The micro-VM guest that scripts/vm/guest-image builds: Debian's cloud kernel and an
/// initramfs whose /init is the static clawjail (guest mode).
enum VMGuest {
    static let qemu = "/usr/bin/qemu-system-x86_64"
    static let directory = Harness.repository + "/.build/vm/guest"
    static let kernel = directory + "/vmlinuz"
    static let initramfs = directory + "/initramfs.cpio.gz"

    static var manifest: [String: String] {
        guard let text = try? String(contentsOfFile: directory + "/manifest", encoding: .utf8) else { return [:] }
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = String(parts[1]) }
        }
        return out
    }

    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: qemu) && FileManager.default.fileExists(atPath: kernel)
            && FileManager.default.fileExists(atPath: initramfs)
    }

    struct GuestError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// One booted guest: qemu, its console log, and the accepted control connection.
    final class Machine {
        let process = Process()
        let dir: String
        var control: Int32 = -1
        var decoder = ControlFrameDecoder()
        let started = Date()

        var consoleLog: String { (try? String(contentsOfFile: dir + "/console.log", encoding: .utf8)) ?? "" }
        var qemuLog: String { (try? String(contentsOfFile: dir + "/qemu.log", encoding: .utf8)) ?? "" }

        /// Starts qemu -M microvm. qemu connects to our listening socket as a client, so
        /// the port is connected before the guest's first write.
        init(accel: String) throws {
            dir = NSTemporaryDirectory() + "cj-vmguest-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let socketPath = dir + "/ctl.sock"
            let listener = try Self.listen(socketPath)
            defer { close(listener) }

            process.executableURL = URL(fileURLWithPath: VMGuest.qemu)
            process.arguments = [
                "-M", "microvm", "-accel", accel, "-cpu", accel == "kvm" ? "host" : "max", "-smp", "1", "-m", "256",
                "-nodefaults", "-no-user-config", "-nographic", "-monitor", "none", "-no-reboot",
                "-serial", "file:" + dir + "/console.log",
                "-device", "virtio-serial-device",
                "-chardev", "socket,id=ctl,path=" + socketPath,
                "-device", "virtserialport,chardev=ctl,name=org.clawjail.control",
                "-kernel", VMGuest.kernel, "-initrd", VMGuest.initramfs,
                "-append", VMGuest.manifest["cmdline"] ?? "console=ttyS0 panic=-1",
            ]
            _ = FileManager.default.createFile(atPath: dir + "/qemu.log", contents: nil)
            let log = FileHandle(forWritingAtPath: dir + "/qemu.log")
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = log
            process.standardError = log
            try process.run()

            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 10_000) == 1 else {
                stop()
                throw GuestError("qemu did not connect to \(socketPath) within 10 s; qemu: \(qemuLog)")
            }
            control = accept(listener, nil, nil)
            guard control >= 0 else { stop(); throw GuestError("accept: errno \(errno)") }
        }

        static func listen(_ path: String) throws -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw GuestError("socket: errno \(errno)") }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw GuestError("socket path too long: \(path)") }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
            }
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard r == 0, Glibc.listen(fd, 1) == 0 else { close(fd); throw GuestError("bind/listen \(path): errno \(errno)") }
            return fd
        }

        /// The next frame from the guest, or nil when `timeout` passes or the guest hangs up.
        func receive(timeout: TimeInterval) throws -> ControlFrame? {
            let deadline = Date().addingTimeInterval(timeout)
            var chunk = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                // The guest's periodic memory reports are not answers: skipped.
                if let frame = try decoder.next() {
                    if case .memory = frame { continue }
                    return frame
                }
                let left = deadline.timeIntervalSinceNow
                if left <= 0 { return nil }
                var pfd = pollfd(fd: control, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, Int32(min(left, 1) * 1000))
                if ready < 0 && errno != EINTR { throw GuestError("poll: errno \(errno)") }
                if ready <= 0 { continue }
                let n = chunk.withUnsafeMutableBytes { read(control, $0.baseAddress, $0.count) }
                if n == 0 { return nil }
                if n < 0 { if errno == EINTR { continue }; throw GuestError("read: errno \(errno)") }
                decoder.append(chunk[0..<n])
            }
        }

        func send(_ frame: ControlFrame) throws {
            let bytes = try frame.encoded()
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { write(control, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw GuestError("write: errno \(errno)") }
                off += n
            }
        }

        /// True when qemu exited by itself within `timeout`.
        func waitForExit(timeout: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            return !process.isRunning
        }

        /// Kills qemu by its pid (ours) if it still runs, and removes the directory.
        func stop() {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            if control >= 0 { close(control); control = -1 }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }
}

@Suite("VM guest boot", .serialized,
       .enabled(if: VMGuest.available, "needs qemu-system-x86_64 and the guest image in .build/vm/guest (scripts/setup installs qemu; scripts/vm/guest-image builds the image)"))
struct VMGuestTests {
    /// TCG: software emulation, because KVM here is PVM and cannot boot a stock guest.
    @Test("TCG: clawjail as the guest's PID 1 says READY, runs a command, powers off", .timeLimit(.minutes(3)))
    func bootUnderTCG() throws {
        let machine = try VMGuest.Machine(accel: "tcg")
        defer { machine.stop() }
        let t0 = Date()

        let first = try machine.receive(timeout: 60)
        let bootSeconds = Date().timeIntervalSince(t0)
        guard case .ready(let release)? = first else {
            Issue.record("no READY within 60 s (got \(String(describing: first)))\n--- console\n\(machine.consoleLog)\n--- qemu\n\(machine.qemuLog)")
            return
        }
        #expect(release == VMGuest.manifest["release"], "the guest runs the kernel guest-image packed")
        print("VM guest: READY after \(String(format: "%.2f", bootSeconds)) s under TCG (kernel \(release))")

        // The initramfs has no shell: the guest runs its own binary as a plain command.
        let r0 = Date()
        try machine.send(.run(argv: ["/init", "--help"]))
        let reply = try machine.receive(timeout: 30)
        print("VM guest: `/init --help` answered in \(String(format: "%.3f", Date().timeIntervalSince(r0))) s")
        guard case .exit(let status, let output)? = reply else {
            Issue.record("no exit frame for /init --help (got \(String(describing: reply)))\n--- console\n\(machine.consoleLog)")
            return
        }
        #expect(status == 0)
        let text = String(decoding: output, as: UTF8.self)
        #expect(text.contains("USAGE: clawjail"), "output: \(text)")

        // A status that is not 0 comes back as it was.
        try machine.send(.run(argv: ["/init", "no-such-subcommand"]))
        guard case .exit(let bad, let badOutput)? = try machine.receive(timeout: 30) else {
            Issue.record("no exit frame for a bad subcommand\n--- console\n\(machine.consoleLog)")
            return
        }
        #expect(bad == 64, "ArgumentParser's usage error; output: \(String(decoding: badOutput, as: UTF8.self))")

        // A command that cannot start is an error frame, and the guest keeps serving.
        try machine.send(.run(argv: ["/no/such/program"]))
        let missing = try machine.receive(timeout: 30)
        guard case .error(let message)? = missing else {
            Issue.record("expected an error frame, got \(String(describing: missing))")
            return
        }
        #expect(message.contains("/no/such/program") && message.contains("ENOENT"), "\(message)")

        try machine.send(.shutdown)
        #expect(machine.waitForExit(timeout: 30), "qemu still runs 30 s after shutdown\n--- console\n\(machine.consoleLog)")
        #expect(machine.process.terminationStatus == 0)
        let console = machine.consoleLog
        #expect(console.contains("guest: shutdown"), "\(console)")
        #expect(console.contains("reboot: Power down"), "powered off, not a panic\n\(console)")
        #expect(!console.contains("Kernel panic"), "\(console)")
        print("VM guest: boot to power-off \(String(format: "%.2f", Date().timeIntervalSince(t0))) s under TCG")
    }

    /// The runtime's probe (what `run` with accel = "kvm" and `doctor` use), with a
    /// cache of the test's own.
    @Test("KVM probe: a real short boot gives a verdict with a reason, then the cached one", .timeLimit(.minutes(2)))
    func kvmProbe() throws {
        let cache = try Harness.tempDirectory("kvmprobe")
        defer { Harness.remove(cache) }
        let layout = HostLayout(environment: ["CLAWJAIL_CACHE_DIR": cache])
        let sha = VMGuest.manifest["vmlinuz_sha256"]
        let t0 = Date()
        let v = KVMProbe.verdict(kernel: VMGuest.kernel, initrd: VMGuest.initramfs, kernelSHA256: sha, layout: layout)
        print("VM guest: KVM probe (\(String(format: "%.1f", Date().timeIntervalSince(t0))) s): usable=\(v.usable): \(v.reason)")
        #expect(!v.reason.isEmpty)
        #expect(FileManager.default.fileExists(atPath: cache + "/kvm-probe"))
        // Cached: the second call does not boot again, and says so.
        let t1 = Date()
        let again = KVMProbe.verdict(kernel: VMGuest.kernel, initrd: VMGuest.initramfs, kernelSHA256: sha, layout: layout)
        #expect(again.usable == v.usable && again.reason.hasSuffix("(cached)"), "\(again)")
        #expect(Date().timeIntervalSince(t1) < 2)
    }
}
