import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// Tool runs in a running VM agent's guest (`clawjail exec --agent A`): the supervisor
/// accepts them on A's 0600 socket (`HostLayout.vmToolSocket`) and relays each one's
/// frames between its client and the guest, with the session id rewritten. The client
/// speaks the guest's protocol: `file` frames (its jail's spec and seccomp profile, in
/// a directory of its own), then `spawn`; stdio and signals with credits, end to end.
/// The supervisor builds the spawn itself (`clawjail guest-jail` of the client's spec)
/// and refuses a spec that is not a tool run's or asks for credentials, so a client
/// cannot run anything else in the guest; what the guest may send back is bounded by
/// the credit the client granted.
final class VMToolRuns {
    final class Client {
        let fd: FD
        var decoder = ControlFrameDecoder()
        var outbound: [UInt8] = []
        var files: [ControlFrame] = []
        var directory: String?
        var haveSpec = false
        /// The guest's session id, once spawned.
        var session: UInt32?
        /// `setupDone`s the guest owes for this client's files.
        var pendingAcks = 0
        var started = false
        var finished = false
        var closed = false
        /// Granted by the client for stdout/stderr, not yet used by the guest.
        var outputCredit: [UInt32] = [0, 0]
        /// Granted by the guest for stdin, not yet used by the client.
        var stdinCredit: UInt32 = 0
        init(fd: FD) { self.fd = fd }
    }

    let listener: FD
    let path: String
    let agent: String
    /// Sends a frame to the guest (VMControl's outbound queue).
    let toGuest: (ControlFrame) -> Void
    var clients: [Client] = []
    var nextSession: UInt32 = 2
    var accepting = false

    static let maxClients = 32
    /// Per client: what it may have queued towards it (the credit it grants bounds it).
    static let maxOutbound = 512 << 10
    static let maxFiles = 16

    init(listener: FD, path: String, agent: String, toGuest: @escaping (ControlFrame) -> Void) {
        self.listener = listener
        self.path = path
        self.agent = agent
        self.toGuest = toGuest
        try? listener.setNonBlocking(true)
    }

    var pollEntries: [Poll.Entry] {
        var e: [Poll.Entry] = []
        if accepting && clients.count < Self.maxClients { e.append(Poll.Entry(fd: listener, events: .readable)) }
        for c in clients where !c.closed {
            e.append(Poll.Entry(fd: c.fd, events: c.outbound.isEmpty ? .readable : [.readable, .writable]))
        }
        return e
    }

    /// Whether `fd` is one of ours; handles it if so.
    func handle(_ entry: Poll.Entry) -> Bool {
        if entry.fd.rawValue == listener.rawValue {
            while clients.count < Self.maxClients, let fd = try? Sockets.accept(listener) { clients.append(Client(fd: fd)) }
            return true
        }
        guard let c = clients.first(where: { !$0.closed && $0.fd.rawValue == entry.fd.rawValue }) else { return false }
        if entry.returned.contains(.writable) { flush(c) }
        if !entry.returned.intersection([.readable, .hangUp, .error]).isEmpty { receive(c) }
        reap()
        return true
    }

    // MARK: from the client

    func receive(_ c: Client) {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while !c.closed {
            let n: Int
            do throws(Errno) { n = try c.fd.read(into: &chunk) } catch where error == .EAGAIN || error == .EINTR { return } catch {
                n = 0
            }
            if n == 0 {
                // The caller went away: its tool run goes with it.
                if let s = c.session, !c.finished { toGuest(.signal(session: s, signal: Signal.kill.rawValue)) }
                close(c)
                return
            }
            c.decoder.append(chunk[0..<n])
            while !c.closed {
                let frame: ControlFrame?
                do throws(ControlFrameError) { frame = try c.decoder.next() } catch {
                    refuse(c, "the client broke the protocol: \(error)")
                    return
                }
                guard let frame else { break }
                fromClient(c, frame)
            }
        }
    }

    func fromClient(_ c: Client, _ frame: ControlFrame) {
        switch frame {
        case .file(let name, let mode, let content) where c.session == nil:
            let parts = name.split(separator: "/")
            guard parts.count == 2, parts[0].hasPrefix("t-"), c.directory == nil || c.directory == String(parts[0]),
                  c.files.count < Self.maxFiles else {
                refuse(c, "a tool run's files go in one directory named t-<id>, at most \(Self.maxFiles)")
                return
            }
            c.directory = String(parts[0])
            if parts[1] == Substring(VMPlan.guestJailFile) {
                let spec: JailSpec
                do {
                    spec = try JailSpec(guestJSON: try JSONValue.parse(String(decoding: content, as: UTF8.self)))
                } catch {
                    refuse(c, "the tool run's spec: \(error)")
                    return
                }
                guard spec.kind == .tool, spec.agent == agent, !spec.mounts.contains(where: { $0.role == .credentials }) else {
                    refuse(c, "only a tool run of \(agent), without credentials, runs in its guest")
                    return
                }
                c.haveSpec = true
            }
            c.files.append(.file(name: name, mode: mode, content: content))
        case .spawn where c.session == nil:
            guard c.haveSpec, accepting else {
                refuse(c, accepting ? "no tool run spec (\(VMPlan.guestJailFile)) before spawn" : "the agent's guest is not running")
                return
            }
            let s = nextSession
            nextSession += 1
            c.session = s
            c.pendingAcks = c.files.count
            for f in c.files { toGuest(f) }
            c.files = []
            let g = VMPlan.guestJailCommand(directory: c.directory)
            toGuest(.spawn(.init(session: s, uid: g.uid, gid: g.gid, cwd: g.cwd, argv: g.argv,
                                 environment: g.environment.map { "\($0.name)=\($0.value)" })))
        case .data(_, ControlFrame.stdin, let bytes) where c.session != nil:
            guard bytes.count <= Int(c.stdinCredit) else {
                refuse(c, "the client sent \(bytes.count) stdin bytes with \(c.stdinCredit) of credit")
                return
            }
            c.stdinCredit -= UInt32(bytes.count)
            toGuest(.data(session: c.session!, stream: ControlFrame.stdin, bytes: bytes))
        case .credit(_, let stream, let bytes) where c.session != nil && stream != ControlFrame.stdin:
            let i = Int(stream) - 1
            // A client may not grant more than one window at a time per stream.
            guard UInt64(c.outputCredit[i]) + UInt64(bytes) <= UInt64(VMControl.window) else {
                refuse(c, "the client granted more than \(VMControl.window) bytes of credit")
                return
            }
            c.outputCredit[i] += bytes
            toGuest(.credit(session: c.session!, stream: stream, bytes: bytes))
        case .signal(_, let sig) where c.session != nil:
            if !c.finished { toGuest(.signal(session: c.session!, signal: sig)) }
        default:
            refuse(c, "the client sent \(frame.name) out of turn")
        }
    }

