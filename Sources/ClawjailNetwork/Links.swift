import CNetlink
import ClawjailCore
import ClawjailSystem

/// Links, addresses and routes, configured over rtnetlink (never by running `ip`).
///
/// Every call that acts inside a namespace does so from a thread in that namespace
/// (`NetworkNamespace.run`), because an rtnetlink socket acts on the netns it was
/// created in. Each call is one thread and one netlink round trip; `wireVeth`
/// batches a whole wiring.
public enum Links {
    /// Creates a veth pair with `name` in `ns` and `peerName` in `peerNS`, both down.
    /// One RTM_NEWLINK from the caller's netns carries a target netns fd for each
    /// end, so the pair never appears in the caller's (host) namespace, not even
    /// briefly.
    public static func createVethPair(name: String, in ns: NetworkNamespace,
                                      peerName: String, peerIn peerNS: NetworkNamespace) throws(ClawjailError) {
        try validateLinkName(name)
        try validateLinkName(peerName)
        try ns.checkOpen()
        try peerNS.checkOpen()
        let what = "creating veth pair \(name) (\(ns)) <-> \(peerName) (\(peerNS))"
        let request = try RouteMessages.newVeth(name: name, nsFD: ns.fd.rawValue,
                                                peerName: peerName, peerNSFD: peerNS.fd.rawValue, what: what)
        // Sent from the calling thread without changing namespace: a plain socket is
        // fine on any thread (STYLE rule 6 is about setns).
        try RouteSocket(in: "the supervisor's netns").perform([request])
    }

    public static func setUp(_ name: String, in ns: NetworkNamespace) throws(ClawjailError) {
        try validateLinkName(name)
        let context = ns.description
        try ns.run { () throws(ClawjailError) in
            let index = try interfaceIndex(name, in: context)
            try RouteSocket(in: context).perform([RouteMessages.setUp(index: index, what: "bringing up \(name)")])
        }
    }

    /// Adds `cidr` ("10.200.0.2/30") to the link `name`.
    public static func addAddress(_ cidr: String, to name: String, in ns: NetworkNamespace) throws(ClawjailError) {
        try validateLinkName(name)
        let (address, length) = try parseCIDR(cidr)
        let context = ns.description
        try ns.run { () throws(ClawjailError) in
            let index = try interfaceIndex(name, in: context)
            try RouteSocket(in: context).perform([
                RouteMessages.addAddress(address, prefixLength: length, index: index, what: "adding \(cidr) to \(name)"),
            ])
        }
    }

    /// Default route via `gateway` out of `dev` (main table).
    public static func addDefaultRoute(via gateway: String, dev: String, in ns: NetworkNamespace) throws(ClawjailError) {
        try validateLinkName(dev)
        let gw = try parseAddress(gateway)
        let context = ns.description
        try ns.run { () throws(ClawjailError) in
            let index = try interfaceIndex(dev, in: context)
            try RouteSocket(in: context).perform([
                RouteMessages.addDefaultRoute(via: gw, index: index, what: "adding default route via \(gateway) dev \(dev)"),
            ])
        }
    }

    /// `ip route replace local 0.0.0.0/0 dev lo table local`: every IPv4 address is
    /// local in that netns, so a listener on 0.0.0.0:443 accepts connections to any
    /// destination (transparent capture without iptables). Brings `lo` up first, as
    /// the kernel wants the route's device up.
    ///
    /// Replies still reach on-link peers only while the local and main tables are
    /// merged, that is while the netns has no policy routing rules of its own: then
    /// the longest prefix wins across both tables, and the peer's /30 beats 0/0.
    /// Do not add `ip rule`s to a netns that has this route.
    public static func addLocalRouteForAll(in ns: NetworkNamespace) throws(ClawjailError) {
        let context = ns.description
        try ns.run { () throws(ClawjailError) in
            try RouteSocket(in: context).perform([
                RouteMessages.setUp(index: RouteMessages.loopbackIndex, what: "bringing up lo"),
                RouteMessages.addLocalRouteForAll(what: "adding local route 0.0.0.0/0 dev lo table local"),
            ])
        }
    }

    /// Turns IPv6 off on a link (disable_ipv6=1: no link-local address, no neighbour
    /// discovery, no MLD). Done before the link comes up, it never gets an IPv6
    /// address at all. A kernel without IPv6 counts as success.
    public static func disableIPv6(on name: String, in ns: NetworkNamespace) throws(ClawjailError) {
        try validateLinkName(name)
        let context = ns.description
        try ns.run { () throws(ClawjailError) in
            _ = try interfaceIndex(name, in: context)
            try disableIPv6Here(name, context: context)
        }
    }

    /// Whether `ns` has a link called `name`. Throws only when it cannot tell.
    public static func linkExists(_ name: String, in ns: NetworkNamespace) throws(ClawjailError) -> Bool {
        try validateLinkName(name)
        return try ns.run { () -> Bool in (try? Sockets.interfaceIndex(of: name)) != nil }
    }

    /// Deletes the link `name` (for a veth, both ends).
    public static func delete(_ name: String, in ns: NetworkNamespace) throws(ClawjailError) {
        try validateLinkName(name)
        let context = ns.description
        try ns.run { () throws(ClawjailError) in
            try RouteSocket(in: context).perform([RouteMessages.deleteLink(name: name, what: "deleting link \(name)")])
        }
    }

    // MARK: - Helpers (they run on the thread inside the namespace)

    /// The link's index in the calling thread's netns.
    static func interfaceIndex(_ name: String, in context: String) throws(ClawjailError) -> Int32 {
        do {
            return Int32(bitPattern: try Sockets.interfaceIndex(of: name))
        } catch {
            throw ClawjailError(.network, "no link \(name) in \(context)", cause: error)
        }
    }

