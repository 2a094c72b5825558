import ClawjailCore
import ClawjailEgress
import ClawjailNetwork
import ClawjailSystem
import NIOCore
import NIOPosix

/// The jail's network beyond its empty namespace: for `mode = "egress"` and for
/// `[[ingress]]`. Runs while the child waits on its sync pipe:
///
/// 1. a peer network namespace of our own (held by an fd, never bind-mounted, so it
///    cannot outlive us), and a veth pair between it and the jail;
/// 2. egress: the proxy's, the transparent listeners' and the DNS responder's sockets,
///    opened on a thread inside the peer namespace, adopted by the SwiftNIO proxy whose
///    event-loop threads stay in the host namespace and dial from there;
/// 3. ingress: a Unix socket on the host per `[[ingress]]`, each connection forwarded
///    to the agent's port inside the jail from the peer's address (never loopback).
///
/// The peer namespace holds nothing but those listening sockets and does no
/// forwarding, so no host service is reachable from the jail.
final class NetworkHook: ParentHook, @unchecked Sendable {
    let spec: JailSpec
    let onEgress: @Sendable (EgressDecision) -> Void
    let onIngress: @Sendable (IngressEvent) -> Void
    /// Runs last in teardown, once the proxy can report nothing more.
    let onTeardown: () -> Void
    private var peer: NetworkNamespace?
    private var group: MultiThreadedEventLoopGroup?
    private var proxy: EgressProxy?
    private var forwarders: [IngressForwarder] = []
    private var socketPaths: [String] = []
    private var jailInitPid: pid_t = 0
    /// A VM agent's tap (VMPlan.Network), opened before the jail: moved into the jail's
    /// netns and tied to the veth's jail end here.
    var vmTap: VMTap?

    static let dnsPort: UInt16 = 53

    init(spec: JailSpec, onEgress: @escaping @Sendable (EgressDecision) -> Void,
         onIngress: @escaping @Sendable (IngressEvent) -> Void, onTeardown: @escaping () -> Void = {}) {
        self.spec = spec
        self.onEgress = onEgress
        self.onIngress = onIngress
        self.onTeardown = onTeardown
    }

    /// Whether this jail needs anything beyond `lo`.
    static func isNeeded(for spec: JailSpec) -> Bool {
        spec.network.mode == .egress || !spec.network.ingress.isEmpty
    }

