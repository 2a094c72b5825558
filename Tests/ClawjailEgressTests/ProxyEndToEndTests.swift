// End to end on loopback only: upstreams and the fake DNS server listen on
// 127.0.0.1, the injected address guard treats exactly 127.0.0.1 as public,
// and a dial filter refuses (and records) any other destination.
import ClawjailCore
import Glibc
import NIOCore
import NIOPosix
import Testing
@testable import ClawjailEgress

private let local4: UInt32 = 0x7F00_0001

private func answers(_ name: String, _ type: UInt16, _ seq: Int) -> FakeAnswer {
    switch name {
    case "web.test", "echo.test", "tls.test", "plain.test", "a.wild.test", "banner.test", "flood.test":
        return .records(a: [local4], aaaa: [], ttl: 30)
    case "private.bad.test": return .records(a: [0x0A00_0001], aaaa: [], ttl: 30)
    case "meta.bad.test": return .records(a: [0xA9FE_A9FE], aaaa: [], ttl: 30)
    case "mapped.bad.test": return .records(a: [], aaaa: [0xFFFF_7F00_0001], ttl: 30)
    case "mixed.bad.test": return .records(a: [local4], aaaa: [0xFD00_0000_0000_0000_0000_0000_0000_0001], ttl: 30)
    case "rebind.test": return .records(a: [seq % 2 == 0 ? local4 : 0x0A00_0001], aaaa: [], ttl: 0)
    case "tc.test": return .truncated(a: [local4])
    case "slow6.test": return type == DNSType.aaaa ? .silent : .records(a: [local4], aaaa: [], ttl: 5)
    default: return .nxdomain
    }
}

/// Starts an HTTP upstream, an echo upstream and a proxy, runs `body`, and
/// tears everything down even when `body` throws.
private func withProxy(
    allow: (_ webPort: Int, _ echoPort: Int) -> [String],
    transparent: Bool = false, dnsResponder: Bool = false,
    configure: @escaping (inout EgressConfig, _ webPort: Int, _ echoPort: Int) -> Void = { _, _, _ in },
    _ body: (Harness, TestHTTPServer, EchoServer) async throws -> Void
) async throws {
    let h = Harness(answer: answers)
    let web = TestHTTPServer()
    let echo = EchoServer()
    do {
        try await web.start(group: h.group)
        try await echo.start(group: h.group)
        let (wp, ep) = (web.port, echo.port)
        try await h.start(allow: allow(wp, ep), transparent: transparent, dnsResponder: dnsResponder) {
            configure(&$0, wp, ep)
        }
        try await body(h, web, echo)
    } catch {
        await web.stop()
        await echo.stop()
        await h.stop()
        throw error
    }
    await web.stop()
    await echo.stop()
    await h.stop()
}

/// Who carries an established tunnel: the kernel (splice) or NIO.
enum TunnelEngine: String, CaseIterable, CustomTestStringConvertible {
    case splice, nio
    var testDescription: String { rawValue }

    func apply(_ c: inout EgressConfig) {
        c.kernelTunnels = self == .splice
    }
}

@Suite("Egress proxy end to end (loopback)")
struct ProxyEndToEndTests {
    @Test("CONNECT to an allowlisted name tunnels bytes both ways")
    func connectAllowed() async throws {
        try await withProxy(allow: { _, e in ["echo.test:\(e)"] }) { h, _, echo in
            let c = try TestClient(port: h.proxyPort)
            c.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\nHost: echo.test:\(echo.port)\r\n\r\n")
            let head = String(decoding: c.read(until: { $0.count >= 4 && $0.suffix(4) == Array("\r\n\r\n".utf8) }),
                              as: UTF8.self)
            #expect(head.hasPrefix("HTTP/1.1 200"))
            c.send("ping")
            let echoed = String(decoding: c.read(until: { $0.count >= 9 }), as: UTF8.self)
            #expect(echoed == "ECHO:ping")
            c.shutdownWrite()
            _ = c.readToEOF()
            #expect(echo.received.all.flatMap { $0 } == Array("ping".utf8))
            #expect(h.dials.all == [loopback])
            #expect(await h.waitForAudit { $0.contains { $0.mode == .connect && $0.verdict == .allow } })
            let rec = try #require(h.audit.all.first { $0.mode == .connect })
            #expect(rec.host == "echo.test")
            #expect(rec.rule == "echo.test:\(echo.port)")
            #expect(rec.bytesUp == 4)
            #expect(rec.bytesDown == 9)
            #expect(rec.upstreamIP == loopback)

            // Bytes sent right behind the CONNECT head (same segment) are not lost.
            let eager = try TestClient(port: h.proxyPort)
            eager.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\n\r\nearly")
            let all = String(decoding: eager.read(until: { String(decoding: $0, as: UTF8.self).hasSuffix("ECHO:early") }),
                             as: UTF8.self)
            #expect(all.hasPrefix("HTTP/1.1 200") && all.hasSuffix("ECHO:early"))
        }
    }

