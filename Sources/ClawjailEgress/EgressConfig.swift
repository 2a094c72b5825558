import ClawjailCore
import NIOCore

/// Decides whether a resolved address may be dialled. The production default
/// is `IPAddress.classify()`; only tests replace it (to let a loopback test
/// server count as "public"). Nothing in the runtime should construct another.
public struct AddressGuard: Sendable {
    private let body: @Sendable (IPAddress) -> AddressClass

    public init(_ classify: @escaping @Sendable (IPAddress) -> AddressClass) {
        self.body = classify
    }

    public func classify(_ address: IPAddress) -> AddressClass { body(address) }

    /// Refuses loopback, private, CGNAT, link-local, multicast, reserved and
    /// metadata addresses, including their IPv4-mapped / NAT64 / 6to4 forms.
    public static let standard = AddressGuard { $0.classify() }

    /// `standard`, and also refuses the host's own addresses (as loopback).
    /// A public address of the host is "public" by class, but dialling it
    /// reaches the host's services that listen on 0.0.0.0. The runtime should
    /// pass every address configured on the host's interfaces.
    public static func standard(alsoRefusing hostAddresses: Set<IPAddress>) -> AddressGuard {
        AddressGuard { hostAddresses.contains($0) ? .loopback : $0.classify() }
    }
}

/// A TCP listening socket for the proxy: either a socket the runtime already
/// opened (inside the peer network namespace, on a thread that entered it) or
/// an address to bind here (tests).
public enum Listener: Sendable {
    /// A bound stream socket. The proxy takes ownership: it calls listen(2),
    /// sets O_NONBLOCK and closes it on shutdown.
    case socket(CInt)
    case address(SocketAddress)
}

/// A UDP socket for the DNS responder; same ownership rules as `Listener`.
public enum UDPListener: Sendable {
    case socket(CInt)
    case address(SocketAddress)
}

/// What `EgressProxy.start` bound, for logging and tests.
public struct EgressEndpoints: Sendable {
    public var proxy: SocketAddress?
    public var transparentHTTP: SocketAddress?
    public var transparentTLS: SocketAddress?
    public var dns: SocketAddress?
}

public struct EgressConfig: Sendable {
    public var allowlist: Allowlist
    /// Upstream DNS servers the proxy itself queries (from the host's network
    /// namespace). See `resolvers(fromResolvConf:)` and `parseResolver(_:)`.
    public var resolvers: [SocketAddress]
    /// The range the DNS responder answers from (IPv4). 198.18.0.0/15 is the
    /// benchmarking range: never routed on the internet, and refused by the
    /// address guard, so a synthetic answer can never be dialled by mistake.
    public var syntheticRange: IPPrefix
    /// Concurrent client connections per agent (one proxy serves one agent).
    public var maxConnections: Int
    public var idleTimeout: TimeAmount
    public var connectTimeout: TimeAmount
    /// Per resolver, for the A and AAAA queries together.
    public var dnsTimeout: TimeAmount
    /// Time a new connection gets to send its first request head or TLS
    /// ClientHello; slow-loris connections count against `maxConnections`.
    public var firstRequestTimeout: TimeAmount
    /// Upstream port for the transparent listeners. 80 and 443 in production;
    /// tests point them at their local servers.
    public var transparentHTTPPort: UInt16
    public var transparentTLSPort: UInt16
    public var addressGuard: AddressGuard
    /// Drop an upstream connection whose local and remote addresses are the
    /// same: on Linux that is a connection to one of the host's own addresses,
    /// which the address guard may not know. Only loopback tests turn it off.
    public var refuseConnectionsToSelf: Bool
    /// Test hook, deliberately internal: every dial attempt is offered here
    /// first and refused if it returns false. Tests use it to record dials and
    /// to make sure nothing but 127.0.0.1 is ever dialled.
    var dialFilter: (@Sendable (SocketAddress) -> Bool)?
    /// CONNECT tunnels to these ports must start with a TLS ClientHello whose
    /// server name is the CONNECT host (see ConnectFirstFlight.swift). 443 in
    /// production; tests point it at their local servers.
    public var connectTLSPorts: Set<UInt16> = [443]
    /// Lets a CONNECT tunnel to `connectTLSPorts` start with something other
    /// than TLS (`[network] allow_non_tls_443`). A first flight that starts as
    /// a TLS handshake is still checked.
    public var allowNonTLSConnect = false
    /// Established CONNECT and transparent-TLS tunnels are copied by the kernel
    /// (splice(2), see KernelTunnels). Tests turn it off to exercise the
    /// user-space path, which ingress and a hand-over that fails still use.
    var kernelTunnels = true

    public static let defaultSyntheticRange: IPPrefix = {
        guard let p = IPPrefix(.v4(0xC612_0000), length: 15) else { preconditionFailure("198.18.0.0/15") }
        return p
    }()

