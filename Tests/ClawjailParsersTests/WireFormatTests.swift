import Testing
@testable import ClawjailParsers

@Suite("DNS wire format")
struct DNSMessageTests {
    func name(_ s: String) throws -> DNSName { try #require(DNSName(s)) }

    @Test("queries and responses round trip")
    func roundTrip() throws {
        let q = DNSMessage.query(id: 0xBEEF, name: try name("api.example.com"), type: DNSType.aaaa)
        let decoded = try DNSMessage.decode(q.encode())
        #expect(decoded == q)
        #expect(!decoded.isResponse && decoded.opcode == 0)

        var r = DNSMessage(id: 7, flags: DNSMessage.qrBit | DNSMessage.rdBit | DNSMessage.raBit | DNSRcode.nxDomain,
                           questions: q.questions)
        r.answers = [
            .cname(try name("api.example.com"), try name("edge.cdn.example"), ttl: 300),
            .a(try name("edge.cdn.example"), 0x5DB8_D822, ttl: 60),
            .aaaa(try name("edge.cdn.example"), 0x2606_2800_0220_0001_0248_1893_25C8_1946, ttl: 60),
        ]
        let back = try DNSMessage.decode(r.encode())
        #expect(back == r)
        #expect(back.rcode == DNSRcode.nxDomain)
        #expect(back.answers[0].cnameTarget == (try name("edge.cdn.example")))
    }

    @Test("addresses follow CNAME chains and ignore unrelated records")
    func cnameChain() throws {
        var m = DNSMessage(id: 1, flags: DNSMessage.qrBit)
        m.answers = [
            .cname(try name("WWW.example.com"), try name("a.example.net"), ttl: 1),
            .cname(try name("a.example.net"), try name("b.example.org"), ttl: 1),
            .a(try name("b.example.org"), 0x0808_0808, ttl: 1),
            .a(try name("unrelated.example"), 0x0A00_0001, ttl: 1),  // must not be picked up
        ]
        #expect(m.addresses(for: try name("www.example.com"), type: DNSType.a) == [.v4(0x0808_0808)])
        #expect(m.addresses(for: try name("www.example.com"), type: DNSType.aaaa).isEmpty)
    }

    @Test("compressed names decode")
    func compression() throws {
        // Header, question "a.example.com" A IN, answer with name = pointer to 12, A 1.2.3.4.
        var bytes: [UInt8] = [0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]
        bytes += [1, 0x61, 7] + Array("example".utf8) + [3] + Array("com".utf8) + [0, 0, 1, 0, 1]
        bytes += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]
        let m = try DNSMessage.decode(bytes)
        #expect(m.answers.first?.name.text == "a.example.com")
        #expect(m.addresses(for: try name("a.example.com"), type: DNSType.a) == [.v4(0x0102_0304)])
    }

    @Test("malformed packets are rejected", arguments: [
        [UInt8](),
        [0, 1, 0, 0, 0, 1],                                   // short header
        [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],                 // question missing
        [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 0x61, 0, 0, 1, 0, 1],  // label runs past
        [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1],    // pointer to itself
        [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 40, 0, 1, 0, 1],    // forward pointer
        [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 1, 0, 1],     // extended label type
        [0, 1, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0],                  // absurd count
        [0, 1, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 9, 1],  // rdata past end
    ])
    func malformed(bytes: [UInt8]) {
        #expect(throws: DNSWireError.self) { try DNSMessage.decode(bytes) }
    }

    @Test("names longer than 255 bytes are rejected")
    func longNames() {
        var bytes: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        for _ in 0..<5 { bytes += [63] + [UInt8](repeating: 0x61, count: 63) }
        bytes += [0, 0, 1, 0, 1]
        #expect(throws: DNSWireError.self) { try DNSMessage.decode(bytes) }
        #expect(DNSName(String(repeating: "a", count: 64) + ".com") == nil)
    }

    @Test("binary labels never become text")
    func binaryLabels() {
        #expect(DNSName(labels: [[0x61, 0x2E, 0x62], [0x63]]).text == nil)
        #expect(DNSName(labels: [[0x61, 0x00]]).text == nil)
        #expect(DNSName(labels: [Array("ok".utf8)]).text == "ok")
    }
}

@Suite("TLS ClientHello")
struct TLSClientHelloTests {
    @Test("SNI is found in a complete hello")
    func complete() {
        #expect(TLSClientHello.parse(makeClientHello(sni: "api.example.com")) == .serverName("api.example.com"))
        #expect(TLSClientHello.parse(makeClientHello(sni: nil)) == .noServerName)
    }

