// The `[network] allow = [...]` grammar and the name-based egress decision.
//
// Grammar of one entry:
//
//     entry    = pattern [ ":" port ]
//     pattern  = hostname | "*." hostname
//     port     = 1..65535, decimal, no sign, no leading zero
//
// - Case-insensitive; stored lower-cased without the (one) trailing dot.
// - `*.example.com` matches every name *below* example.com, at any depth
//   (`a.example.com`, `a.b.example.com`), and never `example.com` itself: list
//   both if both are wanted. Only a whole leftmost label can be a wildcard.
// - Without a port an entry allows ports 80 and 443 only. Naming a host should
//   not open SSH, SMTP or a database port on it by default: an injected agent
//   would use exactly those to move data or reach admin interfaces. Write
//   `host:22` to allow another port (one entry per port).
// - Host syntax: letters, digits and hyphens (LDH), labels of 1–63 characters
//   that do not start or end with a hyphen, at most 253 characters. Punycode
//   (`xn--…`) is fine; Unicode must be written as punycode. Underscores are
//   accepted in every label except the last: a few real hosts have them (old S3
//   bucket names, some CDN aliases), they cannot make an entry match more, and
//   no top-level domain has one.
//
// Refused, with a message that says what to write instead: empty entries, `*`,
// entries that can match no name (a wildcard over a domain longer than 251 characters),
// wildcards over a single label (`*.com`) or over a public-suffix-like pair
// (`*.co.uk`, see `looksLikePublicSuffixPair`), wildcards over well-known
// shared-hosting suffixes (anyone can own a name under `*.github.io`), IP
// literals in any encoding, single-label names, `localhost`, special-use and
// private-use names (`.local`, `.internal`, `.home.arpa`, …) and cloud metadata
// names.

/// Stable rule names for `X-Clawjail-Deny` and audit records. Never rename.
public enum DenyRule: String, Error, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case metadataAddress = "metadata-address"
    case loopbackAddress = "loopback-address"
    case privateAddress = "private-address"
    case linkLocalAddress = "link-local-address"
    case cgnatAddress = "cgnat-address"
    case multicastAddress = "multicast-address"
    case reservedAddress = "reserved-address"
    case ipLiteral = "ip-literal"
    case notAllowlisted = "not-allowlisted"
    case badRequest = "bad-request"
    case hostMismatch = "host-mismatch"
    case dnsFailure = "dns-failure"
    case connectFailed = "connect-failed"
    case tooManyConnections = "too-many-connections"
    /// A CONNECT tunnel to a TLS port whose ClientHello names another server
    /// (domain fronting), or no server at all.
    case sniMismatch = "sni-mismatch"
    /// A CONNECT tunnel to a TLS port that does not start with TLS.
    case notTLS = "not-tls"

    public var description: String { rawValue }
}

/// The host part of an allow entry.
public enum HostPattern: Sendable, Hashable, CustomStringConvertible {
    /// Exactly this name.
    case exact(String)
    /// Every name strictly below this domain, at any depth (`*.domain`).
    case subdomains(of: String)

    public var description: String {
        switch self {
        case .exact(let n): return n
        case .subdomains(let d): return "*." + d
        }
    }

    /// The longest domain a wildcard can cover and still match a name: `x.` plus it
    /// must fit in the 253 characters of a host name.
    public static let longestWildcardDomain = 251

    /// `name` must already be normalised (`Hostname.normalise`).
    public func matches(_ name: String) -> Bool {
        switch self {
        case .exact(let n): return name == n
        case .subdomains(let d):
            // Whole labels only: "x.example.com" matches "*.example.com";
            // "xexample.com" and "example.com" do not.
            return name.utf8.count > d.utf8.count + 1 && name.hasSuffix("." + d)
        }
    }
}

public struct AllowRule: Sendable, Hashable, CustomStringConvertible {
    public var pattern: HostPattern
    /// nil: ports 80 and 443 only.
    public var port: UInt16?

