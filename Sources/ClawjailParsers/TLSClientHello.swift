// Just enough TLS to read the server name from a ClientHello (RFC 8446 §4.1.2,
// RFC 6066 §3). The ClientHello may arrive split across TCP segments and even
// across several TLS records; the caller feeds everything received so far.
//
// The answer depends on the bytes, never on how they were cut: `parse` of any
// prefix of a stream is either `.needMore` or the answer for the whole stream.
// That is why the parser decides the moment the handshake message is complete
// and never looks past it (a change_cipher_spec record or early data may follow
// in the same read, whole or cut), and why its size bound counts bytes of the
// stream rather than bytes that happen to have arrived.

public enum ClientHelloResult: Equatable, Sendable {
    /// Not enough bytes yet.
    case needMore
    case serverName(String)
    /// A complete ClientHello without a host_name entry.
    case noServerName
    /// Not TLS, not a ClientHello, or malformed.
    case invalid
}

public enum TLSClientHello {
    /// Largest ClientHello message (without its 4-byte header) the proxy takes.
    public static let maxBufferedBytes = 16 * 1024

    /// The ClientHello and its record headers must be complete within this many
    /// bytes of the stream; later bytes are not looked at. Twice the largest
    /// message leaves room for the headers of a client that fragments it into
    /// small records (legal, and done by some anti-censorship clients), and
    /// still bounds what one connection can make the proxy hold.
    public static let maxFirstFlightBytes = 2 * maxBufferedBytes

    public static func parse(_ bytes: some Collection<UInt8>) -> ClientHelloResult {
        let b = Array(bytes.prefix(maxFirstFlightBytes))
        let result = parseRecords(b)
        // A hello still incomplete at the bound never will be, whatever comes next.
        if result == .needMore && b.count >= maxFirstFlightBytes { return .invalid }
        return result
    }

    /// Reassembles the handshake message from consecutive handshake records
    /// (TLS allows a ClientHello to span several) and answers on it.
    private static func parseRecords(_ b: [UInt8]) -> ClientHelloResult {
        var handshake: [UInt8] = []
        var pos = 0
        while true {
            if let first = handshake.first, first != 1 { return .invalid }  // not client_hello
            if handshake.count >= 4 {
                let msgLen = Int(handshake[1]) << 16 | Int(handshake[2]) << 8 | Int(handshake[3])
                guard msgLen <= maxBufferedBytes else { return .invalid }
                // Complete: decide now, whatever follows.
                if handshake.count >= 4 + msgLen { return parseBody(handshake[4..<(4 + msgLen)]) }
            }
            // The message continues in the next record, which must be a
            // handshake record (RFC 8446 §5.1: no other record may interleave).
            // Each header byte is checked as soon as it is there.
            guard pos < b.count else { return .needMore }
            guard b[pos] == 22 else { return .invalid }
            guard pos + 1 < b.count else { return .needMore }
            guard b[pos + 1] == 3 else { return .invalid }
            guard pos + 5 <= b.count else { return .needMore }
            let len = Int(b[pos + 3]) << 8 | Int(b[pos + 4])
            guard len > 0, len <= 16_384 else { return .invalid }
            // A record cut short still counts: the message may end inside it.
            let end = min(pos + 5 + len, b.count)
            handshake += b[(pos + 5)..<end]
            pos = end
        }
    }

    private static func parseBody(_ body: ArraySlice<UInt8>) -> ClientHelloResult {
        var r = Cursor(body)
        guard r.skip(2 + 32),  // legacy_version, random
              let sidLen = r.u8(), sidLen <= 32, r.skip(Int(sidLen)),
              let csLen = r.u16(), csLen >= 2, csLen % 2 == 0, r.skip(Int(csLen)),
              let compLen = r.u8(), compLen >= 1, r.skip(Int(compLen))
        else { return .invalid }
        if r.remaining == 0 { return .noServerName }  // no extensions at all
        guard let extLen = r.u16(), Int(extLen) == r.remaining else { return .invalid }
        var seen = Set<UInt16>()
        var serverName: String? = nil
        while r.remaining > 0 {
            guard let type = r.u16(), let len = r.u16(), let ext = r.take(Int(len)) else { return .invalid }
            // Duplicate extensions are illegal; two SNIs could be read differently upstream.
            guard seen.insert(type).inserted else { return .invalid }
            if type == 0 {
                var e = Cursor(ext)
                guard let listLen = e.u16(), Int(listLen) == e.remaining else { return .invalid }
                var name: String? = nil
                while e.remaining > 0 {
                    guard let nameType = e.u8(), let nameLen = e.u16(), let nameBytes = e.take(Int(nameLen)) else {
                        return .invalid
                    }
                    if nameType == 0 {
                        guard name == nil, !nameBytes.isEmpty,
                              nameBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return .invalid }
                        name = String(decoding: nameBytes, as: UTF8.self)
                    }
                }
                serverName = name
            }
        }
        // Every extension is checked before answering, so a second
        // server_name later in the list cannot hide behind the first.
        return serverName.map { .serverName($0) } ?? .noServerName
    }

    private struct Cursor {
        let data: ArraySlice<UInt8>
        var pos: Int

        init(_ data: ArraySlice<UInt8>) {
            self.data = data
            self.pos = data.startIndex
        }

        var remaining: Int { data.endIndex - pos }

        mutating func skip(_ n: Int) -> Bool {
            guard n >= 0, n <= remaining else { return false }
            pos += n
            return true
        }

        mutating func u8() -> UInt8? {
            guard remaining >= 1 else { return nil }
            defer { pos += 1 }
            return data[pos]
        }

        mutating func u16() -> UInt16? {
            guard remaining >= 2 else { return nil }
            defer { pos += 2 }
            return UInt16(data[pos]) << 8 | UInt16(data[pos + 1])
        }

        mutating func take(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, n <= remaining else { return nil }
            defer { pos += n }
            return data[pos..<pos + n]
        }
    }
}
