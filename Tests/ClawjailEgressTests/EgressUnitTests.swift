import ClawjailCore
import NIOCore
import Testing
@testable import ClawjailEgress

@Suite("DNS resolver answers")
struct DNSResolverCombineTests {
    let name = DNSName("host.example")!

    func reply(_ rcode: UInt16, a: [UInt32] = [], aaaa: [UInt128] = []) -> Result<DNSMessage, any Error> {
        var m = DNSMessage(id: 1, flags: DNSMessage.qrBit | rcode)
        m.answers = a.map { .a(name, $0, ttl: 0) } + aaaa.map { .aaaa(name, $0, ttl: 0) }
        return .success(m)
    }

    @Test("combining the A and AAAA outcomes")
    func combine() throws {
        let timeout: Result<DNSMessage, any Error> = .failure(DNSResolveError.timeout)
        #expect(try DNSResolver.combine(name: name, a: reply(0, a: [0x0808_0808]), aaaa: timeout) == [.v4(0x0808_0808)])
        #expect(try DNSResolver.combine(name: name, a: reply(0, a: [1]), aaaa: reply(0, aaaa: [2])) == [.v4(1), .v6(2)])
        #expect(throws: DNSResolveError.nxdomain) { try DNSResolver.combine(name: name, a: reply(3), aaaa: reply(3)) }
        #expect(throws: DNSResolveError.noAddresses) { try DNSResolver.combine(name: name, a: reply(0), aaaa: reply(0)) }
        #expect(throws: DNSResolveError.timeout) { try DNSResolver.combine(name: name, a: timeout, aaaa: reply(2)) }
        #expect(throws: DNSResolveError.serverFailure(2)) { try DNSResolver.combine(name: name, a: reply(2), aaaa: reply(5)) }
    }
}

@Suite("DNS responder (unit)")
struct DNSResponderUnitTests {
    func responder(_ allow: [String]) throws -> DNSResponderHandler {
        let config = EgressConfig(allowlist: try Allowlist(parsing: allow), resolvers: [])
        let shared = ProxyShared(
            agent: "t", allowlist: config.allowlist, dialer: Dialer(config: config, registry: ChannelRegistry()),
            audit: { _ in }, syntheticRange: config.syntheticRange, firstRequestTimeout: .seconds(1),
            transparentHTTPPort: 80, transparentTLSPort: 443, tunnels: nil)
        return DNSResponderHandler(shared: shared, synthetic: SyntheticAddresses(range: config.syntheticRange, key: 42))
    }