    public init(pattern: HostPattern, port: UInt16? = nil) {
        self.pattern = pattern
        self.port = port
    }

    /// The ports an entry without an explicit port allows.
    public static let defaultPorts: Set<UInt16> = [80, 443]

    public func allows(port p: UInt16) -> Bool {
        if let port { return p == port }
        return AllowRule.defaultPorts.contains(p)
    }

    public var description: String {
        port.map { "\(pattern):\($0)" } ?? pattern.description
    }

    /// Parses one allowlist entry (see the grammar at the top of this file).
    public static func parse(_ entry: String) -> Result<AllowRule, AllowlistError> {
        func fail(_ kind: AllowlistError.Kind, _ message: String) -> Result<AllowRule, AllowlistError> {
            .failure(AllowlistError(entry: entry, kind: kind, message: message))
        }
        if entry.isEmpty {
            return fail(.empty, "an empty entry allows nothing; remove it or write a host name such as \"api.example.com\"")
        }
        if entry.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            return fail(.badSyntax, "contains whitespace or control characters; write just the host name, e.g. \"api.example.com\"")
        }
        // IP literals first, in every encoding, before the port split mangles IPv6.
        let host = hostPart(entry)
        if IPAddress.looksLikeIPLiteral(host) {
            let addr = IPAddress.parseAnyEncoding(host)
            if let addr, addr.classify() == .metadata {
                return fail(.metadata, "is a cloud metadata address, which is always refused; the agent must not reach instance credentials")
            }
            return fail(.ipLiteral, "is an IP address; the allowlist takes host names only, so the proxy can check what each name resolves to. Write the service's host name, e.g. \"api.example.com\"")
        }
        if !entry.unicodeScalars.allSatisfy({ $0.isASCII }) {
            return fail(.nonASCII, "contains non-ASCII characters; write internationalised names in their IDNA (punycode) form, \"xn--…\"")
        }
        var text = entry.lowercased()
        var port: UInt16? = nil
        if let colon = text.lastIndex(of: ":") {
            let portText = text[text.index(after: colon)...]
            text = String(text[..<colon])
            guard let p = parsePort(portText) else {
                return fail(.badPort, "has an invalid port \"\(portText)\"; write a decimal port 1–65535 after the colon, e.g. \"api.example.com:8443\", or no port for 80 and 443")
            }
            port = p
        }
        if text == "*" || text == "*." {
            return fail(.bareWildcard, "\"*\" would allow the whole internet; list the host names the agent needs, e.g. \"api.example.com\" or \"*.example.com\"")
        }
        var isWildcard = false
        if text.hasPrefix("*.") {
            isWildcard = true
            text.removeFirst(2)
        }
        if text.contains("*") {
            return fail(.misplacedWildcard, "a wildcard must be a whole leftmost label, \"*.example.com\"; partial or inner wildcards such as \"api-*.example.com\" are not supported")
        }
        let name: String
        switch Hostname.normalise(text) {
        case .success(let n): name = n
        case .failure(let problem):
            return fail(.badSyntax, "is not a valid host name: \(problem); write a name such as \"api.example.com\"")
        }
        let labels = name.split(separator: ".")
        if let reason = Hostname.metadataReason(name) {
            return fail(.metadata, reason)
        }
        if let special = Hostname.specialUseSuffix(name) {
            return fail(.localName, "\"\(special)\" names are local or reserved and never an internet service (and \(Hostname.specialUseWhy(special))); write the public host name instead")
        }
        if isWildcard {
            // The shortest name under `*.d` is `x.d`; past 251 characters it would be
            // over 253, which no client can send, so the entry would match nothing.
            if name.utf8.count > HostPattern.longestWildcardDomain {
                return fail(.cannotMatch, "can match no host name: every name under this \(name.utf8.count)-character domain is longer than 253 characters, the limit for DNS names; a wildcard's domain can have at most \(HostPattern.longestWildcardDomain) characters, so shorten it or list the exact names")
            }
            if labels.count < 2 {
                return fail(.wildcardTooBroad, "\"*.\(name)\" covers a whole top-level domain; wildcards need a registrable domain, e.g. \"*.example.com\"")
            }
            if Hostname.looksLikePublicSuffixPair(labels) {
                return fail(.publicSuffixWildcard, "\"*.\(name)\" looks like a public suffix (like co.uk), under which anyone can register a domain; write \"*.yourdomain.\(name)\" or exact names. (If \(name) is a real registrable domain, list its hosts explicitly.)")
            }
            if let shared = Hostname.sharedHostingSuffix(name) {
                return fail(.sharedHostingWildcard, "\"*.\(name)\" is a shared hosting suffix (\(shared)) where anyone can get a subdomain, so it would allow an attacker's site; list the exact host names, e.g. \"yourproject.\(shared)\"")
            }
            for meta in Hostname.metadataNames where HostPattern.subdomains(of: name).matches(meta) {
                return fail(.metadata, "\"*.\(name)\" would include the cloud metadata name \(meta); list the exact host names you need")
            }
            return .success(AllowRule(pattern: .subdomains(of: name), port: port))
        }
        if labels.count < 2 {
            return fail(.singleLabel, "\"\(name)\" is a single-label name, which resolves through local search domains (like \"metadata\" or \"intranet\") and is never a public host; write the fully qualified name, e.g. \"\(name).example.com\"")
        }
        return .success(AllowRule(pattern: .exact(name), port: port))
    }

    private static func hostPart(_ entry: String) -> String {
        // "1.2.3.4:80" → "1.2.3.4"; bracketed or bare IPv6 is left alone.
        if entry.hasPrefix("[") {
            if let close = entry.firstIndex(of: "]") { return String(entry[...close]) }
            return entry
        }
        let colons = entry.utf8.filter { $0 == 0x3A }.count
        if colons == 1, let c = entry.firstIndex(of: ":") { return String(entry[..<c]) }
        return entry
    }

    static func parsePort(_ s: Substring) -> UInt16? {
        let u = s.utf8
        guard !u.isEmpty, u.count <= 5, u.first != 0x30 else { return nil }
        guard let v = IPAddress.decimal(u, max: 65535), v >= 1 else { return nil }
        return UInt16(v)
    }
}

