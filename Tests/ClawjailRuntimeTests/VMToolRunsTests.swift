import ClawjailCore
import ClawjailSystem
import Testing
@testable import ClawjailRuntime

/// The supervisor's side of tool runs in a VM agent's guest, over socketpairs: what a
/// client may ask the guest for, and how frames are routed back.
@Suite("VM agents: tool runs relayed into the guest")
struct VMToolRunsTests {
    final class Guest: @unchecked Sendable { var frames: [ControlFrame] = [] }

    static func spec(kind: String = "tool", agent: String = "alice", credentials: Bool = false) -> [UInt8] {
        let mounts = credentials
            ? #"[{"role":"credentials","host":"/run/credentials","target":"/run/credentials","writable":false,"directory":true}]"#
            : #"[{"role":"workspace","host":"/workspace","target":"/workspace","writable":true,"directory":true}]"#
        let text = #"{"kind":"\#(kind)","agent":"\#(agent)","name":"exec-1","argv":["/bin/true"],"cwd":"/workspace","hostname":"t","user":1000,"#
            + #""environment":[["PATH","/usr/bin"]],"mounts":\#(mounts),"limits":{"memory":1048576,"pids":8,"cpu":null,"io_weight":null,"#
            + #""tmp":1048576,"open_files":64,"file_size":null},"seccomp_profile":"/run/clawjail/guest/t-1/tool.toml","#
            + #""seccomp_on_violation":null,"protect":[],"etc_hidden":[],"network":"none","shares_network":false}"#
        return Array(text.utf8)
    }

    /// One client connected to a VMToolRuns whose guest is `guest`; returns the runs,
    /// the client's end and the supervisor's client.
    static func connected(_ guest: Guest) throws -> (VMToolRuns, FD, VMToolRuns.Client) {
        let (listener, _) = try Sockets.streamPair()
        let runs = VMToolRuns(listener: listener, path: "/nonexistent/clawjail-test.sock", agent: "alice") { guest.frames.append($0) }
        runs.accepting = true
        let (server, client) = try Sockets.streamPair()
        try server.setNonBlocking(true)
        let c = VMToolRuns.Client(fd: server)
        runs.clients.append(c)
        return (runs, client, c)
    }

    static func send(_ fd: FD, _ frames: [ControlFrame]) throws {
        for f in frames { try fd.writeAll(try f.encoded()) }
    }

    static func read(_ fd: FD) throws -> [ControlFrame] {
        try fd.setNonBlocking(true)
        var d = ControlFrameDecoder()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while let n = try? fd.read(into: &chunk), n > 0 { d.append(chunk[0..<n]) }
        var out: [ControlFrame] = []
        while let f = try d.next() { out.append(f) }
        return out
    }

    static let spawn = ControlFrame.spawn(.init(session: 1, uid: 0, gid: 0, cwd: "/", argv: ["/bin/sh", "-c", "anything"], environment: []))

    @Test("a tool run's files and spawn reach the guest as guest-jail of its own spec, whatever spawn the client sent")
    func spawnsGuestJail() throws {
        let guest = Guest()
        let (runs, client, c) = try Self.connected(guest)
        defer { client.close(); runs.tearDown() }
        try Self.send(client, [.file(name: "t-1/tool.toml", mode: 0o600, content: Array("x".utf8)),
                               .file(name: "t-1/jail.json", mode: 0o600, content: Self.spec()), Self.spawn,
                               .credit(session: 1, stream: ControlFrame.stdout, bytes: 100)])
        runs.receive(c)
        #expect(guest.frames.count == 4, "\(guest.frames)")
        guard guest.frames.count == 4, case .spawn(let s) = guest.frames[2] else { return }
        #expect(s.argv == ["/init", "guest-jail", "/run/clawjail/guest/t-1/jail.json"] && s.session == 2 && s.uid == 0)
        #expect(guest.frames[3] == .credit(session: 2, stream: ControlFrame.stdout, bytes: 100))
        // The guest's answers: the files' acks are consumed, output within credit goes to the client.
        #expect(runs.fromGuest(.setupDone) && runs.fromGuest(.setupDone))
        #expect(!runs.fromGuest(.setupDone), "a third setupDone is not the tool run's")
        #expect(runs.fromGuest(.started(session: 2, pid: 7)))
        #expect(runs.fromGuest(.data(session: 2, stream: ControlFrame.stdout, bytes: Array("hi".utf8))))
        #expect(!runs.fromGuest(.data(session: 1, stream: ControlFrame.stdout, bytes: [1])), "the agent's own session is not routed")
        #expect(runs.fromGuest(.exited(session: 2, code: 3, signal: 0)))
        let back = try Self.read(client)
        #expect(back == [.started(session: 1, pid: 7), .data(session: 1, stream: ControlFrame.stdout, bytes: Array("hi".utf8)),
                         .exited(session: 1, code: 3, signal: 0)])
    }

    @Test("the agent's own spec, another agent's, one with credentials, or a file outside t-<id>/ is refused; nothing is spawned",
          arguments: [0, 1, 2, 3, 4])
    func refusals(_ which: Int) throws {
        let guest = Guest()
        let (runs, client, c) = try Self.connected(guest)
        defer { client.close(); runs.tearDown() }
        let frames: [ControlFrame] = switch which {
        case 0: [.file(name: "t-1/jail.json", mode: 0o600, content: Self.spec(kind: "agent")), Self.spawn]
        case 1: [.file(name: "t-1/jail.json", mode: 0o600, content: Self.spec(agent: "bob")), Self.spawn]
        case 2: [.file(name: "t-1/jail.json", mode: 0o600, content: Self.spec(credentials: true)), Self.spawn]
        case 3: [.file(name: "jail.json", mode: 0o600, content: Self.spec()), Self.spawn]
        default: [Self.spawn]
        }
        try Self.send(client, frames)
        runs.receive(c)
        #expect(!guest.frames.contains { if case .spawn = $0 { return true } else { return false } }, "\(guest.frames)")
        #expect(try Self.read(client).contains { if case .error = $0 { return true } else { return false } })
    }

    @Test("output beyond the client's credit ends that tool run, not the VM")
    func creditIsEnforced() throws {
        let guest = Guest()
        let (runs, client, c) = try Self.connected(guest)
        defer { client.close(); runs.tearDown() }
        try Self.send(client, [.file(name: "t-1/jail.json", mode: 0o600, content: Self.spec()), Self.spawn,
                               .credit(session: 1, stream: ControlFrame.stdout, bytes: 4)])
        runs.receive(c)
        #expect(runs.fromGuest(.data(session: 2, stream: ControlFrame.stdout, bytes: Array("too much".utf8))))
        #expect(guest.frames.last == .signal(session: 2, signal: Signal.kill.rawValue))
        #expect(c.closed)
    }
}
