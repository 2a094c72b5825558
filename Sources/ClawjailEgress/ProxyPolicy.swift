import ClawjailCore
import NIOHTTP1

// What the HTTP proxy decides about one request head: where it goes, whether the
// Host header agrees, whether the allowlist lets it through, and what the origin
// server is sent. Pure, so every rule is a row in a table test; the connection
// state machine (ProxyConnectionStateMachine.swift) acts on the answer.

/// Request headers never forwarded upstream: hop-by-hop headers, proxy
/// credentials, and everything that claims to say where the request came from
/// (a server behind which trusted "local" clients must never see our jail as one).
let strippedRequestHeaders: Set<String> = [
    "proxy-connection", "proxy-authorization", "proxy-authenticate", "keep-alive", "te", "upgrade",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-server",
    "x-forwarded-prefix", "x-forwarded-ssl", "forwarded", "x-real-ip", "x-client-ip", "true-client-ip",
    "x-originating-ip", "x-cluster-client-ip", "cf-connecting-ip", "client-ip", "fastly-client-ip",
]

/// The listener a request came in on.
enum ProxyMode: Sendable {
    /// The HTTP proxy: CONNECT and absolute-form requests.
    case forward
    /// Transparent port 80: origin-form requests, decided by their Host header.
    case transparent
}

/// A refusal: the rule, what the client is told, and what the audit log records.
struct Denial: Error, Equatable {
    var rule: DenyRule
    /// Echoed in the response body, so only ever a validated name (or nil).
    var host: String?
    var port: UInt16?
    /// What the client sent, for the audit record only (EgressDecision sanitises it).
    var auditHost: String
    var auditPort: UInt16
    /// nil: the listener's own mode.
    var auditMode: EgressDecision.Mode?

    init(_ rule: DenyRule, host: String? = nil, port: UInt16? = nil, auditHost: String, auditPort: UInt16,
         auditMode: EgressDecision.Mode? = nil) {
        self.rule = rule
        self.host = host
        self.port = port
        self.auditHost = auditHost
        self.auditPort = auditPort
        self.auditMode = auditMode
    }

    /// Refused after the target parsed: the client is told the name it asked for.
    init(_ rule: DenyRule, target: NamedTarget, auditMode: EgressDecision.Mode? = nil) {
        self.init(rule, host: target.host, port: target.port, auditHost: target.host, auditPort: target.port,
                  auditMode: auditMode)
    }

    /// Refused for the target, without echoing it (the client and the target disagree).
    init(_ rule: DenyRule, auditing target: NamedTarget, auditMode: EgressDecision.Mode? = nil) {
        self.init(rule, auditHost: target.host, auditPort: target.port, auditMode: auditMode)
    }
}

/// An allowed request that is forwarded to the origin server.
struct ForwardPlan: Equatable {
    var target: NamedTarget
    var rule: AllowRule
    /// The head the origin server gets: origin-form, without proxy and hop-by-hop headers.
    var head: HTTPRequestHead
    var isUpgrade: Bool
    var isHead: Bool
    var clientWantsClose: Bool
}

enum RequestDecision: Equatable {
    case deny(Denial)
    /// An allowed CONNECT. `inspectFirstFlight`: the port is a TLS port, so the
    /// tunnel starts only once its ClientHello names the target (ConnectFirstFlight.swift).
    case tunnel(target: NamedTarget, rule: AllowRule, inspectFirstFlight: Bool)
    case forward(ForwardPlan)
}

struct ProxyPolicy {
    var mode: ProxyMode
    var allowlist: Allowlist
    /// The port a transparent request must be for (80 in production).
    var transparentHTTPPort: UInt16
    /// Transparent mode: the original destination, if it is a synthetic address
    /// (the client resolved a name through our DNS); nil means an IP literal.
    var dstIP: String?
    var connectTLSPorts: Set<UInt16> = [443]

    /// The port a request without one in its target or Host header means.
    var logicalPort: UInt16 { mode == .forward ? 80 : transparentHTTPPort }

    func decide(_ head: HTTPRequestHead) -> RequestDecision {
        let hostHeaders = head.headers["host"]
        if hostHeaders.count > 1 {
            return .deny(Denial(.badRequest, auditHost: hostHeaders.joined(separator: ","), auditPort: 0))
        }
        let hostHeader = hostHeaders.first.map { Substring($0) }
        if head.method == .CONNECT { return decideConnect(head, hostHeader: hostHeader) }

        let target: NamedTarget
        let path: String
        switch self.target(of: head, hostHeader: hostHeader) {
        case .failure(let denial): return .deny(denial)
        case .success(let (t, p)):
            target = t
            path = p
        }
        switch allowlist.decide(host: target.host, port: target.port) {
        case .denied(let rule):
            return .deny(Denial(rule, target: target))
        case .allowed(let rule):
            let (headers, isUpgrade) = ProxyPolicy.upstreamHeaders(head.headers, target: target,
                                                                   addHost: hostHeader == nil)
            return .forward(ForwardPlan(
                target: target, rule: rule,
                head: HTTPRequestHead(version: head.version, method: head.method, uri: path, headers: headers),
                isUpgrade: isUpgrade, isHead: head.method == .HEAD, clientWantsClose: !head.isKeepAlive))
        }
    }