    @Test("a CONNECT tunnel carries megabytes both ways, byte for byte, in the kernel or in NIO",
          arguments: TunnelEngine.allCases)
    func connectBulk(engine: TunnelEngine) async throws {
        let kernel = engine != .nio
        try await withProxy(allow: { _, e in ["echo.test:\(e)"] }, configure: { c, _, _ in engine.apply(&c) }) {
            h, _, echo in
            let c = try TestClient(port: h.proxyPort)
            c.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\n\r\nfirst")
            let head = c.read(until: { String(decoding: $0, as: UTF8.self).hasSuffix("ECHO:first") })
            #expect(String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            // The tunnel is established: it is the kernel's, or NIO's.
            #expect(h.proxy?.kernelTunnelCount == (kernel ? 1 : 0))
            #expect(h.proxy?.activeConnections == 1)

            // 6 MiB of a pattern that shows any lost, repeated or reordered block.
            let size = 6 << 20
            var payload = [UInt8](repeating: 0, count: size)
            for i in 0..<size { payload[i] = UInt8(truncatingIfNeeded: (i >> 10) &* 31 &+ i) }
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
            #expect(rec.bytesUp == UInt64(size + 5))
            #expect(rec.bytesDown == UInt64(size + 10))
            for _ in 0..<1000 where (h.proxy?.activeConnections ?? 0) > 0 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(h.proxy?.activeConnections == 0)
            #expect(h.proxy?.kernelTunnelCount == 0)
        }
    }