    public init(
        allowlist: Allowlist,
        resolvers: [SocketAddress],
        syntheticRange: IPPrefix = EgressConfig.defaultSyntheticRange,
        maxConnections: Int = 256,
        idleTimeout: TimeAmount = .seconds(300),
        connectTimeout: TimeAmount = .seconds(10),
        dnsTimeout: TimeAmount = .seconds(3),
        firstRequestTimeout: TimeAmount = .seconds(10),
        transparentHTTPPort: UInt16 = 80,
        transparentTLSPort: UInt16 = 443,
        addressGuard: AddressGuard = .standard,
        refuseConnectionsToSelf: Bool = true
    ) {
        self.allowlist = allowlist
        self.resolvers = resolvers
        self.syntheticRange = syntheticRange
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.connectTimeout = connectTimeout
        self.dnsTimeout = dnsTimeout
        self.firstRequestTimeout = firstRequestTimeout
        self.transparentHTTPPort = transparentHTTPPort
        self.transparentTLSPort = transparentTLSPort
        self.addressGuard = addressGuard
        self.refuseConnectionsToSelf = refuseConnectionsToSelf
    }

    /// The `nameserver` lines of a resolv.conf, in order (at most 3, as glibc).
    /// Link-local IPv6 servers with a zone are skipped: the proxy cannot tell
    /// which interface the zone names.
    public static func resolvers(fromResolvConf text: String) -> [SocketAddress] {
        var out: [SocketAddress] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields[0] == "nameserver" else { continue }
            guard let ip = IPAddress(String(fields[1])),
                  let addr = try? SocketAddress(ipAddress: ip.description, port: 53) else { continue }
            out.append(addr)
            if out.count == 3 { break }
        }
        return out
    }

    /// `--resolver` syntax: `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6
    /// address. The port defaults to 53.
    public static func parseResolver(_ text: String) -> SocketAddress? {
        var host = Substring(text)
        var port = 53
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            }
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
            host = host[..<colon]
        }
        guard let ip = IPAddress(String(host)) else { return nil }
        return try? SocketAddress(ipAddress: ip.description, port: port)
    }
}

/// One audit record. Every allow and deny produces one; allowed connections
/// are reported when they end, with their byte counts.
public struct EgressDecision: Sendable, Hashable, CustomStringConvertible {
    public enum Mode: String, Sendable, Hashable {
        case connect
        case http
        case transparentHTTP = "transparent-http"
        case transparentTLS = "transparent-tls"
        case dns
    }

    public enum Verdict: String, Sendable, Hashable {
        case allow
        case deny
    }

    public var agent: String
    public var mode: Mode
    public var verdict: Verdict
    /// For a denial, the stable rule name; for an allow, the allowlist entry
    /// that matched (e.g. `*.example.com:443`).
    public var rule: String
    public var denyRule: DenyRule?
    /// The destination as the client named it, sanitised to printable ASCII
    /// and at most 255 characters (it is attacker-controlled).
    public var host: String
    public var port: UInt16
    /// Transparent modes: the original destination, only when it is one of
    /// the responder's synthetic addresses.
    public var dstIP: String?
    /// The address actually dialled. For the operator's audit log only: the
    /// jail is never told which address a name resolved to.
    public var upstreamIP: String?
    /// Payload bytes: tunnel bytes for CONNECT and TLS, body bytes for HTTP.
    public var bytesUp: UInt64
    public var bytesDown: UInt64
    public var durationMs: UInt64
    /// DNS: identical decisions folded into this record by the rate limit.
    public var suppressed: Int
    /// Why, in words, when the rule alone does not say it (e.g. "sni mismatch:
    /// evil.example for allowed.example"); sanitised like `host`, spaces kept.
    public var reason: String?

    public init(
        agent: String, mode: Mode, verdict: Verdict, rule: String, denyRule: DenyRule? = nil,
        host: String, port: UInt16, dstIP: String? = nil, upstreamIP: String? = nil,
        bytesUp: UInt64 = 0, bytesDown: UInt64 = 0, durationMs: UInt64 = 0, suppressed: Int = 0,
        reason: String? = nil
    ) {
        self.agent = agent
        self.mode = mode
        self.verdict = verdict
        self.rule = rule
        self.denyRule = denyRule
        self.host = EgressDecision.sanitise(host)
        self.port = port
        self.dstIP = dstIP
        self.upstreamIP = upstreamIP
        self.bytesUp = bytesUp
        self.bytesDown = bytesDown
        self.durationMs = durationMs
        self.suppressed = suppressed
        self.reason = reason.map(EgressDecision.sanitiseReason)
    }

    static func sanitise(_ s: String) -> String {
        var out = ""
        for sc in s.unicodeScalars.prefix(255) {
            out.unicodeScalars.append((0x21...0x7E).contains(sc.value) ? sc : "?")
        }
        return out
    }

    /// Printable ASCII and spaces, at most 300 characters; quotes and
    /// backslashes become "?" so the reason can be quoted in a log line.
    static func sanitiseReason(_ s: String) -> String {
        var out = ""
        for sc in s.unicodeScalars.prefix(300) {
            let ok = (0x20...0x7E).contains(sc.value) && sc != "\"" && sc != "\\"
            out.unicodeScalars.append(ok ? sc : "?")
        }
        return out
    }

    public var description: String {
        var s = "egress agent=\(agent) mode=\(mode.rawValue) verdict=\(verdict.rawValue) rule=\(rule) host=\(host) port=\(port)"
        if let dstIP { s += " dst_ip=\(dstIP)" }
        if let upstreamIP { s += " upstream_ip=\(upstreamIP)" }
        s += " up=\(bytesUp) down=\(bytesDown) ms=\(durationMs)"
        if suppressed > 0 { s += " suppressed=\(suppressed)" }
        if let reason { s += " reason=\"\(reason)\"" }
        return s
    }
}
