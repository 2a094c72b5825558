// ProxyPolicy.decide as a table: one row per rule the proxy applies to a request
// head, in forward and transparent mode. No sockets.
import ClawjailCore
import NIOHTTP1
import Testing
@testable import ClawjailEgress

struct PolicyRow: Sendable, CustomTestStringConvertible {
    enum Expect: Sendable {
        case deny(DenyRule, host: String? = nil, port: UInt16? = nil, audit: String, _ auditPort: UInt16,
                  mode: EgressDecision.Mode? = nil)
        case tunnel(String, UInt16, rule: String, inspect: Bool)
        /// `headers`: the exact list the origin server gets, in order.
        case forward(String, UInt16, rule: String, uri: String, headers: [(String, String)], upgrade: Bool = false)
    }

    var label: String
    var mode: ProxyMode = .forward
    var dstIP: String? = nil
    var method: HTTPMethod = .GET
    var uri: String
    var version: HTTPVersion = .http1_1
    var headers: [(String, String)] = []
    var expect: Expect

    var testDescription: String { label }

    var head: HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: HTTPHeaders(headers))
    }
}

private func row(_ label: String, mode: ProxyMode = .forward, dstIP: String? = nil, method: HTTPMethod = .GET,
                 _ uri: String, version: HTTPVersion = .http1_1, headers: [(String, String)] = [],
                 _ expect: PolicyRow.Expect) -> PolicyRow {
    PolicyRow(label: label, mode: mode, dstIP: dstIP, method: method, uri: uri, version: version, headers: headers,
              expect: expect)
}

private func host(_ h: String) -> [(String, String)] { [("Host", h)] }

