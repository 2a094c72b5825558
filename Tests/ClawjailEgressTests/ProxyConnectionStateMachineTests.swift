// The front connection's state machine, driven event by event without a channel.
import ClawjailCore
import NIOCore
import NIOHTTP1
import Testing
@testable import ClawjailEgress

typealias Machine = ProxyConnectionStateMachine
private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
private let web = NamedTarget(host: "web.test", port: 80)
private let localhost4 = IPAddress.v4(0x7F00_0001)

private func machine(_ mode: ProxyMode = .forward) throws -> Machine {
    Machine(policy: ProxyPolicy(mode: mode, allowlist: try Allowlist(parsing: ["web.test", "api.test", "tls.test:443"]),
                                transparentHTTPPort: 80))
}

private func get(_ uri: String = "http://web.test/x", method: HTTPMethod = .GET,
                 _ headers: [(String, String)] = [("Host", "web.test")]) -> HTTPServerRequestPart {
    .head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers)))
}

private func upstreamHead(_ uri: String = "/x", method: HTTPMethod = .GET,
                          _ headers: [(String, String)] = [("Host", "web.test")]) -> HTTPRequestHead {
    HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))
}

private func response(_ code: Int, _ headers: [(String, String)] = [("Content-Length", "5")],
                      version: HTTPVersion = .http1_1) -> HTTPClientResponsePart {
    .head(HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: code), headers: HTTPHeaders(headers)))
}

private func headers(of action: Machine.Action) -> [String] {
    guard case .writeResponseHead(let h) = action else { return ["not a head: \(action)"] }
    return h.headers.map { "\($0.name): \($0.value)" }
}

private func finish(_ action: Machine.Action) -> Machine.ResponseEnd? {
    if case .finishResponse(let end) = action { return end }
    return nil
}

/// A machine with a linked upstream, its request sent, awaiting the response.
private func awaitingResponse(_ request: HTTPServerRequestPart = get()) throws -> Machine {
    var m = try machine()
    _ = m.clientRead(request, at: t0)
    _ = m.dialSucceeded(address: localhost4)
    _ = m.clientRead(.end(nil), at: t0)
    return m
}

