// IP addresses for the egress guard: strict parsing, a deliberately lenient
// "could a client library read this as an address?" detector, and the
// classification that decides which resolved addresses the proxy may dial.
//
// Pure Swift (stdlib only), so it is testable without privileges.

/// An IPv4 or IPv6 address. IPv6 is kept whole: an IPv4-mapped address is a
/// `.v6` value and is classified through the IPv4 address it embeds.
public enum IPAddress: Hashable, Sendable {
    case v4(UInt32)
    case v6(UInt128)

    public var isV4: Bool {
        if case .v4 = self { return true }
        return false
    }
}

// MARK: - Classification

/// Why an address may or may not be dialled. Everything except `.public` is refused.
public enum AddressClass: String, Sendable, Hashable, CaseIterable {
    case `public`
    /// A cloud metadata / credentials endpoint; named before its general class.
    case metadata
    case loopback
    case unspecified
    /// RFC 1918, IPv6 unique-local (fc00::/7), deprecated site-local, local-use NAT64.
    case privateNetwork
    case cgnat
    case linkLocal
    case multicast
    case broadcast
    /// Not globally routable: 0/8, 240/4, documentation (TEST-NETs, 2001:db8::/32,
    /// 3fff::/20), benchmarking (198.18/15 — also the synthetic DNS range), IETF
    /// protocol assignments, anything outside IPv6 global unicast 2000::/3.
    case reserved

    public var isPublic: Bool { self == .public }

    /// The stable rule name used in `X-Clawjail-Deny` and in audit records;
    /// nil for `.public`.
    public var denyRule: DenyRule? {
        switch self {
        case .public: return nil
        case .metadata: return .metadataAddress
        case .loopback: return .loopbackAddress
        case .privateNetwork: return .privateAddress
        case .cgnat: return .cgnatAddress
        case .linkLocal: return .linkLocalAddress
        case .multicast: return .multicastAddress
        case .unspecified, .broadcast, .reserved: return .reservedAddress
        }
    }
}

extension IPAddress {
    /// Cloud metadata and credential endpoints. These are refused as `metadata`
    /// even where the general class would allow them (168.63.129.16 is a public
    /// address; 192.0.0.192 sits in a reserved block).
    ///  - 169.254.169.254: AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, Hetzner IMDS
    ///  - 169.254.170.2: AWS ECS task metadata and credentials
    ///  - 169.254.170.23, fd00:ec2::23: AWS EKS Pod Identity agent
    ///  - 100.100.100.200: Alibaba Cloud
    ///  - 168.63.129.16: Azure WireServer
    ///  - 192.0.0.192: Oracle Cloud (classic) metadata
    ///  - 169.254.0.23: Tencent Cloud (metadata.tencentyun.com)
    ///  - fd00:ec2::254: AWS IMDS over IPv6
    public static let metadataAddresses: Set<IPAddress> = [
        .v4(0xA9FE_A9FE), .v4(0xA9FE_AA02), .v4(0xA9FE_AA17), .v4(0x6464_64C8),
        .v4(0xA83F_8110), .v4(0xC000_00C0), .v4(0xA9FE_0017),
        .v6(0xFD00_0EC2_0000_0000_0000_0000_0000_0254),
        .v6(0xFD00_0EC2_0000_0000_0000_0000_0000_0023),
    ]

    /// Classifies the address. IPv6 forms that carry an IPv4 address
    /// (IPv4-mapped, IPv4-compatible, SIIT, NAT64, 6to4, Teredo) are classified
    /// by the embedded address, so `::ffff:169.254.169.254` is `metadata`.
    public func classify() -> AddressClass {
        if IPAddress.metadataAddresses.contains(self) { return .metadata }
        switch self {
        case .v4(let a): return IPAddress.classifyV4(a)
        case .v6(let a): return IPAddress.classifyV6(a)
        }
    }

    static func inPrefix(_ a: UInt32, _ base: UInt32, _ len: Int) -> Bool {
        len == 0 ? true : (a >> (32 - len)) == (base >> (32 - len))
    }

    static func inPrefix(_ a: UInt128, _ base: UInt128, _ len: Int) -> Bool {
        len == 0 ? true : (a >> (128 - len)) == (base >> (128 - len))
    }

