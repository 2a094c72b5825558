import NIOCore
import NIOPosix
import ClawjailSystem
import Synchronization

/// One ingress connection, for the audit log.
public struct IngressEvent: Sendable, Hashable, CustomStringConvertible {
    public var agent: String
    public var port: UInt16
    /// "allow" when the jail's server accepted, "deny" when it could not be reached.
    public var verdict: String
    public var reason: String
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var durationMs: UInt64

    public var description: String {
        "ingress \(agent):\(port) \(verdict) (\(reason)) in=\(bytesIn) out=\(bytesOut) \(durationMs)ms"
    }
}

/// Forwards each connection accepted on a host Unix socket to the agent's own server
/// inside its jail. The jail side is connected by `connectToJail`, which runs in the
/// peer network namespace (a socket stays in the namespace it was made in), so the
/// agent sees the peer's address, never 127.0.0.1: a gateway that trusts loopback does
/// not trust these connections.
public final class IngressForwarder: Sendable {
    public let agent: String
    public let port: UInt16
    private let group: any EventLoopGroup
    private let connectToJail: @Sendable () throws -> CInt
    private let audit: @Sendable (IngressEvent) -> Void
    private let channel = Mutex<(any Channel)?>(nil)

    /// `connectToJail` returns a connected, blocking-or-not TCP socket fd (ownership
    /// passes to the forwarder) or throws when the jail's server is not reachable.
    public init(agent: String, port: UInt16, group: any EventLoopGroup,
                connectToJail: @escaping @Sendable () throws -> CInt,
                audit: @escaping @Sendable (IngressEvent) -> Void) {
        self.agent = agent
        self.port = port
        self.group = group
        self.connectToJail = connectToJail
        self.audit = audit
    }

    /// Adopts an already bound and listening Unix socket (the runtime creates it with
    /// its final mode and owner before anything can connect).
    public func start(listeningSocket fd: CInt) async throws {
        let group = self.group
        let connect = self.connectToJail
        let audit = self.audit
        let agent = self.agent
        let port = self.port
        let server = try await ServerBootstrap(group: group)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.recvAllocator, value: EgressProxy.recvAllocator)
            .childChannelInitializer { client in
                let started = NIODeadline.now()
                let finish: @Sendable (UInt64, UInt64) -> Void = { up, down in
                    audit(IngressEvent(agent: agent, port: port, verdict: "allow", reason: "forwarded", bytesIn: up,
                                       bytesOut: down,
                                       durationMs: UInt64((NIODeadline.now() - started).nanoseconds / 1_000_000)))
                }
                let record = TunnelRecord(finish: finish)
                let clientSide = SpliceHandler(direction: .up, record: record)
                do {
                    try client.pipeline.syncOperations.addHandler(clientSide)
                } catch {
                    return client.eventLoop.makeFailedFuture(error)
                }
                // Both channels of the tunnel live on the client's event loop.
                let bound = NIOLoopBound((record, clientSide), eventLoop: client.eventLoop)
                // The jail-side connect enters another netns on a dedicated thread; do it
                // off the event loop, then adopt the socket on the client's loop.
                let promise = client.eventLoop.makePromise(of: CInt.self)
                DispatchQueueLite.run {
                    do { promise.succeed(try connect()) } catch { promise.fail(error) }
                }
                // The client channel is registered as soon as this initializer returns,
                // before the connect above can answer; the tunnel is linked and reads are
                // turned on only once both channels are active. (A read asked for before
                // a channel is registered is lost, and the tunnel never moved a byte.)
                promise.futureResult.flatMap { fd in
                    ClientBootstrap(group: client.eventLoop)
                        .channelOption(.allowRemoteHalfClosure, value: true)
                        .channelOption(.autoRead, value: false)
                        .channelOption(.socketOption(.tcp_nodelay), value: 1)
                        .channelOption(.recvAllocator, value: EgressProxy.recvAllocator)
                        .channelInitializer { jail in
                            jail.eventLoop.makeCompletedFuture {
                                let (record, _) = bound.value
                                try jail.pipeline.syncOperations.addHandler(SpliceHandler(direction: .down, record: record))
                            }
                        }
                        .withConnectedSocket(fd)
                }.flatMapThrowing { jail in
                    let (_, clientSide) = bound.value
                    let jailSide = try jail.pipeline.syncOperations.handler(type: SpliceHandler.self)
                    SpliceHandler.link(clientSide, jailSide)
                    // From here NIO asks for every read itself; SpliceHandler holds them
                    // while the other side cannot take more.
                    try client.syncOptions?.setOption(.autoRead, value: true)
                    try jail.syncOptions?.setOption(.autoRead, value: true)
                }.whenFailure { error in
                    audit(IngressEvent(agent: agent, port: port, verdict: "deny", reason: "jail server unreachable: \(error)",
                                       bytesIn: 0, bytesOut: 0, durationMs: 0))
                    client.close(promise: nil)
                }
                return client.eventLoop.makeSucceededVoidFuture()
            }
            .withBoundSocket(fd)
            .get()
        channel.withLock { $0 = server }
    }

    public func shutdown() async {
        let c = channel.withLock { c -> (any Channel)? in
            defer { c = nil }
            return c
        }
        try? await c?.close()
    }
}

/// A detached thread for a short blocking job (entering a netns to connect): never a
/// Swift concurrency or NIO thread, since those must not change namespace.
enum DispatchQueueLite {
    static func run(_ body: @escaping @Sendable () -> Void) {
        if (try? PosixThread.spawn(detached: true, body)) == nil { body() }
    }
}
