import ClawjailCore
import NIOCore
import NIOHTTP1

/// The response a refused request gets. Short, the same shape every time, and
/// readable by both programs (the `X-Clawjail-Deny` rule) and an LLM (the
/// body). It names the host the client asked for, never an address the name
/// resolved to.
enum DenyResponse {
    static func status(for rule: DenyRule) -> (code: Int, reason: String) {
        switch rule {
        case .badRequest, .hostMismatch: return (400, "Bad Request")
        case .dnsFailure, .connectFailed: return (502, "Bad Gateway")
        case .tooManyConnections: return (503, "Service Unavailable")
        default: return (403, "Forbidden")
        }
    }

    /// `host` must already be a validated host name (or nil): it is echoed.
    static func explanation(_ rule: DenyRule, host: String?, port: UInt16?, limit: Int? = nil) -> String {
        let target = host.map { h in port.map { "\(h):\($0)" } ?? h } ?? "the destination"
        switch rule {
        case .notAllowlisted:
            return "\(target) is not in the allowlist"
        case .ipLiteral:
            return "IP addresses are not allowed as destinations; use an allowlisted host name"
        case .metadataAddress:
            return "\(host ?? "the destination") is a cloud metadata endpoint, which is always refused"
        case .loopbackAddress, .privateAddress, .linkLocalAddress, .cgnatAddress, .multicastAddress, .reservedAddress:
            let kind: String
            switch rule {
            case .loopbackAddress: kind = "loopback"
            case .privateAddress: kind = "private"
            case .linkLocalAddress: kind = "link-local"
            case .cgnatAddress: kind = "CGNAT"
            case .multicastAddress: kind = "multicast"
            default: kind = "reserved"
            }
            return "\(host ?? "the destination") resolves to a \(kind) address, which is always refused"
        case .badRequest:
            return "the request is not a valid proxy request (use CONNECT host:port, or an absolute http:// URL)"
        case .hostMismatch:
            return "the request target and the Host header name different destinations"
        case .dnsFailure:
            return "\(host ?? "the destination") could not be resolved"
        case .connectFailed:
            return "could not connect to \(target)"
        case .tooManyConnections:
            return "too many concurrent connections for this agent" + (limit.map { " (limit \($0))" } ?? "")
        case .sniMismatch:
            return "the TLS server name must be the CONNECT target \(target)"
        case .notTLS:
            return "a CONNECT tunnel to \(target) must start with a TLS ClientHello"
                + " (the operator can allow other protocols with [network] allow_non_tls_443 = true)"
        }
    }

    /// The text of the response body.
    static func body(_ rule: DenyRule, host: String?, port: UInt16?, limit: Int? = nil) -> String {
        "clawjail egress: denied (\(rule.rawValue)): \(explanation(rule, host: host, port: port, limit: limit))\n"
    }

    /// The head, for a pipeline with NIO's response encoder (which, set not to
    /// touch framing headers, writes it as `buffer` does).
    static func head(_ rule: DenyRule, bodyLength: Int) -> HTTPResponseHead {
        let (code, reason) = status(for: rule)
        let headers = HTTPHeaders([
            ("X-Clawjail-Deny", rule.rawValue),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", String(bodyLength)),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ])
        return HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: code, reasonPhrase: reason),
                                headers: headers)
    }

    /// The whole response as bytes, for the pipelines without an HTTP encoder
    /// (the connection cap, a refused tunnel's first flight).
    static func buffer(
        _ rule: DenyRule, host: String?, port: UInt16?, limit: Int? = nil, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        let (code, reason) = status(for: rule)
        let text = body(rule, host: host, port: port, limit: limit)
        var buf = allocator.buffer(capacity: 256 + text.utf8.count)
        buf.writeString("HTTP/1.1 \(code) \(reason)\r\n")
        for (name, value) in head(rule, bodyLength: text.utf8.count).headers {
            buf.writeString("\(name): \(value)\r\n")
        }
        buf.writeString("\r\n")
        buf.writeString(text)
        return buf
    }
}