    @Test("every prefix asks for more bytes")
    func prefixes() {
        let hello = makeClientHello(sni: "api.example.com", padding: 300)
        for n in 0..<hello.count {
            #expect(TLSClientHello.parse(hello.prefix(n)) == .needMore, "prefix \(n)")
        }
    }

    @Test("a hello split over several records is reassembled")
    func multiRecord() {
        let split = splitIntoRecords(makeClientHello(sni: "split.example.com", padding: 1000), pieces: 4)
        #expect(TLSClientHello.parse(split) == .serverName("split.example.com"))
        #expect(TLSClientHello.parse(split.prefix(split.count - 1)) == .needMore)
    }

    @Test("non-TLS and malformed input is invalid", arguments: [
        Array("GET / HTTP/1.1\r\n\r\n".utf8),
        [22, 3, 1, 0, 4, 2, 0, 0, 0],       // ServerHello, not ClientHello
        [23, 3, 3, 0, 1, 0],                 // application data
        [22, 3, 1, 0, 0],                    // empty record
        [22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3],  // body too short for its fields
    ])
    func invalid(bytes: [UInt8]) {
        #expect(TLSClientHello.parse(bytes) == .invalid)
    }

    @Test("a duplicated SNI extension is refused")
    func duplicateSNI() {
        var hello = makeClientHello(sni: "a.example.com")
        // Re-build with the server_name extension twice.
        let ext: [UInt8] = [0, 0, 0, 18, 0, 16, 0, 0, 13] + Array("b.example.com".utf8)
        let body = Array(hello[9...])
        let extStart = 2 + 32 + 1 + 32 + 2 + 4 + 2
        let oldLen = Int(body[extStart]) << 8 | Int(body[extStart + 1])
        let newExts = Array(body[(extStart + 2)...]) + ext
        let newBody = Array(body[..<extStart]) + [UInt8((oldLen + ext.count) >> 8), UInt8((oldLen + ext.count) & 0xFF)] + newExts
        let hs: [UInt8] = [1, 0, UInt8(newBody.count >> 8), UInt8(newBody.count & 0xFF)] + newBody
        hello = [22, 3, 1, UInt8(hs.count >> 8), UInt8(hs.count & 0xFF)] + hs
        #expect(TLSClientHello.parse(hello) == .invalid)
    }

    /// A change_cipher_spec record (TLS 1.3 middlebox compatibility mode sends
    /// one right behind the ClientHello) and the start of an application-data
    /// record (0-RTT early data), as a read may cut them.
    static let ccsRecord: [UInt8] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01]
    static let earlyData: [UInt8] = [0x17, 0x03, 0x03, 0x00, 0x20] + [UInt8](repeating: 0xEE, count: 32)

    @Test("a complete hello is decided whatever part of the next record follows it", arguments: [
        ("ccs", ccsRecord), ("early data", earlyData),
    ])
    func trailingRecord(name: String, tail: [UInt8]) {
        for hello in [makeClientHello(sni: "api.example.com"),
                      splitIntoRecords(makeClientHello(sni: "api.example.com", padding: 400), pieces: 2)] {
            for n in 0...tail.count {
                #expect(TLSClientHello.parse(hello + tail.prefix(n)) == .serverName("api.example.com"),
                        "\(name): hello + \(n) bytes")
            }
        }
        let bare = makeClientHello(sni: nil)
        for n in 0...tail.count {
            #expect(TLSClientHello.parse(bare + tail.prefix(n)) == .noServerName, "\(name), no SNI: hello + \(n) bytes")
        }
    }

    /// Hellos and what follows them in the first flight, with the answer each
    /// whole stream must get.
    static let streams: [(label: String, bytes: [UInt8], answer: ClientHelloResult)] = {
        let sni = makeClientHello(sni: "api.example.com", padding: 200)
        let bare = makeClientHello(sni: nil, padding: 50)
        let twoRecords = splitIntoRecords(makeClientHello(sni: "two.example.com", padding: 300), pieces: 2)
        let manyRecords = splitIntoRecords(makeClientHello(sni: "many.example.com", padding: 100), pieces: 40)
        var serverHello = makeClientHello(sni: "x.example.com")
        serverHello[5] = 2  // a ServerHello where a ClientHello belongs
        var out: [(String, [UInt8], ClientHelloResult)] = []
        for (label, hello, answer) in [
            ("sni", sni, ClientHelloResult.serverName("api.example.com")),
            ("no sni", bare, .noServerName),
            ("two records", twoRecords, .serverName("two.example.com")),
            ("forty records", manyRecords, .serverName("many.example.com")),
            ("server hello", serverHello, .invalid),
        ] {
            out.append((label, hello, answer))
            out.append((label + " + ccs", hello + ccsRecord, answer))
            out.append((label + " + ccs + early data", hello + ccsRecord + earlyData, answer))
        }
        return out
    }()

    @Test("every prefix gives needMore or the answer for the whole stream")
    func segmentationIndependent() {
        // The proxy parses everything received so far after each read, so
        // whatever the segmentation, each answer it sees is that of a prefix.
        for s in Self.streams {
            #expect(TLSClientHello.parse(s.bytes) == s.answer, "\(s.label): whole stream")
            var firstFinal: Int?
            for n in 0...s.bytes.count {
                let r = TLSClientHello.parse(s.bytes.prefix(n))
                if r == .needMore {
                    #expect(firstFinal == nil, "\(s.label): needMore at \(n) after an answer at \(firstFinal ?? -1)")
                } else {
                    firstFinal = firstFinal ?? n
                    #expect(r == s.answer, "\(s.label): prefix \(n) answered \(r)")
                }
            }
        }
    }

    @Test("the size bound counts bytes of the stream, not bytes that have arrived")
    func sizeBound() {
        let limit = TLSClientHello.maxFirstFlightBytes
        // One ClientHello message, in 4-byte records: over the bound with its headers.
        let hello = makeClientHello(sni: "big.example.com", padding: 16_200)
        let tiny = splitIntoRecords(hello, pieces: (hello.count - 5 + 3) / 4)
        #expect(tiny.count > limit)
        #expect(TLSClientHello.parse(tiny) == .invalid)
        for n in stride(from: 0, through: tiny.count, by: 97) + [limit - 1, limit, limit + 1] {
            let r = TLSClientHello.parse(tiny.prefix(n))
            #expect(r == (n < limit ? .needMore : .invalid), "prefix \(n)")
        }
        // The same message in 16 records is more than 16 KiB on the wire but
        // within the bound, and taken however it arrives.
        let sixteen = splitIntoRecords(hello, pieces: 16)
        #expect(sixteen.count > TLSClientHello.maxBufferedBytes && sixteen.count < limit)
        #expect(TLSClientHello.parse(sixteen) == .serverName("big.example.com"))
        #expect(TLSClientHello.parse(sixteen + Self.earlyData) == .serverName("big.example.com"))
        for n in stride(from: 0, to: sixteen.count, by: 101) {
            #expect(TLSClientHello.parse(sixteen.prefix(n)) == .needMore, "prefix \(n)")
        }
    }
}