    @Test("answers, NODATA, NXDOMAIN, and silence for responses")
    func replies() throws {
        let r = try responder(["api.example.com"])
        let q = DNSMessage.query(id: 9, name: try #require(DNSName("API.example.com")), type: DNSType.a)
        let a = try DNSMessage.decode(try #require(r.respond(to: q.encode())))
        #expect(a.id == 9 && a.isResponse && a.rcode == DNSRcode.noError)
        #expect(a.questions == q.questions)  // question echoed as asked
        #expect(a.answers.count == 1 && a.answers[0].ttl == DNSResponderHandler.answerTTL)

        let denied = DNSMessage.query(id: 10, name: try #require(DNSName("evil.example.com")), type: DNSType.a)
        #expect(try DNSMessage.decode(try #require(r.respond(to: denied.encode()))).rcode == DNSRcode.nxDomain)

        var resp = q
        resp.flags |= DNSMessage.qrBit
        #expect(r.respond(to: resp.encode()) == nil)
        #expect(r.respond(to: [1, 2, 3]) == nil)

        // Garbage after a valid header gets FORMERR; other opcodes NOTIMP.
        let formerr = try DNSMessage.decode(try #require(r.respond(to: [0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9])))
        #expect(formerr.rcode == DNSRcode.formErr && formerr.id == 5)
        var notify = q
        notify.flags = 4 << 11
        #expect(try DNSMessage.decode(try #require(r.respond(to: notify.encode()))).rcode == DNSRcode.notImp)
    }

    @Test("synthetic addresses are stable, in range, and differ between names")
    func synthetic() {
        let s = SyntheticAddresses(range: EgressConfig.defaultSyntheticRange, key: 7)
        var seen = Set<UInt32>()
        for i in 0..<200 {
            let a = s.address(for: "host\(i).example.com")
            #expect(a == s.address(for: "HOST\(i).example.com"))
            if let addr = a {
                #expect(EgressConfig.defaultSyntheticRange.contains(.v4(addr)))
                #expect(addr != 0xC612_0000 && addr != 0xC613_FFFF)
                seen.insert(addr)
            }
        }
        #expect(seen.count >= 195)  // a few hash collisions are tolerable
    }

    @Test("repeated identical DNS decisions are rate limited and counted")
    func limiter() {
        var emitted: [EgressDecision] = []
        let l = DNSAuditLimiter(globalPerSecond: 5) { emitted.append($0) }
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let d = EgressDecision(agent: "a", mode: .dns, verdict: .deny, rule: "not-allowlisted", host: "x.test", port: 53)
        for i in 0..<10 { l.record(d, now: t0 + .milliseconds(Int64(i))) }
        #expect(emitted.count == 1)
        l.flush(now: t0 + .milliseconds(1500))
        #expect(emitted.count == 2)
        #expect(emitted.last?.suppressed == 9)
        #expect(l.trackedNames == 0)
        // Many distinct names: the global cap holds, the rest is summarised.
        emitted = []
        let t1 = t0 + .seconds(10)
        for i in 0..<50 {
            var e = d
            e.host = "n\(i).test"
            l.record(e, now: t1)
        }
        #expect(emitted.count == 5)
        l.flush(now: t1 + .seconds(2))
        #expect(emitted.last?.rule == "rate-limited" && emitted.last?.suppressed == 45)
    }
}

@Suite("Egress config, deny responses, audit records")
struct EgressConfigTests {
    @Test("resolv.conf and --resolver")
    func resolvers() {
        let conf = """
        # comment
        search example.com
        nameserver 127.0.0.53
        nameserver 2001:4860:4860::8888
        nameserver fe80::1%eth0
        nameserver not-an-ip
        options edns0
        """
        let r = EgressConfig.resolvers(fromResolvConf: conf)
        #expect(r.map { $0.ipAddress ?? "" } == ["127.0.0.53", "2001:4860:4860::8888"])
        #expect(r.allSatisfy { $0.port == 53 })
        #expect(EgressConfig.parseResolver("9.9.9.9")?.port == 53)
        #expect(EgressConfig.parseResolver("127.0.0.1:5353")?.port == 5353)
        #expect(EgressConfig.parseResolver("[::1]:5353")?.port == 5353)
        #expect(EgressConfig.parseResolver("::1")?.ipAddress == "::1")
        #expect(EgressConfig.parseResolver("dns.example.com") == nil)
        #expect(EgressConfig.parseResolver("1.2.3.4:0") == nil)
        #expect(EgressConfig.parseResolver("[::1]:x") == nil)
    }

    @Test("deny responses name the rule and never an address")
    func denyResponse() {
        let buf = DenyResponse.buffer(.metadataAddress, host: "meta.example.com", port: 80, allocator: ByteBufferAllocator())
        let text = String(buffer: buf)
        #expect(text.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        #expect(text.contains("\r\nX-Clawjail-Deny: metadata-address\r\n"))
        #expect(text.hasSuffix("clawjail egress: denied (metadata-address): meta.example.com is a cloud metadata endpoint, which is always refused\n"))
        #expect(DenyResponse.status(for: .hostMismatch).code == 400)
        #expect(DenyResponse.status(for: .tooManyConnections).code == 503)
        #expect(DenyResponse.status(for: .dnsFailure).code == 502)
        for rule in DenyRule.allCases {
            let t = String(buffer: DenyResponse.buffer(rule, host: "h.example", port: 1, limit: 3, allocator: ByteBufferAllocator()))
            #expect(t.contains("X-Clawjail-Deny: \(rule.rawValue)\r\n"))
            #expect(t.contains("denied (\(rule.rawValue))"))
        }
    }

    @Test("audit hosts are sanitised")
    func sanitised() {
        let d = EgressDecision(agent: "a", mode: .http, verdict: .deny, rule: "x", host: "evil\u{1b}[31m\nhost", port: 1)
        #expect(d.host == "evil?[31m?host")
        #expect(EgressDecision(agent: "a", mode: .http, verdict: .deny, rule: "x", host: String(repeating: "a", count: 999), port: 1).host.count == 255)
    }
}