public struct AllowlistError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case empty, badSyntax, nonASCII, badPort, bareWildcard, misplacedWildcard
        case wildcardTooBroad, publicSuffixWildcard, sharedHostingWildcard
        /// Well-formed, but no name that the proxy accepts falls under it.
        case cannotMatch
        case ipLiteral, metadata, localName, singleLabel
    }

    public let entry: String
    public let kind: Kind
    /// Why, and what to write instead. Does not repeat the entry.
    public let message: String

    public var description: String { "allow entry \"\(entry)\": \(message)" }
}

/// The outcome of checking one destination name and port.
public enum AllowDecision: Sendable, Hashable {
    case allowed(AllowRule)
    case denied(DenyRule)

    public var isAllowed: Bool {
        if case .allowed = self { return true }
        return false
    }
}

/// A parsed allowlist. Decisions are made on the name alone, before any DNS.
public struct Allowlist: Sendable, Hashable {
    public let rules: [AllowRule]
    private let exact: [String: [AllowRule]]
    private let wildcard: [String: [AllowRule]]

    public init(rules: [AllowRule]) {
        self.rules = rules
        var exact: [String: [AllowRule]] = [:]
        var wildcard: [String: [AllowRule]] = [:]
        for r in rules {
            switch r.pattern {
            case .exact(let n): exact[n, default: []].append(r)
            case .subdomains(let d): wildcard[d, default: []].append(r)
            }
        }
        self.exact = exact
        self.wildcard = wildcard
    }