    static func classifyV4(_ a: UInt32) -> AddressClass {
        if IPAddress.metadataAddresses.contains(.v4(a)) { return .metadata }
        if a == 0 { return .unspecified }
        if a == 0xFFFF_FFFF { return .broadcast }
        let table: [(UInt32, Int, AddressClass)] = [
            (0x0000_0000, 8, .reserved),        // "this network"; Linux treats 0.x as local
            (0x0A00_0000, 8, .privateNetwork),  // 10/8
            (0x6440_0000, 10, .cgnat),          // 100.64/10
            (0x7F00_0000, 8, .loopback),        // 127/8
            (0xA9FE_0000, 16, .linkLocal),      // 169.254/16
            (0xAC10_0000, 12, .privateNetwork), // 172.16/12
            (0xC000_0000, 24, .reserved),       // 192.0.0/24 IETF protocol assignments
            (0xC000_0200, 24, .reserved),       // 192.0.2/24 TEST-NET-1
            (0xC058_6300, 24, .reserved),       // 192.88.99/24 6to4 relay anycast (deprecated)
            (0xC0A8_0000, 16, .privateNetwork), // 192.168/16
            (0xC612_0000, 15, .reserved),       // 198.18/15 benchmarking (and our synthetic range)
            (0xC633_6400, 24, .reserved),       // 198.51.100/24 TEST-NET-2
            (0xCB00_7100, 24, .reserved),       // 203.0.113/24 TEST-NET-3
            (0xE000_0000, 4, .multicast),       // 224/4
            (0xF000_0000, 4, .reserved),        // 240/4
        ]
        for (base, len, cls) in table where inPrefix(a, base, len) { return cls }
        return .public
    }

    static func classifyV6(_ a: UInt128) -> AddressClass {
        let low32 = UInt32(truncatingIfNeeded: a)
        if a == 0 { return .unspecified }
        if a == 1 { return .loopback }
        // ::ffff:0:0/96 IPv4-mapped, ::/96 IPv4-compatible (deprecated, still
        // accepted by some stacks), ::ffff:0:0:0/96 SIIT, 64:ff9b::/96 NAT64:
        // all reach the embedded IPv4 address.
        if inPrefix(a, 0x0000_0000_0000_0000_0000_FFFF_0000_0000, 96)
            || inPrefix(a, 0, 96)
            || inPrefix(a, 0x0000_0000_0000_0000_FFFF_0000_0000_0000, 96)
            || inPrefix(a, 0x0064_FF9B_0000_0000_0000_0000_0000_0000, 96)
        {
            return classifyV4(low32)
        }
        // 64:ff9b:1::/48 is local-use NAT64 (RFC 8215): the translator is the
        // operator's, so what it reaches is unknown. Refuse it; report the
        // embedded address's class when that is more specific.
        if inPrefix(a, 0x0064_FF9B_0001_0000_0000_0000_0000_0000, 48) {
            let embedded = classifyV4(low32)
            return embedded == .public ? .privateNetwork : embedded
        }
        // 6to4 (2002::/16): the IPv4 address is bits 16..47.
        if inPrefix(a, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
            let embedded = classifyV4(UInt32(truncatingIfNeeded: a >> 80))
            return embedded == .public ? .public : embedded
        }
        // Teredo (2001::/32): the client's IPv4 address is the low 32 bits, inverted.
        // The proxy has no Teredo path, so refuse it either way.
        if inPrefix(a, 0x2001_0000_0000_0000_0000_0000_0000_0000, 32) {
            let embedded = classifyV4(~low32)
            return embedded == .public ? .reserved : embedded
        }
        let table: [(UInt128, Int, AddressClass)] = [
            (0xFF00_0000_0000_0000_0000_0000_0000_0000, 8, .multicast),
            (0xFE80_0000_0000_0000_0000_0000_0000_0000, 10, .linkLocal),
            (0xFEC0_0000_0000_0000_0000_0000_0000_0000, 10, .privateNetwork), // site-local (deprecated)
            (0xFC00_0000_0000_0000_0000_0000_0000_0000, 7, .privateNetwork),  // ULA
            (0x2001_0DB8_0000_0000_0000_0000_0000_0000, 32, .reserved),       // documentation
            (0x3FFF_0000_0000_0000_0000_0000_0000_0000, 20, .reserved),       // documentation (RFC 9637)
            (0x2001_0000_0000_0000_0000_0000_0000_0000, 23, .reserved),       // IETF protocol assignments
            (0x5F00_0000_0000_0000_0000_0000_0000_0000, 16, .reserved),       // SRv6 SIDs
            (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, .reserved),       // discard-only
        ]
        for (base, len, cls) in table where inPrefix(a, base, len) { return cls }
        // Only 2000::/3 is allocated for global unicast.
        return inPrefix(a, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) ? .public : .reserved
    }

