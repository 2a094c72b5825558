// CONNECT tunnels to a TLS port: the client's first flight must be a ClientHello
// for the CONNECT host. End to end on loopback only, as ProxyEndToEndTests: the
// echo upstream's port stands in for 443 (`connectTLSPorts`), the fake DNS server
// answers 127.0.0.1, and the dial filter refuses anything else.
import ClawjailCore
import Glibc
import NIOCore
import Testing
@testable import ClawjailEgress

private let crlf2 = Array("\r\n\r\n".utf8)
private let ccs: [UInt8] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01]

/// A proxy whose only allowlisted name is echo.test on the echo server's port,
/// with that port's CONNECT tunnels inspected as 443's are.
private func withInspectedEcho(
    allowNonTLS: Bool = false, engine: TunnelEngine = .splice,
    _ body: (Harness, EchoServer) async throws -> Void
) async throws {
    let h = Harness { name, _, _ in name == "echo.test" ? .records(a: [0x7F00_0001], aaaa: [], ttl: 30) : .nxdomain }
    let echo = EchoServer()
    do {
        try await echo.start(group: h.group)
        let port = UInt16(echo.port)
        try await h.start(allow: ["echo.test:\(port)"]) { c in
            c.connectTLSPorts = [port]
            c.allowNonTLSConnect = allowNonTLS
            engine.apply(&c)
        }
        try await body(h, echo)
    } catch {
        await echo.stop()
        await h.stop()
        throw error
    }
    await echo.stop()
    await h.stop()
}

/// Opens `CONNECT echo.test:PORT` (with `behind` in the same write) and reads
/// the 200. Returns the client and whatever arrived after the head.
private func openTunnel(_ h: Harness, _ echo: EchoServer, behind: [UInt8] = []) throws -> (TestClient, [UInt8]) {
    let c = try TestClient(port: h.proxyPort, timeoutSeconds: 8)
    c.send(Array("CONNECT echo.test:\(echo.port) HTTP/1.1\r\nHost: echo.test:\(echo.port)\r\n\r\n".utf8) + behind)
    let got = c.read(until: { $0.firstRange(of: crlf2) != nil })
    let end = try #require(got.firstRange(of: crlf2), "no response head")
    let head = String(decoding: got[..<end.lowerBound], as: UTF8.self)
    #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")
    return (c, Array(got[end.upperBound...]))
}

@Suite("CONNECT to a TLS port: the ClientHello must name the CONNECT host (loopback)")
struct ConnectFirstFlightTests {
    @Test("a ClientHello for another name, or for none, gets access_denied and an audited denial", arguments: [
        "evil.test", "echo.test.evil.test", "xecho.test", nil,
    ])
    func refused(sni: String?) async throws {
        try await withInspectedEcho { h, echo in
            let (c, early) = try openTunnel(h, echo)
            c.send(makeClientHello(sni: sni))
            let (reply, closed) = c.readUntilClosed()
            #expect(early + reply == TLSAlert.accessDenied)
            #expect(closed, "the proxy must hang up after the alert")
            #expect(echo.received.all.isEmpty, "the ClientHello reached the upstream")
            #expect(await h.waitForAudit { $0.contains { $0.verdict == .deny } })
            let d = try #require(h.denials().first)
            #expect(h.denials().count == 1)
            #expect(d.mode == .connect && d.rule == "sni-mismatch" && d.denyRule == .sniMismatch)
            #expect(d.host == "echo.test" && d.port == UInt16(echo.port))
            if let sni {
                #expect(d.reason == "sni mismatch: \(sni) for echo.test")
            } else {
                #expect(d.reason == "sni missing: a ClientHello without a server name for echo.test")
            }
            #expect(!h.audit.all.contains { $0.verdict == .allow })
        }
    }

