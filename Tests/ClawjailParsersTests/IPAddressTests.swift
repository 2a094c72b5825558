import Testing
@testable import ClawjailParsers

@Suite("IPAddress")
struct IPAddressTests {
    static let localhost4 = IPAddress.v4(0x7F00_0001)
    static let metadata4 = IPAddress.v4(0xA9FE_A9FE)

    @Test("strict parsing accepts canonical forms", arguments: [
        ("0.0.0.0", IPAddress.v4(0)),
        ("127.0.0.1", .v4(0x7F00_0001)),
        ("255.255.255.255", .v4(0xFFFF_FFFF)),
        ("::", .v6(0)),
        ("::1", .v6(1)),
        ("2001:db8::1", .v6(0x2001_0DB8_0000_0000_0000_0000_0000_0001)),
        ("::ffff:127.0.0.1", .v6(0xFFFF_7F00_0001)),
        ("FE80::A:b", .v6(0xFE80_0000_0000_0000_0000_0000_000A_000B)),
        ("1:2:3:4:5:6:7:8", .v6(0x0001_0002_0003_0004_0005_0006_0007_0008)),
        ("1:2:3:4:5:6:1.2.3.4", .v6(0x0001_0002_0003_0004_0005_0006_0102_0304)),
    ])
    func strictAccepts(text: String, expected: IPAddress) {
        #expect(IPAddress(text) == expected)
    }

    @Test("strict parsing refuses other encodings", arguments: [
        "", "127.1", "0177.0.0.1", "0x7f.0.0.1", "2130706433", "127.0.0.1.", "01.2.3.4", "256.0.0.1",
        "1.2.3.4.5", " 1.2.3.4", "[::1]", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::",
        ":::", "1.2.3", "example.com", "::ffff:0x7f.1",
    ])
    func strictRefuses(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test("description is canonical (RFC 5952)", arguments: [
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
    ])
    func canonicalText(input: String, expected: String) throws {
        let a = try #require(IPAddress(input))
        #expect(a.description == expected)
        #expect(IPAddress(a.description) == a)
    }

    @Test("every client-library encoding of an address is detected", arguments: [
        ("2130706433", localhost4),
        ("017700000001", localhost4),
        ("0x7f000001", localhost4),
        ("0x7F.0.0.1", localhost4),
        ("0177.0.0.1", localhost4),
        ("0177.0.0.01", localhost4),
        ("127.1", localhost4),
        ("127.0.1", localhost4),
        ("0x7f.1", localhost4),
        ("0x7f.0x0.0x0.0x1", localhost4),
        ("127.0.0.1.", localhost4),
        ("127%2E0%2E0%2E1", localhost4),
        ("127%252E0%252E0%252E1", localhost4),
        ("１２７．０．０．１", localhost4),
        ("127。0。0。1", localhost4),
        ("169.254.43518", metadata4),
        ("2852039166", metadata4),
        ("0xa9fea9fe", metadata4),
        ("0251.0376.0251.0376", metadata4),
        ("0xA9.0xFE.0xA9.0xFE", metadata4),
        ("[::1]", IPAddress.v6(1)),
        ("[0:0:0:0:0:0:0:1]", IPAddress.v6(1)),
        ("::ffff:127.0.0.1", IPAddress.v6(0xFFFF_7F00_0001)),
        ("[::ffff:7f00:1]", IPAddress.v6(0xFFFF_7F00_0001)),
        ("::ffff:0x7f.1", IPAddress.v6(0xFFFF_7F00_0001)),
        ("::127.0.0.1", IPAddress.v6(0x7F00_0001)),
        ("fe80::1%eth0", IPAddress.v6(0xFE80_0000_0000_0000_0000_0000_0000_0001)),
        ("[fe80::1%25eth0]", IPAddress.v6(0xFE80_0000_0000_0000_0000_0000_0000_0001)),
        ("0000:0000::00001", IPAddress.v6(1)),
    ])
    func lenientDetects(text: String, expected: IPAddress) {
        #expect(IPAddress.parseAnyEncoding(text) == expected, "\(text)")
        #expect(IPAddress.looksLikeIPLiteral(text), "\(text)")
    }

    @Test("names are not mistaken for addresses", arguments: [
        "example.com", "api.anthropic.com", "0x7f.example.com", "1.2.3.example", "a", "xn--bcher-kva.example",
        "deadbeef.com", "cafe.babe", "127.0.0.1.nip.io",
    ])
    func namesAreNotLiterals(text: String) {
        #expect(IPAddress.parseAnyEncoding(text) == nil)
        #expect(!IPAddress.looksLikeIPLiteral(text))
    }

    @Test("IP-shaped strings that do not parse are still literals", arguments: [
        "1.2.3.4.5", "999.999.999.999", "4294967296", "example.123", "foo.0x1f", "1:2:3", "[garbage]",
    ])
    func shapedLikeLiterals(text: String) {
        #expect(IPAddress.looksLikeIPLiteral(text))
    }

    @Test("classification", arguments: [
        ("8.8.8.8", AddressClass.public),
        ("93.184.216.34", .public),
        ("1.1.1.1", .public),
        ("0.0.0.0", .unspecified),
        ("0.1.2.3", .reserved),
        ("127.0.0.1", .loopback),
        ("127.255.255.254", .loopback),
        ("10.0.0.1", .privateNetwork),
        ("172.16.0.1", .privateNetwork),
        ("172.31.255.255", .privateNetwork),
        ("172.32.0.1", .public),
        ("192.168.1.1", .privateNetwork),
        ("100.64.0.1", .cgnat),
        ("100.127.255.255", .cgnat),
        ("100.128.0.1", .public),
        ("169.254.1.1", .linkLocal),
        ("169.254.169.254", .metadata),
        ("169.254.170.2", .metadata),
        ("169.254.170.23", .metadata),
        ("100.100.100.200", .metadata),
        ("168.63.129.16", .metadata),
        ("192.0.0.192", .metadata),
        ("224.0.0.1", .multicast),
        ("239.255.255.250", .multicast),
        ("255.255.255.255", .broadcast),
        ("240.0.0.1", .reserved),
        ("192.0.2.1", .reserved),
        ("198.51.100.7", .reserved),
        ("203.0.113.9", .reserved),
        ("198.18.0.1", .reserved),
        ("198.19.255.254", .reserved),
        ("::", .unspecified),
        ("::1", .loopback),
        ("fe80::1", .linkLocal),
        ("fc00::1", .privateNetwork),
        ("fd12:3456::1", .privateNetwork),
        ("fec0::1", .privateNetwork),
        ("fd00:ec2::254", .metadata),
        ("fd00:ec2::23", .metadata),
        ("ff02::1", .multicast),
        ("2001:db8::1", .reserved),
        ("3fff::1", .reserved),
        ("2606:4700:4700::1111", .public),
        ("2a00:1450:4001:80b::200e", .public),
        ("4000::1", .reserved),
        ("100::1", .reserved),
    ])
    func classify(text: String, expected: AddressClass) throws {
        let a = try #require(IPAddress(text))
        #expect(a.classify() == expected, "\(text)")
    }

    @Test("IPv6 forms are classified by the IPv4 address they carry", arguments: [
        ("::ffff:127.0.0.1", AddressClass.loopback),
        ("::ffff:7f00:1", .loopback),
        ("::ffff:169.254.169.254", .metadata),
        ("::ffff:a9fe:a9fe", .metadata),
        ("::ffff:10.0.0.1", .privateNetwork),
        ("::ffff:8.8.8.8", .public),
        ("::127.0.0.1", .loopback),
        ("::10.1.1.1", .privateNetwork),
        ("::ffff:0:127.0.0.1", .loopback),
        ("64:ff9b::127.0.0.1", .loopback),
        ("64:ff9b::a9fe:a9fe", .metadata),
        ("64:ff9b::8.8.8.8", .public),
        ("64:ff9b:1::10.0.0.1", .privateNetwork),
        ("64:ff9b:1::8.8.8.8", .privateNetwork),
        ("64:ff9b:1::169.254.169.254", .metadata),
        ("2002:7f00:1::", .loopback),
        ("2002:a9fe:a9fe::1", .metadata),
        ("2002:0a00:0001::1", .privateNetwork),
        ("2002:0808:0808::1", .public),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", .privateNetwork),  // Teredo client 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", .reserved),        // Teredo client 8.8.8.8
    ])
    func embeddedForms(text: String, expected: AddressClass) throws {
        let a = try #require(IPAddress(text))
        #expect(a.classify() == expected, "\(text)")
    }