let policyRows: [PolicyRow] = [
    // Absolute-form at the forward proxy.
    row("absolute-form", "http://web.test/path?q=1", headers: host("web.test"),
        .forward("web.test", 80, rule: "web.test", uri: "/path?q=1", headers: host("web.test"))),
    row("absolute-form with a port", "http://api.test:8080/x", headers: host("api.test:8080"),
        .forward("api.test", 8080, rule: "api.test:8080", uri: "/x", headers: host("api.test:8080"))),
    row("case and trailing dot are normalised", "http://WEB.Test./a", headers: host("Web.test"),
        .forward("web.test", 80, rule: "web.test", uri: "/a", headers: host("Web.test"))),
    row("the fragment is dropped", "http://web.test/a#frag", headers: host("web.test"),
        .forward("web.test", 80, rule: "web.test", uri: "/a", headers: host("web.test"))),
    row("a query without a path", "http://web.test?x", headers: host("web.test"),
        .forward("web.test", 80, rule: "web.test", uri: "/?x", headers: host("web.test"))),
    row("Host with the default port agrees", "http://web.test/", headers: host("web.test:80"),
        .forward("web.test", 80, rule: "web.test", uri: "/", headers: host("web.test:80"))),
    row("HTTP/1.0 without Host gets one", "http://web.test/", version: .http1_0,
        .forward("web.test", 80, rule: "web.test", uri: "/", headers: host("web.test"))),
    row("HTTP/1.0 without Host, with a port", "http://api.test:8080/", version: .http1_0,
        .forward("api.test", 8080, rule: "api.test:8080", uri: "/", headers: host("api.test:8080"))),
    row("a wildcard entry", "http://a.b.wild.test/", headers: host("a.b.wild.test"),
        .forward("a.b.wild.test", 80, rule: "*.wild.test", uri: "/", headers: host("a.b.wild.test"))),
    row("HTTP/1.1 without Host", "http://web.test/",
        .deny(.badRequest, host: "web.test", port: 80, audit: "web.test", 80)),
    row("two Host headers", "http://web.test/", headers: [("Host", "web.test"), ("Host", "evil.test")],
        .deny(.badRequest, audit: "web.test,evil.test", 0)),
    row("Host names another host", "http://web.test/", headers: host("other.test"),
        .deny(.hostMismatch, audit: "web.test", 80)),
    row("Host names another port", "http://api.test:8080/", headers: host("api.test"),
        .deny(.hostMismatch, audit: "api.test", 8080)),
    row("Host is an IP literal", "http://web.test/", headers: host("93.184.216.34"),
        .deny(.hostMismatch, audit: "web.test", 80)),
    row("https:// is not for this proxy", "https://web.test/", headers: host("web.test"),
        .deny(.badRequest, audit: "https", 80)),
    row("origin-form at the forward proxy", "/origin", headers: host("web.test"),
        .deny(.badRequest, audit: "/origin", 0)),
    row("user info", "http://web.test@127.0.0.1/", headers: host("127.0.0.1"),
        .deny(.badRequest, audit: "web.test@127.0.0.1", 80)),
    row("a port out of range", "http://web.test:99999/", headers: host("web.test:99999"),
        .deny(.badRequest, audit: "web.test", 0)),
    row("IPv4 literal", "http://127.0.0.1:8080/", headers: host("127.0.0.1:8080"),
        .deny(.ipLiteral, audit: "127.0.0.1", 8080)),
    row("IPv4 literal in decimal", "http://2130706433/", headers: host("2130706433"),
        .deny(.ipLiteral, audit: "2130706433", 80)),
    row("IPv6 literal", "http://[::1]/", headers: host("[::1]"), .deny(.ipLiteral, audit: "[::1]", 80)),
    row("metadata address", "http://169.254.169.254/latest/meta-data/", headers: host("169.254.169.254"),
        .deny(.metadataAddress, audit: "169.254.169.254", 80)),
    row("metadata name", "http://metadata.google.internal/", headers: host("metadata.google.internal"),
        .deny(.metadataAddress, audit: "metadata.google.internal", 80)),
    row("localhost", "http://localhost/", headers: host("localhost"), .deny(.loopbackAddress, audit: "localhost", 80)),
    row("a name that is not allowlisted", "http://evil.test/", headers: host("evil.test"),
        .deny(.notAllowlisted, host: "evil.test", port: 80, audit: "evil.test", 80)),
    row("an allowlisted name on another port", "http://web.test:8080/", headers: host("web.test:8080"),
        .deny(.notAllowlisted, host: "web.test", port: 8080, audit: "web.test", 8080)),
    row("a wildcard does not cover its apex", "http://wild.test/", headers: host("wild.test"),
        .deny(.notAllowlisted, host: "wild.test", port: 80, audit: "wild.test", 80)),
    row("suffix trick", "http://web.test.evil.test/", headers: host("web.test.evil.test"),
        .deny(.notAllowlisted, host: "web.test.evil.test", port: 80, audit: "web.test.evil.test", 80)),

    // CONNECT (authority-form).
    row("CONNECT to a TLS port is inspected", method: .CONNECT, "tls.test:443",
        .tunnel("tls.test", 443, rule: "tls.test:443", inspect: true)),
    row("CONNECT to another port is not", method: .CONNECT, "plain.test:8443",
        .tunnel("plain.test", 8443, rule: "plain.test:8443", inspect: false)),
    row("CONNECT with a Host without a port", method: .CONNECT, "web.test:443", headers: host("web.test"),
        .tunnel("web.test", 443, rule: "web.test", inspect: true)),
    row("CONNECT with a Host for another name", method: .CONNECT, "web.test:443", headers: host("other.test:443"),
        .deny(.hostMismatch, audit: "web.test", 443, mode: .connect)),
    row("CONNECT with a Host for another port", method: .CONNECT, "web.test:443", headers: host("web.test:80"),
        .deny(.hostMismatch, audit: "web.test", 443, mode: .connect)),
    row("CONNECT without a port", method: .CONNECT, "web.test", .deny(.badRequest, audit: "web.test", 0, mode: .connect)),
    row("CONNECT to an IP literal", method: .CONNECT, "10.0.0.1:443", .deny(.ipLiteral, audit: "10.0.0.1", 443, mode: .connect)),
    row("CONNECT to a hex IP literal", method: .CONNECT, "0xa000001:443",
        .deny(.ipLiteral, audit: "0xa000001", 443, mode: .connect)),
    row("CONNECT to the metadata address", method: .CONNECT, "169.254.169.254:80",
        .deny(.metadataAddress, audit: "169.254.169.254", 80, mode: .connect)),
    row("CONNECT to mapped metadata", method: .CONNECT, "[::ffff:a9fe:a9fe]:443",
        .deny(.metadataAddress, audit: "[::ffff:a9fe:a9fe]", 443, mode: .connect)),
    row("CONNECT to localhost", method: .CONNECT, "localhost:443",
        .deny(.loopbackAddress, audit: "localhost", 443, mode: .connect)),
    row("CONNECT to a name that is not allowlisted", method: .CONNECT, "evil.test:443",
        .deny(.notAllowlisted, host: "evil.test", port: 443, audit: "evil.test", 443, mode: .connect)),
    row("CONNECT to an allowlisted name on another port", method: .CONNECT, "web.test:22",
        .deny(.notAllowlisted, host: "web.test", port: 22, audit: "web.test", 22, mode: .connect)),
    row("two Host headers on a CONNECT are audited as HTTP", method: .CONNECT, "web.test:443",
        headers: [("Host", "a.test"), ("Host", "b.test")], .deny(.badRequest, audit: "a.test,b.test", 0)),

    // Transparent port 80: the Host header decides.
    row("transparent origin-form", mode: .transparent, "/t", headers: host("web.test"),
        .forward("web.test", 80, rule: "web.test", uri: "/t", headers: host("web.test"))),
    row("transparent Host with the port", mode: .transparent, "/t", headers: host("web.test:80"),
        .forward("web.test", 80, rule: "web.test", uri: "/t", headers: host("web.test:80"))),
    row("transparent asterisk-form", mode: .transparent, method: .OPTIONS, "*", headers: host("web.test"),
        .forward("web.test", 80, rule: "web.test", uri: "*", headers: host("web.test"))),
    row("transparent absolute-form", mode: .transparent, "http://web.test/a", headers: host("web.test"),
        .forward("web.test", 80, rule: "web.test", uri: "/a", headers: host("web.test"))),
    row("transparent Host for another port", mode: .transparent, "/t", headers: host("api.test:8080"),
        .deny(.hostMismatch, audit: "api.test", 8080)),
    row("transparent absolute-form for another port", mode: .transparent, "http://api.test:8080/", headers: host("api.test:8080"),
        .deny(.hostMismatch, audit: "api.test", 8080)),
    row("transparent without Host to an IP", mode: .transparent, "/", version: .http1_0, .deny(.ipLiteral, audit: "-", 80)),
    row("transparent without Host to a synthetic address", mode: .transparent, dstIP: "198.18.0.7", "/", version: .http1_0,
        .deny(.badRequest, audit: "198.18.0.7", 80)),
    row("transparent Host not allowlisted", mode: .transparent, "/", headers: host("evil.test"),
        .deny(.notAllowlisted, host: "evil.test", port: 80, audit: "evil.test", 80)),
    row("transparent Host is an IP literal", mode: .transparent, "/", headers: host("127.0.0.1"),
        .deny(.ipLiteral, audit: "127.0.0.1", 80)),
    row("transparent Host with a bad port", mode: .transparent, "/", headers: host("web.test:x"),
        .deny(.badRequest, audit: "web.test", 0)),
    row("CONNECT at the transparent listener", mode: .transparent, method: .CONNECT, "web.test:443",
        .deny(.badRequest, audit: "web.test:443", 0)),

    // The header rewrite.
    row("proxy and forwarding headers are stripped", "http://web.test/", headers: [
        ("Host", "web.test"), ("Proxy-Authorization", "Basic c2VjcmV0"), ("Proxy-Connection", "keep-alive"),
        ("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-Host", "localhost"), ("Forwarded", "for=127.0.0.1"),
        ("X-Real-IP", "127.0.0.1"), ("True-Client-IP", "1.2.3.4"), ("CF-Connecting-IP", "1.2.3.4"),
        ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("x-keep", "me"), ("Accept", "*/*"),
    ], .forward("web.test", 80, rule: "web.test", uri: "/",
                headers: [("Host", "web.test"), ("x-keep", "me"), ("Accept", "*/*")])),
    row("headers named by Connection are hop-by-hop", "http://web.test/", headers: [
        ("Host", "web.test"), ("Connection", "close, X-Secret"), ("X-Secret", "1"), ("X-Other", "2"),
    ], .forward("web.test", 80, rule: "web.test", uri: "/", headers: [("Host", "web.test"), ("X-Other", "2")])),
    row("an upgrade keeps Upgrade and says Connection: upgrade", "http://web.test/ws", headers: [
        ("Host", "web.test"), ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Proxy-Authorization", "x"),
    ], .forward("web.test", 80, rule: "web.test", uri: "/ws",
                headers: [("Host", "web.test"), ("Upgrade", "websocket"), ("Connection", "upgrade")], upgrade: true)),
    row("Upgrade without Connection: upgrade is dropped", "http://web.test/", headers: [
        ("Host", "web.test"), ("Upgrade", "websocket"),
    ], .forward("web.test", 80, rule: "web.test", uri: "/", headers: [("Host", "web.test")])),
    row("Connection: upgrade without Upgrade is no upgrade", "http://web.test/", headers: [
        ("Host", "web.test"), ("Connection", "keep-alive, upgrade"),
    ], .forward("web.test", 80, rule: "web.test", uri: "/", headers: [("Host", "web.test")])),
]

