import ClawjailCore
import ClawjailNetwork
import ClawjailSystem
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Everything here happens between namespaces the tests create. The jail's only
// route leads to the peer netns, which has no uplink, so no packet can reach a real
// network; the addresses dialled (203.0.113.7, 198.51.100.1: documentation ranges)
// are dialled only from a thread checked to be inside the jail's netns.

/// Pure checks: argument validation happens before anything touches the kernel.
@Suite("network: validation")
struct NetworkValidationTests {
    @Test func rejectsBadLinkNames() throws {
        let here = try NetworkNamespace.current()
        defer { here.close() }
        for name in ["", "a/b", "..", "with space", "x:1", "sixteen-chars-xx"] {
            let error = #expect(throws: ClawjailError.self) { try Links.setUp(name, in: here) }
            #expect(error?.code == .network)
            #expect(error?.message.contains("invalid link name") == true)
        }
    }

    @Test func rejectsBadAddresses() throws {
        let here = try NetworkNamespace.current()
        defer { here.close() }
        for cidr in ["10.200.0.2", "10.200.0.2/33", "10.200.0.300/30", "eth0/30", "10.200.0.2/"] {
            let error = #expect(throws: ClawjailError.self) { try Links.addAddress(cidr, to: "eth0", in: here) }
            #expect(error?.message.contains(cidr) == true)
        }
        #expect(throws: ClawjailError.self) { try Links.addDefaultRoute(via: "10.200.0", dev: "eth0", in: here) }
    }

    @Test func rejectsAWiringWhoseAddressesDoNotShareASubnet() throws {
        let here = try NetworkNamespace.current()
        defer { here.close() }
        let cases = [
            VethWiring(jailAddress: "10.200.0.2", peerAddress: "10.200.0.5"),                   // other /30
            VethWiring(jailAddress: "10.200.0.2", peerAddress: "10.200.0.2"),                   // same host
            VethWiring(jailAddress: "10.200.0.2", peerAddress: "10.200.0.1", prefixLength: 31), // no room
            VethWiring(jailAddress: "fd00::2", peerAddress: "fd00::1", prefixLength: 64),       // IPv6 is off
            VethWiring(jailLink: "bad/name"),
        ]
        for wiring in cases {
            // `here` is the host's netns: these must fail before any link is made.
            let error = #expect(throws: ClawjailError.self) { try Links.wireVeth(wiring, jail: here, peer: here) }
            #expect(error?.code == .network)
        }
    }
}

@Suite("network: namespaces and links (root)",
       .enabled(if: NetTest.isRoot, "needs root: creates network namespaces"), .serialized)
struct NetworkNamespaceTests {
    @Test func createMakesANewEmptyNamespaceAndRunEntersIt() throws {
        let host = try NetworkNamespace.current()
        defer { host.close() }
        let ns = try NetworkNamespace.create()
        defer { ns.close() }
        #expect(ns.inode != host.inode)
        #expect(try NetworkNamespace.of(pid: getpid()).inode == host.inode)
        let me = try PidFD.open(getpid())
        defer { me.close() }
        #expect(try NetworkNamespace.of(me).inode == host.inode)

        let inside = try ns.run { NetTest.threadNetnsInode() }
        #expect(inside == ns.inode)
        #expect(try ns.run { NetTest.linkNames() } == ["lo"])
        // The caller's thread never moved.
        #expect(NetTest.threadNetnsInode() == host.inode)
    }

