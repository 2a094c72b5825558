import ClawjailCore
import ClawjailNetwork
import ClawjailSystem

/// Guest mode: the clawjail binary as the micro-VM's PID 1 (/init in the initramfs that
/// scripts/vm/guest-image packs). It mounts what the guest needs, loads the virtio
/// modules, says READY on the control port and then runs what the host asks, one
/// command at a time, until `shutdown`. Every failure is printed on the console (ttyS0)
/// and ends in power-off: a guest that cannot serve its host must not hang.
public enum GuestMode {
    /// The virtio-serial port's name (qemu: `-device virtserialport,name=...`).
    public static let controlPortName = "org.clawjail.control"
    /// Where the initramfs keeps its modules, and the order they load in (each one's
    /// dependencies first). A module without a file is taken to be built in.
    static let moduleDirectory = "/usr/lib/clawjail/modules"
    static let modules = ["virtio_ring", "virtio", "virtio_mmio", "virtio_console", "failover", "net_failover",
                          "virtio_net", "fuse", "virtiofs", "overlay"]
    static let environment = ["PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/", "TERM=linux"]

    /// PID 1 started as /init, so that `clawjail` as the first process of a container
    /// is not mistaken for a guest, and `/init --help` run by the guest is a plain
    /// command. Swift reads its arguments from /proc/self/cmdline, which the kernel's
    /// first process does not have yet: a PID 1 without /proc is a fresh init too.
    public static func isGuest(arguments: [String]) -> Bool {
        ProcessInfoLite.pid == 1 && (arguments.first == "/init" || !FileSystem.exists("/proc/self"))
    }

