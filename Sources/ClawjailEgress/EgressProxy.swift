import ClawjailCore
import ClawjailSystem
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

final class ConnectionCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// Every channel the proxy owns, so shutdown can close them all.
final class ChannelRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let closed = Atomic<Bool>(false)

    func add(_ channel: any Channel) {
        if closed.load(ordering: .acquiring) {
            channel.close(promise: nil)
            return
        }
        let id = ObjectIdentifier(channel)
        channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.channels.withLock { $0.removeValue(forKey: id) }
        }
    }

    var count: Int { channels.withLock { $0.count } }

    /// Closes everything and refuses later additions.
    func closeAll() -> [any Channel] {
        closed.store(true, ordering: .releasing)
        let all = channels.withLock { Array($0.values) }
        for c in all { c.close(promise: nil) }
        return all
    }
}

/// The egress proxy of ONE agent: its HTTP proxy listener, its transparent
/// listeners and its DNS responder. One instance per agent, because the
/// listeners live in that agent's peer network namespace and the allowlist,
/// connection cap and audit identity are the agent's.
///
/// Upstream connections and DNS queries are made from the calling process's
/// own network namespace (the event loop threads must never `setns`).
public final class EgressProxy: Sendable {
    /// Larger reads than NIO's default (64 KiB cap) for bulk transfers.
    static let recvAllocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 64 * 1024, maximum: 1024 * 1024)

    public let config: EgressConfig
    public let agent: String
    private let group: any EventLoopGroup
    private let shared: ProxyShared
    private let registry = ChannelRegistry()
    private let active = ConnectionCounter()
    private let listeners = Mutex<[any Channel]>([])
    private let synthetic: SyntheticAddresses
    private let tunnels: KernelTunnels?

    public init(
        config: EgressConfig, agent: String, audit: @escaping @Sendable (EgressDecision) -> Void,
        group: any EventLoopGroup
    ) {
        self.config = config
        self.agent = agent
        self.group = group
        self.synthetic = SyntheticAddresses(range: config.syntheticRange)
        let tunnels = config.kernelTunnels ? KernelTunnels(idleTimeout: config.idleTimeout, active: active) : nil
        self.tunnels = tunnels
        self.shared = ProxyShared(
            agent: agent, allowlist: config.allowlist, dialer: Dialer(config: config, registry: registry),
            audit: audit, syntheticRange: config.syntheticRange, firstRequestTimeout: config.firstRequestTimeout,
            transparentHTTPPort: config.transparentHTTPPort, transparentTLSPort: config.transparentTLSPort, tunnels: tunnels,
            connectTLSPorts: config.connectTLSPorts, allowNonTLSConnect: config.allowNonTLSConnect)
    }

    /// Tunnels the kernel is copying (also counted in `activeConnections`).
    public var kernelTunnelCount: Int { tunnels?.count ?? 0 }

    /// Client connections currently open (all listeners).
    public var activeConnections: Int { active.value.load(ordering: .relaxed) }

    /// The synthetic address the DNS responder hands out for `name`.
    public func syntheticAddress(for name: String) -> IPAddress? {
        synthetic.address(for: name).map { .v4($0) }
    }

    private enum Kind { case proxy, transparentHTTP, transparentTLS }

    /// Starts serving. Socket listeners are adopted (the proxy owns and
    /// closes them); if starting fails, everything already started is shut
    /// down and sockets not yet adopted are closed.
    @discardableResult
    public func start(
        proxyListener: Listener, transparentHTTP: Listener? = nil, transparentTLS: Listener? = nil,
        dns: UDPListener? = nil
    ) async throws -> EgressEndpoints {
        var pendingFDs: [CInt] = []
        for l in [proxyListener, transparentHTTP, transparentTLS] {
            if case .socket(let fd)? = l { pendingFDs.append(fd) }
        }
        if case .socket(let fd)? = dns { pendingFDs.append(fd) }
        var endpoints = EgressEndpoints()
        do {
            endpoints.proxy = try await listen(proxyListener, kind: .proxy, pending: &pendingFDs)
            if let t = transparentHTTP { endpoints.transparentHTTP = try await listen(t, kind: .transparentHTTP, pending: &pendingFDs) }
            if let t = transparentTLS { endpoints.transparentTLS = try await listen(t, kind: .transparentTLS, pending: &pendingFDs) }
            if let d = dns { endpoints.dns = try await listenDNS(d, pending: &pendingFDs) }
        } catch {
            for fd in pendingFDs { FD(fd).close() }
            await shutdown()
            throw error
        }
        return endpoints
    }

    private func listen(_ listener: Listener, kind: Kind, pending: inout [CInt]) async throws -> SocketAddress? {
        let shared = self.shared
        let config = self.config
        let registry = self.registry
        let active = self.active
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.recvAllocator, value: EgressProxy.recvAllocator)
            .childChannelInitializer { channel in
                registry.add(channel)
                let count = active.value.wrappingAdd(1, ordering: .relaxed).newValue
                channel.closeFuture.whenComplete { _ in active.value.wrappingSubtract(1, ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: config.idleTimeout))
                    try sync.addHandler(IdleCloseHandler())
                    if count > config.maxConnections {
                        try sync.addHandler(RejectHandler(shared: shared, kind: kind == .transparentTLS ? .tls : .http,
                                                          limit: config.maxConnections))
                        return
                    }
                    switch kind {
                    case .proxy, .transparentHTTP:
                        try HTTPFrontHandler.addHandlers(to: sync, shared: shared,
                                                         mode: kind == .proxy ? .forward : .transparent)
                    case .transparentTLS:
                        try sync.addHandler(TransparentTLSHandler(shared: shared))
                    }
                }
            }
        let channel: any Channel
        switch listener {
        case .socket(let fd):
            pending.removeAll { $0 == fd }
            channel = try await bootstrap.withBoundSocket(fd).get()
        case .address(let addr):
            channel = try await bootstrap.bind(to: addr).get()
        }
        listeners.withLock { $0.append(channel) }
        return channel.localAddress
    }

    private func listenDNS(_ listener: UDPListener, pending: inout [CInt]) async throws -> SocketAddress? {
        let shared = self.shared
        let synthetic = self.synthetic
        let bootstrap = DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DNSResponderHandler(shared: shared, synthetic: synthetic))
                }
            }
        let channel: any Channel
        switch listener {
        case .socket(let fd):
            pending.removeAll { $0 == fd }
            channel = try await bootstrap.withBoundSocket(fd).get()
        case .address(let addr):
            channel = try await bootstrap.bind(to: addr).get()
        }
        listeners.withLock { $0.append(channel) }
        return channel.localAddress
    }

    /// Stops accepting, closes every client and upstream connection, and waits
    /// for the listeners to close. Open tunnels are audited as they close.
    public func shutdown() async {
        let ls = listeners.withLock { l in
            defer { l = [] }
            return l
        }
        for l in ls { try? await l.close() }
        let open = registry.closeAll()
        for c in open { try? await c.closeFuture.get() }
        tunnels?.shutdown()
    }
}

/// Over the per-agent cap: answer 503 (HTTP) or a TLS alert, audit, close.
final class RejectHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Kind { case http, tls }

    let shared: ProxyShared
    let kind: Kind
    let limit: Int

    init(shared: ProxyShared, kind: Kind, limit: Int) {
        self.shared = shared
        self.kind = kind
        self.limit = limit
    }

    func channelActive(context: ChannelHandlerContext) {
        shared.audit(EgressDecision(
            agent: shared.agent, mode: kind == .tls ? .transparentTLS : .http, verdict: .deny,
            rule: DenyRule.tooManyConnections.rawValue, denyRule: .tooManyConnections, host: "-", port: 0))
        let buf: ByteBuffer
        switch kind {
        case .http:
            buf = DenyResponse.buffer(.tooManyConnections, host: nil, port: nil, limit: limit,
                                      allocator: context.channel.allocator)
        case .tls:
            buf = context.channel.allocator.buffer(bytes: TLSAlert.accessDenied)
        }
        context.writeAndFlush(wrapOutboundOut(buf)).assumeIsolated().whenComplete { _ in
            context.close(mode: .all, promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
