import ClawjailCore
import NIOCore
import NIOPosix

/// A refused or failed dial, carrying the rule reported to the client.
struct DialFailure: Error {
    let rule: DenyRule
}

struct DialResult {
    let channel: any Channel
    let address: IPAddress
}

/// Resolves an allowed name, checks every address, and connects to exactly
/// an address it checked. There is no second lookup between check and connect,
/// so DNS rebinding (a TTL-0 name that answers a public address for the check
/// and a private one for the connect) cannot work.
///
/// If ANY answer is non-public the whole name is refused, rather than dialling
/// only the good answers. A name that mixes public and internal addresses is
/// either misconfigured split-horizon DNS or someone steering the agent at the
/// inside; refusing is predictable (the same name always gets the same
/// verdict, whatever order the resolver returns) and it shows up in the audit
/// log with the internal address's rule instead of silently half-working.
final class Dialer: Sendable {
    let resolver: DNSResolver
    let addressGuard: AddressGuard
    let connectTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let dialFilter: (@Sendable (SocketAddress) -> Bool)?
    let refuseSelf: Bool
    let registry: ChannelRegistry

    init(config: EgressConfig, registry: ChannelRegistry) {
        self.resolver = DNSResolver(servers: config.resolvers, timeout: config.dnsTimeout)
        self.addressGuard = config.addressGuard
        self.connectTimeout = config.connectTimeout
        self.idleTimeout = config.idleTimeout
        self.dialFilter = config.dialFilter
        self.refuseSelf = config.refuseConnectionsToSelf
        self.registry = registry
    }

    /// Order of precedence when several answers are bad: the most alarming
    /// rule is the one reported.
    private static let severity: [AddressClass] = [
        .metadata, .loopback, .linkLocal, .privateNetwork, .cgnat, .unspecified, .broadcast, .multicast, .reserved,
    ]

    /// The addresses that may be dialled, or the rule that refuses the name.
    func check(_ addresses: [IPAddress]) -> Result<[IPAddress], DenyRule> {
        let classes = addresses.map { addressGuard.classify($0) }
        if let worst = Dialer.severity.first(where: { classes.contains($0) }), let rule = worst.denyRule {
            return .failure(rule)
        }
        return .success(addresses)
    }

    /// `initializer` sets up the upstream pipeline; it runs before the
    /// connection is established so no early byte is lost.
    func dial(
        name: String, port: UInt16, on loop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<DialResult> {
        resolver.resolve(name, on: loop)
            .flatMapError { _ in loop.makeFailedFuture(DialFailure(rule: .dnsFailure)) }
            .flatMap { addresses in
                switch self.check(addresses) {
                case .failure(let rule):
                    return loop.makeFailedFuture(DialFailure(rule: rule))
                case .success(let ok):
                    let deadline = NIODeadline.now() + self.connectTimeout
                    return self.connect(Array(ok.prefix(4)), index: 0, port: port, deadline: deadline,
                                        on: loop, initializer: initializer)
                }
            }
    }

    private func connect(
        _ addresses: [IPAddress], index: Int, port: UInt16, deadline: NIODeadline, on loop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<DialResult> {
        let remaining = deadline - NIODeadline.now()
        guard index < addresses.count && remaining > TimeAmount.zero else {
            return loop.makeFailedFuture(DialFailure(rule: .connectFailed))
        }
        let address = addresses[index]
        let next: @Sendable () -> EventLoopFuture<DialResult> = {
            self.connect(addresses, index: index + 1, port: port, deadline: deadline, on: loop, initializer: initializer)
        }
        guard let sockaddr = try? SocketAddress(ipAddress: address.description, port: Int(port)) else {
            return next()
        }
        if let filter = dialFilter, !filter(sockaddr) {
            return next()
        }
        let idle = idleTimeout
        let registry = self.registry
        return ClientBootstrap(group: loop)
            .connectTimeout(remaining)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.recvAllocator, value: EgressProxy.recvAllocator)
            .channelInitializer { channel in
                registry.add(channel)
                do {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: idle))
                    try channel.pipeline.syncOperations.addHandler(IdleCloseHandler())
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                return initializer(channel)
            }
            .connect(to: sockaddr)
            .flatMap { channel in
                // Connected to ourselves: the destination is one of the host's
                // own addresses. Nothing has been sent yet; hang up.
                if self.refuseSelf, let l = channel.localAddress?.ipAddress, l == channel.remoteAddress?.ipAddress {
                    channel.close(promise: nil)
                    return loop.makeFailedFuture(DialFailure(rule: .loopbackAddress))
                }
                return loop.makeSucceededFuture(DialResult(channel: channel, address: address))
            }
            .flatMapError { error in
                if let refused = error as? DialFailure { return loop.makeFailedFuture(refused) }
                return next()
            }
    }
}