    @Test("a reader that stops reading holds the sender back, and then gets every byte in order",
          arguments: TunnelEngine.allCases, [false, true])
    func slowReader(engine: TunnelEngine, inspected: Bool) async throws {
        // A relay that read without bound (a BPF sockmap redirect, for one: the
        // kernel puts no limit on its queue) would take the whole flood into the
        // host's memory; TCP's windows must stall the sender instead.
        // The buffers in between are the kernel's, autotuned: usually about 6 MiB,
        // but up to tcp_rmem's maximum (32 MiB on this machine) on the proxy's
        // upstream socket under load, so the bound checked is the flood's size
        // (an unbounded queue takes it all), and that the sender stays stalled.
        // `inspected`: the port is a TLS port, so the tunnel starts only after
        // the proxy has checked the ClientHello; the splice must then be the same.
        let total = 40 << 20
        let flood = try FloodServer(total: total)
        defer { flood.stop() }
        try await withProxy(allow: { _, _ in ["flood.test:\(flood.port)"] },
                            configure: { c, _, _ in
                                engine.apply(&c)
                                if inspected { c.connectTLSPorts = [UInt16(flood.port)] }
                            }) { h, _, _ in
            let c = try TestClient(port: h.proxyPort, timeoutSeconds: 10)
            var small: Int32 = 128 << 10
            setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            c.send(Array("CONNECT flood.test:\(flood.port) HTTP/1.1\r\n\r\n".utf8)
                   + (inspected ? makeClientHello(sni: "flood.test") : []))
            var got = c.read(until: { $0.firstRange(of: Array("\r\n\r\n".utf8)) != nil })
            let head = try #require(got.firstRange(of: Array("\r\n\r\n".utf8)))
            #expect(String(decoding: got[..<head.lowerBound], as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            got.removeSubrange(..<head.upperBound)

            // Not reading: the sender must stall with the path's buffers full.
            try await Task.sleep(for: .milliseconds(1500))
            let stalled = flood.accepted
            #expect(stalled < total - (4 << 20), "the path in between took \(stalled >> 20) MiB from the sender")
            try await Task.sleep(for: .milliseconds(500))
            #expect(flood.accepted - stalled < 1 << 20, "the sender still moves: \(stalled >> 20) then \(flood.accepted >> 20) MiB")

            // Now read it all, checking every byte against the pattern.
            var offset = 0
            var mismatch: Int?
            func check(_ bytes: ArraySlice<UInt8>) {
                for b in bytes {
                    if mismatch == nil && b != patternByte(offset) { mismatch = offset }
                    offset += 1
                }
            }
            check(got[...])
            var buf = [UInt8](repeating: 0, count: 256 << 10)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                check(buf[0..<n])
            }
            #expect(offset == total)
            #expect(mismatch == nil, "first wrong byte at \(mismatch ?? -1)")
            c.shutdownWrite()
            #expect(await h.waitForAudit { $0.contains { $0.mode == .connect && $0.verdict == .allow } })
            let rec = try #require(h.audit.all.first { $0.mode == .connect })
            #expect(rec.verdict == .allow)
            #expect(rec.bytesDown == UInt64(total))
        }
    }

    @Test("a server that speaks first and hangs up is heard in full", arguments: TunnelEngine.allCases)
    func connectServerSpeaksFirst(engine: TunnelEngine) async throws {
        let banner = try BannerServer(banner: Array("220 hello from the origin\r\n".utf8))
        defer { banner.stop() }
        try await withProxy(allow: { _, _ in ["banner.test:\(banner.port)"] },
                            configure: { c, _, _ in engine.apply(&c) }) { h, _, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("CONNECT banner.test:\(banner.port) HTTP/1.1\r\n\r\n")
            let all = String(decoding: c.readToEOF(), as: UTF8.self)
            #expect(all.hasPrefix("HTTP/1.1 200"))
            #expect(all.hasSuffix("\r\n\r\n220 hello from the origin\r\n"))
            c.shutdownWrite()  // the tunnel ends when both directions have
            #expect(await h.waitForAudit { $0.contains { $0.mode == .connect && $0.verdict == .allow } })
            let rec = try #require(h.audit.all.first { $0.mode == .connect })
            #expect(rec.bytesDown == 27)
        }
    }

    @Test("absolute-form GET is forwarded in origin form, without proxy and forwarding headers")
    func absoluteFormStripsHeaders() async throws {
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            let p = web.port
            c.send("GET http://web.test:\(p)/path?q=1 HTTP/1.1\r\nHost: web.test:\(p)\r\n"
                + "X-Forwarded-For: 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\nForwarded: for=127.0.0.1\r\n"
                + "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nX-Keep: me\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.status == 200)
            #expect(r.bodyText == "hello from upstream GET /path?q=1")
            #expect(r.header("x-upstream") == "yes")
            let got = try #require(web.requests.all.first)
            #expect(got.head.uri == "/path?q=1")
            #expect(got.head.headers["host"] == ["web.test:\(p)"])
            #expect(got.head.headers["x-keep"] == ["me"])
            for stripped in ["x-forwarded-for", "x-real-ip", "forwarded", "proxy-authorization", "proxy-connection"] {
                #expect(!got.head.headers.contains(name: stripped), "\(stripped) reached the upstream")
            }

            // Keep-alive: a second request reuses the checked upstream connection.
            c.send("POST http://web.test:\(p)/second HTTP/1.1\r\nHost: web.test:\(p)\r\nContent-Length: 5\r\n\r\nhello")
            let r2 = try #require(c.readResponse())
            #expect(r2.bodyText == "hello from upstream POST /second")
            #expect(web.requests.all.last?.body == Array("hello".utf8))
            #expect(web.connections.count == 1)
            #expect(h.dns.queries.all.filter { $0.type == DNSType.a }.count == 1)
            #expect(await h.waitForAudit { $0.filter { $0.mode == .http && $0.verdict == .allow }.count == 2 })
            let posts = h.audit.all.filter { $0.mode == .http && $0.verdict == .allow }
            #expect(posts.last?.bytesUp == 5)
        }
    }

    @Test("redirects are passed through, never followed")
    func redirectsPassThrough() async throws {
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("GET http://web.test:\(web.port)/redirect HTTP/1.1\r\nHost: web.test:\(web.port)\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.status == 302)
            #expect(r.header("location") == "http://evil.test/")
            #expect(!h.dns.queries.all.contains { $0.name == "evil.test" })
        }
    }

    @Test("chunked responses and HEAD requests keep their framing")
    func framing() async throws {
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            let p = web.port
            c.send("GET http://web.test:\(p)/chunked HTTP/1.1\r\nHost: web.test:\(p)\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.status == 200)
            let text = r.bodyText
            #expect(text.contains("alpha-") && text.contains("gamma") && text.hasSuffix("0\r\n\r\n"))
            c.send("HEAD http://web.test:\(p)/x HTTP/1.1\r\nHost: web.test:\(p)\r\n\r\n")
            let head = String(decoding: c.read(until: { $0.suffix(4) == Array("\r\n\r\n".utf8) }), as: UTF8.self)
            #expect(head.hasPrefix("HTTP/1.1 200"))
            // The connection is still usable: HEAD left no phantom body behind.
            c.send("GET http://web.test:\(p)/after HTTP/1.1\r\nHost: web.test:\(p)\r\n\r\n")
            let r3 = try #require(c.readResponse())
            #expect(r3.bodyText == "hello from upstream GET /after")
        }
    }

    @Test("a name that is not allowlisted is refused before any DNS query")
    func notAllowlisted() async throws {
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.status == 403)
            #expect(r.header("x-clawjail-deny") == "not-allowlisted")
            #expect(r.bodyText == "clawjail egress: denied (not-allowlisted): evil.test:80 is not in the allowlist\n")

            let c2 = try TestClient(port: h.proxyPort)
            c2.send("CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n")
            #expect(c2.readResponse()?.header("x-clawjail-deny") == "not-allowlisted")

            // An allowlisted name on a port the entry does not name.
            let c3 = try TestClient(port: h.proxyPort)
            c3.send("CONNECT web.test:22 HTTP/1.1\r\n\r\n")
            #expect(c3.readResponse()?.header("x-clawjail-deny") == "not-allowlisted")

            // Suffix trick.
            let c4 = try TestClient(port: h.proxyPort)
            c4.send("GET http://web.test.evil.test:\(web.port)/ HTTP/1.1\r\nHost: web.test.evil.test:\(web.port)\r\n\r\n")
            #expect(c4.readResponse()?.header("x-clawjail-deny") == "not-allowlisted")

            #expect(h.dns.queries.count == 0)
            #expect(h.dials.count == 0)
            #expect(h.denials().count == 4)
            #expect(h.denials().allSatisfy { $0.rule == "not-allowlisted" })
        }
    }

    @Test("allowlisted names that resolve to internal addresses are refused without dialling", arguments: [
        ("private.bad.test", "private-address"),
        ("meta.bad.test", "metadata-address"),
        ("mapped.bad.test", "loopback-address"),
        ("mixed.bad.test", "private-address"),
    ])
    func badAnswers(name: String, rule: String) async throws {
        try await withProxy(allow: { _, _ in ["*.bad.test:8080"] }) { h, _, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("GET http://\(name):8080/ HTTP/1.1\r\nHost: \(name):8080\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.status == 403)
            #expect(r.header("x-clawjail-deny") == rule)
            // The reply names the host, never the address it resolved to.
            #expect(r.bodyText.contains(name))
            for leaked in ["10.0.0.1", "169.254", "127.0.0.1", "::ffff", "fd00"] {
                #expect(!r.bodyText.contains(leaked) && !r.headText.contains(leaked))
            }
            #expect(h.dials.count == 0)
            #expect(h.dns.queries.all.contains { $0.name == name })
            #expect(h.denials().first?.rule == rule)
        }
    }

    @Test("DNS rebinding: the proxy dials exactly the address it checked")
    func rebinding() async throws {
        try await withProxy(allow: { w, _ in ["rebind.test:\(w)"] }) { h, web, _ in
            var statuses: [Int] = []
            for _ in 0..<6 {
                let c = try TestClient(port: h.proxyPort)
                c.send("GET http://rebind.test:\(web.port)/ HTTP/1.1\r\nHost: rebind.test:\(web.port)\r\nConnection: close\r\n\r\n")
                statuses.append(c.readResponse()?.status ?? 0)
            }
            // A answers alternate 127.0.0.1 (allowed by the test guard) and
            // 10.0.0.1 (TTL 0): every check is followed by a dial of that very
            // address, and nothing else.
            #expect(statuses == [200, 403, 200, 403, 200, 403])
            #expect(h.dials.all == [loopback, loopback, loopback])
            #expect(h.dns.queries.all.filter { $0.type == DNSType.a }.count == 6)
            #expect(web.requests.count == 3)
            #expect(h.denials().allSatisfy { $0.rule == "private-address" })
        }
    }

    @Test("request target and Host header must agree", arguments: [
        "GET http://web.test:PORT/ HTTP/1.1\r\nHost: other.test\r\n\r\n",
        "GET http://web.test:PORT/ HTTP/1.1\r\nHost: web.test\r\n\r\n",
        "GET http://web.test:PORT/ HTTP/1.1\r\nHost: web.test:1\r\n\r\n",
        "CONNECT web.test:PORT HTTP/1.1\r\nHost: other.test:PORT\r\n\r\n",
    ])
    func hostMismatch(request: String) async throws {
        try await withProxy(allow: { w, _ in ["web.test:\(w)", "other.test:\(w)"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send(request.replacingPort(web.port))
            let r = try #require(c.readResponse())
            #expect(r.status == 400)
            #expect(r.header("x-clawjail-deny") == "host-mismatch")
            #expect(web.requests.count == 0)
            #expect(h.dns.queries.count == 0)
        }
    }

    @Test("IP literals are refused in every encoding", arguments: [
        ("GET http://127.0.0.1:PORT/ HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n\r\n", "ip-literal"),
        ("GET http://2130706433/ HTTP/1.1\r\nHost: 2130706433\r\n\r\n", "ip-literal"),
        ("GET http://0x7f.1/ HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n", "ip-literal"),
        ("GET http://0177.0.0.1/ HTTP/1.1\r\nHost: 0177.0.0.1\r\n\r\n", "ip-literal"),
        ("GET http://127.1/ HTTP/1.1\r\nHost: 127.1\r\n\r\n", "ip-literal"),
        ("GET http://127.0.0.1./ HTTP/1.1\r\nHost: 127.0.0.1.\r\n\r\n", "ip-literal"),
        ("GET http://[::1]/ HTTP/1.1\r\nHost: [::1]\r\n\r\n", "ip-literal"),
        ("GET http://[::ffff:127.0.0.1]/ HTTP/1.1\r\nHost: [::ffff:127.0.0.1]\r\n\r\n", "ip-literal"),
        ("GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n", "metadata-address"),
        ("GET http://metadata.google.internal/ HTTP/1.1\r\nHost: metadata.google.internal\r\n\r\n", "metadata-address"),
        ("CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", "metadata-address"),
        ("CONNECT [::ffff:a9fe:a9fe]:443 HTTP/1.1\r\n\r\n", "metadata-address"),
        ("CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n", "ip-literal"),
        ("CONNECT 0xa000001:443 HTTP/1.1\r\n\r\n", "ip-literal"),
        ("CONNECT localhost:443 HTTP/1.1\r\n\r\n", "loopback-address"),
        ("GET http://web.test@127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "bad-request"),
        ("GET /origin-form HTTP/1.1\r\nHost: web.test\r\n\r\n", "bad-request"),
        ("GET https://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n", "bad-request"),
        ("GET http://web.test:PORT/ HTTP/1.1\r\n\r\n", "bad-request"),
        ("GET http://web.test:PORT/ HTTP/1.1\r\nHost: web.test:PORT\r\nHost: web.test:PORT\r\n\r\n", "bad-request"),
        ("NOT HTTP AT ALL\r\n\r\n", "bad-request"),
    ])
    func literalsAndBadRequests(request: String, rule: String) async throws {
        try await withProxy(allow: { w, _ in ["web.test:\(w)", "*.web.test"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send(request.replacingPort(web.port))
            let r = try #require(c.readResponse())
            #expect(r.header("x-clawjail-deny") == rule, "\(request)")
            #expect(r.status == (rule == "bad-request" ? 400 : 403))
            #expect(h.dns.queries.count == 0)
            #expect(h.dials.count == 0)
            #expect(web.requests.count == 0)
        }
    }

    @Test("unresolvable names fail with dns-failure; truncated answers fall back to TCP")
    func dnsOutcomes() async throws {
        try await withProxy(allow: { w, _ in ["gone.test:\(w)", "tc.test:\(w)"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("GET http://gone.test:\(web.port)/ HTTP/1.1\r\nHost: gone.test:\(web.port)\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.status == 502)
            #expect(r.header("x-clawjail-deny") == "dns-failure")

            let c2 = try TestClient(port: h.proxyPort)
            c2.send("GET http://tc.test:\(web.port)/tc HTTP/1.1\r\nHost: tc.test:\(web.port)\r\n\r\n")
            let r2 = try #require(c2.readResponse())
            #expect(r2.status == 200)
            #expect(h.dns.queries.all.contains { $0.name == "tc.test" && $0.tcp })
        }
    }

    @Test("a lost AAAA answer does not spoil a good A answer; a dead resolver is skipped")
    func resolverResilience() async throws {
        let silent = FakeDNSServer { _, _, _ in .silent }
        let silentGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        try await silent.start(group: silentGroup)
        try await withProxy(allow: { w, _ in ["slow6.test:\(w)", "web.test:\(w)"] }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("GET http://slow6.test:\(web.port)/ HTTP/1.1\r\nHost: slow6.test:\(web.port)\r\n\r\n")
            #expect(c.readResponse()?.status == 200)
        }
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] }, configure: { c, _, _ in
            c.resolvers.insert(silent.address, at: 0)
        }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("GET http://web.test:\(web.port)/ HTTP/1.1\r\nHost: web.test:\(web.port)\r\n\r\n")
            #expect(c.readResponse()?.status == 200)
            #expect(silent.queries.count == 2)  // A and AAAA went to the dead one first
        }
        await silent.stop()
        try await silentGroup.shutdownGracefully()
    }

    @Test("a connection that lands on one of the host's own addresses is dropped")
    func selfConnection() async throws {
        // On loopback every upstream is "self": with the production setting
        // the proxy must refuse it even though the test guard calls it public.
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] },
                            configure: { c, _, _ in c.refuseConnectionsToSelf = true }) { h, web, _ in
            let c = try TestClient(port: h.proxyPort)
            c.send("GET http://web.test:\(web.port)/ HTTP/1.1\r\nHost: web.test:\(web.port)\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.header("x-clawjail-deny") == "loopback-address")
            #expect(web.requests.count == 0)
        }
        let host = try #require(IPAddress("198.51.100.10"))
        let g = AddressGuard.standard(alsoRefusing: [host])
        #expect(g.classify(host) == .loopback)
        #expect(g.classify(.v4(0x0808_0808)) == .public)
    }

    @Test("idle tunnels are closed and still audited")
    func idleTimeout() async throws {
        try await withProxy(allow: { _, e in ["echo.test:\(e)"] },
                            configure: { c, _, _ in c.idleTimeout = .milliseconds(300) }) { h, _, echo in
            let c = try TestClient(port: h.proxyPort)
            c.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\n\r\n")
            _ = c.read(until: { $0.suffix(4) == Array("\r\n\r\n".utf8) })
            let start = ContinuousClock.now
            _ = c.readToEOF()  // the proxy hangs up; the client's own timeout is 5 s
            #expect(ContinuousClock.now - start < .seconds(3))
            #expect(await h.waitForAudit { $0.contains { $0.mode == .connect && $0.verdict == .allow } })
        }
    }

    @Test("connections beyond the per-agent cap get 503")
    func connectionCap() async throws {
        // The first connection must hold its slot for the whole test: the suite runs
        // tests side by side, and on two cores this task may not run again for longer
        // than the default 10 s first-request timeout, which would free the slot.
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] }, configure: { c, _, _ in
            c.maxConnections = 1
            c.firstRequestTimeout = .seconds(120)
        }) { h, _, _ in
            let first = try TestClient(port: h.proxyPort)
            first.send("GET ")  // keep it open and counted
            // Bounded at 10 s: a loaded machine can take more than half a second to
            // accept it, and a second client accepted first would take the slot.
            for _ in 0..<1000 where (h.proxy?.activeConnections ?? 0) < 1 { try await Task.sleep(for: .milliseconds(10)) }
            try #require(h.proxy?.activeConnections == 1, "the first connection was never counted")
            let second = try TestClient(port: h.proxyPort)
            let r = try #require(second.readResponse())
            #expect(r.status == 503)
            #expect(r.header("x-clawjail-deny") == "too-many-connections")
            _ = first
        }
    }

    @Test("a tunnel in the kernel still holds its slot under the connection cap")
    func connectionCapCountsKernelTunnels() async throws {
        try await withProxy(allow: { _, e in ["echo.test:\(e)"] }, configure: { c, _, _ in c.maxConnections = 1 }) {
            h, _, echo in
            let first = try TestClient(port: h.proxyPort)
            first.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\n\r\nhi")
            _ = first.read(until: { String(decoding: $0, as: UTF8.self).hasSuffix("ECHO:hi") })
            for _ in 0..<1000 where h.proxy?.kernelTunnelCount != 1 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(h.proxy?.kernelTunnelCount == 1)
            #expect(h.proxy?.activeConnections == 1)
            let second = try TestClient(port: h.proxyPort)
            second.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\n\r\n")
            let r = try #require(second.readResponse())
            #expect(r.status == 503)
            // Once the tunnel ends, its slot is free again.
            first.shutdownWrite()
            _ = first.readToEOF()
            for _ in 0..<1000 where (h.proxy?.activeConnections ?? 0) > 0 { try await Task.sleep(for: .milliseconds(10)) }
            let third = try TestClient(port: h.proxyPort)
            third.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\n\r\n")
            let head = String(decoding: third.read(until: { $0.suffix(4) == Array("\r\n\r\n".utf8) }), as: UTF8.self)
            #expect(head.hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test("transparent TLS: the name comes from SNI, even across split segments")
    func transparentTLS() async throws {
        try await withProxy(allow: { _, e in ["tls.test:\(e)"] }, transparent: true,
                            configure: { c, _, e in c.transparentTLSPort = UInt16(e) }) { h, _, echo in
            let tlsPort = try #require(h.endpoints.transparentTLS?.port)
            let hello = splitIntoRecords(makeClientHello(sni: "tls.test", padding: 600), pieces: 2)
            let c = try TestClient(port: tlsPort)
            // Three TCP writes, cutting through the record headers. The pauses block
            // this thread on purpose: an awaited sleep resumes only when the
            // cooperative pool (one thread per core) has a free thread, and other
            // tests hold those in blocking reads for seconds, long enough for the
            // proxy's 2 s first-request timer to close this connection mid-hello.
            let cuts = [3, 200, hello.count]
            var start = 0
            for cut in cuts {
                c.send(Array(hello[start..<cut]))
                start = cut
                usleep(30_000)
            }
            let reply = c.read(until: { $0.count >= 5 + hello.count })
            #expect(Array(reply.prefix(5)) == Array("ECHO:".utf8))
            #expect(Array(reply.dropFirst(5)) == hello)
            #expect(echo.received.all.flatMap { $0 } == hello)
            c.shutdownWrite()
            _ = c.readToEOF()
            #expect(await h.waitForAudit { $0.contains { $0.mode == .transparentTLS && $0.verdict == .allow } })
            let rec = try #require(h.audit.all.first { $0.mode == .transparentTLS })
            #expect(rec.host == "tls.test")
            #expect(rec.dstIP == nil)  // 127.0.0.1 is not a synthetic address
            #expect(rec.bytesUp == UInt64(hello.count))
        }
    }

    @Test("transparent TLS: a hello followed by part of a change_cipher_spec record passes", arguments: [1, 3, 4])
    func transparentTLSTrailingRecord(cut: Int) async throws {
        try await withProxy(allow: { _, e in ["tls.test:\(e)"] }, transparent: true,
                            configure: { c, _, e in c.transparentTLSPort = UInt16(e) }) { h, _, echo in
            let tlsPort = try #require(h.endpoints.transparentTLS?.port)
            let hello = makeClientHello(sni: "tls.test")
            let ccs: [UInt8] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01]
            let c = try TestClient(port: tlsPort)
            // One write, so the proxy's first read holds the hello and the cut record.
            c.send(hello + ccs.prefix(cut))
            usleep(30_000)
            c.send(Array(ccs.dropFirst(cut)))
            let stream = hello + ccs
            let reply = c.read(until: { $0.count >= 5 + stream.count })
            #expect(reply == Array("ECHO:".utf8) + stream)
            #expect(h.denials().isEmpty)
        }
    }

    @Test("transparent TLS refusals: unlisted SNI, no SNI, not TLS", arguments: [
        ("evil.test", "not-allowlisted"),
        ("", "ip-literal"),
        ("not-tls", "bad-request"),
    ])
    func transparentTLSDenied(sni: String, rule: String) async throws {
        try await withProxy(allow: { _, e in ["tls.test:\(e)"] }, transparent: true,
                            configure: { c, _, e in c.transparentTLSPort = UInt16(e) }) { h, _, echo in
            let tlsPort = try #require(h.endpoints.transparentTLS?.port)
            let c = try TestClient(port: tlsPort)
            switch sni {
            case "": c.send(makeClientHello(sni: nil))
            case "not-tls": c.send("GET / HTTP/1.1\r\nHost: tls.test\r\n\r\n")
            default: c.send(makeClientHello(sni: sni))
            }
            let reply = c.readToEOF()
            #expect(reply == [21, 3, 3, 0, 2, 2, 49])  // fatal access_denied alert
            #expect(h.denials().first?.rule == rule)
            #expect(h.dns.queries.count == 0)
            #expect(echo.connections.count == 0)
        }
    }

    @Test("transparent HTTP: every request is decided by its Host header")
    func transparentHTTP() async throws {
        try await withProxy(allow: { w, _ in ["web.test:\(w)"] }, transparent: true,
                            configure: { c, w, _ in c.transparentHTTPPort = UInt16(w) }) { h, web, _ in
            let port = try #require(h.endpoints.transparentHTTP?.port)
            let c = try TestClient(port: port)
            c.send("GET /t HTTP/1.1\r\nHost: web.test\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
            let r = try #require(c.readResponse())
            #expect(r.status == 200)
            #expect(r.bodyText == "hello from upstream GET /t")
            #expect(web.requests.all.first?.head.headers.contains(name: "x-forwarded-for") == false)
            // Same connection, different host: decided again, and refused.
            c.send("GET /t HTTP/1.1\r\nHost: evil.test\r\n\r\n")
            let r2 = try #require(c.readResponse())
            #expect(r2.header("x-clawjail-deny") == "not-allowlisted")

            let c2 = try TestClient(port: port)
            c2.send("GET / HTTP/1.0\r\n\r\n")
            #expect(c2.readResponse()?.header("x-clawjail-deny") == "ip-literal")
            #expect(web.requests.count == 1)
        }
    }

    @Test("the DNS responder answers only allowlisted names and never forwards")
    func dnsResponder() async throws {
        try await withProxy(allow: { _, _ in ["web.test", "*.wild.test"] }, dnsResponder: true) { h, _, _ in
            let port = try #require(h.endpoints.dns?.port)
            func ask(_ name: String, _ type: UInt16) async throws -> DNSMessage {
                try await udpQuery(port: port, name: name, type: type, group: h.group)
            }
            let a1 = try await ask("web.test", DNSType.a)
            let a2 = try await ask("WEB.test.", DNSType.a)
            #expect(a1.rcode == DNSRcode.noError)
            let addr = try #require(a1.answers.first?.address)
            #expect(EgressConfig.defaultSyntheticRange.contains(addr))
            #expect(a2.answers.first?.address == addr)
            #expect(h.proxy?.syntheticAddress(for: "web.test") == addr)
            let sub = try await ask("x.y.wild.test", DNSType.a)
            #expect(sub.answers.count == 1)
            let aaaa = try await ask("web.test", DNSType.aaaa)
            #expect(aaaa.rcode == DNSRcode.noError && aaaa.answers.isEmpty)
            let https = try await ask("web.test", DNSType.https)
            #expect(https.rcode == DNSRcode.noError && https.answers.isEmpty)
            for denied in ["evil.test", "wild.test", "metadata.google.internal", "localhost", "1.0.0.127.in-addr.arpa"] {
                let r = try await ask(denied, DNSType.a)
                #expect(r.rcode == DNSRcode.nxDomain, "\(denied)")
                #expect(r.answers.isEmpty)
            }
            #expect(h.dns.queries.count == 0)  // nothing went upstream
            #expect(await h.waitForAudit { $0.contains { $0.mode == .dns && $0.verdict == .deny && $0.host == "evil.test" } })
            #expect(h.audit.all.contains { $0.mode == .dns && $0.rule == "metadata-address" })
        }
    }

    @Test("shutdown closes listeners and open tunnels")
    func shutdown() async throws {
        let h = Harness(answer: answers)
        let echo = EchoServer()
        try await echo.start(group: h.group)
        try await h.start(allow: ["echo.test:\(echo.port)"])
        let c = try TestClient(port: h.proxyPort)
        c.send("CONNECT echo.test:\(echo.port) HTTP/1.1\r\n\r\n")
        _ = c.read(until: { $0.suffix(4) == Array("\r\n\r\n".utf8) })
        for _ in 0..<1000 where h.proxy?.kernelTunnelCount != 1 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(h.proxy?.kernelTunnelCount == 1)
        await h.proxy?.shutdown()
        #expect(c.readToEOF().isEmpty)
        #expect(throws: (any Error).self) { _ = try TestClient(port: h.proxyPort) }
        // The tunnel the kernel carried is audited as it closes.
        #expect(h.audit.all.contains { $0.mode == .connect && $0.verdict == .allow })
        #expect(h.proxy?.kernelTunnelCount == 0)
        await echo.stop()
        await h.stop()
    }
}

/// One UDP DNS query to 127.0.0.1:port.
func udpQuery(port: Int, name: String, type: UInt16, group: any EventLoopGroup) async throws -> DNSMessage {
    let promise = group.next().makePromise(of: DNSMessage.self)
    let channel = try await DatagramBootstrap(group: group)
        .channelInitializer { ch in
            ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(ReplyCatcher(promise: promise)) }
        }
        .bind(host: loopback, port: 0).get()
    let q = DNSMessage.query(id: 0x1234, name: try #require(DNSName(name)), type: type)
    let to = try SocketAddress(ipAddress: loopback, port: port)
    try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: to, data: ByteBuffer(bytes: q.encode())))
    let timeout = group.next().scheduleTask(in: .seconds(3)) { promise.fail(DNSResolveError.timeout) }
    defer { timeout.cancel() }
    let reply = try await promise.futureResult.get()
    try await channel.close()
    return reply
}