    static func disableIPv6Here(_ name: String, context: String) throws(ClawjailError) {
        // /proc/sys/net is the calling thread's netns.
        let path = "/proc/sys/net/ipv6/conf/\(name)/disable_ipv6"
        do {
            try FileSystem.writeControl(path, "1")
        } catch where error == .ENOENT && !FileSystem.exists("/proc/sys/net/ipv6") {
            return   // booted with ipv6.disable=1: nothing to turn off
        } catch {
            throw ClawjailError(.network, "turning IPv6 off on \(name) in \(context) (\(path))", cause: error)
        }
    }

    /// The kernel's rules for interface names (dev_valid_name); checked here, so a
    /// name is never a path component that escapes /proc/sys/net/ipv6/conf.
    static func validateLinkName(_ name: String) throws(ClawjailError) {
        let bytes = Array(name.utf8)
        let valid = !bytes.isEmpty && bytes.count < 16 && name != "." && name != ".."
            && !bytes.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 == 0x7f }
        if !valid {
            throw ClawjailError(.network, "invalid link name '\(name)'",
                                hint: "1 to 15 bytes, no '/', ':' or whitespace")
        }
    }

    static func parseAddress(_ text: String) throws(ClawjailError) -> IPAddress {
        guard let address = IPAddress(text) else {
            throw ClawjailError(.network, "invalid IP address '\(text)'")
        }
        return address
    }

    /// "10.200.0.2/30": the address as written (host bits kept) and the prefix length.
    static func parseCIDR(_ text: String) throws(ClawjailError) -> (IPAddress, Int) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let length = Int(parts[1]),
              length >= 0, length <= (address.isV4 ? 32 : 128) else {
            throw ClawjailError(.network, "invalid address '\(text)'", hint: "write it as ADDRESS/PREFIX, e.g. 10.200.0.2/30")
        }
        return (address, length)
    }
}

/// A micro-VM's NIC before its jail exists: a tap opened in a scratch network
/// namespace of our own (so it never appears in the host's), whose fd the VMM inherits
/// as fd 3; `moveAndTie` then moves it into the jail's netns and ties it to the veth.
public final class VMTap: @unchecked Sendable {
    public let name: String
    public let fd: FD
    private let scratch: NetworkNamespace

    public init(name: String) throws(ClawjailError) {
        try Links.validateLinkName(name)
        let scratch = try NetworkNamespace.create()
        let opened: Int32 = try scratch.run { () throws(ClawjailError) -> Int32 in
            let r = cj_tap_open(name)
            if r < 0 {
                throw ClawjailError(.network, "opening tap \(name) (/dev/net/tun)", hint: "the kernel needs CONFIG_TUN",
                                    cause: Errno(rawValue: -r))
            }
            return r
        }
        self.name = name
        self.fd = FD(opened)
        self.scratch = scratch
    }

    /// Into `jail`, up, and tied to the jail's veth `veth` both ways with tc ingress
    /// redirects: the guest then holds the address the veth's jail end has, and the
    /// proxy's side is unchanged.
    public func moveAndTie(to jail: NetworkNamespace, veth: String) throws(ClawjailError) {
        try Links.validateLinkName(veth)
        let name = self.name
        let jailFD = jail.fd.rawValue
        let scratchContext = scratch.description
        try scratch.run { () throws(ClawjailError) in
            let index = try Links.interfaceIndex(name, in: scratchContext)
            try Links.withTCSocket(scratchContext) { (sock) throws(ClawjailError) in
                let err = cj_nl_move_link(sock, index, jailFD)
                if err < 0 { throw ClawjailError(.network, "moving tap \(name) into the jail's netns", cause: libnlText(err)) }
            }
        }
        let context = jail.description
        try jail.run { () throws(ClawjailError) in
            let tapIndex = try Links.interfaceIndex(name, in: context)
            let vethIndex = try Links.interfaceIndex(veth, in: context)
            try RouteSocket(in: context).perform([RouteMessages.setUp(index: tapIndex, what: "bringing up \(name)")])
            try Links.withTCSocket(context) { (sock) throws(ClawjailError) in
                for (from, to, what) in [(vethIndex, tapIndex, "\(veth) to \(name)"), (tapIndex, vethIndex, "\(name) to \(veth)")] {
                    let err = cj_tc_redirect_ingress(sock, from, to)
                    if err < 0 {
                        throw ClawjailError(.network, "redirecting \(what) (tc ingress qdisc, u32, mirred) in \(context)",
                                            hint: "the kernel needs CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_U32 and CONFIG_NET_ACT_MIRRED",
                                            cause: libnlText(err))
                    }
                }
            }
        }
    }

    /// Once the jail holds its copy (or on failure): ours, and the scratch namespace.
    public func close() {
        fd.close()
        scratch.close()
    }
}

extension Links {
    /// A libnl socket for the tc and link-move requests, in the calling thread's netns.
    static func withTCSocket(_ context: String, _ body: (OpaquePointer) throws(ClawjailError) -> Void) throws(ClawjailError) {
        guard let sock = nl_socket_alloc() else {
            throw ClawjailError(.network, "allocating a netlink socket in \(context)", cause: "out of memory")
        }
        defer { nl_socket_free(sock) }
        let connected = nl_connect(sock, NETLINK_ROUTE)
        if connected < 0 {
            throw ClawjailError(.network, "opening a netlink socket in \(context)", cause: libnlText(connected))
        }
        try body(sock)
    }
}