    /// The IPv4 address an IPv6 address carries in a form that reaches it
    /// (mapped, compatible, SIIT, NAT64, 6to4); nil otherwise.
    public var embeddedIPv4: UInt32? {
        guard case .v6(let a) = self, a > 1 else { return nil }
        let low32 = UInt32(truncatingIfNeeded: a)
        if IPAddress.inPrefix(a, 0x0000_0000_0000_0000_0000_FFFF_0000_0000, 96)
            || IPAddress.inPrefix(a, 0, 96)
            || IPAddress.inPrefix(a, 0x0000_0000_0000_0000_FFFF_0000_0000_0000, 96)
            || IPAddress.inPrefix(a, 0x0064_FF9B_0000_0000_0000_0000_0000_0000, 96)
            || IPAddress.inPrefix(a, 0x0064_FF9B_0001_0000_0000_0000_0000_0000, 48)
        {
            return low32
        }
        if IPAddress.inPrefix(a, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
            return UInt32(truncatingIfNeeded: a >> 80)
        }
        return nil
    }
}

// MARK: - Prefixes

/// An address prefix such as 198.18.0.0/15.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// Nil when `length` is out of range for the family. Host bits are cleared.
    public init?(_ address: IPAddress, length: Int) {
        switch address {
        case .v4(let a):
            guard (0...32).contains(length) else { return nil }
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << (32 - length)
            self.address = .v4(a & mask)
        case .v6(let a):
            guard (0...128).contains(length) else { return nil }
            let mask: UInt128 = length == 0 ? 0 : ~UInt128(0) << (128 - length)
            self.address = .v6(a & mask)
        }
        self.length = length
    }

    /// Parses `a.b.c.d/n` or `v6/n` (strict address syntax).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let addr = IPAddress(String(parts[0])),
              let len = IPAddress.decimal(parts[1].utf8, max: 128) else { return nil }
        self.init(addr, length: Int(len))
    }

    public func contains(_ other: IPAddress) -> Bool {
        switch (address, other) {
        case (.v4(let base), .v4(let a)): return IPAddress.inPrefix(a, base, length)
        case (.v6(let base), .v6(let a)): return IPAddress.inPrefix(a, base, length)
        default: return false
        }
    }

    /// Number of addresses, saturating at UInt64.max for huge IPv6 prefixes.
    public var size: UInt64 {
        switch address {
        case .v4: return UInt64(1) << UInt64(32 - length)
        case .v6: return 128 - length >= 64 ? UInt64.max : UInt64(1) << UInt64(128 - length)
        }
    }

    public var description: String { "\(address)/\(length)" }
}

// MARK: - Formatting

