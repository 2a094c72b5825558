// Request targets and Host headers as the proxy reads them. Kept apart from the NIO
// handlers so the parsing can be tested and fuzzed on its own (fuzz/authority).

/// A destination named by a request: the normalised host and the port.
public struct NamedTarget: Equatable, Sendable {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }
}

/// Parsing of request targets and Host headers. Every failure is a rule.
public enum RequestTarget {
    /// `host[:port]` (authority-form, Host header). IP literals in any
    /// encoding are `ip-literal` (or `metadata-address`); user info is refused.
    public static func authority(_ s: Substring, defaultPort: UInt16?) -> Result<NamedTarget, DenyRule> {
        guard !s.isEmpty, !s.contains("@") else { return .failure(.badRequest) }
        if s.hasPrefix("[") {
            let inner = s.prefix { $0 != "]" } + "]"
            if let a = IPAddress.parseAnyEncoding(String(inner)), a.classify() == .metadata { return .failure(.metadataAddress) }
            return .failure(.ipLiteral)
        }
        var host = s
        var port = defaultPort
        let colons = s.utf8.filter { $0 == 0x3A }.count
        if colons > 1 {
            // An unbracketed IPv6 literal (or garbage).
            if case .failure(let rule) = Allowlist.screen(String(s)) { return .failure(rule) }
            return .failure(.badRequest)
        }
        if colons == 1, let c = s.firstIndex(of: ":") {
            host = s[..<c]
            let p = s[s.index(after: c)...]
            if !p.isEmpty {
                guard p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = Int(p), (1...65535).contains(v) else {
                    return .failure(.badRequest)
                }
                port = UInt16(v)
            }
        }
        guard let port else { return .failure(.badRequest) }
        switch Allowlist.screen(String(host)) {
        case .failure(let rule): return .failure(rule)
        case .success(let name): return .success(NamedTarget(host: name, port: port))
        }
    }

    /// The host and port of a target that was refused before it parsed (an IP
    /// literal, a bad port), for the audit record only, never for the client:
    /// the authority as written, without scheme, path or port, so the log says
    /// `169.254.169.254` port 80 rather than the whole URL with port 0.
    public static func auditParts(_ s: String, defaultPort: UInt16) -> (host: String, port: UInt16) {
        var rest = Substring(s)
        if rest.prefix(7).lowercased() == "http://" { rest = rest.dropFirst(7) }
        if let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
        var host = rest
        var portText: Substring = ""
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = rest[...close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() }
        } else if rest.utf8.filter({ $0 == 0x3A }).count == 1, let c = rest.firstIndex(of: ":") {
            host = rest[..<c]
            portText = rest[rest.index(after: c)...]
        }
        if portText.isEmpty { return (String(host), defaultPort) }
        return (String(host), UInt16(portText) ?? 0)
    }

    /// `http://authority/path?query` → target and origin-form path.
    public static func absolute(_ uri: String) -> Result<(NamedTarget, String), DenyRule> {
        let lower = uri.prefix(8).lowercased()
        guard lower.hasPrefix("http://") else { return .failure(.badRequest) }
        let rest = uri.dropFirst(7)
        let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let auth = rest[rest.startIndex..<end]
        var path = String(rest[end...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        return authority(auth, defaultPort: 80).map { ($0, path) }
    }
}
