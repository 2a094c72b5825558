import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// Whether this host's KVM can run the guest: a real short boot that must reach READY.
/// A KVM_CREATE_VM that succeeds proves nothing: on a PVM host /dev/kvm opens, a VM is
/// created, and a stock kernel then fails (qemu aborts setting an MSR here, or an
/// emulation failure after 80-120 s). The verdict is cached per (host kernel release,
/// qemu binary, guest kernel sha256) in <cache>/kvm-probe, so it costs one boot.
public enum KVMProbe {
    public struct Verdict: Sendable, Equatable {
        public var usable: Bool
        public var reason: String
    }

    /// How long a KVM guest may take to say READY (TCG takes 3-5 s here).
    static let boundNs: UInt64 = 20_000_000_000

    public static func verdict(kernel: String, initrd: String, kernelSHA256: String?, layout: HostLayout) -> Verdict {
        guard FileSystem.exists("/dev/kvm") else {
            return Verdict(usable: false, reason: "this host has no /dev/kvm (no hardware virtualisation is offered to it)")
        }
        guard FileSystem.exists(VMFacts.defaultQemu) else {
            return Verdict(usable: false, reason: "\(VMFacts.defaultQemu) is missing (apt-get install qemu-system-x86)")
        }
        let qemu = (try? FileSystem.stat(VMFacts.defaultQemu, followSymlinks: true)).map { "\($0.size)-\($0.modifiedNanoseconds)" } ?? "?"
        let key = "\(ProcessInfoLite.kernelRelease)|qemu \(qemu)|guest \(kernelSHA256 ?? "?")"
        let cache = layout.cacheDirectory + "/kvm-probe"
        if let text = try? FileSystem.readText(cache, limit: 4096) {
            let parts = text.split(separator: "\t", maxSplits: 2).map(String.init)
            if parts.count == 3, parts[0] == key {
                return Verdict(usable: parts[1] == "yes", reason: parts[2].trimming("\n") + " (cached)")
            }
        }
        let v = boot(kernel: kernel, initrd: initrd)
        _ = try? FileSystem.mkdirs(layout.cacheDirectory, mode: 0o700)
        try? FileSystem.writeAtomically(cache, Array("\(key)\t\(v.usable ? "yes" : "no")\t\(v.reason)\n".utf8), mode: 0o600)
        return v
    }

    /// One boot of the guest under KVM, as root but with qemu's own sandbox, no NIC and
    /// no share: the guest is clawjail's own image, which only says READY and powers off.
    static func boot(kernel: String, initrd: String) -> Verdict {
        let cmdline = VMPlan.kernelCommandLine(tscKHz: HostProbe.tscKHz)
        let qemu = [VMFacts.defaultQemu, "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "256M", "-smp", "1",
                    "-nodefaults", "-no-user-config", "-nographic", "-monitor", "none", "-no-reboot",
                    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny", "-serial", "null",
                    "-device", "virtio-serial-device", "-chardev", "socket,id=control,fd=\(VMPlan.controlFD)",
                    "-device", "virtserialport,chardev=control,name=\(VMPlan.controlPortName)",
                    "-kernel", kernel, "-initrd", initrd, "-append", cmdline]
        // qemu takes no standard stream as a chardev's fd: the shell moves the socket to 4.
        let script = "exec \(VMPlan.controlFD)<&0 0</dev/null; exec " + qemu.map(PlanQuote.shell).joined(separator: " ")
        let started = ProcessInfoLite.monotonicNanoseconds
        do throws(Errno) {
            let (host, guest) = try Sockets.streamPair()
            defer { host.close() }
            let devNull = try FileSystem.open("/dev/null", [.readWrite, .closeOnExec])
            defer { devNull.close() }
            let errors = try pipe(cloexec: true)
            defer { errors.read.close() }
            let pid: pid_t
            do throws(Errno) {
                pid = try ChildProcess.start(["/bin/sh", "-c", script], environment: ["PATH=/usr/bin:/bin"], cwd: "/", uid: 0, gid: 0,
                                          stdio: (guest, devNull, errors.write))
            } catch {
                guest.close()
                errors.write.close()
                throw error
            }
            guest.close()
            errors.write.close()
            let process = try PidFD.open(pid)
            defer {
                try? process.signal(.kill)
                _ = try? process.wait()
                process.close()
            }
            try? errors.read.setNonBlocking(true)
            var decoder = ControlFrameDecoder()
            var chunk = [UInt8](repeating: 0, count: 4096)
            var stderr: [UInt8] = []
            while ProcessInfoLite.monotonicNanoseconds < started + boundNs {
                var entries = [Poll.Entry(fd: host, events: .readable), Poll.Entry(fd: errors.read, events: .readable),
                               Poll.Entry(fd: process.fd, events: .readable)]
                _ = try Poll.wait(&entries, timeoutMs: 500)
                if !entries[1].returned.isEmpty, let n = try? errors.read.read(into: &chunk), n > 0, stderr.count < 4096 {
                    stderr += chunk[0..<n]
                }
                if !entries[0].returned.isEmpty {
                    let n = try host.read(into: &chunk)
                    if n > 0 { decoder.append(chunk[0..<n]) }
                    if case .ready(let release)? = try? decoder.next() {
                        let ms = (ProcessInfoLite.monotonicNanoseconds - started) / 1_000_000
                        _ = try? host.writeAll(try ControlFrame.shutdown.encoded())
                        return Verdict(usable: true, reason: "a KVM guest (kernel \(release)) reached READY in \(ms) ms")
                    }
                }
                if !entries[2].returned.isEmpty {
                    let status = (try? process.wait()).map(\.description) ?? "?"
                    let tail = String(decoding: stderr, as: UTF8.self).split(separator: "\n").suffix(2)
                        .map { DisplayText.safeLine(String($0)) }.joined(separator: " / ")
                    return Verdict(usable: false, reason: "KVM cannot boot a guest here: qemu -accel kvm \(status) before READY"
                                   + (tail.isEmpty ? "" : " (\(tail))"))
                }
            }
            return Verdict(usable: false, reason: "KVM cannot boot a guest here: no READY within \(boundNs / 1_000_000_000) s with -accel kvm")
        } catch {
            return Verdict(usable: false, reason: "the KVM probe could not run: \(error)")
        }
    }
}