@Suite("Proxy connection state machine")
struct ProxyConnectionStateMachineTests {
    @Test("a request is dialled, queued while dialling, sent, answered and audited")
    func happyPath() throws {
        var m = try machine()
        #expect(!m.holdsClientReads(upstreamWritable: true))
        #expect(m.clientRead(get(), at: t0) == .dialHTTP(web))
        #expect(m.holdsClientReads(upstreamWritable: true))
        let body = ByteBuffer(string: "abc")
        #expect(m.clientRead(.body(body), at: t0) == .none)
        #expect(m.clientRead(.end(nil), at: t0) == .none)
        #expect(m.dialSucceeded(address: localhost4) == .linkUpstream(upstreamHead()))
        #expect(m.holdsClientReads(upstreamWritable: false))
        #expect(!m.holdsClientReads(upstreamWritable: true))
        #expect(m.nextQueued(at: t0) == .sendBody(body))
        #expect(m.nextQueued(at: t0) == .sendEnd(nil))
        #expect(m.nextQueued(at: t0) == nil)
        #expect(m.holdsClientReads(upstreamWritable: true))  // no pipelining

        let head = response(200)
        #expect(m.upstreamRead(head) == .writeResponseHead(HTTPResponseHead(version: .http1_1, status: .ok,
                                                                            headers: ["Content-Length": "5"])))
        #expect(m.upstreamRead(.body(ByteBuffer(string: "hello"))) == .writeResponseBody(ByteBuffer(string: "hello")))
        let end = try #require(finish(m.upstreamRead(.end(nil))))
        #expect(end.next == .keepAlive && end.writeEnd)
        #expect(end.exchange.target == web && end.exchange.rule == "web.test")
        #expect(end.exchange.bytesUp == 3 && end.exchange.bytesDown == 5)
        #expect(end.exchange.upstreamIP == "127.0.0.1" && end.exchange.start == t0)
        #expect(end.exchange.framing == .raw)
        #expect(m.isIdle && !m.holdsClientReads(upstreamWritable: false))
    }

    @Test("the upstream is reused for the same target, never for another or for an upgrade")
    func reuse() throws {
        var m = try awaitingResponse()
        _ = m.upstreamRead(response(200))
        _ = m.upstreamRead(.end(nil))
        #expect(m.clientRead(get("http://web.test/2"), at: t0) == .sendHead(upstreamHead("/2")))
        _ = m.clientRead(.end(nil), at: t0)
        _ = m.upstreamRead(response(200))
        _ = m.upstreamRead(.end(nil))
        #expect(m.clientRead(get("http://api.test/", [("Host", "api.test")]), at: t0)
                == .dialHTTP(NamedTarget(host: "api.test", port: 80)))
        _ = m.dialSucceeded(address: localhost4)
        _ = m.clientRead(.end(nil), at: t0)
        _ = m.upstreamRead(response(200))
        _ = m.upstreamRead(.end(nil))
        let upgrade = get("http://api.test/ws", [("Host", "api.test"), ("Connection", "upgrade"), ("Upgrade", "x")])
        #expect(m.clientRead(upgrade, at: t0) == .dialHTTP(NamedTarget(host: "api.test", port: 80)))
    }

    @Test("a request that arrives during a response waits for it, then reuses the connection")
    func pipelined() throws {
        var m = try awaitingResponse()
        _ = m.upstreamRead(response(200))
        #expect(m.clientRead(get("http://web.test/next"), at: t0) == .none)
        #expect(m.clientRead(.end(nil), at: t0) == .none)
        #expect(m.nextQueued(at: t0) == nil)
        #expect(finish(m.upstreamRead(.end(nil)))?.next == .keepAlive)
        #expect(m.nextQueued(at: t0) == .sendHead(upstreamHead("/next")))
        #expect(m.nextQueued(at: t0) == .sendEnd(nil))
        #expect(m.nextQueued(at: t0) == nil)
    }

    @Test("a refusal ends the connection and what was queued", arguments: [
        (get("http://evil.test/", [("Host", "evil.test")]), Denial(.notAllowlisted, target: NamedTarget(host: "evil.test", port: 80))),
        (get("http://127.0.0.1/", [("Host", "127.0.0.1")]), Denial(.ipLiteral, auditHost: "127.0.0.1", auditPort: 80)),
        (get("http://web.test/", [("Host", "api.test")]), Denial(.hostMismatch, auditing: web)),
    ])
    func refused(request: HTTPServerRequestPart, denial: Denial) throws {
        var m = try machine()
        #expect(m.clientRead(request, at: t0) == .deny(denial))
        #expect(m.isClosed)
        #expect(m.clientRead(.end(nil), at: t0) == .none)
        #expect(m.clientRead(get(), at: t0) == .none)
    }

    @Test("a failed dial is a refusal with the dial's rule; a CONNECT's is audited as connect")
    func dialFailed() throws {
        var m = try machine()
        _ = m.clientRead(get(), at: t0)
        #expect(m.dialFailed(.dnsFailure) == .deny(Denial(.dnsFailure, target: web)))
        var c = try machine()
        #expect(c.clientRead(get("tls.test:443", method: .CONNECT, []), at: t0)
                == .dialTunnel(NamedTarget(host: "tls.test", port: 443)))
        #expect(c.dialFailed(.privateAddress)
                == .deny(Denial(.privateAddress, target: NamedTarget(host: "tls.test", port: 443), auditMode: .connect)))
        // Nothing waits for a dial any more: it is dropped.
        #expect(c.dialSucceeded(address: localhost4) == .abandonDial)
        #expect(c.dialFailed(.connectFailed) == .none)
    }

    @Test("CONNECT becomes a tunnel; the rest of the HTTP stream is not looked at")
    func connect() throws {
        var m = try machine()
        let tls = NamedTarget(host: "tls.test", port: 443)
        #expect(m.clientRead(get("tls.test:443", method: .CONNECT, []), at: t0) == .dialTunnel(tls))
        #expect(m.clientRead(.end(nil), at: t0) == .none)
        let rule = AllowRule(pattern: .exact("tls.test"), port: 443)
        #expect(m.dialSucceeded(address: localhost4) == .establishTunnel(Machine.TunnelPlan(
            target: tls, rule: rule, upstreamIP: "127.0.0.1", start: t0, inspectFirstFlight: true)))
        #expect(m.nextQueued(at: t0) == nil)
        #expect(!m.holdsClientReads(upstreamWritable: false))
        #expect(m.clientRead(get(), at: t0) == .none)
    }

    @Test("the response says Connection: close when this exchange is the last", arguments: [
        ("the client asked to close", [("Host", "web.test"), ("Connection", "close")], [("Content-Length", "5")],
         ["Content-Length: 5", "Connection: close"]),
        ("the origin asked to close", [("Host", "web.test")], [("Connection", "close"), ("Content-Length", "5")],
         ["Content-Length: 5", "Connection: close"]),
        ("a body delimited by the close", [("Host", "web.test")], [("Connection", "keep-alive"), ("X-A", "1")],
         ["X-A: 1", "Connection: close"]),
    ])
    func lastExchange(_ label: String, request: [(String, String)], origin: [(String, String)], sent: [String]) throws {
        var m = try awaitingResponse(get("http://web.test/x", request))
        #expect(headers(of: m.upstreamRead(response(200, origin))) == sent, "\(label)")
        _ = m.upstreamRead(.body(ByteBuffer(string: "hello")))
        #expect(finish(m.upstreamRead(.end(nil)))?.next == .close)
        #expect(m.isClosed)
    }

    @Test("a response that starts before the request has ended is the last")
    func earlyResponse() throws {
        var m = try machine()
        _ = m.clientRead(get(), at: t0)
        _ = m.dialSucceeded(address: localhost4)
        #expect(headers(of: m.upstreamRead(response(413))) == ["Content-Length: 5", "Connection: close"])
        #expect(m.clientRead(.body(ByteBuffer(string: "more")), at: t0) == .sendBody(ByteBuffer(string: "more")))
        #expect(finish(m.upstreamRead(.end(nil)))?.next == .close)
    }

    @Test("after the client's FIN the connection closes: at once between requests, else after the response")
    func clientFIN() throws {
        var idle = try machine()
        #expect(idle.clientInputClosed() == .close)
        var busy = try awaitingResponse()
        #expect(busy.clientInputClosed() == .none)
        #expect(headers(of: busy.upstreamRead(response(200))) == ["Content-Length: 5", "Connection: close"])
        #expect(finish(busy.upstreamRead(.end(nil)))?.next == .close)
    }

    @Test("informational responses pass as they are; a 101 only answers an upgrade")
    func informational() throws {
        var m = try awaitingResponse()
        let cont = HTTPResponseHead(version: .http1_1, status: .continue)
        #expect(m.upstreamRead(.head(cont)) == .writeResponseHead(cont))
        #expect(m.upstreamRead(response(101, [("Upgrade", "x"), ("Connection", "upgrade")])) == .close)

        var u = try awaitingResponse(get("http://web.test/ws", [("Host", "web.test"), ("Connection", "upgrade"),
                                                                 ("Upgrade", "x")]))
        #expect(headers(of: u.upstreamRead(response(101, [("Upgrade", "x"), ("Connection", "Upgrade")])))
                == ["Upgrade: x", "Connection: Upgrade"])
        let end = try #require(finish(u.upstreamRead(.end(nil))))
        #expect(end.next == .upgrade && !end.writeEnd)
        #expect(!u.holdsClientReads(upstreamWritable: false))

        // Refused upgrade: the client's parser has stopped, so the connection ends.
        var r = try awaitingResponse(get("http://web.test/ws", [("Host", "web.test"), ("Connection", "upgrade"),
                                                                 ("Upgrade", "x")]))
        #expect(headers(of: r.upstreamRead(response(200))) == ["Content-Length: 5", "Connection: close"])
        #expect(finish(r.upstreamRead(.end(nil)))?.next == .close)
    }

    @Test("HEAD, 204 and 304 responses have no body, so no end is written even when they say chunked",
          arguments: [(HTTPMethod.HEAD, 200), (.GET, 204), (.GET, 304)])
    func bodiless(method: HTTPMethod, code: Int) throws {
        var m = try awaitingResponse(get("http://web.test/x", method: method))
        _ = m.upstreamRead(response(code, [("Transfer-Encoding", "chunked")]))
        let end = try #require(finish(m.upstreamRead(.end(nil))))
        #expect(!end.writeEnd && end.exchange.framing == .bodiless && end.next == .keepAlive)
    }

    @Test("the upstream closing before its response is a connect failure; after, a truncation")
    func upstreamClosed() throws {
        var m = try awaitingResponse()
        #expect(m.upstreamClosed() == .deny(Denial(.connectFailed, target: web)))
        var t = try awaitingResponse()
        _ = t.upstreamRead(response(200))
        #expect(t.upstreamClosed() == .close)
        var idle = try awaitingResponse()
        _ = idle.upstreamRead(response(200))
        _ = idle.upstreamRead(.end(nil))
        #expect(idle.upstreamClosed() == .none)
        #expect(idle.clientRead(get(), at: t0) == .dialHTTP(web))  // not reused
    }

    @Test("an upstream that speaks between requests is closed and not reused")
    func unsolicited() throws {
        var m = try awaitingResponse()
        _ = m.upstreamRead(response(200))
        _ = m.upstreamRead(.end(nil))
        #expect(m.upstreamRead(response(200)) == .closeUpstream)
        #expect(m.clientRead(get(), at: t0) == .dialHTTP(web))
    }

    @Test("the client leaving mid-response audits the exchange; before the response, nothing")
    func clientGone() throws {
        var m = try awaitingResponse()
        #expect(m.clientClosed() == .clientGone(audit: nil))
        var r = try awaitingResponse()
        _ = r.upstreamRead(response(200))
        _ = r.upstreamRead(.body(ByteBuffer(string: "he")))
        guard case .clientGone(let e?) = r.clientClosed() else {
            Issue.record("no exchange to audit")
            return
        }
        #expect(e.bytesDown == 2 && e.framing == .raw)
        #expect(r.dialSucceeded(address: localhost4) == .abandonDial)
    }

    @Test("parse errors are answered with bad-request until a response has started")
    func parseErrors() throws {
        let badRequest = Machine.Action.deny(Denial(.badRequest, auditHost: "-", auditPort: 0))
        var idle = try machine()
        #expect(idle.errorCaught(isParseError: true) == badRequest)
        var dialing = try machine()
        _ = dialing.clientRead(get(), at: t0)
        #expect(dialing.errorCaught(isParseError: true) == badRequest)
        var started = try awaitingResponse()
        _ = started.upstreamRead(response(200))
        #expect(started.errorCaught(isParseError: true) == .close)
        var other = try machine()
        #expect(other.errorCaught(isParseError: false) == .close)
    }

    @Test("the first-request timer closes only a connection that is still idle")
    func firstRequestTimer() throws {
        var idle = try machine()
        #expect(idle.firstRequestTimedOut() == .close)
        var busy = try machine()
        _ = busy.clientRead(get(), at: t0)
        #expect(busy.firstRequestTimedOut() == .none)
    }

    /// Transfer-Encoding lines as the origin sent them, the framing the machine
    /// uses, and the lines the client gets (what NIO's encoder then chunks by).
    static let transferEncodings: [(label: String, version: HTTPVersion, lines: [String], framing: Machine.Framing,
                                    sent: [String])] = [
        ("chunked", .http1_1, ["chunked"], .chunked, ["chunked"]),
        ("Chunked", .http1_1, ["Chunked"], .chunked, ["chunked"]),
        ("gzip, chunked", .http1_1, ["gzip, chunked"], .closeDelimited, ["gzip"]),
        ("two lines", .http1_1, ["gzip", "chunked"], .closeDelimited, ["gzip"]),
        ("chunked, gzip", .http1_1, ["chunked, gzip"], .closeDelimited, ["chunked, gzip"]),
        ("chunked then gzip lines", .http1_1, ["chunked", "gzip"], .closeDelimited, ["chunked, gzip"]),
        ("chunked in HTTP/1.0", .http1_0, ["chunked"], .closeDelimited, []),
        ("none", .http1_1, [], .closeDelimited, []),
    ]

    @Test("Transfer-Encoding is made to say what the encoder frames, and nothing else",
          arguments: transferEncodings.indices)
    func transferEncoding(index: Int) {
        let row = Self.transferEncodings[index]
        var head = HTTPResponseHead(version: row.version, status: .ok,
                                    headers: HTTPHeaders(row.lines.map { ("Transfer-Encoding", $0) }))
        let framing = Machine.alignTransferEncoding(&head, framing: Machine.framing(of: head, requestIsHead: false))
        #expect(framing == row.framing, "\(row.label)")
        #expect(head.headers["transfer-encoding"] == row.sent, "\(row.label)")
        let encoderChunks = head.version == .http1_1 && head.headers.first(name: "transfer-encoding") == "chunked"
        #expect(encoderChunks == (framing == .chunked), "\(row.label)")
    }
}