extension IPAddress: CustomStringConvertible {
    /// Canonical text: dotted quad, or RFC 5952 for IPv6 (lower case, longest
    /// zero run compressed, IPv4-mapped shown as ::ffff:a.b.c.d).
    public var description: String {
        switch self {
        case .v4(let a): return IPAddress.formatV4(a)
        case .v6(let a):
            if a >> 32 == 0xFFFF {
                return "::ffff:" + IPAddress.formatV4(UInt32(truncatingIfNeeded: a))
            }
            var groups = [UInt16](repeating: 0, count: 8)
            for i in 0..<8 { groups[i] = UInt16(truncatingIfNeeded: a >> UInt128(112 - 16 * i)) }
            // Longest run of zero groups (length >= 2), first one on ties.
            var bestStart = -1, bestLen = 0, i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8 && groups[j] == 0 { j += 1 }
                    if j - i > bestLen { bestStart = i; bestLen = j - i }
                    i = j
                } else { i += 1 }
            }
            if bestLen < 2 { bestStart = -1 }
            var out = ""
            i = 0
            while i < 8 {
                if i == bestStart {
                    out += "::"
                    i += bestLen
                    continue
                }
                if !out.isEmpty && !out.hasSuffix(":") { out += ":" }
                out += String(groups[i], radix: 16)
                i += 1
            }
            return out
        }
    }

    static func formatV4(_ a: UInt32) -> String {
        "\(a >> 24).\((a >> 16) & 0xFF).\((a >> 8) & 0xFF).\(a & 0xFF)"
    }

    /// Network-order bytes (4 or 16).
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): return (0..<4).map { UInt8(truncatingIfNeeded: a >> UInt32(24 - 8 * $0)) }
        case .v6(let a): return (0..<16).map { UInt8(truncatingIfNeeded: a >> UInt128(120 - 8 * $0)) }
        }
    }

    /// From 4 or 16 network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4: self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16: self = .v6(bytes.reduce(0) { $0 << 8 | UInt128($1) })
        default: return nil
        }
    }
}

// MARK: - Strict parsing

extension IPAddress {
    /// Strict parsing of the canonical text forms: a dotted quad of four decimal
    /// octets without leading zeros, or RFC 4291 IPv6 text (hex groups of 1–4
    /// digits, one `::`, optional trailing dotted quad). No brackets, zone ids,
    /// whitespace or other encodings: use `parseAnyEncoding` to *detect* those.
    public init?(_ text: String) {
        if let v4 = IPAddress.parseStrictV4(Substring(text)) {
            self = .v4(v4)
        } else if let v6 = IPAddress.parseV6(Substring(text), lenient: false) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    /// Same as `init?(_:)`; for call sites that read better as a function.
    public static func parse(_ text: String) -> IPAddress? { IPAddress(text) }

    static func parseStrictV4(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for p in parts {
            let u = p.utf8
            guard !u.isEmpty, u.count <= 3, u.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            if u.count > 1 && u.first == 0x30 { return nil }  // leading zero: ambiguous (octal)
            guard let n = decimal(u, max: 255) else { return nil }
            value = value << 8 | UInt32(n)
        }
        return value
    }

    /// Decimal digits only, value <= max.
    static func decimal(_ u: some Collection<UInt8>, max: UInt64) -> UInt64? {
        guard !u.isEmpty else { return nil }
        var v: UInt64 = 0
        for c in u {
            guard c >= 0x30 && c <= 0x39 else { return nil }
            v = v * 10 + UInt64(c - 0x30)
            if v > max { return nil }
        }
        return v
    }

    /// IPv6 text. `lenient` allows more than four hex digits per group (leading
    /// zeros) and an embedded IPv4 part in any inet_aton form.
    static func parseV6(_ s: Substring, lenient: Bool) -> UInt128? {
        guard s.contains(":") else { return nil }
        var head: [UInt16] = [], tail: [UInt16] = []
        var sawGap = false
        var text = s
        // Split on "::" once.
        if let r = text.firstRange(of: "::") {
            sawGap = true
            let before = text[text.startIndex..<r.lowerBound]
            let after = text[r.upperBound...]
            if after.contains("::") { return nil }
            guard let h = groups(before, lenient: lenient, allowV4Tail: false) else { return nil }
            guard let t = groups(after, lenient: lenient, allowV4Tail: true) else { return nil }
            head = h; tail = t
            text = ""
        } else {
            guard let g = groups(text, lenient: lenient, allowV4Tail: true) else { return nil }
            head = g
        }
        let total = head.count + tail.count
        if sawGap {
            guard total <= 7 else { return nil }
        } else {
            guard total == 8 else { return nil }
        }
        var all = head
        all += [UInt16](repeating: 0, count: 8 - total)
        all += tail
        return all.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
    }

    /// Colon-separated groups; an empty string is zero groups. The last group may
    /// be a dotted IPv4 address (counts as two groups).
    private static func groups(_ s: Substring, lenient: Bool, allowV4Tail: Bool) -> [UInt16]? {
        if s.isEmpty { return [] }
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        var out: [UInt16] = []
        for (i, p) in parts.enumerated() {
            if i == parts.count - 1 && allowV4Tail && p.contains(".") {
                let v4 = lenient ? parseInetAton(p) : parseStrictV4(p)
                guard let v = v4 else { return nil }
                out.append(UInt16(truncatingIfNeeded: v >> 16))
                out.append(UInt16(truncatingIfNeeded: v))
                continue
            }
            let u = p.utf8
            guard !u.isEmpty, lenient || u.count <= 4 else { return nil }
            var v: UInt32 = 0
            for c in u {
                guard let d = hexDigit(c) else { return nil }
                v = v << 4 | UInt32(d)
                if v > 0xFFFF { return nil }
            }
            out.append(UInt16(v))
        }
        return out
    }

    static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}

// MARK: - Lenient detection

extension IPAddress {
    /// Recognises every text form that some client library, resolver or URL
    /// parser may read as an IP address, so the proxy can refuse it. It is
    /// deliberately generous: a false positive only refuses a string that is
    /// not a usable host name anyway. Accepted, after the normalisation below:
    ///  - inet_aton forms: 1–4 parts, each decimal, octal (leading 0) or hex
    ///    (0x); the last part fills the remaining bytes: `2130706433`,
    ///    `0177.0.0.1`, `0x7f.1`, `127.1`, `127.0.1`, mixed;
    ///  - IPv6 text with any group width, brackets `[::1]`, zone ids
    ///    (`fe80::1%eth0`, `%25eth0`), an embedded IPv4 tail in any inet_aton
    ///    form (`::ffff:127.0.0.1`, `::ffff:0x7f.1`);
    ///  - one trailing dot (`127.0.0.1.`) and surrounding brackets;
    ///  - percent-encoding (`127%2E0%2E0%2E1`), full-width digits and letters,
    ///    and the Unicode dots that IDNA maps to "." (U+3002, U+FF0E, U+FF61).
    public static func parseAnyEncoding(_ text: String) -> IPAddress? {
        guard let s = normaliseForDetection(text) else { return nil }
        var t = Substring(s)
        var bracketed = false
        if t.hasPrefix("[") && t.hasSuffix("]") && t.count >= 2 {
            t = t.dropFirst().dropLast()
            bracketed = true
        }
        if t.contains(":") {
            // Zone id: "%" (or URL-encoded "%25", already decoded) and anything after.
            if let pct = t.firstIndex(of: "%") { t = t[t.startIndex..<pct] }
            return parseV6(t, lenient: true).map { .v6($0) }
        }
        if bracketed { return nil }
        if t.hasSuffix(".") { t = t.dropLast() }
        return parseInetAton(t).map { .v4($0) }
    }