private final class ReplyCatcher: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let promise: EventLoopPromise<DNSMessage>
    init(promise: EventLoopPromise<DNSMessage>) { self.promise = promise }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let m = try? DNSMessage.decode(Array(unwrapInboundIn(data).data.readableBytesView)) { promise.succeed(m) }
    }
}

extension String {
    func replacingPort(_ port: Int) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: "PORT") {
            out += rest[..<r.lowerBound]
            out += String(port)
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

@Suite("Egress proxy plumbing (loopback)")
struct ProxyPlumbingTests {
    @Test("an accepted HTTP upgrade becomes a tunnel")
    func upgrade() async throws {
        let h = Harness(answer: answers)
        let up = UpgradeServer()
        try await up.start(group: h.group)
        try await h.start(allow: ["web.test:\(up.port)"])
        let c = try TestClient(port: h.proxyPort)
        c.send("GET http://web.test:\(up.port)/ws HTTP/1.1\r\nHost: web.test:\(up.port)\r\n"
            + "Connection: Upgrade\r\nUpgrade: echo\r\nProxy-Authorization: Basic eA==\r\n\r\n")
        let got = String(decoding: c.read(until: { String(decoding: $0, as: UTF8.self).hasSuffix("HELLO") }), as: UTF8.self)
        #expect(got.hasPrefix("HTTP/1.1 101"))
        c.send("through the tunnel")
        let echoed = String(decoding: c.read(until: { $0.count >= 18 }), as: UTF8.self)
        #expect(echoed == "through the tunnel")
        let head = try #require(up.heads.all.first)
        #expect(head.hasPrefix("GET /ws HTTP/1.1"))
        #expect(head.lowercased().contains("upgrade: echo"))
        #expect(head.lowercased().contains("connection: upgrade"))
        #expect(!head.lowercased().contains("proxy-authorization"))
        c.shutdownWrite()
        _ = c.readToEOF()
        await up.stop()
        await h.stop()
    }

    @Test("listeners can be handed over as bound socket descriptors")
    func boundSockets() async throws {
        let h = Harness(answer: answers)
        let web = TestHTTPServer()
        try await web.start(group: h.group)
        try await h.dns.start(group: h.group)
        var config = EgressConfig(
            allowlist: try Allowlist(parsing: ["web.test:\(web.port)"]), resolvers: [h.dns.address], addressGuard: testGuard,
            refuseConnectionsToSelf: false)
        config.dialFilter = { $0.ipAddress == loopback }
        let audit = h.audit
        let proxy = EgressProxy(config: config, agent: "fd", audit: { audit.append($0) }, group: h.group)
        let tcp = try boundLoopbackSocket(type: SOCK_STREAM)
        let udp = try boundLoopbackSocket(type: SOCK_DGRAM)
        let ep = try await proxy.start(proxyListener: .socket(tcp.fd), dns: .socket(udp.fd))
        #expect(ep.proxy?.port == tcp.port)
        #expect(ep.dns?.port == udp.port)

        let c = try TestClient(port: tcp.port)
        c.send("GET http://web.test:\(web.port)/fd HTTP/1.1\r\nHost: web.test:\(web.port)\r\n\r\n")
        #expect(c.readResponse()?.bodyText == "hello from upstream GET /fd")
        let answer = try await udpQuery(port: udp.port, name: "web.test", type: DNSType.a, group: h.group)
        #expect(answer.answers.count == 1)

        let tcpInode = socketInode(tcp.fd)
        let udpInode = socketInode(udp.fd)
        #expect(tcpInode != nil && udpInode != nil)
        await proxy.shutdown()
        // The proxy owned the descriptors and closed them. Tests run in parallel, so the
        // numbers may already name other tests' files: compare the socket inodes.
        #expect(socketInode(tcp.fd) != tcpInode)
        #expect(socketInode(udp.fd) != udpInode)
        #expect(throws: (any Error).self) { _ = try TestClient(port: tcp.port) }
        await web.stop()
        await h.stop()
    }
}

/// The inode behind an fd, nil when the fd is closed.
func socketInode(_ fd: Int32) -> UInt? {
    var st = stat()
    return fstat(fd, &st) == 0 ? UInt(st.st_ino) : nil
}

/// A socket bound to 127.0.0.1 on an ephemeral port, not listening — what
/// the runtime hands over after opening it inside the peer namespace.
func boundLoopbackSocket(type: __socket_type) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestClientError.socket(errno) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
            bind(fd, p, len) == 0 ? getsockname(fd, p, &len) : -1
        }
    }
    guard rc == 0 else {
        close(fd)
        throw TestClientError.socket(errno)
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}