    // MARK: from the guest

    /// Whether the frame belongs to a tool run; routes it if so.
    func fromGuest(_ frame: ControlFrame) -> Bool {
        switch frame {
        case .setupDone:
            guard let c = clients.first(where: { $0.pendingAcks > 0 }) else { return false }
            c.pendingAcks -= 1
        case .error(let message):
            // The guest's errors carry no session: the oldest tool run still starting owns it.
            guard let c = clients.first(where: { $0.session != nil && ($0.pendingAcks > 0 || !$0.started) && !$0.finished }) else {
                return false
            }
            if c.pendingAcks > 0 { c.pendingAcks -= 1 }
            toClient(c, .error(message: message))
        case .started(let s, let pid):
            guard let c = client(s) else { return s != VMControl.session }
            c.started = true
            toClient(c, .started(session: 1, pid: pid))
        case .data(let s, let stream, let bytes):
            guard stream != ControlFrame.stdin, s != VMControl.session else { return false }
            guard let c = client(s) else { return true }   // its client is gone: dropped
            let i = Int(stream) - 1
            guard bytes.count <= Int(c.outputCredit[i]) else {
                Log.warning("vm: the guest sent tool run \(s) \(bytes.count) bytes beyond its credit; ending the tool run")
                toGuest(.signal(session: s, signal: Signal.kill.rawValue))
                close(c)
                return true
            }
            c.outputCredit[i] -= UInt32(bytes.count)
            toClient(c, .data(session: 1, stream: stream, bytes: bytes))
        case .credit(let s, ControlFrame.stdin, let bytes):
            guard s != VMControl.session else { return false }
            if let c = client(s) {
                c.stdinCredit = c.stdinCredit &+ bytes
                toClient(c, .credit(session: 1, stream: ControlFrame.stdin, bytes: bytes))
            }
        case .exited(let s, let code, let signal):
            guard s != VMControl.session else { return false }
            if let c = client(s) {
                c.finished = true
                toClient(c, .exited(session: 1, code: code, signal: signal))
            }
        default:
            return false
        }
        reap()
        return true
    }

    func client(_ session: UInt32) -> Client? {
        clients.first { $0.session == session && !$0.closed }
    }

    // MARK: to the client

    func toClient(_ c: Client, _ frame: ControlFrame) {
        guard !c.closed, let bytes = try? frame.encoded() else { return }
        guard c.outbound.count + bytes.count <= Self.maxOutbound else {
            // It stopped reading: its tool run ends.
            if let s = c.session, !c.finished { toGuest(.signal(session: s, signal: Signal.kill.rawValue)) }
            close(c)
            return
        }
        c.outbound += bytes
        flush(c)
    }

    func flush(_ c: Client) {
        while !c.outbound.isEmpty && !c.closed {
            let result: Result<Int, Errno> = c.outbound.withUnsafeBytes { b in
                do throws(Errno) { return .success(try c.fd.write(b)) } catch { return .failure(error) }
            }
            switch result {
            case .success(let n): c.outbound.removeFirst(n)
            case .failure(.EAGAIN): return
            case .failure: close(c)
            }
        }
    }

    func refuse(_ c: Client, _ why: String) {
        Log.warning("vm: a tool run of \(agent) refused: \(why)")
        toClient(c, .error(message: why))
        if let s = c.session, !c.finished { toGuest(.signal(session: s, signal: Signal.kill.rawValue)) }
        c.finished = true
    }

    func close(_ c: Client) {
        guard !c.closed else { return }
        c.closed = true
        c.fd.close()
    }

    /// Finished clients whose last bytes are out, and closed ones, are let go.
    func reap() {
        for c in clients where c.finished && c.outbound.isEmpty { close(c) }
        clients.removeAll { $0.closed && $0.pendingAcks == 0 && ($0.session == nil || $0.finished) }
    }

    /// The agent's guest is going away: every tool run ends with it.
    func closeAll(_ why: String) {
        accepting = false
        for c in clients where !c.closed {
            if !c.finished { toClient(c, .error(message: why)) }
            flush(c)
            close(c)
        }
        clients = []
    }

    func tearDown() {
        closeAll("the agent's VM ended")
        listener.close()
        try? FileSystem.unlink(path)
    }
}