    /// True when `host` would be read as an address by some client, or has the
    /// shape of one (the WHATWG URL rule: a host whose last label is numeric or
    /// 0x-hex is an IPv4 attempt, never a domain name). Host names never end in
    /// such a label, so refusing these costs nothing.
    public static func looksLikeIPLiteral(_ host: String) -> Bool {
        if isPlainName(host) { return false }
        if parseAnyEncoding(host) != nil { return true }
        guard let s = normaliseForDetection(host) else { return false }
        if s.hasPrefix("[") { return true }
        if s.contains(":") {
            // IPv6-shaped (hex, colons, dots, a zone) even if not quite valid.
            return s.utf8.allSatisfy { hexDigit($0) != nil || $0 == 0x3A || $0 == 0x2E || $0 == 0x25 }
        }
        var labels = s.split(separator: ".", omittingEmptySubsequences: false)
        if labels.last?.isEmpty == true && labels.count > 1 { labels.removeLast() }
        guard let last = labels.last, !last.isEmpty else { return false }
        return isNumericLabel(last)
    }

    /// Fast path for the common case (runs per request): plain ASCII with no
    /// "%", ":" or "[", whose last label has a character that no IPv4 part
    /// can contain, cannot be read as an address by anyone.
    static func isPlainName(_ host: String) -> Bool {
        var lastLabelHasNonHex = false
        var lastLabelLength = 0
        for c in host.utf8 {
            switch c {
            case 0x25, 0x3A, 0x5B, 0x5D: return false
            case 0x80...: return false
            case 0x2E:
                lastLabelHasNonHex = false
                lastLabelLength = 0
                continue
            default:
                lastLabelLength += 1
                if hexDigit(c) == nil && c != 0x78 && c != 0x58 { lastLabelHasNonHex = true }
            }
        }
        // "name." keeps the verdict of the label before the dot; be safe.
        return lastLabelLength > 0 && lastLabelHasNonHex
    }