    @Test func runPropagatesErrorsAndRefusesAClosedNamespace() throws {
        let ns = try NetworkNamespace.create()
        let error = #expect(throws: ClawjailError.self) {
            try ns.run { () throws(ClawjailError) -> Int in throw ClawjailError(.network, "from inside") }
        }
        #expect(error?.message == "from inside")
        ns.close()
        ns.close()   // idempotent
        #expect(throws: ClawjailError.self) { try ns.run { 1 } }
    }

    @Test func linkOperationsOneByOne() throws {
        let jail = try NetworkNamespace.create()
        defer { jail.close() }
        let peer = try NetworkNamespace.create()
        defer { peer.close() }

        try Links.createVethPair(name: "eth0", in: jail, peerName: "cj0", peerIn: peer)
        #expect(try Links.linkExists("eth0", in: jail))
        #expect(try Links.linkExists("cj0", in: peer))
        #expect(try !Links.linkExists("cj0", in: jail))
        #expect(try !Links.linkExists("eth0", in: peer))

        // A second pair with the same names: EEXIST, named in the error.
        let dup = #expect(throws: ClawjailError.self) {
            try Links.createVethPair(name: "eth0", in: jail, peerName: "cj0", peerIn: peer)
        }
        #expect(dup?.message.contains("eth0") == true)
        #expect(dup?.errno == .EEXIST, "the errno survives as a value: \(String(describing: dup))")
        #expect(dup.map { "\($0)" }?.contains("EEXIST") == true)

        try Links.disableIPv6(on: "eth0", in: jail)
        try Links.addAddress("10.200.0.2/30", to: "eth0", in: jail)
        try Links.setUp("eth0", in: jail)
        try Links.addDefaultRoute(via: "10.200.0.1", dev: "eth0", in: jail)
        try Links.addLocalRouteForAll(in: peer)
        try Links.addLocalRouteForAll(in: peer)   // idempotent: one peer netns serves many jails

        let routes = try jail.run { NetTest.ipv4Routes() }
        #expect(Set(routes) == ["eth0 0.0.0.0/0 via 10.200.0.1", "eth0 10.200.0.0/30 via 0.0.0.0"])
        #expect(try jail.run { NetTest.sysctl("net/ipv6/conf/eth0/disable_ipv6") } == "1")

        // Errors name the link and the namespace.
        let missing = #expect(throws: ClawjailError.self) { try Links.addAddress("10.9.0.1/24", to: "nope0", in: jail) }
        #expect(missing?.message.contains("nope0") == true)
        #expect(missing?.message.contains("net:[\(jail.inode)]") == true)
        let twice = #expect(throws: ClawjailError.self) { try Links.addAddress("10.200.0.2/30", to: "eth0", in: jail) }
        #expect(twice?.message.contains("10.200.0.2/30") == true)
        #expect(twice?.errno == .EEXIST, "the errno survives as a value: \(String(describing: twice))")
        #expect(twice.map { "\($0)" }?.contains("EEXIST") == true)

        try Links.delete("eth0", in: jail)   // takes its peer with it
        #expect(try !Links.linkExists("eth0", in: jail))
        #expect(try !Links.linkExists("cj0", in: peer))
        let gone = #expect(throws: ClawjailError.self) { try Links.delete("eth0", in: jail) }
        #expect(gone?.message.contains("eth0") == true)
    }

    /// The whole egress wiring, checked from inside both namespaces with real sockets.
    @Test func wireEgressCapturesEverythingAndLeaksNothing() throws {
        let hostBefore = try NetTest.hostLinks()
        let jail = try NetworkNamespace.create()
        defer { jail.close() }
        let peer = try NetworkNamespace.create()
        defer { peer.close() }

        let start = ProcessInfoLite.monotonicNanoseconds
        try Links.wireEgress(jail: jail, peer: peer, jailAddress: "10.200.0.2", peerAddress: "10.200.0.1",
                             prefix: 30, jailLink: "eth0", peerLink: "cj0")
        let micros = (ProcessInfoLite.monotonicNanoseconds - start) / 1000
        print("wireEgress took \(micros) µs")

        // Neither end ever shows in the host's namespace.
        let hostDuring = try NetTest.hostLinks()
        #expect(!hostDuring.contains { $0.name == "cj0" })
        #expect(Set(hostDuring.filter(\.isVeth)).isSubset(of: Set(hostBefore.filter(\.isVeth))))
        #expect(hostDuring.first { $0.name == "eth0" } == hostBefore.first { $0.name == "eth0" })

        // Jail: eth0 with 10.200.0.2/30, default via the peer, nothing else.
        let jailRoutes = try jail.run { NetTest.ipv4Routes() }
        #expect(Set(jailRoutes) == ["eth0 0.0.0.0/0 via 10.200.0.1", "eth0 10.200.0.0/30 via 0.0.0.0"])
        #expect(try jail.run { NetTest.linkNames() }.sorted() == ["eth0", "lo"])

        // IPv6 is off on both veth ends, and neither has an IPv6 address.
        #expect(try jail.run { NetTest.sysctl("net/ipv6/conf/eth0/disable_ipv6") } == "1")
        #expect(try peer.run { NetTest.sysctl("net/ipv6/conf/cj0/disable_ipv6") } == "1")
        #expect(try !jail.run { NetTest.ipv6AddressedLinks() }.contains("eth0"))
        #expect(try !peer.run { NetTest.ipv6AddressedLinks() }.contains("cj0"))

        // A listener on 0.0.0.0:8443 in the peer netns gets a connection the jail
        // made to an arbitrary address, and sees the jail's address as the client.
        let listener = try peer.run { () throws(ClawjailError) -> Int32 in
            try NetTest.requireInside(peer)
            return try NetTest.listen(port: 8443)
        }
        defer { close(listener) }
        let client = try jail.run { () throws(ClawjailError) -> Result<Int32, Errno> in
            try NetTest.requireInside(jail)
            return try NetTest.connect("203.0.113.7", 8443)
        }
        let clientFD = try #require(try? client.get(), "connect to 203.0.113.7:8443 from the jail: \(client)")
        defer { close(clientFD) }
        let server = try NetTest.accept(listener)
        defer { close(server) }
        #expect(NetTest.peerAddress(server).hasPrefix("10.200.0.2:"))
        #expect(NetTest.localAddress(server) == "203.0.113.7:8443")
        #expect(NetTest.localAddress(clientFD).hasPrefix("10.200.0.2:"))
        #expect(NetTest.exchangeByte(clientFD, server))

        // Any other destination also ends at the peer: with nothing listening there it
        // is refused at once (an RST from the peer netns), not routed anywhere.
        let refusedStart = ProcessInfoLite.monotonicNanoseconds
        let refused = try jail.run { () throws(ClawjailError) -> Result<Int32, Errno> in
            try NetTest.requireInside(jail)
            return try NetTest.connect("198.51.100.1", 22, timeoutMs: 3000)
        }
        let refusedMillis = (ProcessInfoLite.monotonicNanoseconds - refusedStart) / 1_000_000
        if case .success(let fd) = refused { close(fd) }
        #expect(refused == .failure(Errno(rawValue: ECONNREFUSED)))
        #expect(refusedMillis < 1000)
    }

    /// Ingress only (mode = "none" with [[ingress]]): the veth carries no egress
    /// route, and a connection forwarded from the peer arrives from the peer's
    /// address, never from loopback.
    @Test func ingressOnlyWiringHasNoEgress() throws {
        let jail = try NetworkNamespace.create()
        defer { jail.close() }
        let peer = try NetworkNamespace.create()
        defer { peer.close() }
        try Links.wireVeth(VethWiring(jailDefaultRoute: false, peerCapturesAll: false), jail: jail, peer: peer)
        #expect(try jail.run { NetTest.ipv4Routes() } == ["eth0 10.200.0.0/30 via 0.0.0.0"])

        let offBox = try jail.run { () throws(ClawjailError) -> Result<Int32, Errno> in
            try NetTest.requireInside(jail)
            return try NetTest.connect("203.0.113.7", 443, timeoutMs: 1000)
        }
        if case .success(let fd) = offBox { close(fd) }
        #expect(offBox == .failure(Errno(rawValue: ENETUNREACH)))

        let gateway = try jail.run { () throws(ClawjailError) -> Int32 in try NetTest.listen(port: 18789) }
        defer { close(gateway) }
        let forwarded = try peer.run { () throws(ClawjailError) -> Result<Int32, Errno> in
            try NetTest.requireInside(peer)
            return try NetTest.connect("10.200.0.2", 18789)
        }
        let forwardedFD = try #require(try? forwarded.get(), "connect from the peer to the jail: \(forwarded)")
        defer { close(forwardedFD) }
        let accepted = try NetTest.accept(gateway)
        defer { close(accepted) }
        #expect(NetTest.peerAddress(accepted).hasPrefix("10.200.0.1:"))
    }

    /// Closing the last fd of a namespace removes it, and its veth end with it: the
    /// pair disappears from the other namespace without anyone deleting it.
    @Test func closingTheJailNamespaceRemovesTheVeth() throws {
        let jail = try NetworkNamespace.create()
        let peer = try NetworkNamespace.create()
        defer { peer.close() }
        do {
            try Links.wireEgress(jail: jail, peer: peer)
        } catch {
            jail.close()
            throw error
        }
        #expect(try Links.linkExists("cj0", in: peer))

        jail.close()   // nothing else holds the jail's netns: no process, no socket
        // The kernel tears a dead netns down asynchronously (cleanup_net).
        let removed = try NetTest.eventually(seconds: 10) { try !Links.linkExists("cj0", in: peer) }
        #expect(removed, "cj0 is still in the peer netns 10 s after the jail's netns was released")

        let host = try NetTest.hostLinks()
        #expect(!host.contains { $0.name == "cj0" })
        #expect(!host.contains { $0.name == "eth0" && $0.isVeth })
    }

    /// A failed wiring leaves no half-made pair behind.
    @Test func aFailedWiringRemovesThePair() throws {
        let jail = try NetworkNamespace.create()
        defer { jail.close() }
        let peer = try NetworkNamespace.create()
        defer { peer.close() }
        // The jail already has a default route (through another pair), so the last
        // step of the jail's side fails with EEXIST after the pair exists.
        try Links.createVethPair(name: "other", in: jail, peerName: "blocker", peerIn: peer)
        try Links.addAddress("10.9.0.2/30", to: "other", in: jail)
        try Links.setUp("other", in: jail)
        try Links.addDefaultRoute(via: "10.9.0.1", dev: "other", in: jail)

        let error = #expect(throws: ClawjailError.self) { try Links.wireEgress(jail: jail, peer: peer) }
        #expect(error?.code == .network)
        #expect(error?.message.contains("default route via 10.200.0.1") == true)
        #expect(error?.errno == .EEXIST, "the errno survives as a value: \(String(describing: error))")
        #expect(error.map { "\($0)" }?.contains("EEXIST") == true)
        #expect(try !Links.linkExists("eth0", in: jail))
        #expect(try !Links.linkExists("cj0", in: peer))
        #expect(try Links.linkExists("other", in: jail))
    }
}
