import ClawjailSystem
import NIOCore
import Synchronization

/// Established tunnels (CONNECT, transparent TLS) copied by the kernel.
///
/// Once a tunnel's two sockets are connected and the proxy has said all it has to
/// say on them, nothing more is parsed: the bytes only need to cross. NIO would
/// copy every byte into user space and back out. Here each direction goes
/// socket -> pipe -> socket with splice(2), so the pages move by reference and
/// the proxy's CPU goes to TCP alone.
///
/// One thread per proxy owns every handed-over tunnel, on an edge-triggered
/// epoll set. The tunnel keeps the proxy's rules: it counts against the
/// connection cap until it ends, it is closed after `idleTimeout` without a byte
/// in either direction, `shutdown()` closes it, and it is audited once, with its
/// byte counts, when it ends.
final class KernelTunnels: Sendable {
    /// What the event loop hands over: two duplicated sockets (NIO closes its own
    /// descriptors right after), the bytes NIO had read but not forwarded, and
    /// whether a side had already sent its FIN.
    struct Handoff: Sendable {
        var client: FD
        var upstream: FD
        var toUpstream: [UInt8]
        var toClient: [UInt8]
        var clientInputClosed: Bool
        var upstreamInputClosed: Bool
        /// Called once, on the tunnel thread, with the bytes moved up and down.
        var finish: @Sendable (_ up: UInt64, _ down: UInt64) -> Void
    }

    private struct Control {
        var queue: [(Handoff, Pipes)] = []
        var epoll: Epoll?
        var thread: pthread_t?
        var stopped = false
        var count = 0
    }

    struct Pipes: Sendable {
        let up: (read: FD, write: FD, capacity: Int)
        let down: (read: FD, write: FD, capacity: Int)
    }

    private let control = Mutex<Control>(Control())
    private let idleMs: Int64
    private let pipeSize: Int
    private let active: ConnectionCounter

    init(idleTimeout: TimeAmount, active: ConnectionCounter, pipeSize: Int = 256 << 10) {
        self.idleMs = max(1, idleTimeout.nanoseconds / 1_000_000)
        self.pipeSize = pipeSize
        self.active = active
    }

    /// Tunnels currently owned by the kernel path.
    var count: Int { control.withLock { $0.count } }

    /// Takes over a tunnel. On false (the proxy is shutting down, or pipes or the
    /// thread could not be made) nothing was taken: the caller still owns the
    /// descriptors in `handoff` and carries on in user space.
    func adopt(_ handoff: Handoff) -> Bool {
        let pipes: Pipes
        do {
            let up = try Splice.pipe(size: pipeSize)
            do {
                pipes = Pipes(up: up, down: try Splice.pipe(size: pipeSize))
            } catch {
                up.read.close()
                up.write.close()
                throw error
            }
        } catch {
            return false
        }
        let accepted: Bool = control.withLock { c in
            guard !c.stopped else { return false }
            if c.thread == nil {
                guard let epoll = try? Epoll() else { return false }
                let worker = Worker(owner: self, epoll: epoll, idleMs: idleMs)
                guard let t = try? PosixThread.spawn({ worker.run() }) else { return false }
                c.epoll = epoll
                c.thread = t
            }
            c.queue.append((handoff, pipes))
            c.count += 1
            return true
        }
        guard accepted else {
            for fd in [pipes.up.read, pipes.up.write, pipes.down.read, pipes.down.write] { fd.close() }
            return false
        }
        active.value.wrappingAdd(1, ordering: .relaxed)
        control.withLock { $0.epoll }?.wake()
        return true
    }

    /// Closes every tunnel (each is audited) and stops the thread. Later
    /// hand-overs are refused.
    func shutdown() {
        let (epoll, thread) = control.withLock { c -> (Epoll?, pthread_t?) in
            c.stopped = true
            defer { c.thread = nil }
            return (c.epoll, c.thread)
        }
        epoll?.wake()
        if let thread { PosixThread.join(thread) }
    }

    // MARK: the tunnel thread

    fileprivate func takeQueue() -> (items: [(Handoff, Pipes)], stopping: Bool) {
        control.withLock { c in
            defer { c.queue = [] }
            return (c.queue, c.stopped)
        }
    }