    static func isNumericLabel(_ l: Substring) -> Bool {
        let u = Array(l.utf8)
        if u.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return true }
        if u.count >= 2, u[0] == 0x30, u[1] == 0x78 || u[1] == 0x58 {
            return u.dropFirst(2).allSatisfy { hexDigit($0) != nil }
        }
        return false
    }

    /// Percent-decodes and folds the Unicode look-alikes that IDNA/WHATWG map to
    /// ASCII. Nil if the result is not ASCII.
    static func normaliseForDetection(_ text: String) -> String? {
        var scalars: [UInt8] = []
        scalars.reserveCapacity(text.utf8.count)
        for sc in text.unicodeScalars {
            switch sc.value {
            case 0x3002, 0xFF0E, 0xFF61: scalars.append(0x2E)                        // dots
            case 0xFF10...0xFF19: scalars.append(UInt8(sc.value - 0xFF10 + 0x30))   // digits
            case 0xFF21...0xFF3A: scalars.append(UInt8(sc.value - 0xFF21 + 0x61))   // A-Z
            case 0xFF41...0xFF5A: scalars.append(UInt8(sc.value - 0xFF41 + 0x61))   // a-z
            case 0xFF1A: scalars.append(0x3A)                                       // colon
            case 0xFF3B: scalars.append(0x5B)
            case 0xFF3D: scalars.append(0x5D)
            case 0..<0x80: scalars.append(UInt8(sc.value))
            default: return nil
            }
        }
        // Percent-decoding, repeated while it changes something (double encoding).
        for _ in 0..<3 {
            guard scalars.contains(0x25) else { break }
            var out: [UInt8] = []
            var i = 0
            var changed = false
            while i < scalars.count {
                if scalars[i] == 0x25, i + 2 < scalars.count,
                   let h = hexDigit(scalars[i + 1]), let l = hexDigit(scalars[i + 2]) {
                    out.append(h << 4 | l)
                    i += 3
                    changed = true
                } else {
                    out.append(scalars[i])
                    i += 1
                }
            }
            scalars = out
            if !changed { break }
        }
        guard scalars.allSatisfy({ $0 < 0x80 }) else { return nil }
        return String(decoding: scalars, as: UTF8.self).lowercased()
    }

    /// inet_aton(3) and WHATWG URL IPv4 parsing: 1–4 parts, each decimal,
    /// octal (leading 0) or hex (0x, possibly with no digits = 0); every part but
    /// the last must fit a byte, the last fills the remaining bytes.
    static func parseInetAton(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...4).contains(parts.count) else { return nil }
        var values: [UInt64] = []
        for p in parts {
            guard let v = parseAtonPart(p) else { return nil }
            values.append(v)
        }
        let last = values.removeLast()
        for v in values where v > 255 { return nil }
        let remainingBits = UInt64(8 * (4 - values.count))
        guard last < (UInt64(1) << remainingBits) else { return nil }
        var result: UInt64 = 0
        for v in values { result = result << 8 | v }
        result = result << remainingBits | last
        return UInt32(truncatingIfNeeded: result)
    }

    private static func parseAtonPart(_ p: Substring) -> UInt64? {
        let u = Array(p.utf8)
        guard !u.isEmpty else { return nil }
        var digits = u[...]
        var radix: UInt64 = 10
        if u.count >= 2, u[0] == 0x30, u[1] == 0x78 || u[1] == 0x58 {
            radix = 16
            digits = u[2...]
        } else if u.count >= 2, u[0] == 0x30 {
            radix = 8
            digits = u[1...]
        }
        var v: UInt64 = 0
        for c in digits {
            guard let d = hexDigit(c), UInt64(d) < radix else { return nil }
            v = v * radix + UInt64(d)
            if v > UInt64(UInt32.max) { return nil }
        }
        return v
    }
}