    private func decideConnect(_ head: HTTPRequestHead, hostHeader: Substring?) -> RequestDecision {
        guard mode == .forward else { return .deny(Denial(.badRequest, auditHost: head.uri, auditPort: 0)) }
        switch RequestTarget.authority(Substring(head.uri), defaultPort: nil) {
        case .failure(let rule):
            let (h, p) = RequestTarget.auditParts(head.uri, defaultPort: 0)
            return .deny(Denial(rule, auditHost: h, auditPort: p, auditMode: .connect))
        case .success(let target):
            if let hostHeader {
                // A CONNECT Host header without a port names the same authority.
                guard case .success(let h) = RequestTarget.authority(hostHeader, defaultPort: target.port),
                      h == target else {
                    return .deny(Denial(.hostMismatch, auditing: target, auditMode: .connect))
                }
            }
            switch allowlist.decide(host: target.host, port: target.port) {
            case .denied(let rule):
                return .deny(Denial(rule, target: target, auditMode: .connect))
            case .allowed(let rule):
                return .tunnel(target: target, rule: rule, inspectFirstFlight: connectTLSPorts.contains(target.port))
            }
        }
    }

    /// Where a non-CONNECT request is going, and its origin-form path.
    private func target(of head: HTTPRequestHead, hostHeader: Substring?) -> Result<(NamedTarget, String), Denial> {
        if head.uri.hasPrefix("/") || head.uri == "*" {
            guard mode == .transparent else {
                // Origin-form at a forward proxy: the client did not mean to use a proxy.
                return .failure(Denial(.badRequest, auditHost: head.uri, auditPort: 0))
            }
            guard let hostHeader else {
                return .failure(Denial(dstIP == nil ? .ipLiteral : .badRequest, auditHost: dstIP ?? "-",
                                       auditPort: logicalPort))
            }
            switch RequestTarget.authority(hostHeader, defaultPort: logicalPort) {
            case .failure(let rule):
                let (h, p) = RequestTarget.auditParts(String(hostHeader), defaultPort: logicalPort)
                return .failure(Denial(rule, auditHost: h, auditPort: p))
            case .success(let t):
                guard t.port == logicalPort else { return .failure(Denial(.hostMismatch, auditing: t)) }
                return .success((t, head.uri))
            }
        }
        let target: NamedTarget
        let path: String
        switch RequestTarget.absolute(head.uri) {
        case .failure(let rule):
            let (h, p) = RequestTarget.auditParts(head.uri, defaultPort: 80)
            return .failure(Denial(rule, auditHost: h, auditPort: p))
        case .success(let (t, p)):
            target = t
            path = p
        }
        if let hostHeader {
            guard case .success(let h) = RequestTarget.authority(hostHeader, defaultPort: 80), h == target else {
                return .failure(Denial(.hostMismatch, auditing: target))
            }
        } else if head.version.major == 1 && head.version.minor >= 1 {
            return .failure(Denial(.badRequest, target: target))
        }
        if mode == .transparent && target.port != logicalPort {
            return .failure(Denial(.hostMismatch, auditing: target))
        }
        return .success((target, path))
    }

    /// The request headers for the origin server, and whether the request asks
    /// for an upgrade (which then keeps its Upgrade header and `Connection: upgrade`).
    /// `addHost`: the client sent none (HTTP/1.0), so the target's is added.
    static func upstreamHeaders(_ from: HTTPHeaders, target: NamedTarget, addHost: Bool) -> (HTTPHeaders, Bool) {
        let connectionTokens = from["connection"]
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimming(" \t").lowercased() }
        let isUpgrade = connectionTokens.contains("upgrade") && from.contains(name: "upgrade")
        var headers = HTTPHeaders()
        for (name, value) in from {
            let lname = name.lowercased()
            if lname == "connection" { continue }
            if lname == "upgrade" && isUpgrade {
                headers.add(name: name, value: value)
                continue
            }
            if strippedRequestHeaders.contains(lname) || connectionTokens.contains(lname) { continue }
            headers.add(name: name, value: value)
        }
        if isUpgrade { headers.add(name: "Connection", value: "upgrade") }
        if addHost {
            headers.add(name: "Host", value: target.port == 80 ? target.host : "\(target.host):\(target.port)")
        }
        return (headers, isUpgrade)
    }
}