    fileprivate func ended() {
        control.withLock { $0.count -= 1 }
        active.value.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// One direction of a tunnel: source socket -> pipe -> destination socket.
private struct Flow {
    let source: FD
    let destination: FD
    let pipeRead: FD
    let pipeWrite: FD
    let capacity: Int
    /// Bytes NIO had already read; they go out before anything spliced.
    var pending: [UInt8]
    var pendingSent = 0
    var inPipe = 0
    var sourceEnded: Bool
    var destinationShut = false
    var bytes: UInt64 = 0

    var finished: Bool { sourceEnded && destinationShut }

    enum Outcome { case waiting, budgetSpent, failed }

    /// Moves bytes until the source is empty, the destination is full, or the
    /// budget is spent. The pipe is always emptied before the next read, so a
    /// splice that would block on the read side means the socket is empty.
    mutating func pump(budget: Int, moved: inout Bool) -> Outcome {
        var steps = 0
        do {
            while steps < budget {
                steps += 1
                if pendingSent < pending.count {
                    let sent = try pending.withUnsafeBytes { raw throws(Errno) in
                        try Splice.send(destination, UnsafeRawBufferPointer(rebasing: raw[pendingSent...]))
                    }
                    guard let sent else { return .waiting }
                    pendingSent += sent
                    bytes &+= UInt64(sent)
                    moved = true
                    if pendingSent == pending.count { pending = [] ; pendingSent = 0 }
                    continue
                }
                if inPipe > 0 {
                    switch try Splice.move(from: pipeRead, to: destination, max: inPipe) {
                    case .moved(let n):
                        inPipe -= n
                        bytes &+= UInt64(n)
                        moved = true
                        continue
                    case .wouldBlock, .endOfFile:
                        return .waiting
                    }
                }
                if sourceEnded {
                    if !destinationShut {
                        Splice.shutdownWrite(destination)
                        destinationShut = true
                    }
                    return .waiting
                }
                switch try Splice.move(from: source, to: pipeWrite, max: capacity) {
                case .moved(let n):
                    inPipe += n
                    moved = true
                case .endOfFile:
                    sourceEnded = true
                    moved = true
                case .wouldBlock:
                    return .waiting
                }
            }
            return .budgetSpent
        } catch {
            return .failed
        }
    }
}

private final class Tunnel {
    let client: FD
    let upstream: FD
    var flows: [Flow]  // [0]: client -> upstream, [1]: upstream -> client
    var lastActive: Int64
    let finish: @Sendable (UInt64, UInt64) -> Void

    init(_ h: KernelTunnels.Handoff, _ p: KernelTunnels.Pipes, now: Int64) {
        client = h.client
        upstream = h.upstream
        flows = [
            Flow(source: h.client, destination: h.upstream, pipeRead: p.up.read,
                 pipeWrite: p.up.write, capacity: p.up.capacity, pending: h.toUpstream,
                 sourceEnded: h.clientInputClosed),
            Flow(source: h.upstream, destination: h.client, pipeRead: p.down.read,
                 pipeWrite: p.down.write, capacity: p.down.capacity, pending: h.toClient,
                 sourceEnded: h.upstreamInputClosed),
        ]
        lastActive = now
        finish = h.finish
    }

    func closeAll() {
        for f in flows {
            f.pipeRead.close()
            f.pipeWrite.close()
        }
        client.close()
        upstream.close()
    }
}

/// Everything the tunnel thread touches; only that thread uses it.
private final class Worker: @unchecked Sendable {
    /// Splices per direction per wake-up, so one fast tunnel cannot starve the rest.
    static let budget = 32

    let owner: KernelTunnels
    let epoll: Epoll
    let idleMs: Int64
    var tunnels: [UInt64: Tunnel] = [:]
    var ready: Set<UInt64> = []
    var nextID: UInt64 = 1

    init(owner: KernelTunnels, epoll: Epoll, idleMs: Int64) {
        self.owner = owner
        self.epoll = epoll
        self.idleMs = idleMs
    }

    static func nowMs() -> Int64 { Int64(ProcessInfoLite.monotonicNanoseconds / 1_000_000) }

    func run() {
        Splice.blockSIGPIPEInThisThread()
        var lastSweep = Worker.nowMs()
        while true {
            let (items, stopping) = owner.takeQueue()
            for (h, p) in items { start(h, p) }
            if stopping {
                for id in Array(tunnels.keys) { end(id) }
                return
            }
            let events = epoll.wait(timeoutMs: ready.isEmpty ? 1000 : 0)
            for (token, _) in events {
                if token == Epoll.wakeToken {
                    epoll.drainWake()
                } else {
                    pump(token >> 1)
                }
            }
            for id in ready { pump(id) }
            let now = Worker.nowMs()
            if now - lastSweep >= 1000 {
                lastSweep = now
                for (id, t) in tunnels where now - t.lastActive >= idleMs { end(id) }
            }
        }
    }

    func start(_ h: KernelTunnels.Handoff, _ p: KernelTunnels.Pipes) {
        let id = nextID
        nextID += 1
        let t = Tunnel(h, p, now: Worker.nowMs())
        tunnels[id] = t
        let events: Epoll.Events = [.readable, .writable, .peerClosed, .edgeTriggered]
        do {
            try epoll.add(t.client, events: events, token: id << 1)
            try epoll.add(t.upstream, events: events, token: id << 1 | 1)
        } catch {
            end(id)
            return
        }
        pump(id)
    }

    func pump(_ id: UInt64) {
        guard let t = tunnels[id] else {
            ready.remove(id)
            return
        }
        var moved = false
        var failed = false
        var more = false
        for i in 0..<2 {
            switch t.flows[i].pump(budget: Worker.budget, moved: &moved) {
            case .failed: failed = true
            case .budgetSpent: more = true
            case .waiting: break
            }
        }
        if moved { t.lastActive = Worker.nowMs() }
        if failed || (t.flows[0].finished && t.flows[1].finished) {
            end(id)
        } else if more {
            ready.insert(id)
        } else {
            ready.remove(id)
        }
    }

    func end(_ id: UInt64) {
        guard let t = tunnels.removeValue(forKey: id) else { return }
        ready.remove(id)
        epoll.remove(t.client)
        epoll.remove(t.upstream)
        t.closeAll()
        t.finish(t.flows[0].bytes, t.flows[1].bytes)
        owner.ended()
    }
}

extension KernelTunnels {
    /// Starts the tunnel between two channels on one event loop, whose splice
    /// handlers are installed but not linked. Once both channels have flushed
    /// everything the proxy wrote (a CONNECT's 200, a 101, a replayed
    /// ClientHello), the sockets go to the kernel; what NIO read meanwhile goes
    /// with them. If the kernel path is off or cannot take it, the handlers are
    /// linked and NIO carries the tunnel.
    static func start(
        client: any Channel, _ clientSide: SpliceHandler, upstream: any Channel, _ upstreamSide: SpliceHandler,
        record: TunnelRecord, via tunnels: KernelTunnels?
    ) {
        let inUserSpace = {
            SpliceHandler.link(clientSide, upstreamSide)
            clientSide.kick()
            upstreamSide.kick()
        }
        guard let tunnels else { return inUserSpace() }
        let flushed = client.writeAndFlush(ByteBuffer()).and(upstream.writeAndFlush(ByteBuffer()))
        flushed.assumeIsolated().whenComplete { result in
            guard case .success = result, !clientSide.hasEnded, !upstreamSide.hasEnded,
                  let clientFD = duplicate(client) else { return inUserSpace() }
            guard let upstreamFD = duplicate(upstream) else {
                clientFD.close()
                return inUserSpace()
            }
            let report = record.detachReport()
            let (up, down) = (record.bytesUp, record.bytesDown)
            let handoff = Handoff(
                client: clientFD, upstream: upstreamFD, toUpstream: clientSide.earlyBytes,
                toClient: upstreamSide.earlyBytes, clientInputClosed: clientSide.sawInputClosed,
                upstreamInputClosed: upstreamSide.sawInputClosed,
                finish: { u, d in report?(up &+ u, down &+ d) })
            guard tunnels.adopt(handoff) else {
                clientFD.close()
                upstreamFD.close()
                record.reattach(report)
                return inUserSpace()
            }
            clientSide.markHandedOff()
            upstreamSide.markHandedOff()
            // NIO drops these descriptors from its epoll set and closes them; the
            // sockets live on in the duplicates.
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
    }

    private static func duplicate(_ channel: any Channel) -> FD? {
        try? channel.pipeline.syncOperations.withUnsafeTransportIfAvailable(of: NIOBSDSocket.Handle.self) { fd in
            try FD(fd).duplicate()
        }
    }
}
