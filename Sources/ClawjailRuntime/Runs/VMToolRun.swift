import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// `clawjail exec --agent A` when A is a VM agent: the tool runs in A's guest, in a jail
/// of its own there (its own namespaces, the tool profile, no credentials, A's [tools]
/// policy), built by the guest's clawjail like the agent's. The request goes to A's
/// supervisor over its 0600 socket in the guest's protocol (ControlFrame); this process
/// relays its own stdio and signals and exits with the tool's status. The run is in A's
/// audit chain like any tool run of A (the caller, ToolRun, records it).
enum VMToolRun {
    static let window = VMControl.window

    static func run(_ r: ToolRunRequest, spec: JailSpec, agentConfig: AgentConfig, shortID: String) throws(ClawjailError) -> RunResult {
        let agent = spec.agent ?? agentConfig.name ?? "?"
        let guestSpec = try guestSpec(spec, agentConfig: agentConfig, directory: "t-" + shortID)
        let files = try GuestFiles.make(guestSpec: guestSpec, profile: spec.seccompProfile,
                                        profileFile: VMPlan.guestProfileFile(for: spec.seccompProfile),
                                        directory: "t-" + shortID, name: spec.name, layout: r.layout)
        let path = r.layout.vmToolSocket(agent)
        let sock: FD
        do throws(Errno) {
            sock = try Sockets.unixStreamSocket()
            do throws(Errno) { try Sockets.connect(sock, unixPath: path) } catch {
                sock.close()
                throw error
            }
        } catch {
            throw ClawjailError(.notFound, "\(agent) is a VM agent and is not running (no supervisor at \(path): \(error))",
                                hint: "a tool run of a VM agent runs in its guest: start the agent with `clawjail run` first")
        }
        defer { sock.close() }
        let start = ProcessInfoLite.monotonicNanoseconds
        var out: [UInt8] = []
        do {
            for f in files { out += try f.encoded() }
            let placeholder = ControlFrame.GuestSpawn(session: 1, uid: 0, gid: 0, cwd: "/", argv: ["guest-jail"], environment: [])
            out += try ControlFrame.spawn(placeholder).encoded()
            out += try ControlFrame.credit(session: 1, stream: ControlFrame.stdout, bytes: window).encoded()
            out += try ControlFrame.credit(session: 1, stream: ControlFrame.stderr, bytes: window).encoded()
            try sock.writeAll(out)
        } catch {
            throw ClawjailError(.setup, "cannot send the tool run to \(agent)'s supervisor at \(path): \(error)")
        }
        var relay = Relay(sock: sock, agent: agent)
        let end = relay.loop(timeoutMs: spec.limits.wallTimeMs)
        let durationMs = (ProcessInfoLite.monotonicNanoseconds - start) / 1_000_000
        let status: Int32
        switch end {
        case .exited(let c): status = c
        case .signaled(let s): status = 128 + s
        case .timedOut: status = 124
        case .execFailed(_, let e): status = e == Errno.ENOENT.rawValue ? 127 : 126
        default: status = 125
        }
        return RunResult(end: end, exitStatus: status, durationMs: durationMs, stats: CgroupStats(), events: CgroupEvents(),
                         stoppedBy: nil)
    }

    /// The tool run's spec with guest paths: each workspace or mount source is where
    /// the agent's guest has it (a path the agent does not share is refused).
    static func guestSpec(_ spec: JailSpec, agentConfig: AgentConfig, directory: String) throws(ClawjailError) -> JailSpec {
        let agent = spec.agent ?? agentConfig.name ?? "?"
        let agentSpec = JailSpec.forAgent(agentConfig, hostEnvironment: [:])
        var g = spec.inGuest(profile: ControlFrame.fileDirectory + "/" + directory + "/" + VMPlan.guestProfileFile(for: spec.seccompProfile))
        for (i, m) in spec.mounts.enumerated() where m.role == .workspace || m.role == .mount {
            guard let j = agentSpec.mounts.firstIndex(where: { ($0.role == .workspace || $0.role == .mount) && $0.host == m.host }) else {
                throw ClawjailError(.usage, "\(m.host) is not shared with \(agent)'s guest",
                                    hint: "a tool run of a VM agent sees the agent's workspace and [[mount]]s only: drop --ro/--rw of other paths")
            }
            let shared = agentSpec.mounts[j]
            let isFile = (try? FileSystem.stat(m.host, followSymlinks: true))?.isDirectory == false
            g.mounts[i].host = VMPlan.guestSource(agentSpec, at: j, isFile: isFile)
            if m.writable && !shared.writable { g.mounts[i].writable = false }
        }
        g.mounts.removeAll { $0.role == .credentials }
        return g
    }

