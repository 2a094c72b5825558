// DNS wire format (RFC 1035), just what the proxy's resolver and the jail's
// responder need. Decoding is defensive: every length is checked, compression
// pointers must point backwards (no loops), names are at most 255 bytes.

public enum DNSType {
    public static let a: UInt16 = 1
    public static let cname: UInt16 = 5
    public static let soa: UInt16 = 6
    public static let ptr: UInt16 = 12
    public static let aaaa: UInt16 = 28
    public static let opt: UInt16 = 41
    public static let https: UInt16 = 65
    public static let any: UInt16 = 255
    public static let classIN: UInt16 = 1
}

public enum DNSRcode {
    public static let noError: UInt16 = 0
    public static let formErr: UInt16 = 1
    public static let servFail: UInt16 = 2
    public static let nxDomain: UInt16 = 3
    public static let notImp: UInt16 = 4
    public static let refused: UInt16 = 5
}

public struct DNSWireError: Error, Hashable, Sendable, CustomStringConvertible {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { "malformed DNS message: \(reason)" }
}

/// A domain name as labels of raw bytes (the wire allows any byte).
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    public var labels: [[UInt8]]

    public init(labels: [[UInt8]]) { self.labels = labels }

    /// From dotted text; nil if a label is empty or too long or the name is too long.
    public init?(_ text: String) {
        var t = Array(text.utf8)
        if t.last == 0x2E { t.removeLast() }
        if t.isEmpty { self.labels = []; return }
        let parts = t.split(separator: 0x2E, omittingEmptySubsequences: false).map(Array.init)
        guard parts.allSatisfy({ !$0.isEmpty && $0.count <= 63 }) else { return nil }
        self.labels = parts
        guard wireLength <= 255 else { return nil }
    }

    public var wireLength: Int { labels.reduce(1) { $0 + 1 + $1.count } }

    /// Lower-cased ASCII for comparisons (DNS names compare case-insensitively).
    public var lowercased: DNSName {
        DNSName(labels: labels.map { $0.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 + 0x20 : $0 } })
    }

    /// Dotted text if every byte is a printable ASCII character other than
    /// "." (so the text round-trips); nil otherwise.
    public var text: String? {
        var out: [UInt8] = []
        for (i, l) in labels.enumerated() {
            if i > 0 { out.append(0x2E) }
            for c in l {
                guard c > 0x20 && c < 0x7F && c != 0x2E else { return nil }
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { text ?? "<binary name>" }

    public func encode(into out: inout [UInt8]) {
        for l in labels {
            out.append(UInt8(l.count))
            out += l
        }
        out.append(0)
    }
}

public struct DNSQuestion: Hashable, Sendable {
    public var name: DNSName
    public var type: UInt16
    public var klass: UInt16

    public init(name: DNSName, type: UInt16, klass: UInt16 = DNSType.classIN) {
        self.name = name
        self.type = type
        self.klass = klass
    }
}

public struct DNSRecord: Hashable, Sendable {
    public var name: DNSName
    public var type: UInt16
    public var klass: UInt16
    public var ttl: UInt32
    /// For CNAME records the target is decompressed and stored uncompressed
    /// here, so a decoded record re-encodes correctly.
    public var rdata: [UInt8]

    public init(name: DNSName, type: UInt16, klass: UInt16 = DNSType.classIN, ttl: UInt32, rdata: [UInt8]) {
        self.name = name
        self.type = type
        self.klass = klass
        self.ttl = ttl
        self.rdata = rdata
    }

    public var cnameTarget: DNSName? {
        guard type == DNSType.cname else { return nil }
        var r = DNSReader(rdata)
        return try? r.readName()
    }

    public var address: IPAddress? {
        switch type {
        case DNSType.a where rdata.count == 4, DNSType.aaaa where rdata.count == 16:
            return IPAddress(bytes: rdata)
        default:
            return nil
        }
    }

    public static func a(_ name: DNSName, _ v4: UInt32, ttl: UInt32) -> DNSRecord {
        DNSRecord(name: name, type: DNSType.a, ttl: ttl, rdata: IPAddress.v4(v4).bytes)
    }

    public static func aaaa(_ name: DNSName, _ v6: UInt128, ttl: UInt32) -> DNSRecord {
        DNSRecord(name: name, type: DNSType.aaaa, ttl: ttl, rdata: IPAddress.v6(v6).bytes)
    }

    public static func cname(_ name: DNSName, _ target: DNSName, ttl: UInt32) -> DNSRecord {
        var rd: [UInt8] = []
        target.encode(into: &rd)
        return DNSRecord(name: name, type: DNSType.cname, ttl: ttl, rdata: rd)
    }
}

public struct DNSMessage: Hashable, Sendable {
    public var id: UInt16
    public var flags: UInt16
    public var questions: [DNSQuestion]
    public var answers: [DNSRecord]
    public var authorities: [DNSRecord]
    public var additionals: [DNSRecord]

    public init(id: UInt16, flags: UInt16, questions: [DNSQuestion] = [], answers: [DNSRecord] = [],
                authorities: [DNSRecord] = [], additionals: [DNSRecord] = []) {
        self.id = id
        self.flags = flags
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
    }

    public static let qrBit: UInt16 = 0x8000
    public static let aaBit: UInt16 = 0x0400
    public static let tcBit: UInt16 = 0x0200
    public static let rdBit: UInt16 = 0x0100
    public static let raBit: UInt16 = 0x0080

    public var isResponse: Bool { flags & DNSMessage.qrBit != 0 }
    public var opcode: UInt16 { (flags >> 11) & 0xF }
    public var isTruncated: Bool { flags & DNSMessage.tcBit != 0 }
    public var rcode: UInt16 { flags & 0xF }

    public static func query(id: UInt16, name: DNSName, type: UInt16) -> DNSMessage {
        DNSMessage(id: id, flags: rdBit, questions: [DNSQuestion(name: name, type: type)])
    }

    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        func u16(_ v: UInt16) { out.append(UInt8(v >> 8)); out.append(UInt8(v & 0xFF)) }
        u16(id)
        u16(flags)
        u16(UInt16(truncatingIfNeeded: questions.count))
        u16(UInt16(truncatingIfNeeded: answers.count))
        u16(UInt16(truncatingIfNeeded: authorities.count))
        u16(UInt16(truncatingIfNeeded: additionals.count))
        for q in questions {
            q.name.encode(into: &out)
            u16(q.type)
            u16(q.klass)
        }
        for r in answers + authorities + additionals {
            r.name.encode(into: &out)
            u16(r.type)
            u16(r.klass)
            u16(UInt16(truncatingIfNeeded: r.ttl >> 16))
            u16(UInt16(truncatingIfNeeded: r.ttl))
            u16(UInt16(truncatingIfNeeded: r.rdata.count))
            out += r.rdata
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(DNSWireError) -> DNSMessage {
        var r = DNSReader(bytes)
        let id = try r.u16()
        let flags = try r.u16()
        let qd = Int(try r.u16()), an = Int(try r.u16()), ns = Int(try r.u16()), ar = Int(try r.u16())
        // A question takes at least 5 bytes and a record 11: cheap sanity bound.
        guard qd * 5 + (an + ns + ar) * 11 <= bytes.count - 12 else { throw DNSWireError("counts exceed message size") }
        var m = DNSMessage(id: id, flags: flags)
        for _ in 0..<qd {
            let name = try r.readName()
            m.questions.append(DNSQuestion(name: name, type: try r.u16(), klass: try r.u16()))
        }
        m.answers = try r.records(an)
        m.authorities = try r.records(ns)
        m.additionals = try r.records(ar)
        return m
    }

    /// Just the ID and flags, so even an undecodable query can get FORMERR.
    public static func decodeHeader(_ bytes: [UInt8]) -> (id: UInt16, flags: UInt16)? {
        guard bytes.count >= 12 else { return nil }
        return (UInt16(bytes[0]) << 8 | UInt16(bytes[1]), UInt16(bytes[2]) << 8 | UInt16(bytes[3]))
    }
}

struct DNSReader {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func u8() throws(DNSWireError) -> UInt8 {
        guard pos < bytes.count else { throw DNSWireError("truncated") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func u16() throws(DNSWireError) -> UInt16 {
        UInt16(try u8()) << 8 | UInt16(try u8())
    }

    mutating func u32() throws(DNSWireError) -> UInt32 {
        UInt32(try u16()) << 16 | UInt32(try u16())
    }

    mutating func take(_ n: Int) throws(DNSWireError) -> [UInt8] {
        guard n >= 0, pos + n <= bytes.count else { throw DNSWireError("truncated") }
        defer { pos += n }
        return Array(bytes[pos..<pos + n])
    }

    /// A possibly compressed name. Pointers must point strictly before the
    /// place they were read from, which rules out loops.
    mutating func readName() throws(DNSWireError) -> DNSName {
        var labels: [[UInt8]] = []
        var total = 1
        var cursor = pos
        var jumped = false
        var limit = cursor  // pointers must go below this
        var hops = 0
        while true {
            guard cursor < bytes.count else { throw DNSWireError("truncated name") }
            let len = bytes[cursor]
            switch len & 0xC0 {
            case 0x00:
                if len == 0 {
                    cursor += 1
                    if !jumped { pos = cursor }
                    return DNSName(labels: labels)
                }
                let n = Int(len)
                guard cursor + 1 + n <= bytes.count else { throw DNSWireError("truncated label") }
                total += n + 1
                guard total <= 255 else { throw DNSWireError("name longer than 255 bytes") }
                labels.append(Array(bytes[cursor + 1..<cursor + 1 + n]))
                cursor += 1 + n
            case 0xC0:
                guard cursor + 1 < bytes.count else { throw DNSWireError("truncated pointer") }
                let target = Int(len & 0x3F) << 8 | Int(bytes[cursor + 1])
                guard target < limit else { throw DNSWireError("compression pointer does not point backwards") }
                hops += 1
                guard hops <= 64 else { throw DNSWireError("too many compression pointers") }
                if !jumped { pos = cursor + 2 }
                jumped = true
                limit = target
                cursor = target
            default:
                throw DNSWireError("unsupported label type")
            }
        }
    }

    mutating func records(_ count: Int) throws(DNSWireError) -> [DNSRecord] {
        var out: [DNSRecord] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let name = try readName()
            let type = try u16()
            let klass = try u16()
            let ttl = try u32()
            let rdlen = Int(try u16())
            guard pos + rdlen <= bytes.count else { throw DNSWireError("truncated rdata") }
            var rdata: [UInt8]
            if type == DNSType.cname {
                let end = pos + rdlen
                let target = try readName()
                guard pos == end else { throw DNSWireError("CNAME rdata length mismatch") }
                rdata = []
                target.encode(into: &rdata)
            } else {
                rdata = try take(rdlen)
            }
            // TTLs with the top bit set are treated as 0 (RFC 2181 §8).
            out.append(DNSRecord(name: name, type: type, klass: klass, ttl: ttl & 0x8000_0000 != 0 ? 0 : ttl, rdata: rdata))
        }
        return out
    }
}

extension DNSMessage {
    /// Addresses of type `type` for `name`, following CNAME chains inside the
    /// answer section (a recursive resolver returns the whole chain).
    public func addresses(for name: DNSName, type: UInt16) -> [IPAddress] {
        var names: Set<DNSName> = [name.lowercased]
        for _ in 0..<16 {
            var grew = false
            for rr in answers where rr.type == DNSType.cname && names.contains(rr.name.lowercased) {
                if let t = rr.cnameTarget?.lowercased, names.insert(t).inserted { grew = true }
            }
            if !grew { break }
        }
        return answers.compactMap { rr in
            guard rr.type == type, rr.klass == DNSType.classIN, names.contains(rr.name.lowercased) else { return nil }
            return rr.address
        }
    }
}