@Suite("Request targets")
struct RequestTargetTests {
    @Test("authority forms")
    func authority() {
        #expect(RequestTarget.authority("Example.COM:8080", defaultPort: nil) == .success(NamedTarget(host: "example.com", port: 8080)))
        #expect(RequestTarget.authority("example.com", defaultPort: 80) == .success(NamedTarget(host: "example.com", port: 80)))
        #expect(RequestTarget.authority("example.com.:443", defaultPort: nil) == .success(NamedTarget(host: "example.com", port: 443)))
        #expect(RequestTarget.authority("example.com", defaultPort: nil) == .failure(.badRequest))
        #expect(RequestTarget.authority("example.com:0", defaultPort: nil) == .failure(.badRequest))
        #expect(RequestTarget.authority("example.com:99999", defaultPort: nil) == .failure(.badRequest))
        #expect(RequestTarget.authority("example.com:8o", defaultPort: nil) == .failure(.badRequest))
        #expect(RequestTarget.authority("user@example.com", defaultPort: 80) == .failure(.badRequest))
        #expect(RequestTarget.authority("[::1]:80", defaultPort: nil) == .failure(.ipLiteral))
        #expect(RequestTarget.authority("[::ffff:169.254.169.254]:80", defaultPort: nil) == .failure(.metadataAddress))
        #expect(RequestTarget.authority("::1", defaultPort: 80) == .failure(.ipLiteral))
        #expect(RequestTarget.authority("127.1:80", defaultPort: nil) == .failure(.ipLiteral))
        #expect(RequestTarget.authority("%31%32%37.0.0.1:80", defaultPort: nil) == .failure(.ipLiteral))
    }

    @Test("absolute forms")
    func absolute() throws {
        let (t, path) = try RequestTarget.absolute("HTTP://Example.com:8080/a/b?c=d#frag").get()
        #expect(t == NamedTarget(host: "example.com", port: 8080))
        #expect(path == "/a/b?c=d")
        #expect(try RequestTarget.absolute("http://example.com").get().1 == "/")
        #expect(try RequestTarget.absolute("http://example.com?x").get().1 == "/?x")
        #expect(RequestTarget.absolute("https://example.com/").map { $0.0 } == .failure(.badRequest))
        #expect(RequestTarget.absolute("/relative").map { $0.0 } == .failure(.badRequest))
        #expect(RequestTarget.absolute("http://allowed.example@evil.example/").map { $0.0 } == .failure(.badRequest))
    }
}