    /// Parses every entry; fails on the first bad one.
    public init(parsing entries: [String]) throws(AllowlistError) {
        var rules: [AllowRule] = []
        for e in entries {
            switch AllowRule.parse(e) {
            case .success(let r): rules.append(r)
            case .failure(let err): throw err
            }
        }
        self.init(rules: rules)
    }

    public static let empty = Allowlist(rules: [])

    /// Decides on a destination as named by the client (request target, Host
    /// header, CONNECT authority, SNI). Case and one trailing dot are normalised.
    public func decide(host: String, port: UInt16) -> AllowDecision {
        switch Allowlist.screen(host) {
        case .failure(let rule): return .denied(rule)
        case .success(let name):
            if let rule = firstMatch(name, where: { $0.allows(port: port) }) { return .allowed(rule) }
            return .denied(.notAllowlisted)
        }
    }

    /// The rule that lets the DNS responder answer for `host`, on any port.
    public func ruleForName(_ host: String) -> AllowRule? {
        guard case .success(let name) = Allowlist.screen(host) else { return nil }
        return firstMatch(name, where: { _ in true })
    }

    /// Refusals that do not depend on the list: IP literals, bad syntax,
    /// metadata and loopback names. On success, the normalised name.
    public static func screen(_ host: String) -> Result<String, DenyRule> {
        if IPAddress.looksLikeIPLiteral(host) {
            if let a = IPAddress.parseAnyEncoding(host), a.classify() == .metadata {
                return .failure(.metadataAddress)
            }
            return .failure(.ipLiteral)
        }
        guard case .success(let name) = Hostname.normalise(host) else { return .failure(.badRequest) }
        if Hostname.metadataReason(name) != nil { return .failure(.metadataAddress) }
        if name == "localhost" || name.hasSuffix(".localhost") { return .failure(.loopbackAddress) }
        return .success(name)
    }

    private func firstMatch(_ name: String, where ok: (AllowRule) -> Bool) -> AllowRule? {
        if let rs = exact[name], let r = rs.first(where: ok) { return r }
        guard !wildcard.isEmpty else { return nil }
        // Each proper suffix that starts after a dot, longest first.
        var idx = name.startIndex
        while let dot = name[idx...].firstIndex(of: ".") {
            let suffix = String(name[name.index(after: dot)...])
            if let rs = wildcard[suffix], let r = rs.first(where: ok) { return r }
            idx = name.index(after: dot)
        }
        return nil
    }

    public static func == (a: Allowlist, b: Allowlist) -> Bool { a.rules == b.rules }
    public func hash(into h: inout Hasher) { h.combine(rules) }
}