    @Test("a ClientHello for the CONNECT host passes, and megabytes follow it byte for byte",
          arguments: TunnelEngine.allCases, ["echo.test", "ECHO.Test."])
    func matching(engine: TunnelEngine, sni: String) async throws {
        try await withInspectedEcho(engine: engine) { h, echo in
            let (c, early) = try openTunnel(h, echo)
            let hello = makeClientHello(sni: sni, padding: 200)
            c.send(hello)
            let first = early + c.read(until: { early.count + $0.count >= 5 + hello.count })
            #expect(first == Array("ECHO:".utf8) + hello)
            // Checked, then handed to the kernel like any tunnel.
            let kernel = engine == .splice ? 1 : 0
            for _ in 0..<100 where h.proxy?.kernelTunnelCount != kernel { try await Task.sleep(for: .milliseconds(10)) }
            #expect(h.proxy?.kernelTunnelCount == kernel)

            let size = 6 << 20
            var payload = [UInt8](repeating: 0, count: size)
            for i in 0..<size { payload[i] = patternByte(i) }
            nonisolated(unsafe) let client = c
            let sender = TestThread {
                client.send(payload)
                client.shutdownWrite()
            }
            let echoed = c.readToEOF()
            sender.join()
            #expect(echoed.count == size)
            #expect(echoed == payload, "the echoed stream differs from what was sent")
            #expect(await h.waitForAudit { $0.contains { $0.mode == .connect && $0.verdict == .allow } })
            let rec = try #require(h.audit.all.first { $0.mode == .connect })
            #expect(rec.verdict == .allow)
            #expect(rec.bytesUp == UInt64(hello.count + size))
            #expect(rec.bytesDown == UInt64(5 + hello.count + size))
            #expect(h.denials().isEmpty)
        }
    }

    @Test("a ClientHello over two records in 1-byte segments is reassembled before the decision",
          arguments: [("echo.test", true), ("evil.test", false)])
    func bytewise(sni: String, passes: Bool) async throws {
        try await withInspectedEcho { h, echo in
            let hello = splitIntoRecords(makeClientHello(sni: sni, padding: 100), pieces: 2)
            // The first byte rides behind the CONNECT head, so the HTTP decoder
            // hands it over; then one byte per segment. The pauses block this
            // thread on purpose (see ProxyEndToEndTests.transparentTLS).
            let (c, early) = try openTunnel(h, echo, behind: [hello[0]])
            #expect(early.isEmpty)
            c.sendBytewise(Array(hello.dropFirst()), pauseMicroseconds: 1000)
            if passes {
                let reply = c.read(until: { $0.count >= 5 + hello.count })
                #expect(reply == Array("ECHO:".utf8) + hello)
                #expect(echo.received.all.flatMap { $0 } == hello)
                #expect(h.denials().isEmpty)
            } else {
                let (reply, closed) = c.readUntilClosed()
                #expect(reply == TLSAlert.accessDenied && closed)
                #expect(echo.received.all.isEmpty)
                #expect(h.denials().first?.reason == "sni mismatch: evil.test for echo.test")
            }
        }
    }

    @Test("the ClientHello, a cut change_cipher_spec record and a FIN behind it all arrive, in order")
    func trailingBytesAndFIN() async throws {
        try await withInspectedEcho { h, echo in
            let hello = makeClientHello(sni: "echo.test")
            // CONNECT, the hello and 3 bytes of the next record in one write.
            let (c, early) = try openTunnel(h, echo, behind: hello + ccs.prefix(3))
            usleep(30_000)
            c.send(Array(ccs.dropFirst(3)))
            c.shutdownWrite()
            let (reply, closed) = c.readUntilClosed()
            #expect(early + reply == Array("ECHO:".utf8) + hello + ccs)
            #expect(closed)
            #expect(await h.waitForAudit { $0.contains { $0.mode == .connect && $0.verdict == .allow } })
            #expect(h.audit.all.first { $0.mode == .connect }?.bytesUp == UInt64(hello.count + ccs.count))
            #expect(h.denials().isEmpty)
        }
    }

