import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The network issue's cases, end to end: the real `clawjail` binary runs inside a test
// namespace (cjt-up) whose only neighbour is a fake internet (cjt-net), and every
// assertion says what arrived where: the sites' request logs, dnsmasq's query log, the
// client's view in the jail, and the audit chain. See FakeInternet.swift for the layout.
extension Privileged {
    @Suite("network: egress, DNS, ingress (fake internet)")
    struct NetworkTests {
        static let dns = FakeInternet.dnsServer
        static let allowed = FakeInternet.allowedSite

        /// A client step that must have run; its absence is a test failure with the whole run.
        static func step(_ run: ClientRun, _ id: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> ClientStepResult {
            try #require(run[id], "step \(id) did not report\n\(run)", sourceLocation: sourceLocation)
        }

        /// A proxied request that reached `site` and got its answer.
        static func expectReached(_ run: ClientRun, _ id: String, site: String, port: Int? = nil,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try step(run, id, sourceLocation: sourceLocation)
            let answer = r.inner ?? r
            #expect(r.status == 200 && answer.status == 200, "\(id): \(r)", sourceLocation: sourceLocation)
            #expect(answer.siteAddress == site, "\(id) reached \(answer.siteAddress ?? "nothing"), not \(site): \(r)",
                    sourceLocation: sourceLocation)
            if let port { #expect(answer.site?["port"] as? Int == port, "\(id): \(r)", sourceLocation: sourceLocation) }
        }

        /// A refusal by the proxy: the status, the rule header, and a body that echoes no address.
        static func expectDenied(_ run: ClientRun, _ id: String, _ rule: String, status: Int = 403,
                                 notInBody: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try step(run, id, sourceLocation: sourceLocation)
            #expect(r.status == status && r.deny == rule, "\(id): wanted \(status) \(rule), got \(r)",
                    sourceLocation: sourceLocation)
            #expect(r.body.hasPrefix("clawjail egress: denied (\(rule))"), "\(id): \(r)", sourceLocation: sourceLocation)
            for text in notInBody + [FakeInternet.allowedSite, FakeInternet.decoySite] {
                #expect(!r.body.contains(text), "\(id): the denial echoes \(text): \(r.body)", sourceLocation: sourceLocation)
            }
        }

        /// The events of the audit chain (which must verify) whose kind starts with `prefix`.
        static func audit(_ net: FakeInternet, _ prefix: String = "egress.") throws -> [NetAuditEvent] {
            let (verified, events) = try net.auditEvents()
            #expect(verified, "the audit chain does not verify")
            return events.filter { $0.kind.hasPrefix(prefix) }
        }

        static func finish(_ net: FakeInternet, sourceLocation: SourceLocation = #_sourceLocation) {
            net.stop()
            #expect(net.leftovers.isEmpty, "left behind: \(net.leftovers)", sourceLocation: sourceLocation)
        }

        // MARK: allowlist

        @Test("allowlist: whole labels, wildcard depth, ports, trailing dot and case; denied names are never looked up")
        func allowlistEdges() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let req = { (path: String, host: String) in ClientStep.request("/" + path, host: host) }
            let steps: [ClientStep] = [
                .http("exact", ClientStep.request("http://allowed.example/exact", host: "allowed.example")),
                .http("case", ClientStep.request("http://ALLOWED.Example/case", host: "ALLOWED.Example")),
                .http("dot", ClientStep.request("http://allowed.example./dot", host: "allowed.example.")),
                .http("entry-case-dot", ClientStep.request("http://mixedcase.example/e", host: "mixedcase.example")),
                .http("suffix", ClientStep.request("http://allowed.example.evil.example/", host: "allowed.example.evil.example")),
                .connect("suffix-connect", "allowed.example.evil.example:443"),
                .http("glued", ClientStep.request("http://evilallowed.example/", host: "evilallowed.example")),
                .http("port-8080", ClientStep.request("http://allowed.example:8080/", host: "allowed.example:8080")),
                .connect("port-8443", "allowed.example:8443"),
                .connect("port-22", "allowed.example:22"),
                .connect("tls-443", "allowed.example:443", then: req("tls", "allowed.example"), sni: "allowed.example"),
                .connect("ports-8443", "ports.example:8443", then: req("p", "ports.example:8443"), sni: "ports.example"),
                .connect("ports-443", "ports.example:443"),
                .http("ports-80", ClientStep.request("http://ports.example/", host: "ports.example")),
                .http("wild-1", ClientStep.request("http://a.example.test/w1", host: "a.example.test")),
                .http("wild-2", ClientStep.request("http://a.b.example.test/w2", host: "a.b.example.test")),
                .connect("wild-2-tls", "a.b.example.test:443", then: req("w2t", "a.b.example.test"), sni: "a.b.example.test"),
                .http("wild-apex", ClientStep.request("http://example.test/", host: "example.test")),
                .http("wild-glued", ClientStep.request("http://xexample.test/", host: "xexample.test")),
                .connect("wild-port", "a.example.test:8443"),
            ]
            let run = try net.runClient(steps, options: ["--resolver", Self.dns, "--allow", "allowed.example",
                                                         "--allow", "MixedCase.EXAMPLE.", "--allow", "ports.example:8443",
                                                         "--allow", "*.example.test"])
            #expect(run.process.status == 0, "\(run)")
            #expect(run.results.count == steps.count, "\(run)")

