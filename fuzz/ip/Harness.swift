// IP literal parsing, formatting and detection (Sources/ClawjailParsers/IPAddress.swift).
//
// Properties:
// - no crash for any text or bytes;
// - format and parse round trip: a strictly parsed address formats to text that parses
//   back to it, and that text is canonical (formatting it again gives the same); any
//   4 or 16 bytes, as an address, do the same; the lenient detector reads the strict
//   text as the same address;
// - every refused encoding stays refused: text the lenient detector reads as an address
//   is an IP literal to looksLikeIPLiteral, is refused by Allowlist.screen (as a
//   metadata address when it is one) and by AllowRule.parse, and so are its variants
//   (upper case, a trailing dot, brackets, one percent-encoded or full-width
//   character, extra leading zeros);
// - the fast path isPlainName never passes text the detector reads as an address;
// - an IPv4 address, IPv4-mapped, is classified as the IPv4 address;
// - a parsed prefix contains its own address and re-parses from its description.

@testable import ClawjailParsers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    checkText(String(decoding: bytes, as: UTF8.self))
    if bytes.count >= 4, let a = IPAddress(bytes: bytes.prefix(4)) { checkAddress(a) }
    if bytes.count >= 16, let a = IPAddress(bytes: bytes.prefix(16)) { checkAddress(a) }
    return 0
}

func checkText(_ text: String) {
    if let a = IPAddress(text) {
        checkAddress(a)
        require(IPAddress.parseAnyEncoding(text) == a, "strict \(text.debugDescription) is \(a), the detector says "
                + "\(String(describing: IPAddress.parseAnyEncoding(text)))")
    }
    if let a = IPAddress.parseAnyEncoding(text) {
        requireRefused(text, a)
        for variant in variants(text) {
            switch Allowlist.screen(variant) {
            case .success(let name):
                propertyFailed("\(text.debugDescription) is refused, its variant \(variant.debugDescription) is allowed as \(name)")
            case .failure:
                break
            }
            if case .success(let rule) = AllowRule.parse(variant) {
                propertyFailed("variant \(variant.debugDescription) of \(text.debugDescription) is accepted as \(rule)")
            }
        }
    }
    if IPAddress.isPlainName(text) {
        require(IPAddress.parseAnyEncoding(text) == nil, "isPlainName passes \(text.debugDescription), an address")
    }
    if let p = IPPrefix(text) {
        require(p.contains(p.address), "\(p) does not contain its address")
        require(IPPrefix(p.description) == p, "\(p) does not re-parse from its description")
    }
}

/// `text` reads as `a` to the detector: it must be refused everywhere.
func requireRefused(_ text: String, _ a: IPAddress) {
    require(IPAddress.looksLikeIPLiteral(text), "\(text.debugDescription) reads as \(a) but is no IP literal")
    let expected: DenyRule = a.classify() == .metadata ? .metadataAddress : .ipLiteral
    require(Allowlist.screen(text) == .failure(expected),
            "\(text.debugDescription) (\(a)) screened as \(Allowlist.screen(text)), not \(expected)")
    if case .success(let rule) = AllowRule.parse(text) {
        propertyFailed("\(text.debugDescription) (\(a)) is accepted as an allow entry \(rule)")
    }
}

func checkAddress(_ a: IPAddress) {
    let text = a.description
    require(IPAddress(text) == a, "\(text) does not parse back to the address")
    require(IPAddress(text)?.description == text, "\(text) is not canonical")
    require(text == text.lowercased(), "\(text) is not lower case")
    require(IPAddress.parseAnyEncoding(text) == a, "the detector misreads \(text)")
    require(IPAddress(bytes: a.bytes) == a, "bytes do not round-trip for \(text)")
    requireRefused(text, a)
    if case .v4(let v4) = a {
        let mapped = IPAddress.v6(0xFFFF_0000_0000 | UInt128(v4))
        require(mapped.classify() == a.classify(), "\(mapped) is \(mapped.classify()), \(text) is \(a.classify())")
        require(mapped.embeddedIPv4 == v4, "\(mapped) does not embed \(text)")
    }
    _ = a.classify().denyRule
}

/// Spellings of the same text that some client library reads alike.
func variants(_ text: String) -> [String] {
    var out = [text.uppercased(), text + ".", "[" + text + "]"]
    if let first = text.unicodeScalars.first, first.isASCII {
        let byte = UInt8(first.value)
        let digits = String(byte, radix: 16, uppercase: true)
        out.append("%" + (digits.count == 1 ? "0" : "") + digits + String(text.unicodeScalars.dropFirst()))
    }
    // Full-width digits (U+FF10...) and dots (U+FF0E), as IDNA maps them.
    var wide = String.UnicodeScalarView()
    for s in text.unicodeScalars {
        switch s.value {
        case 0x30...0x39: wide.append(Unicode.Scalar(0xFF10 + s.value - 0x30) ?? s)
        case 0x2E: wide.append(Unicode.Scalar(0x3002) ?? s)
        default: wide.append(s)
        }
    }
    out.append(String(wide))
    // A leading zero on every part: octal for inet_aton, a wider group for IPv6. A hex
    // part gets it after its 0x ("0x07f1"); before it, "00x7f1" is no number to
    // inet_aton, curl or a WHATWG URL parser, but a name.
    out.append(text.split(separator: ".", omittingEmptySubsequences: false).map { part in
        let lower = part.lowercased()
        return lower.hasPrefix("0x") ? part.prefix(2) + "0" + part.dropFirst(2) : "0" + part
    }.joined(separator: "."))
    return out
}
