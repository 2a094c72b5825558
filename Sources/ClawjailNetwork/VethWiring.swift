import CNetlink
import ClawjailCore
import ClawjailSystem

/// How a jail's veth is wired: its two ends, their addresses, and what each side
/// gets besides. The defaults are the egress layout of docs/ARCHITECTURE.md.
public struct VethWiring: Sendable, Hashable {
    /// The end inside the jail.
    public var jailLink: String
    /// The end in the peer netns (the proxy's); unique per jail when jails share it.
    public var peerLink: String
    public var jailAddress: String
    public var peerAddress: String
    public var prefixLength: Int
    /// A default route in the jail via the peer. Off for ingress only (mode = "none"),
    /// where the veth must carry no egress routes.
    public var jailDefaultRoute: Bool
    /// `lo` up and a local route for all of IPv4 in the peer netns, so connections to
    /// any address land on the peer's listeners (transparent capture).
    public var peerCapturesAll: Bool

    public init(jailLink: String = "eth0", peerLink: String = "cj0",
                jailAddress: String = "10.200.0.2", peerAddress: String = "10.200.0.1", prefixLength: Int = 30,
                jailDefaultRoute: Bool = true, peerCapturesAll: Bool = true) {
        self.jailLink = jailLink
        self.peerLink = peerLink
        self.jailAddress = jailAddress
        self.peerAddress = peerAddress
        self.prefixLength = prefixLength
        self.jailDefaultRoute = jailDefaultRoute
        self.peerCapturesAll = peerCapturesAll
    }
}

extension Links {
    /// The egress wiring (`clawjail exec --network egress`): a veth pair, addresses on
    /// both ends, both up, the jail's default route via the peer, `lo` up and a local
    /// route for everything in the peer netns, and IPv6 off on both veth ends.
    public static func wireEgress(jail: NetworkNamespace, peer: NetworkNamespace,
                                  jailAddress: String = "10.200.0.2", peerAddress: String = "10.200.0.1",
                                  prefix: Int = 30, jailLink: String = "eth0", peerLink: String = "cj0") throws(ClawjailError) {
        try wireVeth(VethWiring(jailLink: jailLink, peerLink: peerLink, jailAddress: jailAddress,
                                peerAddress: peerAddress, prefixLength: prefix),
                     jail: jail, peer: peer)
    }

    /// Wires a jail's veth with the fewest kernel round trips and a single thread.
    ///
    /// One dedicated thread enters the jail's netns and, on one rtnetlink socket there,
    /// creates the pair (IFLA_NET_NS_FD on both ends: each end is born in its own
    /// namespace, so it never shows in the supervisor's, and where the request is sent
    /// from does not matter), turns IPv6 off on its end (disable_ipv6, before the link
    /// is up, so it never gets an IPv6 address) and sends one batch: address, up,
    /// default route. Then it enters the peer netns and does the same there: IPv6 off,
    /// one batch with address, up, `lo` up and the local route.
    ///
    /// Sequential on purpose: the kernel takes the RTNL lock for nearly all of this,
    /// so a second thread would only add a thread start and lock contention (the
    /// disable_ipv6 sysctl spins on rtnl_trylock); on 2 shared cores it measured slower.
    ///
    /// On failure the pair is deleted again (best effort), and the error names the
    /// step that failed.
    public static func wireVeth(_ wiring: VethWiring, jail: NetworkNamespace, peer: NetworkNamespace) throws(ClawjailError) {
        let plan = try WiringPlan(wiring)
        try jail.checkOpen()
        try peer.checkOpen()
        let jailNS = NamespaceRef(jail)
        let peerNS = NamespaceRef(peer)
        try DedicatedThread.run { () throws(ClawjailError) in
            try jailNS.enter()
            let jailSocket = try RouteSocket(in: jailNS.name)
            try jailSocket.perform([
                RouteMessages.newVeth(name: wiring.jailLink, nsFD: jailNS.fd, peerName: wiring.peerLink, peerNSFD: peerNS.fd,
                                      what: "creating veth pair \(wiring.jailLink) (\(jailNS.name)) <-> \(wiring.peerLink) (\(peerNS.name))"),
            ])
            do throws(ClawjailError) {
                try plan.configureJailSide(socket: jailSocket, context: jailNS.name)
                try peerNS.enter()
                try plan.configurePeerSide(socket: RouteSocket(in: peerNS.name), context: peerNS.name)
            } catch {
                // Deleting one end of a veth deletes both; the jail's socket still acts
                // in the jail's netns, whichever netns this thread is in by now.
                try? jailSocket.perform([RouteMessages.deleteLink(name: wiring.jailLink, what: "deleting \(wiring.jailLink)")])
                throw error
            }
        }
    }
}