    public static func run() -> Never {
        do {
            try serve()
            console("guest: shutdown")
        } catch {
            console("guest: \(error); powering off")
        }
        GuestInit.powerOff()
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ what: String) { description = what }
        init(_ what: String, _ errno: Errno) { description = "\(what): \(errno)" }
    }

    static func serve() throws(Failure) {
        try mountDev()
        loadModules()
        // Off the initial rootfs (the initramfs), where pivot_root cannot run: the agent's
        // jail pivots. Nothing is copied: the binary is bound into the new root.
        do throws(Errno) {
            try GuestInit.leaveRootfs("/newroot", keep: ["/init"], moving: ["/dev"], directories: ["/proc", "/sys", "/run", "/tmp"])
        } catch {
            throw Failure("leaving the initramfs for a tmpfs root", error)
        }
        try mountFilesystems()
        // Loopback, with or without a NIC: the agent's jail shares the guest's network.
        do throws(ClawjailError) {
            let ns = try NetworkNamespace.of(pid: ProcessInfoLite.pid)
            defer { ns.close() }
            try Links.setUp("lo", in: ns)
        } catch {
            throw Failure("bringing lo up: \(error.message)")
        }
        let port = try openControlPort()
        let release = ProcessInfoLite.kernelRelease
        try send(.ready(kernelRelease: release), on: port)
        console("guest: ready (kernel \(release), up \(uptime()))")
        var server = Server(port: port)
        try server.loop()
    }

    /// The control loop: frames from the host, the sessions' output within the host's
    /// credit, their stdin within ours, and their exits.
    struct Server {
        let port: FD
        var decoder = ControlFrameDecoder()
        var sessions: [UInt32: GuestSession] = [:]
        var nextReport: UInt64 = 0

        init(port: FD) { self.port = port }

        mutating func loop() throws(Failure) {
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let ordered = sessions.values.sorted { $0.id < $1.id }
                var entries = [Poll.Entry(fd: port, events: .readable)]
                var slots: [(GuestSession, Int)] = []   // session, what: 0/1 output, 2 stdin, 3 pidfd
                for s in ordered {
                    for i in 0..<2 {
                        if let fd = s.outputs[i], s.credit[i] > 0 {
                            entries.append(Poll.Entry(fd: fd, events: .readable))
                            slots.append((s, i))
                        }
                    }
                    if let fd = s.stdinPipe, !s.stdinPending.isEmpty {
                        entries.append(Poll.Entry(fd: fd, events: .writable))
                        slots.append((s, 2))
                    }
                    if s.status == nil, let pfd = s.pidfd {
                        entries.append(Poll.Entry(fd: pfd.fd, events: .readable))
                        slots.append((s, 3))
                    }
                }
                // Draining sessions, and a pidfd that could not be opened, wake us; so does
                // the next memory report.
                let waiting = ordered.contains { $0.exitedAt != nil || ($0.status == nil && $0.pidfd == nil) }
                let now = ProcessInfoLite.monotonicNanoseconds
                let untilReport = Int32(clamping: nextReport > now ? (nextReport - now) / 1_000_000 + 1 : 0)
                do throws(Errno) { _ = try Poll.wait(&entries, timeoutMs: waiting ? min(100, untilReport) : untilReport) } catch {
                    throw Failure("poll", error)
                }
                if ProcessInfoLite.monotonicNanoseconds >= nextReport {
                    nextReport = ProcessInfoLite.monotonicNanoseconds + GuestMode.reportIntervalNs
                    try GuestMode.send(GuestMode.memoryReport(), on: port)
                }
                if !entries[0].returned.isEmpty {
                    let n: Int
                    do throws(Errno) { n = try port.read(into: &chunk) } catch { throw Failure("reading the control port", error) }
                    // The host closed its end: there is nobody left to serve.
                    if n == 0 { throw Failure("the host closed the control port") }
                    decoder.append(chunk[0..<n])
                    while true {
                        let frame: ControlFrame?
                        do throws(ControlFrameError) { frame = try decoder.next() } catch { throw Failure("from the host: \(error)") }
                        guard let frame else { break }
                        if try handle(frame) == .shutdown { return }
                    }
                }
                for (k, (s, what)) in slots.enumerated() where !entries[k + 1].returned.isEmpty {
                    switch what {
                    case 0, 1:
                        for f in s.readOutput(what) { try GuestMode.send(f, on: port) }
                    case 2:
                        let back = s.writeStdin()
                        if back > 0 { try GuestMode.send(.credit(session: s.id, stream: ControlFrame.stdin, bytes: back), on: port) }
                    default:
                        break
                    }
                }
                try reap()
            }
        }

        enum Outcome { case going, shutdown }

        mutating func handle(_ frame: ControlFrame) throws(Failure) -> Outcome {
            switch frame {
            case .run(let argv):
                try GuestMode.send(runCommand(argv), on: port)
            case .setup(let mounts, let links, let network):
                var reply = setUp(mounts, links)
                if reply == .setupDone, let network { reply = configure(network) }
                try GuestMode.send(reply, on: port)
            case .spawn(let request):
                guard sessions[request.session] == nil else {
                    try GuestMode.send(.error(message: "session \(request.session) already exists"), on: port)
                    return .going
                }
                let started: Result<GuestSession, Errno>
                do throws(Errno) { started = .success(try GuestSession.start(request)) } catch { started = .failure(error) }
                switch started {
                case .success(let s):
                    sessions[s.id] = s
                    try GuestMode.send(.started(session: s.id, pid: s.pid), on: port)
                    try GuestMode.send(.credit(session: s.id, stream: ControlFrame.stdin, bytes: GuestSession.stdinWindow), on: port)
                case .failure(let error):
                    try GuestMode.send(.error(message: "cannot start \(request.argv[0]) in the guest: \(error)"), on: port)
                    try GuestMode.send(.exited(session: request.session, code: error == .ENOENT ? 127 : 126, signal: 0), on: port)
                }
            case .data(let id, let stream, let bytes):
                guard stream == ControlFrame.stdin, let s = sessions[id] else { break }
                if bytes.isEmpty {
                    s.stdinEnded = true
                    if s.stdinPending.isEmpty { s.closeStdin() }
                } else if s.stdinPipe != nil {
                    // Beyond the credit we granted: the host is broken; drop it rather than buffer.
                    guard s.stdinPending.count + bytes.count <= Int(GuestSession.stdinWindow) else {
                        throw Failure("the host sent \(bytes.count) stdin bytes beyond its credit")
                    }
                    s.stdinPending += bytes
                    let back = s.writeStdin()
                    if back > 0 { try GuestMode.send(.credit(session: id, stream: ControlFrame.stdin, bytes: back), on: port) }
                } else {
                    // stdin is closed: credit it back so that the host does not wait.
                    try GuestMode.send(.credit(session: id, stream: ControlFrame.stdin, bytes: UInt32(bytes.count)), on: port)
                }
            case .credit(let id, let stream, let bytes):
                guard stream != ControlFrame.stdin, let s = sessions[id] else { break }
                let i = Int(stream) - 1
                s.credit[i] = s.credit[i] &+ bytes
                for f in s.readOutput(i) { try GuestMode.send(f, on: port) }
            case .signal(let id, let sig):
                if let s = sessions[id], s.status == nil { GuestInit.signal(s.pid, sig) }
            case .shutdown:
                for s in sessions.values { GuestInit.signalGroup(s.pid, Signal.kill.rawValue) }
                return .shutdown
            case .file(let name, let mode, let content):
                try GuestMode.send(GuestMode.writeFile(name, mode: mode, content), on: port)
            case .ready, .exit, .error, .setupDone, .started, .exited, .memory:
                try GuestMode.send(.error(message: "the guest does not accept \(frame) from the host"), on: port)
            }
            return .going
        }

        /// Reaps every exited child (the init inherits orphans too), and sends the
        /// `exited` of each session whose output is all out.
        mutating func reap() throws(Failure) {
            let now = ProcessInfoLite.monotonicNanoseconds
            for (pid, status) in GuestInit.reapExited() {
                if let s = sessions.values.first(where: { $0.pid == pid }) {
                    s.status = status
                    s.exitedAt = now
                    s.closeStdin()
                }
            }
            for s in sessions.values.sorted(by: { $0.id < $1.id }) where s.status != nil {
                for f in s.cutOffIfDrained(now: now) { try GuestMode.send(f, on: port) }
                if s.finished {
                    try GuestMode.send(s.exitFrame, on: port)
                    s.close()
                    sessions[s.id] = nil
                }
            }
        }
    }

    static let reportIntervalNs: UInt64 = 2_000_000_000

    /// The guest's memory as its kernel sees it, and what its jails are charged (the
    /// jails' cgroups under the v2 parent every clawjail jail of the guest is in).
    static func memoryReport() -> ControlFrame {
        var total: UInt64 = 0, available: UInt64 = 0
        let meminfo = (try? FileSystem.readText("/proc/meminfo", limit: 16 << 10)) ?? ""
        for line in meminfo.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 2, let v = UInt64(f[1]) else { continue }
            if f[0] == "MemTotal:" { total = v }
            if f[0] == "MemAvailable:" { available = v }
        }
        func current(_ dir: String) -> UInt64? {
            (try? FileSystem.readText(dir + "/memory.current", limit: 64)).flatMap { UInt64($0.trimming(" \n")) }
        }
        let parent = "/sys/fs/cgroup/clawjail"
        var jails: UInt64 = 0
        for name in (try? FileSystem.listDirectory(parent)) ?? [] {
            if let v = current(parent + "/" + name) { jails += v }
        }
        return .memory(totalKB: total, availableKB: available, jailsBytes: jails)
    }

    /// lo, and the NIC whose address is `n.mac`: its address and the default route
    /// through the proxy's end of the veth (the host ties the VM's tap to it).
    static func configure(_ n: ControlFrame.GuestNetwork) -> ControlFrame {
        let links = (try? FileSystem.listDirectory("/sys/class/net")) ?? []
        let nic = links.sorted().first { name in
            let mac = (try? FileSystem.readText("/sys/class/net/\(name)/address", limit: 64)) ?? ""
            return mac.trimming(" \n").lowercased() == n.mac.lowercased()
        }
        guard let nic else { return .error(message: "network: no interface with MAC \(n.mac) (links: \(links.sorted()))") }
        do throws(ClawjailError) {
            let ns = try NetworkNamespace.of(pid: ProcessInfoLite.pid)
            defer { ns.close() }
            try Links.addAddress("\(n.address)/\(n.prefixLength)", to: nic, in: ns)
            try Links.setUp(nic, in: ns)
            if !n.gateway.isEmpty { try Links.addDefaultRoute(via: n.gateway, dev: nic, in: ns) }
        } catch {
            return .error(message: "network: \(error.message)")
        }
        // virtio-net reports its link a moment after it is up (seconds under TCG); an agent
        // that starts before would find no route and no neighbour. Bounded: 10 s.
        let deadline = ProcessInfoLite.monotonicNanoseconds + 10_000_000_000
        while (try? FileSystem.readText("/sys/class/net/\(nic)/carrier", limit: 8))?.hasPrefix("1") != true {
            if ProcessInfoLite.monotonicNanoseconds > deadline {
                return .error(message: "network: \(nic) has no carrier 10 s after it was brought up")
            }
            ProcessInfoLite.sleep(nanoseconds: 20_000_000)
        }
        console("guest: \(nic) \(n.address)/\(n.prefixLength) via \(n.gateway), up \(uptime())")
        return .setupDone
    }

    /// The host's shares, each mounted where the host asked, and the base's symlinks.
    static func setUp(_ mounts: [ControlFrame.GuestMount], _ links: [ControlFrame.GuestLink]) -> ControlFrame {
        for m in mounts {
            guard m.path.hasPrefix("/"), !m.path.split(separator: "/").contains("..") else {
                return .error(message: "setup: \(m.path) is not an absolute path")
            }
            do throws(Errno) {
                _ = try FileSystem.mkdirs(m.path)
                var flags = GuestInit.mountNoSuid | GuestInit.mountNoDev
                if m.readOnly { flags |= GuestInit.mountReadOnly }
                try GuestInit.mount(m.tag, on: m.path, type: "virtiofs", flags: flags)
            } catch {
                return .error(message: "setup: mount virtiofs \(m.tag) on \(m.path): \(error)")
            }
        }
        for l in links {
            do throws(Errno) { try GuestInit.symlink(l.target, at: l.path) } catch where error == .EEXIST {
                continue
            } catch {
                return .error(message: "setup: symlink \(l.path) -> \(l.target): \(error)")
            }
        }
        return .setupDone
    }

    /// /dev first: the console is the only place errors can go.
    static func mountDev() throws(Failure) {
        do throws(Errno) {
            try GuestInit.mount("devtmpfs", on: "/dev", type: "devtmpfs", flags: GuestInit.mountNoSuid | GuestInit.mountNoExec, data: "mode=0755")
        } catch {
            throw Failure("mount devtmpfs on /dev", error)
        }
        if let console = try? FileSystem.open("/dev/console", [.readWrite, .noControllingTerminal]) {
            try? GuestInit.useAsStandardStreams(console)
            if console.rawValue > 2 { console.close() }
        }
    }

    /// A file of the guest jail's (its spec, its seccomp profiles): root's, in the
    /// guest's own tmpfs, never on a share.
    static func writeFile(_ name: String, mode: UInt32, _ content: [UInt8]) -> ControlFrame {
        let path = ControlFrame.fileDirectory + "/" + name
        do throws(Errno) {
            _ = try FileSystem.mkdirs(Paths.dirname(path), mode: 0o700)
            let fd = try FileSystem.open(path, [.writeOnly, .create, .truncate, .noFollow, .closeOnExec], mode: mode_t(mode))
            defer { fd.close() }
            try fd.writeAll(content)
            try FileSystem.chmod(fd, mode_t(mode))
        } catch {
            return .error(message: "writing \(path): \(error)")
        }
        return .setupDone
    }

    static func mountFilesystems() throws(Failure) {
        func mount(_ source: String, _ target: String, _ type: String, _ flags: UInt, _ data: String? = nil) throws(Failure) {
            do throws(Errno) {
                try GuestInit.mount(source, on: target, type: type, flags: flags, data: data)
            } catch {
                throw Failure("mount \(type) on \(target)", error)
            }
        }
        let safe = GuestInit.mountNoSuid | GuestInit.mountNoExec | GuestInit.mountNoDev
        try mount("proc", "/proc", "proc", safe)
        try mount("sysfs", "/sys", "sysfs", safe)
        try mount("run", "/run", "tmpfs", GuestInit.mountNoSuid | GuestInit.mountNoDev, "mode=0755")
        try mount("tmp", "/tmp", "tmpfs", GuestInit.mountNoSuid | GuestInit.mountNoDev, "mode=1777")
        try mount("cgroup2", "/sys/fs/cgroup", "cgroup2", safe)
    }

    /// A module that fails to load is reported and skipped: the control port's absence
    /// (below) is the error that matters, and it names the module directory.
    static func loadModules() {
        for name in modules {
            let path = "\(moduleDirectory)/\(name).ko"
            guard FileSystem.exists(path) else { continue }
            do throws(Errno) {
                let fd = try FileSystem.open(path, [.readOnly, .closeOnExec])
                defer { fd.close() }
                try GuestInit.loadModule(fd)
            } catch {
                console("guest: cannot load \(path): \(error)")
            }
        }
    }

    /// The port named `controlPortName` under /sys/class/virtio-ports; udev does not run
    /// here, but devtmpfs creates /dev/vportNpM. The device appears shortly after
    /// virtio_console binds, so this waits for it (5 s).
    static func openControlPort() throws(Failure) -> FD {
        let deadline = ProcessInfoLite.monotonicNanoseconds + 5_000_000_000
        while true {
            let ports = (try? FileSystem.listDirectory("/sys/class/virtio-ports")) ?? []
            for port in ports.sorted() {
                let name = (try? FileSystem.readText("/sys/class/virtio-ports/\(port)/name", limit: 256)) ?? ""
                guard name.trimming(" \n") == controlPortName else { continue }
                do throws(Errno) {
                    return try FileSystem.open("/dev/\(port)", [.readWrite, .closeOnExec, .noControllingTerminal])
                } catch where error == .ENOENT {
                    break   // the device node is not there yet
                } catch {
                    throw Failure("open /dev/\(port)", error)
                }
            }
            if ProcessInfoLite.monotonicNanoseconds > deadline {
                throw Failure("no virtio-serial port named \(controlPortName) after 5 s (ports: \(ports); modules from \(moduleDirectory))")
            }
            ProcessInfoLite.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Runs argv with stdout and stderr on one pipe, and reports the status with the
    /// first `maxExitOutput` bytes of output (the rest is read and dropped).
    static func runCommand(_ argv: [String]) -> ControlFrame {
        do throws(Errno) {
            let (readEnd, writeEnd) = try pipe(cloexec: true)
            defer { readEnd.close() }
            let pid: pid_t
            do throws(Errno) {
                pid = try GuestInit.spawn(argv, environment: environment, output: writeEnd)
            } catch {
                writeEnd.close()
                return .error(message: "cannot run \(argv[0]): \(error)")
            }
            writeEnd.close()
            var output: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                let n = try readEnd.read(into: &chunk)
                if n == 0 { break }
                let room = ControlFrame.maxExitOutput - output.count
                if room > 0 { output += chunk[0..<min(n, room)] }
            }
            let status = try GuestInit.wait(for: pid)
            return .exit(status: status.shellStatus, output: output)
        } catch {
            return .error(message: "running \(argv[0]): \(error)")
        }
    }

    static func send(_ frame: ControlFrame, on port: FD) throws(Failure) {
        do {
            try port.writeAll(try frame.encoded())
        } catch {
            throw Failure("writing \(frame) to the control port: \(error)")
        }
    }

    static func uptime() -> String {
        let text = (try? FileSystem.readText("/proc/uptime", limit: 128)) ?? "?"
        return (text.split(separator: " ").first.map(String.init) ?? "?") + " s"
    }

    static func console(_ line: String) {
        try? FD.standardError.writeAll(line + "\n")
    }
}
