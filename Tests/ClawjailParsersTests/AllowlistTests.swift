import Testing
@testable import ClawjailParsers

@Suite("Allowlist")
struct AllowlistTests {
    func list(_ entries: [String]) throws -> Allowlist {
        try Allowlist(parsing: entries)
    }

    @Test("entries are normalised", arguments: [
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("*.Slack.com:443", "*.slack.com:443"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("my_bucket.s3.example.com", "my_bucket.s3.example.com"),
        ("example.com:8443", "example.com:8443"),
        ("*.a.b.example.com", "*.a.b.example.com"),
    ])
    func normalised(entry: String, expected: String) throws {
        let rule = try AllowRule.parse(entry).get()
        #expect(rule.description == expected)
    }

    @Test("refused entries say why", arguments: [
        ("", AllowlistError.Kind.empty),
        ("*", .bareWildcard),
        ("*.", .bareWildcard),
        ("*.com", .wildcardTooBroad),
        ("*.com:443", .wildcardTooBroad),
        ("*.co.uk", .publicSuffixWildcard),
        ("*.com.au", .publicSuffixWildcard),
        ("*.github.io", .sharedHostingWildcard),
        ("*.s3.amazonaws.com", .sharedHostingWildcard),
        ("api-*.example.com", .misplacedWildcard),
        ("a.*.example.com", .misplacedWildcard),
        ("*example.com", .misplacedWildcard),
        ("127.0.0.1", .ipLiteral),
        ("127.0.0.1:80", .ipLiteral),
        ("2130706433", .ipLiteral),
        ("0x7f.1", .ipLiteral),
        ("0177.0.0.1", .ipLiteral),
        ("[::1]", .ipLiteral),
        ("[::1]:443", .ipLiteral),
        ("::1", .ipLiteral),
        ("::ffff:10.0.0.1", .ipLiteral),
        ("8.8.8.8", .ipLiteral),
        ("169.254.169.254", .metadata),
        ("[::ffff:169.254.169.254]:80", .metadata),
        ("100.100.100.200", .metadata),
        ("metadata.google.internal", .metadata),
        ("Metadata.Google.Internal.", .metadata),
        ("metadata.goog", .metadata),
        ("metadata", .metadata),
        ("instance-data", .metadata),
        ("metadata.tencentyun.com", .metadata),
        ("*.tencentyun.com", .metadata),
        ("localhost", .localName),
        ("foo.localhost", .localName),
        ("*.localhost", .localName),
        ("printer.local", .localName),
        ("*.internal", .localName),
        ("db.corp.internal", .localName),
        ("router.home.arpa", .localName),
        ("1.0.0.10.in-addr.arpa", .localName),
        ("nas.lan", .localName),
        ("wiki", .singleLabel),
        ("intranet", .localName),
        ("example", .singleLabel),
        ("exa mple.com", .badSyntax),
        ("example..com", .badSyntax),
        (".example.com", .badSyntax),
        ("-example.com", .badSyntax),
        ("example-.com", .badSyntax),
        ("exa$mple.com", .badSyntax),
        ("example.c_m", .badSyntax),
        ("bücher.example", .nonASCII),
        ("example.com:0", .badPort),
        ("example.com:65536", .badPort),
        ("example.com:080", .badPort),
        ("example.com:", .badPort),
        ("example.com:+1", .badPort),
        ("example.com:https", .badPort),
    ])
    func refused(entry: String, kind: AllowlistError.Kind) {
        switch AllowRule.parse(entry) {
        case .success(let r):
            Issue.record("\(entry) was accepted as \(r)")
        case .failure(let e):
            #expect(e.kind == kind, "\(entry): \(e.message)")
            #expect(!e.message.isEmpty)
            #expect(e.description.contains("\"\(entry)\""), "the message quotes the entry")
        }
    }

    @Test("messages say what to write instead")
    func messages() throws {
        func message(_ s: String) -> String {
            if case .failure(let e) = AllowRule.parse(s) { return e.message }
            return ""
        }
        #expect(message("*").contains("api.example.com"))
        #expect(message("127.0.0.1").contains("host name"))
        #expect(message("*.co.uk").contains("public suffix"))
        #expect(message("metadata.google.internal").contains("metadata"))
        #expect(message("wiki").contains("fully qualified"))
        #expect(message("example.com:99999").contains("1–65535"))
        #expect(message("bücher.example").contains("punycode"))
    }

    @Test("labels must be whole: suffix tricks do not match")
    func suffixTricks() throws {
        let l = try list(["allowed.example", "*.example.com"])
        #expect(l.decide(host: "allowed.example", port: 443).isAllowed)
        #expect(l.decide(host: "allowed.example.evil.example", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: "notallowed.example", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: "xallowed.example", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: "sub.allowed.example", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: "example.com.evil.example", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: "evilexample.com", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: "a.evilexample.com", port: 443) == .denied(.notAllowlisted))
    }

    @Test("wildcards match subdomains at any depth, never the base")
    func wildcardDepth() throws {
        let l = try list(["*.example.com"])
        #expect(l.decide(host: "a.example.com", port: 443).isAllowed)
        #expect(l.decide(host: "a.b.example.com", port: 443).isAllowed)
        #expect(l.decide(host: "a.b.c.d.example.com", port: 80).isAllowed)
        #expect(l.decide(host: "example.com", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: ".example.com", port: 443) == .denied(.badRequest))
        #expect(HostPattern.subdomains(of: "example.com").matches("a.example.com"))
        #expect(!HostPattern.subdomains(of: "example.com").matches("example.com"))
        #expect(!HostPattern.subdomains(of: "example.com").matches("aexample.com"))
    }

    @Test("case and the trailing dot are normalised")
    func caseAndDot() throws {
        let l = try list(["API.example.com"])
        #expect(l.decide(host: "api.EXAMPLE.com", port: 443).isAllowed)
        #expect(l.decide(host: "api.example.com.", port: 443).isAllowed)
        #expect(l.decide(host: "API.EXAMPLE.COM.", port: 80).isAllowed)
        #expect(l.decide(host: "api.example.com..", port: 443) == .denied(.badRequest))
    }

    @Test("no port means 80 and 443 only; an explicit port means only that port")
    func ports() throws {
        let l = try list(["web.example.com", "ssh.example.com:22", "*.api.example.com:8443"])
        #expect(l.decide(host: "web.example.com", port: 80).isAllowed)
        #expect(l.decide(host: "web.example.com", port: 443).isAllowed)
        #expect(l.decide(host: "web.example.com", port: 22) == .denied(.notAllowlisted))
        #expect(l.decide(host: "web.example.com", port: 25) == .denied(.notAllowlisted))
        #expect(l.decide(host: "web.example.com", port: 8080) == .denied(.notAllowlisted))
        #expect(l.decide(host: "ssh.example.com", port: 22).isAllowed)
        #expect(l.decide(host: "ssh.example.com", port: 443) == .denied(.notAllowlisted))
        #expect(l.decide(host: "v1.api.example.com", port: 8443).isAllowed)
        #expect(l.decide(host: "v1.api.example.com", port: 443) == .denied(.notAllowlisted))
        #expect(l.ruleForName("ssh.example.com")?.port == 22)
        #expect(l.ruleForName("nothing.example.com") == nil)
    }

    @Test("several rules for one name combine their ports")
    func combinedPorts() throws {
        let l = try list(["db.example.com:5432", "db.example.com"])
        #expect(l.decide(host: "db.example.com", port: 5432).isAllowed)
        #expect(l.decide(host: "db.example.com", port: 443).isAllowed)
        #expect(l.decide(host: "db.example.com", port: 3306) == .denied(.notAllowlisted))
    }

    @Test("decisions refuse literals, metadata and loopback whatever the list says")
    func screening() throws {
        let l = try list(["*.example.com", "example.com"])
        #expect(l.decide(host: "127.0.0.1", port: 80) == .denied(.ipLiteral))
        #expect(l.decide(host: "2130706433", port: 80) == .denied(.ipLiteral))
        #expect(l.decide(host: "0x7f.1", port: 80) == .denied(.ipLiteral))
        #expect(l.decide(host: "[::1]", port: 80) == .denied(.ipLiteral))
        #expect(l.decide(host: "1.2.3.4.example.com", port: 80).isAllowed)
        #expect(l.decide(host: "169.254.169.254", port: 80) == .denied(.metadataAddress))
        #expect(l.decide(host: "0xa9fea9fe", port: 80) == .denied(.metadataAddress))
        #expect(l.decide(host: "[::ffff:169.254.169.254]", port: 80) == .denied(.metadataAddress))
        #expect(l.decide(host: "metadata.google.internal", port: 80) == .denied(.metadataAddress))
        #expect(l.decide(host: "localhost", port: 80) == .denied(.loopbackAddress))
        #expect(l.decide(host: "a.localhost", port: 80) == .denied(.loopbackAddress))
        #expect(l.decide(host: "exa mple.com", port: 80) == .denied(.badRequest))
        #expect(l.decide(host: "", port: 80) == .denied(.badRequest))
    }

    @Test("host name syntax")
    func hostnames() throws {
        #expect(try Hostname.normalise("A.B.").get() == "a.b")
        #expect((try? Hostname.normalise(String(repeating: "a", count: 64) + ".com").get()) == nil)
        #expect((try? Hostname.normalise(String(repeating: "a", count: 63) + ".com").get()) != nil)
        let long = Array(repeating: String(repeating: "a", count: 50), count: 5).joined(separator: ".")
        #expect(long.utf8.count == 254)
        #expect((try? Hostname.normalise(long).get()) == nil)
        #expect((try? Hostname.normalise("a_b.example.com").get()) == "a_b.example.com")
        #expect((try? Hostname.normalise("example.co_m").get()) == nil)
    }

    @Test("public-suffix heuristic")
    func publicSuffixHeuristic() {
        #expect(Hostname.looksLikePublicSuffixPair(["co", "uk"]))
        #expect(Hostname.looksLikePublicSuffixPair(["com", "au"]))
        #expect(!Hostname.looksLikePublicSuffixPair(["example", "uk"]))
        #expect(!Hostname.looksLikePublicSuffixPair(["co", "com"]))
        #expect(!Hostname.looksLikePublicSuffixPair(["a", "b", "uk"]))
        #expect((try? AllowRule.parse("*.example.co.uk").get()) != nil)
    }

    /// A host name of exactly `length` characters, in labels of at most 63.
    static func name(length: Int) -> String {
        var out = ""
        var remaining = length
        while remaining > 63 {
            out += String(repeating: "a", count: 62) + "."
            remaining -= 63
        }
        return out + String(repeating: "b", count: remaining)
    }

    @Test("a wildcard is refused when every name under it would be too long", arguments: [252, 253])
    func wildcardThatCannotMatch(length: Int) {
        let domain = Self.name(length: length)
        #expect((try? Hostname.normalise(domain).get()) == domain, "the domain itself is a valid name")
        for entry in ["*." + domain, "*." + domain + ".", "*." + domain + ":8443"] {
            guard case .failure(let error) = AllowRule.parse(entry) else {
                Issue.record("accepted \(entry.utf8.count)-character \(entry), which matches no name")
                continue
            }
            #expect(error.message.contains("can match no host name"), "\(error)")
            #expect(error.message.contains("at most 251 characters"), "\(error)")
        }
    }

    @Test("the longest wildcard that can match is accepted, and matches")
    func longestWildcard() throws {
        let domain = Self.name(length: 251)
        let l = try list(["*." + domain + "."])
        #expect(l.rules.map(\.description) == ["*." + domain])
        let longest = "x." + domain
        #expect(longest.utf8.count == 253)
        #expect(l.decide(host: longest, port: 443).isAllowed)
        #expect(l.decide(host: longest + ".", port: 443).isAllowed)
        #expect(l.decide(host: "xy." + domain, port: 443) == .denied(.badRequest), "254 characters is no host name")
    }

    @Test("the longest exact name is accepted, and matches; one more character is refused")
    func longestExactName() throws {
        let name = Self.name(length: 253)
        let l = try list([name])
        #expect(l.decide(host: name.uppercased() + ".", port: 80).isAllowed)
        guard case .failure(let error) = AllowRule.parse(name + "b") else {
            Issue.record("accepted a 254-character name")
            return
        }
        #expect(error.message.contains("longer than 253 characters"), "\(error)")
    }

    @Test("Allowlist(parsing:) throws the first bad entry")
    func parsingThrows() {
        #expect(throws: AllowlistError.self) { try Allowlist(parsing: ["ok.example.com", "*", "x.example.com"]) }
        #expect(Allowlist.empty.decide(host: "example.com", port: 443) == .denied(.notAllowlisted))
    }
}