    /// This side of the tool run: the tool's output to our stdout and stderr, our stdin
    /// and signals to the tool, within the credits both ways.
    struct Relay {
        let sock: FD
        let agent: String
        var decoder = ControlFrameDecoder()
        var stdinOpen = true
        var stdinCredit: UInt32 = 0
        var started = false
        var lastError: String?

        init(sock: FD, agent: String) {
            self.sock = sock
            self.agent = agent
        }

        mutating func send(_ f: ControlFrame) -> Bool {
            guard let bytes = try? f.encoded() else { return false }
            do throws(Errno) { try sock.writeAll(bytes) } catch { return false }
            return true
        }

        mutating func loop(timeoutMs: UInt64) -> RunEnd {
            let signals = SupervisorSignals.makeSignalFD()
            defer { signals?.close() }
            let deadline = timeoutMs > 0 ? ProcessInfoLite.monotonicNanoseconds + timeoutMs * 1_000_000 : UInt64.max
            var timedOut = false
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                var entries = [Poll.Entry(fd: sock, events: .readable)]
                if let s = signals { entries.append(Poll.Entry(fd: s, events: .readable)) }
                let stdinSlot = entries.count
                if stdinOpen && stdinCredit > 0 { entries.append(Poll.Entry(fd: .standardInput, events: .readable)) }
                let now = ProcessInfoLite.monotonicNanoseconds
                let wait: Int32 = deadline == .max ? -1 : Int32(min(60_000, deadline > now ? (deadline - now) / 1_000_000 + 1 : 0))
                _ = try? Poll.wait(&entries, timeoutMs: wait)
                if !timedOut && ProcessInfoLite.monotonicNanoseconds >= deadline {
                    timedOut = true
                    _ = send(.signal(session: 1, signal: Signal.kill.rawValue))
                }
                if let s = signals, !entries[1].returned.isEmpty {
                    for sig in SignalFD.pending(s) { _ = send(.signal(session: 1, signal: sig.rawValue)) }
                }
                if entries.count > stdinSlot, !entries[stdinSlot].returned.isEmpty {
                    var buf = [UInt8](repeating: 0, count: Int(min(stdinCredit, 16 << 10)))
                    let n = (try? FD.standardInput.read(into: &buf)) ?? 0
                    if n == 0 {
                        stdinOpen = false
                        _ = send(.data(session: 1, stream: ControlFrame.stdin, bytes: []))
                    } else {
                        stdinCredit -= UInt32(n)
                        _ = send(.data(session: 1, stream: ControlFrame.stdin, bytes: Array(buf[0..<n])))
                    }
                }
                guard !entries[0].returned.isEmpty else { continue }
                let n: Int
                do throws(Errno) { n = try sock.read(into: &chunk) } catch where error == .EINTR || error == .EAGAIN { continue } catch {
                    n = 0
                }
                if n == 0 {
                    return .setupFailed(lastError.map { "in \(agent)'s guest: \($0)" } ?? "\(agent)'s supervisor ended the tool run before it exited")
                }
                decoder.append(chunk[0..<n])
                while true {
                    let frame: ControlFrame?
                    do throws(ControlFrameError) { frame = try decoder.next() } catch {
                        return .setupFailed("\(agent)'s supervisor broke the protocol: \(error)")
                    }
                    guard let frame else { break }
                    switch frame {
                    case .started:
                        started = true
                    case .data(_, let stream, let bytes) where stream != ControlFrame.stdin:
                        if bytes.isEmpty { continue }
                        try? (stream == ControlFrame.stdout ? FD.standardOutput : FD.standardError).writeAll(bytes)
                        _ = send(.credit(session: 1, stream: stream, bytes: UInt32(bytes.count)))
                    case .credit(_, ControlFrame.stdin, let bytes):
                        stdinCredit = stdinCredit &+ bytes
                    case .error(let message):
                        lastError = DisplayText.safeLine(String(message.prefix(512)))
                        Log.error("in \(agent)'s guest: " + (lastError ?? ""))
                    case .exited(_, let code, let signal):
                        if timedOut { return .timedOut }
                        if !started, let e = lastError {
                            return .execFailed("in \(agent)'s guest: \(e)", code == 127 ? Errno.ENOENT.rawValue : Errno.EACCES.rawValue)
                        }
                        return signal != 0 ? .signaled(signal) : .exited(code)
                    default:
                        break
                    }
                }
            }
        }
    }
}