    @Test("a first flight that is not TLS is refused with a 403, unless the config allows it", arguments: [false, true])
    func notTLS(allowed: Bool) async throws {
        try await withInspectedEcho(allowNonTLS: allowed) { h, echo in
            let request = Array("GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n".utf8)
            let (c, early) = try openTunnel(h, echo)
            c.send(request)
            if allowed {
                let reply = early + c.read(until: { early.count + $0.count >= 5 + request.count })
                #expect(reply == Array("ECHO:".utf8) + request)
                #expect(h.denials().isEmpty)
                // Allowing other protocols does not let a fronted ClientHello through.
                let (t, _) = try openTunnel(h, echo)
                t.send(makeClientHello(sni: "evil.test"))
                let (alert, closed) = t.readUntilClosed()
                #expect(alert == TLSAlert.accessDenied && closed)
                #expect(h.denials().map(\.rule) == ["sni-mismatch"])
            } else {
                let (reply, closed) = c.readUntilClosed()
                #expect(closed)
                let text = String(decoding: early + reply, as: UTF8.self)
                #expect(text.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
                #expect(text.contains("\r\nX-Clawjail-Deny: not-tls\r\n"))
                #expect(text.contains("allow_non_tls_443"))
                #expect(echo.received.all.isEmpty)
                let d = try #require(h.denials().first)
                #expect(d.rule == "not-tls" && d.mode == .connect && d.host == "echo.test")
                #expect(d.reason == "not tls: the tunnel to echo.test does not start with a TLS ClientHello")
            }
        }
    }

    @Test("a client that sends nothing, or half a ClientHello, is closed at the first-request timeout",
          arguments: [0, 40])
    func silent(sent: Int) async throws {
        // The harness's first-request timeout is 2 s, the client's own 8 s: the
        // client must see the proxy hang up, not its own timeout.
        try await withInspectedEcho { h, echo in
            let (c, early) = try openTunnel(h, echo)
            c.send(Array(makeClientHello(sni: "echo.test").prefix(sent)))
            let (reply, closed) = c.readUntilClosed()
            #expect(closed, "the tunnel was still open when the client gave up")
            #expect(early + reply == (sent == 0 ? [] : TLSAlert.accessDenied))
            #expect(echo.received.all.isEmpty)
            let d = try #require(h.denials().first)
            #expect(d.mode == .connect)
            if sent == 0 {
                #expect(d.rule == "not-tls")
                #expect(d.reason == "no first flight: the client sent nothing into the tunnel to echo.test within 2 s")
            } else {
                #expect(d.rule == "bad-request")
                #expect(d.reason == "incomplete ClientHello for echo.test: the ClientHello was not complete within 2 s")
            }
            #expect(!h.audit.all.contains { $0.verdict == .allow })
        }
    }

    @Test("CONNECT to a port that is not a TLS port is spliced without looking")
    func otherPortsUnchecked() async throws {
        let h = Harness { name, _, _ in name == "echo.test" ? .records(a: [0x7F00_0001], aaaa: [], ttl: 30) : .nxdomain }
        let echo = EchoServer()
        try await echo.start(group: h.group)
        try await h.start(allow: ["echo.test:\(echo.port)"])  // connectTLSPorts stays [443]
        let (c, early) = try openTunnel(h, echo, behind: Array("ping".utf8))
        let reply = early + c.read(until: { early.count + $0.count >= 9 })
        #expect(reply == Array("ECHO:ping".utf8))
        #expect(h.denials().isEmpty)
        await echo.stop()
        await h.stop()
    }
}

@Suite("CONNECT first flight decisions (unit)")
struct ConnectFirstFlightUnitTests {
    func decide(_ b: [UInt8], allowNonTLS: Bool = false, ending: ConnectFirstFlight.Ending? = nil)
        -> ConnectFirstFlight.Verdict {
        ConnectFirstFlight.decide(b, host: "api.example.com", allowNonTLS: allowNonTLS, ending: ending)
    }