/// What a namespace thread needs of a `NetworkNamespace` (Sendable, no ownership).
struct NamespaceRef: Sendable {
    let fd: Int32
    let name: String

    init(_ ns: NetworkNamespace) {
        fd = ns.fd.rawValue
        name = ns.description
    }

    /// setns for the calling thread: only ever on a dedicated thread.
    func enter() throws(ClawjailError) {
        if cj_nl_setns_net(fd) != 0 {
            throw ClawjailError(.network, "entering \(name) (setns)", cause: Errno.current)
        }
    }
}

/// A validated `VethWiring`, with its addresses parsed.
struct WiringPlan: Sendable {
    let wiring: VethWiring
    let jailAddress: IPAddress
    let peerAddress: IPAddress

    init(_ wiring: VethWiring) throws(ClawjailError) {
        try Links.validateLinkName(wiring.jailLink)
        try Links.validateLinkName(wiring.peerLink)
        let jailAddress = try Links.parseAddress(wiring.jailAddress)
        let peerAddress = try Links.parseAddress(wiring.peerAddress)
        guard jailAddress.isV4, peerAddress.isV4 else {
            throw ClawjailError(.network, "veth addresses must be IPv4 (\(wiring.jailAddress), \(wiring.peerAddress))",
                                hint: "IPv6 is turned off on the veth")
        }
        guard let subnet = IPPrefix(jailAddress, length: wiring.prefixLength), wiring.prefixLength <= 30,
              subnet.contains(peerAddress), jailAddress != peerAddress else {
            throw ClawjailError(.network,
                                "\(wiring.jailAddress) and \(wiring.peerAddress) are not two hosts of one /\(wiring.prefixLength)",
                                hint: "use a /30 (or shorter) such as 10.200.0.2 and 10.200.0.1 with prefix 30")
        }
        self.wiring = wiring
        self.jailAddress = jailAddress
        self.peerAddress = peerAddress
    }

    /// On a thread inside the jail's netns; `socket` was opened there.
    func configureJailSide(socket: RouteSocket, context: String) throws(ClawjailError) {
        let name = wiring.jailLink
        try Links.disableIPv6Here(name, context: context)
        let index = try Links.interfaceIndex(name, in: context)
        var batch = [
            try RouteMessages.addAddress(jailAddress, prefixLength: wiring.prefixLength, index: index,
                                         what: "adding \(wiring.jailAddress)/\(wiring.prefixLength) to \(name)"),
            try RouteMessages.setUp(index: index, what: "bringing up \(name)"),
        ]
        if wiring.jailDefaultRoute {
            batch.append(try RouteMessages.addDefaultRoute(via: peerAddress, index: index,
                                                           what: "adding default route via \(wiring.peerAddress) dev \(name)"))
        }
        try socket.perform(batch)
    }

    /// On a thread inside the peer's netns; `socket` was opened there.
    func configurePeerSide(socket: RouteSocket, context: String) throws(ClawjailError) {
        let name = wiring.peerLink
        try Links.disableIPv6Here(name, context: context)
        let index = try Links.interfaceIndex(name, in: context)
        var batch = [
            try RouteMessages.addAddress(peerAddress, prefixLength: wiring.prefixLength, index: index,
                                         what: "adding \(wiring.peerAddress)/\(wiring.prefixLength) to \(name)"),
            try RouteMessages.setUp(index: index, what: "bringing up \(name)"),
        ]
        if wiring.peerCapturesAll {
            batch.append(try RouteMessages.setUp(index: RouteMessages.loopbackIndex, what: "bringing up lo"))
            batch.append(try RouteMessages.addLocalRouteForAll(what: "adding local route 0.0.0.0/0 dev lo table local"))
        }
        try socket.perform(batch)
    }
}