            try Self.expectReached(run, "exact", site: Self.allowed, port: 80)
            try Self.expectReached(run, "case", site: Self.allowed)
            try Self.expectReached(run, "dot", site: Self.allowed)
            try Self.expectReached(run, "entry-case-dot", site: Self.allowed)
            try Self.expectReached(run, "tls-443", site: Self.allowed, port: 443)
            try Self.expectReached(run, "ports-8443", site: FakeInternet.portsSite, port: 8443)
            try Self.expectReached(run, "wild-1", site: FakeInternet.wildSite)
            try Self.expectReached(run, "wild-2", site: FakeInternet.wildSite)
            try Self.expectReached(run, "wild-2-tls", site: FakeInternet.wildSite, port: 443)
            #expect(try Self.step(run, "tls-443").inner?.site?["sni"] as? String == "allowed.example")
            for id in ["suffix", "suffix-connect", "glued", "port-8080", "port-8443", "port-22", "ports-443", "ports-80",
                       "wild-apex", "wild-glued", "wild-port"] {
                try Self.expectDenied(run, id, "not-allowlisted")
            }

            // What arrived: nothing at the decoy or anywhere forbidden, and the right sites
            // on the right ports.
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())\n\(net.dump)")
            let atAllowed = net.requests(at: Self.allowed)
            #expect(Set(atAllowed.compactMap { $0["path"] as? String }) == ["/exact", "/case", "/dot", "/e", "/tls"], "\(atAllowed)")
            #expect(!net.serverLog().contains { $0["ev"] as? String == "accept" && $0["site"] as? String == FakeInternet.portsSite
                && $0["port"] as? Int != 8443 }, "ports.example was reached on a port its entry does not name")
            #expect(!net.serverLog().contains { $0["ev"] as? String == "accept" && $0["site"] as? String == Self.allowed
                && ![80, 443].contains($0["port"] as? Int ?? 0) }, "allowed.example was reached on a port other than 80/443")

            // DNS: allowed names were resolved by the proxy; denied names never left.
            let wanted: Set<String> = ["allowed.example", "mixedcase.example", "ports.example", "a.example.test", "a.b.example.test"]
            #expect(Harness.eventually(timeout: 5) { wanted.isSubset(of: Set(net.dnsQueries().map(\.name))) }, "\(net.dnsQueries())")
            let queried = Set(net.dnsQueries().map(\.name))
            for denied in ["allowed.example.evil.example", "evilallowed.example", "example.test", "xexample.test"] {
                #expect(!queried.contains(denied), "a denied name was looked up: \(denied)")
            }

            // Every decision is in the audit chain, with host, port and rule.
            let events = try Self.audit(net)
            let decisions = events.filter { $0["mode"] != "dns" }
            #expect(decisions.count == steps.count,
                    "one audit event per decision:\n\(decisions.map(\.description).joined(separator: "\n"))")
            #expect(decisions.contains { $0.kind == "egress.allow" && $0["mode"] == "http" && $0["host"] == "allowed.example"
                && $0["port"] == "80" && $0["rule"] == "allowed.example" && $0["upstream_ip"] == Self.allowed
                && ($0.int("bytes_down") ?? 0) > 0 }, "\(decisions)")
            #expect(decisions.contains { $0.kind == "egress.allow" && $0["mode"] == "connect" && $0["host"] == "ports.example"
                && $0["port"] == "8443" && $0["rule"] == "ports.example:8443" && $0["upstream_ip"] == FakeInternet.portsSite
                && ($0.int("bytes_up") ?? 0) > 0 && ($0.int("bytes_down") ?? 0) > 0 }, "\(decisions)")
            #expect(decisions.contains { $0.kind == "egress.allow" && $0["host"] == "a.b.example.test" && $0["rule"] == "*.example.test" })
            #expect(decisions.contains { $0.kind == "egress.allow" && $0["host"] == "mixedcase.example"
                && $0["rule"] == "mixedcase.example" })
            #expect(decisions.contains { $0.kind == "egress.deny" && $0["host"] == "allowed.example.evil.example"
                && $0["port"] == "80" && $0["rule"] == "not-allowlisted" && $0["mode"] == "http" })
            #expect(decisions.contains { $0.kind == "egress.deny" && $0["host"] == "allowed.example" && $0["port"] == "8443"
                && $0["rule"] == "not-allowlisted" && $0["mode"] == "connect" })
            #expect(!decisions.contains { $0.kind == "egress.deny" && $0["upstream_ip"] != nil }, "a denial records a dialled address")
            Self.finish(net)
        }

        // MARK: domain fronting through CONNECT

        @Test("CONNECT to 443: a ClientHello for another name gets access_denied, a plain request a 403, and neither reaches the site")
        func connectFronting() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            // The fronting client does not check the certificate: on a shared CDN
            // the front end would present a valid one for evil.example, and here the
            // handshake must fail because of the proxy, not because of the test's cert.
            var frontedStep = ClientStep.connect("fronted", "allowed.example:443",
                                                 then: ClientStep.request("/fronted", host: "evil.example"), sni: "evil.example")
            frontedStep.dict["cafile"] = nil
            let steps: [ClientStep] = [
                frontedStep,
                .connect("plain", "allowed.example:443", then: ClientStep.request("/plain", host: "allowed.example")),
                .connect("matching", "allowed.example:443", then: ClientStep.request("/matching", host: "allowed.example"),
                         sni: "allowed.example"),
            ]
            let run = try net.runClient(steps, options: ["--resolver", Self.dns, "--allow", "allowed.example"])
            #expect(run.process.status == 0, "\(run)")

            // A real TLS client (Python's ssl) reads the proxy's alert as the server's.
            let fronted = try Self.step(run, "fronted")
            #expect(fronted.result == "SSLError:TLSV1_ALERT_ACCESS_DENIED", "\(fronted)")
            let plain = try Self.step(run, "plain")
            #expect(plain.status == 200 && plain.inner?.status == 403 && plain.inner?.deny == "not-tls", "\(plain)")
            try Self.expectReached(run, "matching", site: Self.allowed, port: 443)

            // The site saw the matching handshake only.
            #expect(Set(net.requests(at: Self.allowed).compactMap { $0["path"] as? String }) == ["/matching"])
            #expect(!net.serverLog().contains { $0["ev"] as? String == "tls" && $0["sni"] as? String != "allowed.example" },
                    "\(net.dump)")
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())")

            let decisions = try Self.audit(net).filter { $0["mode"] == "connect" }
            #expect(decisions.contains { $0.kind == "egress.deny" && $0["rule"] == "sni-mismatch" && $0["host"] == "allowed.example"
                && $0["port"] == "443" && $0["reason"] == "sni mismatch: evil.example for allowed.example" }, "\(decisions)")
            #expect(decisions.contains { $0.kind == "egress.deny" && $0["rule"] == "not-tls" && $0["host"] == "allowed.example" },
                    "\(decisions)")
            #expect(decisions.filter { $0.kind == "egress.allow" }.count == 1, "\(decisions)")
            Self.finish(net)
        }

        // MARK: metadata and private addresses

        /// IP literals in the encodings some client, resolver or URL parser accepts, and
        /// whether they name a metadata endpoint.
        static let literals: [(text: String, metadata: Bool)] = [
            ("169.254.169.254", true), ("169.254.170.2", true), ("100.100.100.200", true), ("168.63.129.16", true),
            ("[fd00:ec2::254]", true), ("2852039166", true), ("0251.0376.0251.0376", true), ("0xa9fea9fe", true),
            ("0xA9.0xFE.0xA9.0xFE", true), ("169.254.43518", true), ("169.16689662", true), ("169.254.169.254.", true),
            ("[::ffff:169.254.169.254]", true), ("[::ffff:a9fe:a9fe]", true), ("[64:ff9b::a9fe:a9fe]", true),
            ("10.0.0.5", false), ("172.16.0.5", false), ("192.168.0.5", false), ("100.64.0.5", false), ("127.0.0.1", false),
            ("0.0.0.0", false), ("167772165", false), ("012.0.0.5", false), ("0xa.0.0.5", false), ("10.5", false),
            ("0xac100005", false), ("3232235525", false), ("[::ffff:10.0.0.5]", false), ("2130706433", false),
            ("0x7f.1", false), ("0177.0.0.1", false), ("127.1", false), ("[::1]", false), ("[::ffff:127.0.0.1]", false),
            ("[::]", false),
        ]

        @Test("metadata and private addresses in every encoding: refused in CONNECT, absolute-form and Host; nothing arrives")
        func metadataAndPrivateLiterals() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            var steps: [ClientStep] = []
            for (i, l) in Self.literals.enumerated() {
                steps.append(.connect("connect-\(i)", "\(l.text):443"))
                steps.append(.connect("connect80-\(i)", "\(l.text):80", hostHeader: "\(l.text):80"))
                steps.append(.http("absolute-\(i)", ClientStep.request("http://\(l.text)/latest/meta-data/", host: l.text)))
                // Straight at the address, as a client that ignores the proxy would: the
                // transparent listener reads the Host header.
                steps.append(.http("host-\(i)", ClientStep.request("/latest/meta-data/", host: l.text), host: "169.254.169.254", port: 80))
                steps.append(.http("mismatch-\(i)", ClientStep.request("http://allowed.example/", host: l.text)))
            }
            let metadataNames = ["metadata.google.internal", "METADATA.Google.Internal.", "metadata", "instance-data",
                                 "metadata.goog"]
            for (i, name) in metadataNames.enumerated() {
                steps.append(.connect("name-connect-\(i)", "\(name):80"))
                steps.append(.http("name-absolute-\(i)", ClientStep.request("http://\(name)/computeMetadata/v1/", host: name,
                                                                      headers: [("Metadata-Flavor", "Google")])))
                steps.append(.http("name-host-\(i)", ClientStep.request("/computeMetadata/v1/", host: name,
                                                                  headers: [("Metadata-Flavor", "Google")]),
                                   host: "169.254.169.254", port: 80))
            }
            steps += [
                // Only the name counts: TLS to the metadata address with an allowlisted SNI
                // reaches that name's site, never the address.
                .http("sni-allowed", ClientStep.request("/sni", host: "allowed.example"), host: "169.254.169.254", port: 443, tls: true,
                      sni: "allowed.example"),
                .http("no-sni", ClientStep.request("/", host: "169.254.169.254"), host: "169.254.169.254", port: 443, tls: true),
                .tcp("v6-direct", "fd00:ec2::254", 80),
                .http("redirect", ClientStep.request("http://allowed.example/redirect", host: "allowed.example")),
                .cmd("curl-proxy", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %header{x-clawjail-deny}",
                                    "http://169.254.169.254/latest/meta-data/"]),
                .cmd("curl-direct", ["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code} %header{x-clawjail-deny}",
                                     "http://169.254.169.254/latest/meta-data/"]),
                .cmd("curl-ecs", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %header{x-clawjail-deny}",
                                  "http://169.254.170.2/v2/credentials"]),
            ]
            let run = try net.runClient(steps, options: ["--resolver", Self.dns, "--allow", "allowed.example"])
            #expect(run.process.status == 0, "\(run)")

            for (i, l) in Self.literals.enumerated() {
                let rule = l.metadata ? "metadata-address" : "ip-literal"
                let canonical = l.text.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                for id in ["connect-\(i)", "connect80-\(i)", "absolute-\(i)", "host-\(i)"] {
                    try Self.expectDenied(run, id, rule, notInBody: [canonical])
                }
                try Self.expectDenied(run, "mismatch-\(i)", "host-mismatch", status: 400, notInBody: [canonical])
            }
            for i in metadataNames.indices {
                for id in ["name-connect-\(i)", "name-absolute-\(i)", "name-host-\(i)"] {
                    try Self.expectDenied(run, id, "metadata-address")
                }
            }
            try Self.expectReached(run, "sni-allowed", site: Self.allowed, port: 443)
            let noSNI = try Self.step(run, "no-sni")
            #expect(noSNI.result?.hasPrefix("SSLError") == true, "TLS without a name must be refused: \(noSNI)")
            #expect(try Self.step(run, "v6-direct").result != "OK")
            let redirect = try Self.step(run, "redirect")
            #expect(redirect.status == 302 && redirect.headers["location"]?.contains("169.254.169.254") == true,
                    "the redirect reaches the client unfollowed: \(redirect)")
            #expect(try Self.step(run, "curl-proxy").out == "403 metadata-address")
            #expect(try Self.step(run, "curl-direct").out == "403 metadata-address")
            #expect(try Self.step(run, "curl-ecs").out == "403 metadata-address")

            // The point of it all: not one connection reached a forbidden address or the host.
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())\n\(net.dump)")
            #expect(net.requests(at: Self.allowed).map { $0["path"] as? String } == ["/sni", "/redirect"]
                    || net.requests(at: Self.allowed).map { $0["path"] as? String } == ["/redirect", "/sni"],
                    "\(net.requests(at: Self.allowed))")
            #expect(Harness.eventually(timeout: 5) { net.dnsQueries().contains { $0.name == "allowed.example" } })
            #expect(Set(net.dnsQueries().map(\.name)) == ["allowed.example"], "only the allowlisted name was resolved: \(net.dnsQueries())")

            let denials = try Self.audit(net, "egress.deny")
            let metadataForms = Self.literals.filter(\.metadata).count
            #expect(denials.filter { $0["rule"] == "metadata-address" }.count >= 4 * metadataForms + 3 * metadataNames.count + 3,
                    "\(denials.count) denials")
            #expect(denials.filter { $0["rule"] == "ip-literal" }.count >= 4 * (Self.literals.count - metadataForms))
            // Each denial names the destination as the client wrote it, and its port.
            for (mode, host, port, rule) in [("http", "169.254.169.254", "80", "metadata-address"),
                                             ("connect", "[fd00:ec2::254]", "443", "metadata-address"),
                                             ("connect", "0xa9fea9fe", "80", "metadata-address"),
                                             ("transparent-http", "2852039166", "80", "metadata-address"),
                                             ("http", "0177.0.0.1", "80", "ip-literal"),
                                             ("connect", "[::ffff:10.0.0.5]", "443", "ip-literal")] {
                #expect(denials.contains { $0["mode"] == mode && $0["host"] == host && $0["port"] == port && $0["rule"] == rule },
                        "no \(mode) denial of \(host):\(port) (\(rule)) in the audit chain")
            }
            Self.finish(net)
        }

        @Test("an allowlisted name that resolves to loopback, private, CGNAT or metadata addresses is refused after its lookup")
        func allowlistedNamesWithInternalAddresses() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let cases: [(name: String, rule: String, address: String)] = [
                ("loopback.example", "loopback-address", "127.0.0.1"),
                ("private.example", "private-address", "10.0.0.5"),
                ("private172.example", "private-address", "172.16.0.5"),
                ("private192.example", "private-address", "192.168.0.5"),
                ("cgnat.example", "cgnat-address", "100.64.0.5"),
                ("metadata.example", "metadata-address", "169.254.169.254"),
                ("ecs.example", "metadata-address", "169.254.170.2"),
                ("alibaba.example", "metadata-address", "100.100.100.200"),
                ("azure.example", "metadata-address", "168.63.129.16"),
                // A public A record does not launder an AAAA for the metadata service.
                ("mixed.example", "metadata-address", "fd00:ec2::254"),
            ]
            var steps: [ClientStep] = []
            for c in cases {
                steps.append(.http("proxy-\(c.name)", ClientStep.request("http://\(c.name)/", host: c.name)))
                steps.append(.connect("connect-\(c.name)", "\(c.name):443"))
                steps.append(.http("direct-\(c.name)", ClientStep.request("/", host: c.name), host: c.name, port: 80))
                steps.append(.http("tls-\(c.name)", ClientStep.request("/", host: c.name), host: c.name, port: 443, tls: true, sni: c.name))
            }
            let run = try net.runClient(steps, options: ["--resolver", Self.dns] + cases.flatMap { ["--allow", $0.name] })
            #expect(run.process.status == 0, "\(run)")
            for c in cases {
                for id in ["proxy-\(c.name)", "connect-\(c.name)", "direct-\(c.name)"] {
                    try Self.expectDenied(run, id, c.rule, notInBody: [c.address])
                }
                let tls = try Self.step(run, "tls-\(c.name)")
                #expect(tls.result?.hasPrefix("SSLError") == true, "\(c.name): \(tls)")
            }
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())\n\(net.dump)")
            #expect(net.sitesReached().isEmpty, "nothing may be dialled for these names: \(net.sitesReached())")
            // Refused after the lookup, on what the lookup returned.
            let names = Set(cases.map(\.name))
            #expect(Harness.eventually(timeout: 5) { names.isSubset(of: Set(net.dnsQueries().map(\.name))) }, "\(net.dnsQueries())")
            let denials = try Self.audit(net, "egress.deny")
            for c in cases {
                #expect(denials.filter { $0["host"] == c.name && $0["rule"] == c.rule }.count >= 4, "\(c.name): \(denials)")
            }
            #expect(!denials.contains { $0["upstream_ip"] != nil })
            Self.finish(net)
        }

        @Test("DNS rebinding with TTL 0 and alternating answers: one lookup per connection, and only checked addresses are dialled")
        func rebinding() throws {
            let sequence = [Self.allowed, "127.0.0.1", Self.allowed, "10.0.0.5", Self.allowed, "169.254.169.254"]
            let net = try FakeInternet.start(rebind: ["rebind.example": sequence])
            defer { net.stop() }
            var steps: [ClientStep] = (1...6).map {
                .http("r\($0)", ClientStep.request("http://rebind.example/r\($0)", host: "rebind.example"))
            }
            steps += [
                .connect("c7", "rebind.example:443", then: ClientStep.request("/c7", host: "rebind.example"), sni: "rebind.example"),
                .connect("c8", "rebind.example:443", then: ClientStep.request("/c8", host: "rebind.example"), sni: "rebind.example"),
                .http("t9", ClientStep.request("/t9", host: "rebind.example"), host: "rebind.example", port: 80),
                .http("t10", ClientStep.request("/t10", host: "rebind.example"), host: "rebind.example", port: 80),
            ]
            let run = try net.runClient(steps, options: ["--resolver", FakeInternet.rebindServer, "--allow", "rebind.example"])
            #expect(run.process.status == 0, "\(run)")
            for id in ["r1", "r3", "r5", "c7", "t9"] { try Self.expectReached(run, id, site: Self.allowed) }
            try Self.expectDenied(run, "r2", "loopback-address", notInBody: ["127.0.0.1"])
            try Self.expectDenied(run, "r4", "private-address", notInBody: ["10.0.0.5"])
            try Self.expectDenied(run, "r6", "metadata-address", notInBody: ["169.254.169.254"])
            try Self.expectDenied(run, "c8", "loopback-address", notInBody: ["127.0.0.1"])
            try Self.expectDenied(run, "t10", "private-address", notInBody: ["10.0.0.5"])

            // Exactly one A lookup per connection: the address checked is the address dialled.
            let lookups = net.rebindAnswers().filter { $0.type == "A" }
            #expect(lookups.map(\.answer) == (0..<10).map { Optional(sequence[$0 % sequence.count]) }, "\(lookups)")
            let paths = net.requests(at: Self.allowed).compactMap { $0["path"] as? String }
            #expect(paths == ["/r1", "/r3", "/r5", "/c7", "/t9"], "\(paths)")
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())\n\(net.dump)")
            let events = try Self.audit(net).filter { $0["mode"] != "dns" }
            let dialled = events.filter { $0.kind == "egress.allow" }.compactMap { $0["upstream_ip"] }
            #expect(dialled == Array(repeating: Self.allowed, count: 5),
                    "\(events)")
            Self.finish(net)
        }

        // MARK: requests

        @Test("Host and target must agree (400), and forwarding headers never reach the server")
        func hostMismatchAndHeaderStripping() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let spoof: [(String, String)] = [
                ("X-Forwarded-For", "127.0.0.1"), ("X-Real-IP", "127.0.0.1"), ("Forwarded", "for=127.0.0.1;proto=https"),
                ("Proxy-Authorization", "Basic c2VjcmV0OnNlY3JldA=="), ("X-Forwarded-Host", "localhost"),
                ("True-Client-IP", "127.0.0.1"), ("x-forwarded-for", "10.0.0.1"), ("X-Canary", "kept"),
            ]
            let twoHosts = "GET http://allowed.example/m HTTP/1.1\r\nHost: allowed.example\r\nHost: a.example.test\r\n"
                + "Connection: close\r\n\r\n"
            let steps: [ClientStep] = [
                .http("name", ClientStep.request("http://allowed.example/m", host: "a.example.test")),
                .http("port", ClientStep.request("http://allowed.example/m", host: "allowed.example:8080")),
                .http("literal", ClientStep.request("http://allowed.example/m", host: "93.184.216.34")),
                .connect("connect", "allowed.example:443", hostHeader: "a.example.test:443"),
                .http("two-hosts", twoHosts),
                .http("origin-form", ClientStep.request("/m", host: "allowed.example")),
                .http("same-authority", ClientStep.request("http://allowed.example:80/same", host: "allowed.example")),
                .http("strip-proxy", ClientStep.request("http://allowed.example/strip", host: "allowed.example", headers: spoof)),
                .http("strip-direct", ClientStep.request("/strip", host: "allowed.example", headers: spoof),
                      host: "allowed.example", port: 80),
            ]
            let run = try net.runClient(steps, options: ["--resolver", Self.dns, "--allow", "allowed.example", "--allow", "*.example.test"])
            #expect(run.process.status == 0, "\(run)")
            for id in ["name", "port", "literal", "connect"] {
                try Self.expectDenied(run, id, "host-mismatch", status: 400)
            }
            try Self.expectDenied(run, "two-hosts", "bad-request", status: 400)
            try Self.expectDenied(run, "origin-form", "bad-request", status: 400)
            try Self.expectReached(run, "same-authority", site: Self.allowed)
            try Self.expectReached(run, "strip-proxy", site: Self.allowed)
            try Self.expectReached(run, "strip-direct", site: Self.allowed)

            let received = net.requests(at: Self.allowed)
            #expect(received.compactMap { $0["path"] as? String }.sorted() == ["/same", "/strip", "/strip"], "\(received)")
            #expect(net.requests(at: FakeInternet.wildSite).isEmpty)
            let stripped: Set<String> = ["x-forwarded-for", "x-real-ip", "forwarded", "proxy-authorization", "x-forwarded-host",
                                         "true-client-ip"]
            for r in received where r["path"] as? String == "/strip" {
                let names = Set(((r["headers"] as? [[String]]) ?? []).compactMap { $0.first?.lowercased() })
                #expect(names.contains("x-canary"), "the ordinary header must pass: \(names)")
                #expect(names.isDisjoint(with: stripped), "forwarding headers reached the server: \(names.intersection(stripped))")
                let values = ((r["headers"] as? [[String]]) ?? []).compactMap { $0.last }
                #expect(!values.contains { $0.contains("127.0.0.1") || $0.contains("c2VjcmV0") }, "\(values)")
            }
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())")
            let denials = try Self.audit(net, "egress.deny")
            #expect(denials.filter { $0["rule"] == "host-mismatch" }.count == 4, "\(denials)")
            Self.finish(net)
        }

        // MARK: DNS

        @Test("DNS: denied names get NXDOMAIN in the jail and no query for them ever reaches the resolver")
        func dnsForDeniedNames() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let steps: [ClientStep] = [
                .resolve("resolve-allowed", "allowed.example"),
                .resolve("resolve-denied", "denied.example"),
                .resolve("resolve-exfil", "c2VjcmV0LXRva2Vu.exfil.denied.example"),
                .resolve("resolve-metadata", "metadata.google.internal"),
                .udp("responder-denied", "10.200.0.1", 53, name: "denied.example"),
                .udp("responder-allowed", "10.200.0.1", 53, name: "allowed.example"),
                .udp("direct-udp", FakeInternet.dnsServer, 53, name: "denied.example"),
                .tcp("direct-tcp53", FakeInternet.dnsServer, 53),
                .tcp("direct-tcp853", FakeInternet.dnsServer, 853),
                .cmd("getent", ["getent", "hosts", "denied.example"]),
                .http("proxy-denied", ClientStep.request("http://denied.example/", host: "denied.example")),
                .connect("connect-denied", "denied.example:443"),
                .cmd("curl-denied", ["curl", "-sS", "--noproxy", "*", "http://denied.example/"]),
                .cmd("env", ["env"]),
                .cmd("resolv.conf", ["cat", "/etc/resolv.conf"]),
                // Last, so that once its query is in dnsmasq's log every earlier one would be too.
                .http("proxy-allowed", ClientStep.request("http://allowed.example/last", host: "allowed.example")),
            ]
            let run = try net.runClient(steps, options: ["--resolver", Self.dns, "--allow", "allowed.example"])
            #expect(run.process.status == 0, "\(run)")
            let synthetic = try Self.step(run, "resolve-allowed")
            #expect(synthetic.result == "OK" && !synthetic.addrs.isEmpty
                    && synthetic.addrs.allSatisfy { $0.hasPrefix("198.18.") || $0.hasPrefix("198.19.") },
                    "allowlisted names get synthetic addresses: \(synthetic)")
            for id in ["resolve-denied", "resolve-exfil", "resolve-metadata"] {
                let r = try Self.step(run, id)
                #expect(r.result == "gaierror", "\(id): \(r)")
            }
            #expect(try Self.step(run, "responder-denied").rcode == 3, "NXDOMAIN")
            #expect(try Self.step(run, "responder-allowed").rcode == 0)
            // Straight at the resolver: captured into the peer namespace, where nothing listens.
            for id in ["direct-udp", "direct-tcp53", "direct-tcp853"] {
                let r = try Self.step(run, id)
                #expect(r.result == "ECONNREFUSED", "\(id) reached a resolver: \(r)")
            }
            #expect(try Self.step(run, "getent").rc == 2)
            try Self.expectDenied(run, "proxy-denied", "not-allowlisted")
            try Self.expectDenied(run, "connect-denied", "not-allowlisted")
            #expect(try Self.step(run, "curl-denied").rc == 6, "curl could not resolve the name")
            let env = try Self.step(run, "env").out
            for v in ["HTTP_PROXY=http://10.200.0.1:3128", "HTTPS_PROXY=http://10.200.0.1:3128", "http_proxy=", "NO_PROXY="] {
                #expect(env.contains(v), "\(v) in the jail's environment: \(env)")
            }
            let resolv = try Self.step(run, "resolv.conf").out
            #expect(resolv.split(separator: "\n").filter { $0.hasPrefix("nameserver") } == ["nameserver 10.200.0.1"], "\(resolv)")
            try Self.expectReached(run, "proxy-allowed", site: Self.allowed)

            #expect(Harness.eventually(timeout: 5) { net.dnsQueries().contains { $0.name == "allowed.example" } }, "\(net.dump)")
            #expect(Set(net.dnsQueries().map(\.name)) == ["allowed.example"], "queries that left: \(net.dnsQueries())")
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())")
            let dnsEvents = try Self.audit(net).filter { $0["mode"] == "dns" }
            #expect(dnsEvents.contains { $0.kind == "egress.deny" && $0["host"] == "denied.example" && $0["rule"] == "not-allowlisted" },
                    "\(dnsEvents)")
            #expect(dnsEvents.contains { $0.kind == "egress.deny" && $0["host"] == "metadata.google.internal"
                && $0["rule"] == "metadata-address" },
                    "\(dnsEvents)")
            #expect(dnsEvents.contains { $0.kind == "egress.allow" && $0["host"] == "allowed.example" })
            Self.finish(net)
        }

        // MARK: clients that ignore the proxy

        /// Prints eth0's MTU (SIOCGIFMTU): the jail has no /sys.
        static let linkMTU = """
            import fcntl, socket, struct
            s = socket.socket()
            print(struct.unpack("16si", fcntl.ioctl(s.fileno(), 0x8921, struct.pack("16si", b"eth0", 0)))[1])
            """

        @Test("a client that ignores the proxy variables reaches allowlisted names (HTTP and HTTPS) and fails fast elsewhere")
        func transparentCapture() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let curl = ["curl", "-sS", "--noproxy", "*", "--max-time", "10"]
            let code = ["-o", "/dev/null", "-w", "%{http_code} %header{x-clawjail-deny}"]
            let steps: [ClientStep] = [
                .cmd("http", curl + ["http://allowed.example/t1"]),
                .cmd("https", curl + ["--cacert", "/fake/cert.pem", "https://allowed.example/t2"]),
                .cmd("denied-http", curl + ["http://denied.example/"]),
                .cmd("denied-https", curl + ["--cacert", "/fake/cert.pem", "https://denied.example/"]),
                .cmd("denied-sni", curl + ["--cacert", "/fake/cert.pem", "--resolve", "denied.example:443:\(FakeInternet.decoySite)",
                                           "https://denied.example/"]),
                .cmd("denied-host", curl + code + ["--resolve", "denied.example:80:\(FakeInternet.decoySite)", "http://denied.example/"]),
                .cmd("literal-http", curl + code + ["http://\(FakeInternet.decoySite)/"]),
                .cmd("literal-https", curl + ["-k", "https://\(FakeInternet.decoySite)/"]),
                .cmd("other-port", curl + ["http://\(FakeInternet.decoySite):8080/"]),
                .tcp("ssh", FakeInternet.decoySite, 22),
                .tcp("ssh-allowed", "allowed.example", 22),
                .cmd("mtu", ["/usr/bin/python3", "-c", Self.linkMTU]),
            ]
            let run = try net.runClient(steps, options: ["--resolver", Self.dns, "--allow", "allowed.example"])
            #expect(run.process.status == 0, "\(run)")
            let http = try Self.step(run, "http"), https = try Self.step(run, "https")
            #expect(http.rc == 0 && http.siteAddress == Self.allowed && http.site?["port"] as? Int == 80, "\(http)")
            #expect(https.rc == 0 && https.siteAddress == Self.allowed && https.site?["sni"] as? String == "allowed.example", "\(https)")
            #expect(try Self.step(run, "denied-http").rc == 6)
            #expect(try Self.step(run, "denied-https").rc == 6)
            #expect(try Self.step(run, "denied-sni").rc == 35, "TLS refused with an alert")
            #expect(try Self.step(run, "denied-host").out == "403 not-allowlisted")
            #expect(try Self.step(run, "literal-http").out == "403 ip-literal")
            #expect(try Self.step(run, "literal-https").rc == 35)
            #expect(try Self.step(run, "other-port").rc == 7)
            #expect(try Self.step(run, "ssh").result == "ECONNREFUSED")
            #expect(try Self.step(run, "ssh-allowed").result == "ECONNREFUSED")
            // The jail's veth carries 64 KiB frames (fewer packets per byte through the proxy).
            let mtu = try Self.step(run, "mtu")
            #expect(mtu.rc == 0 && mtu.out == "65535\n", "\(mtu)")
            // Fail fast: bounds for the test, not a performance claim.
            for id in ["denied-http", "denied-https", "denied-sni", "denied-host", "literal-http", "literal-https", "other-port",
                       "ssh", "ssh-allowed"] {
                let r = try Self.step(run, id)
                #expect(r.ms < 3000, "\(id) took \(r.ms) ms")
            }

            #expect(net.requests(at: Self.allowed).compactMap { $0["path"] as? String } == ["/t1", "/t2"])
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())\n\(net.dump)")
            #expect(Harness.eventually(timeout: 5) { !net.dnsQueries().isEmpty })
            #expect(Set(net.dnsQueries().map(\.name)) == ["allowed.example"], "\(net.dnsQueries())")
            let events = try Self.audit(net).filter { $0["mode"] != "dns" }
            #expect(events.contains { $0.kind == "egress.allow" && $0["mode"] == "transparent-http" && $0["host"] == "allowed.example"
                && ($0["dst_ip"]?.hasPrefix("198.1") ?? false) && $0["upstream_ip"] == Self.allowed }, "\(events)")
            #expect(events.contains { $0.kind == "egress.allow" && $0["mode"] == "transparent-tls" && $0["host"] == "allowed.example"
                && $0["port"] == "443" && ($0.int("bytes_down") ?? 0) > 0 }, "\(events)")
            #expect(events.contains { $0.kind == "egress.deny" && $0["mode"] == "transparent-tls" && $0["host"] == "denied.example"
                && $0["rule"] == "not-allowlisted" }, "\(events)")
            #expect(events.contains { $0.kind == "egress.deny" && $0["mode"] == "transparent-http" && $0["rule"] == "ip-literal" })
            Self.finish(net)
        }

        // MARK: mode = "none"

        @Test("mode none: connecting anywhere fails at once with ENETUNREACH and direct DNS gets nothing")
        func modeNone() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let targets: [(String, Int)] = [(Self.allowed, 80), (Self.allowed, 443), ("169.254.169.254", 80), ("10.0.0.5", 80),
                                            (FakeInternet.dnsServer, 53), (FakeInternet.dnsServer, 853), ("10.200.0.1", 3128),
                                            ("fd00:ec2::254", 80)]
            var steps: [ClientStep] = targets.map { .tcp("tcp \($0.0):\($0.1)", $0.0, $0.1) }
            steps += [
                .udp("udp dns", FakeInternet.dnsServer, 53, name: "allowed.example"),
                .resolve("resolve", "allowed.example"),
                .cmd("env", ["env"]),
                .cmd("curl", ["curl", "-sS", "--max-time", "10", "http://\(Self.allowed)/"]),
            ]
            let run = try net.runClient(steps, options: ["--resolver", Self.dns])
            #expect(run.process.status == 0, "\(run)")
            for t in targets {
                let r = try Self.step(run, "tcp \(t.0):\(t.1)")
                #expect(r.result == "ENETUNREACH" && r.ms < 1000, "tcp \(t.0):\(t.1): \(r)")
            }
            let udp = try Self.step(run, "udp dns")
            #expect(udp.result == "ENETUNREACH", "\(udp)")
            #expect(try Self.step(run, "resolve").result == "gaierror")
            #expect(!(try Self.step(run, "env").out.lowercased().contains("proxy")))
            #expect(try Self.step(run, "curl").rc == 7)
            #expect(net.sitesReached().isEmpty, "\(net.sitesReached())")
            #expect(net.sitesReached(log: "host").isEmpty)
            #expect(net.dnsQueries().isEmpty, "\(net.dnsQueries())")
            Self.finish(net)
        }

        // MARK: ingress

        @Test("ingress: the host reaches the agent's server only through its Unix socket, from 10.200.0.1, never loopback")
        func ingressThroughUnixSocket() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let agent = try AgentFixture("ingress")
            defer { agent.clean() }
            let socket = net.dir + "/run/gateway.sock"
            let loopbackSocket = net.dir + "/run/loopback.sock"
            try agent.write(command: ["/usr/bin/python3", "/fake/agent.py"], extra: """
                [[mount]]
                host = "\(net.jailDir)"
                path = "/fake"

                [network]
                mode = "none"

                [[ingress]]
                port = 8080
                socket = "\(socket)"
                socket_mode = "0660"

                [[ingress]]
                port = 8081
                socket = "\(loopbackSocket)"
                socket_mode = "0600"
                """)
            let out = net.dir + "/agent.out", err = net.dir + "/agent.err"
            // The supervisor's stdout and stderr go to separate files; nsenter execs clawjail.
            let p = try SpawnedProcess(["/usr/bin/nsenter", "--net=/run/netns/\(net.up)", "/bin/sh", "-c",
                                        "exec \"$0\" run \"$1\" 2>\"$2\"", Harness.binary, agent.config, err],
                                       environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWJAIL_STATE_DIR": net.stateDir],
                                       output: out)
            defer {
                p.end(within: 0)
                // A supervisor that died without its teardown (killed here, or crashed)
                // leaves this agent's empty cgroups and its lock: remove those, only ours.
                let left = Harness.leftoverCgroups(named: agent.name)
                for dir in left where ((try? String(contentsOfFile: dir + "/cgroup.procs", encoding: .utf8)) ?? "x").isEmpty {
                    rmdir(dir)
                }
                if !left.isEmpty { unlink("/run/clawjail/jails/\(agent.name).lock") }
            }
            let text = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
            try #require(Harness.eventually(timeout: 30) { text(out).contains("agent ready") }, "the agent did not start\n\(text(err))")

            let curl = { (sock: String) in
                try Harness.run(["/usr/bin/curl", "-sS", "--max-time", "10", "--unix-socket", sock, "http://agent/hello"], timeout: 20)
            }
            let r = try curl(socket)
            #expect(r.status == 0, "\(r)")
            let answer = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(answer?["peer"] as? String == "10.200.0.1", "forwarded connections come from the peer address: \(r.stdout)")
            #expect(answer?["local"] as? String == "10.200.0.2")
            // mode = "none": the veth that carries ingress carries no way out.
            let egress = answer?["egress"] as? [String: String] ?? [:]
            #expect(egress.count == 4 && egress.values.allSatisfy { $0 == "ENETUNREACH" }, "\(egress)")

            // A large answer crosses the forwarder intact (reads go on after the first one).
            let big = try Harness.run(["/usr/bin/curl", "-sS", "--max-time", "20", "--unix-socket", socket, "-o", "/dev/null",
                                       "-w", "%{size_download}", "http://agent/bytes/8000000"], timeout: 30)
            #expect(big.status == 0 && big.stdout == "8000000", "\(big)")

            var st = stat()
            #expect(lstat(socket, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o7777 == 0o660,
                    "mode \(String(st.st_mode, radix: 8))")
            #expect(lstat(loopbackSocket, &st) == 0 && st.st_mode & 0o7777 == 0o600)
            // A server that listens on loopback only is not reachable, and clawjail says why.
            let lo = try curl(loopbackSocket)
            #expect(lo.status != 0 && lo.stdout.isEmpty, "\(lo)")
            #expect(Harness.eventually(timeout: 5) { text(err).contains("listens on 127.0.0.1:8081 only") }, "\(text(err))")

            p.signal(SIGTERM)
            #expect(Harness.eventually(timeout: 20) { !p.isRunning }, "clawjail run did not stop on SIGTERM")
            #expect(!FileManager.default.fileExists(atPath: socket), "the ingress socket is removed at exit")
            #expect(!FileManager.default.fileExists(atPath: loopbackSocket))
            #expect(Harness.leftoverCgroups(named: agent.name).isEmpty)
            #expect(net.sitesReached().isEmpty && net.dnsQueries().isEmpty, "\(net.dump)")
            let events = try Self.audit(net, "ingress.")
            #expect(!events.isEmpty && events.allSatisfy { $0.agent == agent.name }, "\(events)")
            #expect(events.contains { $0.kind == "ingress.allow" && $0["port"] == "8080" && ($0.int("bytes_out") ?? 0) > 0 }, "\(events)")
            #expect(events.contains { $0.kind == "ingress.deny" && $0["port"] == "8081" }, "\(events)")
            Self.finish(net)
        }
    }
}

extension NetAuditEvent {
    func int(_ key: String) -> Int? {
        if let v = payload[key] as? Int { return v }
        return self[key].flatMap { Int($0) }
    }
}