    @Test("the server name must be the CONNECT host: case-insensitive, one trailing dot ignored")
    func names() {
        for sni in ["api.example.com", "API.Example.COM", "api.example.com."] {
            #expect(decide(makeClientHello(sni: sni)) == .pass, "\(sni)")
        }
        for sni in ["evil.example", "api.example.com..", "x.api.example.com", "api.example.co", "api.example.com.evil"] {
            guard case .refuse(let r) = decide(makeClientHello(sni: sni)) else {
                Issue.record("\(sni) passed")
                continue
            }
            #expect(r.rule == .sniMismatch && r.reply == .tlsAlert && r.reason == "sni mismatch: \(sni) for api.example.com")
        }
        guard case .refuse(let r) = decide(makeClientHello(sni: nil)) else {
            Issue.record("no SNI passed")
            return
        }
        #expect(r.rule == .sniMismatch && r.reason.hasPrefix("sni missing"))
    }

    @Test("non-TLS is decided on the first byte; TLS is checked even when non-TLS is allowed")
    func nonTLS() {
        #expect(decide([0x47]) == .refuse(.init(
            rule: .notTLS, reason: "not tls: the tunnel to api.example.com does not start with a TLS ClientHello",
            reply: .denyResponse)))
        #expect(decide([0x47], allowNonTLS: true) == .pass)
        #expect(decide([0x16], allowNonTLS: true) == .needMore)
        #expect(decide(makeClientHello(sni: "evil.example"), allowNonTLS: true)
            == .refuse(.init(rule: .sniMismatch, reason: "sni mismatch: evil.example for api.example.com", reply: .tlsAlert)))
        guard case .refuse(let r) = decide([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0], allowNonTLS: true) else {
            Issue.record("a ServerHello passed")
            return
        }
        #expect(r.rule == .badRequest && r.reply == .tlsAlert)
    }

    @Test("waiting is an answer only while more bytes can come")
    func endings() {
        #expect(decide([]) == .needMore)
        #expect(decide([], allowNonTLS: true, ending: .closed) == .refuse(.init(
            rule: .notTLS, reason: "no first flight: the client closed the tunnel to api.example.com before sending anything",
            reply: .none)))
        #expect(decide([], ending: .timedOut(.milliseconds(1500))) == .refuse(.init(
            rule: .notTLS, reason: "no first flight: the client sent nothing into the tunnel to api.example.com within 1500 ms",
            reply: .none)))
        let part = Array(makeClientHello(sni: "api.example.com").prefix(30))
        #expect(decide(part) == .needMore)
        guard case .refuse(let r) = decide(part, ending: .closed) else {
            Issue.record("a cut hello passed")
            return
        }
        #expect(r.rule == .badRequest && r.reply == .tlsAlert && r.reason.hasPrefix("incomplete ClientHello"))
        // A complete hello is decided; an ending changes nothing.
        #expect(decide(makeClientHello(sni: "api.example.com"), ending: .closed) == .pass)
    }

    @Test("every prefix gives needMore or the verdict on the whole first flight")
    func segmentation() {
        let flights: [[UInt8]] = [
            makeClientHello(sni: "api.example.com") + ccs,
            splitIntoRecords(makeClientHello(sni: "api.example.com", padding: 300), pieces: 3) + ccs,
            makeClientHello(sni: "evil.example") + ccs,
            makeClientHello(sni: nil),
            Array("GET / HTTP/1.1\r\n\r\n".utf8),
        ]
        for flight in flights {
            for allow in [false, true] {
                let whole = decide(flight, allowNonTLS: allow)
                #expect(whole != .needMore)
                for n in 0...flight.count {
                    let r = decide(Array(flight.prefix(n)), allowNonTLS: allow)
                    #expect(r == .needMore || r == whole, "prefix \(n) of \(flight.prefix(8)): \(r), whole: \(whole)")
                }
            }
        }
    }
}