    func childCreated(pid: pid_t) throws(ClawjailError) {
        jailInitPid = pid
        let jailNS = try NetworkNamespace.of(pid: pid)
        defer { jailNS.close() }
        let peerNS = try NetworkNamespace.create()
        peer = peerNS
        let egress = spec.network.mode == .egress
        try Links.wireVeth(VethWiring(jailAddress: NetworkLayout.jailAddress, peerAddress: NetworkLayout.peerAddress,
                                      prefixLength: Int(NetworkLayout.prefixLength),
                                      jailDefaultRoute: egress, peerCapturesAll: egress),
                           jail: jailNS, peer: peerNS)
        if let tap = vmTap {
            try tap.moveAndTie(to: jailNS, veth: VethWiring().jailLink)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        if egress { try startEgress(peerNS, group: group) }
        for ingress in spec.network.ingress { try startIngress(ingress, peerNS: peerNS, group: group) }
    }

    private func startEgress(_ peerNS: NetworkNamespace, group: MultiThreadedEventLoopGroup) throws(ClawjailError) {
        // Sockets stay in the namespace that made them: make them on a thread inside it.
        let peerAddress = NetworkLayout.peerAddress
        let fds: [Int32] = try peerNS.run { () throws(ClawjailError) -> [Int32] in
            var made: [FD] = []
            do {
                made.append(try Sockets.tcpListener(address: "0.0.0.0", port: NetworkLayout.proxyPort))
                made.append(try Sockets.tcpListener(address: "0.0.0.0", port: 80))
                made.append(try Sockets.tcpListener(address: "0.0.0.0", port: 443))
                // The responder answers from the address the jail asked, so it binds that
                // one; queries to any other address fail fast with port unreachable.
                made.append(try Sockets.udpSocket(address: peerAddress, port: NetworkHook.dnsPort))
                return made.map(\.rawValue)
            } catch {
                for f in made { f.close() }
                throw ClawjailError(.network, "cannot open the egress listeners in the peer namespace", cause: error)
            }
        }
        let config = try egressConfig()
        let proxy = EgressProxy(config: config, agent: spec.agent ?? spec.name, audit: onEgress, group: group)
        self.proxy = proxy
        let result = blockOn {
            try await proxy.start(proxyListener: .socket(fds[0]), transparentHTTP: .socket(fds[1]),
                                  transparentTLS: .socket(fds[2]), dns: .socket(fds[3]))
        }
        if case .failure(let e) = result {
            throw ClawjailError(.network, "cannot start the egress proxy", cause: e)
        }
    }

    func egressConfig() throws(ClawjailError) -> EgressConfig {
        var resolvers: [SocketAddress] = []
        for r in spec.network.resolvers {
            if let a = EgressConfig.parseResolver(r) { resolvers.append(a) }
        }
        if resolvers.isEmpty {
            let text = (try? FileSystem.readText("/etc/resolv.conf", limit: 65536)) ?? ""
            resolvers = EgressConfig.resolvers(fromResolvConf: text)
        }
        guard !resolvers.isEmpty else {
            throw ClawjailError(.network, "no DNS server for the egress proxy: /etc/resolv.conf names none",
                                hint: "set [network] resolvers = [\"IP\"] in the config")
        }
        var config = EgressConfig(allowlist: Allowlist(rules: spec.network.allow), resolvers: resolvers,
                                  addressGuard: .standard(alsoRefusing: HostAddresses.current()))
        config.allowNonTLSConnect = spec.network.allowNonTLS443
        return config
    }

    private func startIngress(_ i: AgentConfig.Ingress, peerNS: NetworkNamespace,
                              group: MultiThreadedEventLoopGroup) throws(ClawjailError) {
        let listener: FD
        do {
            try FileSystem.mkdirs(Paths.dirname(i.socket), mode: 0o755)
            listener = try Sockets.unixListener(path: i.socket, mode: mode_t(i.socketMode), gid: i.socketGroup)
        } catch {
            throw ClawjailError(.network, "cannot create the ingress socket \(i.socket)",
                                hint: error == .EEXIST ? "something that is not a socket is in the way; remove it or choose another path" : nil,
                                cause: error)
        }
        socketPaths.append(i.socket)
        let port = i.port
        let jailAddress = NetworkLayout.jailAddress
        let name = spec.name
        let initPid = jailInitPid
        let forwarder = IngressForwarder(agent: spec.agent ?? spec.name, port: port, group: group, connectToJail: {
            try peerNS.run { () throws(ClawjailError) -> Int32 in
                do throws(Errno) {
                    return try Sockets.tcpConnect(address: jailAddress, port: port, timeoutMs: 3000).rawValue
                } catch {
                    if error == .ECONNREFUSED, ListenerCheck.listensOnLoopbackOnly(initPid: initPid, port: port) {
                        Log.warning("\(name): the agent's server listens on 127.0.0.1:\(port) only; ingress connects from \(NetworkLayout.peerAddress). Make it listen on 0.0.0.0 (safe inside the jail) or \(jailAddress).")
                    }
                    throw ClawjailError(.network, "jail port \(port) refused the connection", cause: error)
                }
            }
        }, audit: onIngress)
        forwarders.append(forwarder)
        let fd = listener.rawValue
        if case .failure(let e) = blockOn({ try await forwarder.start(listeningSocket: fd) }) {
            throw ClawjailError(.network, "cannot serve the ingress socket \(i.socket)", cause: e)
        }
    }

    func teardown() {
        let proxy = self.proxy, forwarders = self.forwarders
        _ = blockOn {
            for f in forwarders { await f.shutdown() }
            await proxy?.shutdown()
        }
        for p in socketPaths { try? FileSystem.unlink(p) }
        try? group?.syncShutdownGracefully()
        // Closing the last fd of the peer namespace removes it, and the veth with it.
        peer?.close()
        self.proxy = nil
        self.forwarders = []
        self.group = nil
        self.peer = nil
        onTeardown()
    }
}