@Suite("Proxy policy (table)")
struct ProxyPolicyTests {
    static let allowlist: Allowlist = {
        do {
            return try Allowlist(parsing: ["web.test", "api.test:8080", "*.wild.test", "tls.test:443",
                                           "plain.test:8443", "other.test"])
        } catch {
            preconditionFailure("test allowlist: \(error)")
        }
    }()

    @Test("request target, Host agreement, allowlist and header rewrite", arguments: policyRows)
    func decide(_ r: PolicyRow) {
        let policy = ProxyPolicy(mode: r.mode, allowlist: Self.allowlist, transparentHTTPPort: 80, dstIP: r.dstIP)
        let got = policy.decide(r.head)
        switch r.expect {
        case .deny(let rule, let h, let p, let auditHost, let auditPort, let mode):
            #expect(got == .deny(Denial(rule, host: h, port: p, auditHost: auditHost, auditPort: auditPort,
                                        auditMode: mode)))
        case .tunnel(let h, let p, let rule, let inspect):
            guard case .tunnel(let target, let allow, let inspected) = got else {
                Issue.record("expected a tunnel, got \(got)")
                return
            }
            #expect(target == NamedTarget(host: h, port: p))
            #expect(allow.description == rule)
            #expect(inspected == inspect)
        case .forward(let h, let p, let rule, let uri, let headers, let upgrade):
            guard case .forward(let plan) = got else {
                Issue.record("expected a forward, got \(got)")
                return
            }
            #expect(plan.target == NamedTarget(host: h, port: p))
            #expect(plan.rule.description == rule)
            #expect(plan.head.uri == uri)
            #expect(plan.head.method == r.method && plan.head.version == r.version)
            #expect(plan.head.headers.map { "\($0.name): \($0.value)" } == headers.map { "\($0.0): \($0.1)" })
            #expect(plan.isUpgrade == upgrade)
        }
    }

    @Test("HEAD and the client's wish to close are carried to the exchange")
    func exchangeFlags() throws {
        let policy = ProxyPolicy(mode: .forward, allowlist: Self.allowlist, transparentHTTPPort: 80)
        func plan(_ method: HTTPMethod, _ version: HTTPVersion, _ headers: [(String, String)]) throws -> ForwardPlan {
            let head = HTTPRequestHead(version: version, method: method, uri: "http://web.test/",
                                       headers: HTTPHeaders(headers))
            guard case .forward(let p) = policy.decide(head) else { throw PolicyTestError.notForwarded }
            return p
        }
        #expect(try plan(.HEAD, .http1_1, [("Host", "web.test")]).isHead)
        #expect(try !plan(.GET, .http1_1, [("Host", "web.test")]).isHead)
        #expect(try !plan(.GET, .http1_1, [("Host", "web.test")]).clientWantsClose)
        #expect(try plan(.GET, .http1_1, [("Host", "web.test"), ("Connection", "close")]).clientWantsClose)
        #expect(try plan(.GET, .http1_0, []).clientWantsClose)
        #expect(try !plan(.GET, .http1_0, [("Connection", "keep-alive")]).clientWantsClose)
    }
}

enum PolicyTestError: Error { case notForwarded }
