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