    @Test("deny rule names are stable")
    func denyRules() {
        #expect(AddressClass.metadata.denyRule == .metadataAddress)
        #expect(AddressClass.loopback.denyRule?.rawValue == "loopback-address")
        #expect(AddressClass.privateNetwork.denyRule?.rawValue == "private-address")
        #expect(AddressClass.linkLocal.denyRule?.rawValue == "link-local-address")
        #expect(AddressClass.cgnat.denyRule?.rawValue == "cgnat-address")
        #expect(AddressClass.multicast.denyRule?.rawValue == "multicast-address")
        #expect(AddressClass.reserved.denyRule?.rawValue == "reserved-address")
        #expect(AddressClass.unspecified.denyRule == .reservedAddress)
        #expect(AddressClass.broadcast.denyRule == .reservedAddress)
        #expect(AddressClass.public.denyRule == nil)
    }

    @Test("bytes round trip")
    func bytes() throws {
        for text in ["1.2.3.4", "2001:db8::ff", "::ffff:1.2.3.4"] {
            let a = try #require(IPAddress(text))
            #expect(IPAddress(bytes: a.bytes) == a)
        }
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress.v4(0x0102_0304).bytes == [1, 2, 3, 4])
    }

    @Test("prefixes")
    func prefixes() throws {
        let p = try #require(IPPrefix("198.18.0.0/15"))
        #expect(p.contains(.v4(0xC612_0001)))
        #expect(p.contains(.v4(0xC613_FFFF)))
        #expect(!p.contains(.v4(0xC614_0000)))
        #expect(!p.contains(.v6(1)))
        #expect(p.size == 131_072)
        #expect(IPPrefix("10.1.2.3/8")?.description == "10.0.0.0/8")
        #expect(IPPrefix("10.0.0.0/33") == nil)
        #expect(IPPrefix("fc00::/7")?.contains(IPAddress("fd00::1") ?? .v6(0)) == true)
    }

    @Test("embedded IPv4 extraction")
    func embedded() throws {
        #expect(try #require(IPAddress("::ffff:1.2.3.4")).embeddedIPv4 == 0x0102_0304)
        #expect(try #require(IPAddress("2002:0102:0304::")).embeddedIPv4 == 0x0102_0304)
        #expect(try #require(IPAddress("2606:4700::1")).embeddedIPv4 == nil)
        #expect(IPAddress.v4(1).embeddedIPv4 == nil)
    }
}