/// Why a string is not a valid host name.
public struct HostnameProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Host name syntax and the special names shared by the config and the proxy.
public enum Hostname {
    /// Lower-cases, strips one trailing dot and checks LDH syntax (see the file
    /// header). Does not reject IP-shaped names: call
    /// `IPAddress.looksLikeIPLiteral` first.
    public static func normalise(_ host: String) -> Result<String, HostnameProblem> {
        var u = Array(host.utf8)
        if u.last == 0x2E { u.removeLast() }
        guard !u.isEmpty else { return .failure(HostnameProblem("it is empty")) }
        guard u.count <= 253 else { return .failure(HostnameProblem("it is longer than 253 characters")) }
        for i in u.indices where u[i] >= 0x41 && u[i] <= 0x5A { u[i] += 0x20 }
        let labels = u.split(separator: 0x2E, omittingEmptySubsequences: false)
        for (i, label) in labels.enumerated() {
            guard !label.isEmpty else { return .failure(HostnameProblem("it has an empty label (\"..\" or a leading dot)")) }
            guard label.count <= 63 else { return .failure(HostnameProblem("a label is longer than 63 characters")) }
            let isLast = i == labels.count - 1
            for c in label {
                let ok = (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || (c == 0x5F && !isLast)
                if !ok {
                    return .failure(HostnameProblem(c >= 0x80 ? "it is not ASCII (use the punycode form)" : "it contains \"\(Unicode.Scalar(c))\"; only letters, digits and hyphens are allowed"))
                }
            }
            if label.first == 0x2D || label.last == 0x2D {
                return .failure(HostnameProblem("a label starts or ends with a hyphen"))
            }
        }
        return .success(String(decoding: u, as: UTF8.self))
    }

    /// Names that reach a cloud metadata service. `metadata` and `instance-data`
    /// are the short names GCP and AWS resolvers answer; the others resolve to
    /// metadata addresses on their clouds.
    public static let metadataNames: [String] = [
        "metadata.google.internal", "metadata.goog", "metadata", "instance-data",
        "instance-data.ec2.internal", "metadata.tencentyun.com", "metadata.packet.net",
        "metadata.platformequinix.com", "rancher-metadata",
    ]

    /// A message if `name` (normalised) is a metadata name.
    public static func metadataReason(_ name: String) -> String? {
        guard metadataNames.contains(name) else { return nil }
        return "\"\(name)\" is a cloud metadata name, which is always refused: the agent must not reach instance credentials"
    }

    /// Suffixes that never name an internet service: RFC 6761/6762/8375/9476
    /// special-use names, ICANN's private-use `.internal`, and suffixes that
    /// private networks commonly use (.lan, .home, .corp, .intranet, .private).
    public static let specialUseSuffixes: [String] = [
        "localhost", "local", "internal", "localdomain", "home.arpa", "arpa", "onion",
        "invalid", "alt", "lan", "home", "corp", "intranet", "private",
    ]

    public static func specialUseSuffix(_ name: String) -> String? {
        specialUseSuffixes.first { name == $0 || name.hasSuffix("." + $0) }
    }

    static func specialUseWhy(_ suffix: String) -> String {
        switch suffix {
        case "localhost": return "they resolve to the host itself"
        case "local": return "they are multicast DNS names on the host's LAN"
        case "internal": return "they are private-use names, such as cloud-internal and metadata hosts"
        case "arpa", "home.arpa": return "they are reverse-lookup or home-network names"
        case "onion": return "they are Tor names that DNS cannot resolve"
        default: return "they usually name hosts on a private network"
        }
    }

    /// A heuristic stand-in for the public suffix list: a two-label domain whose
    /// first label has at most 3 characters and whose last label is a 2-letter
    /// country code is treated as a public suffix (co.uk, com.au, ac.jp, gov.br,
    /// or.kr …). False positives are possible (x.ai, t.co): such domains must be
    /// listed as exact names rather than wildcarded.
    public static func looksLikePublicSuffixPair(_ labels: [Substring]) -> Bool {
        guard labels.count == 2 else { return false }
        let first = labels[0], tld = labels[1]
        return first.count <= 3 && tld.count == 2 && tld.allSatisfy { $0.isLetter }
    }

    /// Suffixes under which anyone can get a subdomain (a short list from the
    /// private section of the public suffix list; not exhaustive).
    public static let sharedHostingSuffixes: [String] = [
        "github.io", "githubusercontent.com", "gitlab.io", "pages.dev", "workers.dev",
        "vercel.app", "netlify.app", "herokuapp.com", "appspot.com", "web.app",
        "firebaseapp.com", "blogspot.com", "cloudfront.net", "amazonaws.com",
        "azurewebsites.net", "blob.core.windows.net", "trycloudflare.com", "ngrok.io",
        "ngrok-free.app", "ngrok.app", "glitch.me", "repl.co", "onrender.com", "fly.dev",
        "googleusercontent.com", "surge.sh", "deno.dev", "r2.dev", "pythonanywhere.com",
        "readthedocs.io", "webhook.site", "requestcatcher.com", "pipedream.net",
    ]

    /// The shared-hosting suffix that `name` equals or lies under, if any.
    public static func sharedHostingSuffix(_ name: String) -> String? {
        sharedHostingSuffixes.first { name == $0 || name.hasSuffix("." + $0) }
    }
}
