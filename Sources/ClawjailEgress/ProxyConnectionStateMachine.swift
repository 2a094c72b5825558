import ClawjailCore
import NIOCore
import NIOHTTP1

/// One client connection of the HTTP proxy (and of transparent port 80), as a
/// value: events in, actions out. It decides every request with `ProxyPolicy`,
/// keeps the upstream connection while the destination stays the same, queues
/// what the client sends while a dial or a response is outstanding (no
/// pipelining), frames the response it forwards, and says when the connection
/// becomes a tunnel or ends. `HTTPFrontHandler` carries the actions out; nothing
/// here touches a channel, so every path is tested without one.
struct ProxyConnectionStateMachine {
    enum Framing: Equatable {
        case bodiless, raw, chunked, closeDelimited
    }

    /// The request in flight, for the response path and the audit record.
    struct Exchange: Equatable {
        var target: NamedTarget
        var rule: String
        var start: NIODeadline
        var bytesUp: UInt64 = 0
        var bytesDown: UInt64 = 0
        var isHead: Bool
        var isUpgrade: Bool
        var clientWantsClose: Bool
        /// Set once the response head has been forwarded.
        var framing: Framing? = nil
        var closeAfter = false
        /// A 101 was accepted: the connection becomes a tunnel after this response.
        var switching = false
        var upstreamIP: String? = nil
    }

    /// An allowed CONNECT whose upstream is connected.
    struct TunnelPlan: Equatable {
        var target: NamedTarget
        var rule: AllowRule
        var upstreamIP: String
        var start: NIODeadline
        var inspectFirstFlight: Bool
    }

    /// The end of a forwarded response.
    struct ResponseEnd: Equatable {
        enum Next: Equatable {
            /// Ready for the next request: carry on with what the client queued.
            case keepAlive
            case close
            /// An accepted upgrade: both sides become a tunnel.
            case upgrade
        }

        var trailers: HTTPHeaders?
        /// False for a response without a body: the encoder frames from the
        /// head's Transfer-Encoding alone and would end a HEAD, 204 or 304
        /// response that says chunked with a chunk terminator it must not carry.
        var writeEnd: Bool
        /// For the audit record.
        var exchange: Exchange
        var next: Next
    }

    enum Action: Equatable {
        case none
        /// Audit the refusal, drop the upstream, answer with the deny response, close.
        case deny(Denial)
        /// Drop the upstream connection (if any) and dial this one.
        case dialHTTP(NamedTarget)
        case dialTunnel(NamedTarget)
        /// A dial finished that nothing waits for any more: close its channel.
        case abandonDial
        /// The dialled upstream is this exchange's: link it and send the head.
        case linkUpstream(HTTPRequestHead)
        /// Send the head on the kept upstream connection.
        case sendHead(HTTPRequestHead)
        case sendBody(ByteBuffer)
        /// Send the end of the request and flush.
        case sendEnd(HTTPHeaders?)
        case writeResponseHead(HTTPResponseHead)
        case writeResponseBody(ByteBuffer)
        /// Write the end (if `writeEnd`), flush, audit, then go on as `next` says.
        case finishResponse(ResponseEnd)
        /// Answer the CONNECT with 200 and splice.
        case establishTunnel(TunnelPlan)
        /// The upstream said something nobody asked for: close it.
        case closeUpstream
        /// Flush what was written, then close both sides.
        case close
        /// The client is gone: audit the exchange whose response had started, drop the upstream.
        case clientGone(audit: Exchange?)
    }

    private enum State {
        case idle
        case dialingHTTP(Exchange, head: HTTPRequestHead)
        case dialingTunnel(target: NamedTarget, rule: AllowRule, start: NIODeadline, inspect: Bool)
        /// The request is going upstream; its response may already be coming back.
        case request(Exchange)
        /// The request is complete; its response is awaited or coming back.
        case response(Exchange)
        case tunnel
        case closed
    }

    /// The upstream connection kept for the next request to the same target.
    private struct Upstream {
        var target: NamedTarget
        var address: String
    }

    let policy: ProxyPolicy
    private var state = State.idle
    private var upstream: Upstream?
    /// Parts that arrived while a dial or a response was outstanding.
    private var queue = CircularBuffer<HTTPServerRequestPart>()
    /// The client sent its FIN: the response in flight is the last.
    private var clientInputEnded = false

    init(policy: ProxyPolicy) {
        self.policy = policy
    }

    // MARK: queries

    /// Reads from the client pause while a destination is being dialled, while
    /// a response is outstanding (no pipelining), and while the upstream
    /// cannot take more bytes.
    func holdsClientReads(upstreamWritable: Bool) -> Bool {
        switch state {
        case .dialingHTTP, .dialingTunnel, .response: return true
        case .request: return !upstreamWritable
        case .idle, .tunnel, .closed: return false
        }
    }

    var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// The exchange in flight, if any.
    var exchange: Exchange? {
        switch state {
        case .dialingHTTP(let e, _), .request(let e), .response(let e): return e
        case .idle, .dialingTunnel, .tunnel, .closed: return nil
        }
    }

    // MARK: client events

    /// A part decoded from the client. `now` starts the exchange a head opens.
    mutating func clientRead(_ part: HTTPServerRequestPart, at now: NIODeadline) -> Action {
        switch state {
        case .idle, .request:
            return handle(part, at: now)
        case .dialingHTTP, .dialingTunnel, .response:
            queue.append(part)
            return .none
        case .tunnel, .closed:
            return .none
        }
    }

    /// The next queued part, once the connection can take it; nil when there is
    /// none or it must wait. Called until nil after a link or a response end.
    mutating func nextQueued(at now: NIODeadline) -> Action? {
        switch state {
        case .idle, .request: break
        case .dialingHTTP, .dialingTunnel, .response, .tunnel, .closed: return nil
        }
        guard let part = queue.popFirst() else { return nil }
        return handle(part, at: now)
    }

    private mutating func handle(_ part: HTTPServerRequestPart, at now: NIODeadline) -> Action {
        switch (state, part) {
        case (.idle, .head(let head)):
            return receive(head, at: now)
        case (.request(var e), .body(let body)):
            e.bytesUp &+= UInt64(body.readableBytes)
            state = .request(e)
            return .sendBody(body)
        case (.request(let e), .end(let trailers)):
            state = .response(e)
            return .sendEnd(trailers)
        default:
            return .none  // body or end of a request that was refused
        }
    }

    private mutating func receive(_ head: HTTPRequestHead, at now: NIODeadline) -> Action {
        switch policy.decide(head) {
        case .deny(let denial):
            return deny(denial)
        case .tunnel(let target, let rule, let inspect):
            upstream = nil
            state = .dialingTunnel(target: target, rule: rule, start: now, inspect: inspect)
            return .dialTunnel(target)
        case .forward(let plan):
            var e = Exchange(target: plan.target, rule: plan.rule.description, start: now, isHead: plan.isHead,
                             isUpgrade: plan.isUpgrade, clientWantsClose: plan.clientWantsClose)
            // An upgrade gets a connection of its own: the kept one may have
            // been used, and it becomes the tunnel.
            if let up = upstream, up.target == plan.target, !plan.isUpgrade {
                e.upstreamIP = up.address
                state = .request(e)
                return .sendHead(plan.head)
            }
            upstream = nil
            state = .dialingHTTP(e, head: plan.head)
            return .dialHTTP(plan.target)
        }
    }

    /// The client sent its FIN. Between requests that ends the connection;
    /// otherwise the response in flight is the last.
    mutating func clientInputClosed() -> Action {
        clientInputEnded = true
        guard isIdle else { return .none }
        return close()
    }

    mutating func clientClosed() -> Action {
        let started = exchange.flatMap { $0.framing == nil ? nil : $0 }
        state = .closed
        upstream = nil
        queue.removeAll()
        return .clientGone(audit: started)
    }

    /// An error from the client pipeline. A parse error before a response has
    /// started can still be answered; anything else just ends the connection.
    mutating func errorCaught(isParseError: Bool) -> Action {
        if isParseError, exchange?.framing == nil {
            switch state {
            case .idle, .dialingHTTP, .dialingTunnel, .request:
                return deny(Denial(.badRequest, auditHost: "-", auditPort: 0))
            case .response, .tunnel, .closed:
                break
            }
        }
        return close()
    }

    /// The first request head did not come in time.
    mutating func firstRequestTimedOut() -> Action {
        guard isIdle else { return .none }
        return close()
    }

    /// The shell could not carry an action out (a pipeline change failed).
    mutating func failed() -> Action {
        close()
    }

    // MARK: dial events

    mutating func dialSucceeded(address: IPAddress) -> Action {
        switch state {
        case .dialingHTTP(var e, let head):
            e.upstreamIP = address.description
            upstream = Upstream(target: e.target, address: address.description)
            state = .request(e)
            return .linkUpstream(head)
        case .dialingTunnel(let target, let rule, let start, let inspect):
            state = .tunnel
            return .establishTunnel(TunnelPlan(target: target, rule: rule, upstreamIP: address.description,
                                               start: start, inspectFirstFlight: inspect))
        case .idle, .request, .response, .tunnel, .closed:
            return .abandonDial
        }
    }

    mutating func dialFailed(_ rule: DenyRule) -> Action {
        switch state {
        case .dialingHTTP(let e, _):
            return deny(Denial(rule, target: e.target))
        case .dialingTunnel(let target, _, _, _):
            return deny(Denial(rule, target: target, auditMode: .connect))
        case .idle, .request, .response, .tunnel, .closed:
            return .none
        }
    }

    // MARK: upstream events (from the current upstream connection only)

    mutating func upstreamRead(_ part: HTTPClientResponsePart) -> Action {
        let inRequest: Bool
        var e: Exchange
        switch state {
        case .request(let x): (e, inRequest) = (x, true)
        case .response(let x): (e, inRequest) = (x, false)
        case .idle, .dialingHTTP, .dialingTunnel, .tunnel, .closed:
            upstream = nil
            return .closeUpstream  // nothing asked for this
        }
        func store(_ e: Exchange) -> State { inRequest ? .request(e) : .response(e) }

        switch part {
        case .head(var head):
            let code = head.status.code
            if (100..<200).contains(code) && code != 101 {
                return .writeResponseHead(head)
            }
            if code == 101 {
                guard e.isUpgrade else { return close() }  // a 101 nobody asked for
                e.switching = true
            }
            // Decided on the head as the origin sent it.
            let keepAlive = head.isKeepAlive
            var framing = ProxyConnectionStateMachine.framing(of: head, requestIsHead: e.isHead)
            framing = ProxyConnectionStateMachine.alignTransferEncoding(&head, framing: framing)
            e.framing = framing
            // After an upgrade request the client-side parser has stopped (the
            // rest of the stream would belong to the new protocol), so a
            // refused upgrade must end the connection.
            e.closeAfter = e.clientWantsClose || clientInputEnded || framing == .closeDelimited
                || !keepAlive || inRequest || (e.isUpgrade && !e.switching)
            if e.closeAfter && !e.switching {
                head.headers.remove(name: "connection")
                head.headers.add(name: "Connection", value: "close")
            }
            state = store(e)
            return .writeResponseHead(head)
        case .body(let body):
            e.bytesDown &+= UInt64(body.readableBytes)
            state = store(e)
            return .writeResponseBody(body)
        case .end(let trailers):
            let next: ResponseEnd.Next
            if e.switching {
                next = .upgrade
                state = .tunnel
                upstream = nil  // it is the tunnel's now
            } else if e.closeAfter || inRequest {
                next = .close
                state = .closed
                upstream = nil
            } else {
                next = .keepAlive
                state = .idle
            }
            return .finishResponse(ResponseEnd(trailers: trailers, writeEnd: e.framing != .bodiless,
                                               exchange: e, next: next))
        }
    }

    mutating func upstreamClosed() -> Action {
        upstream = nil
        switch state {
        case .request(let e), .response(let e):
            // Closed before answering: say so rather than hang up silently.
            if e.framing == nil { return deny(Denial(.connectFailed, target: e.target)) }
            return close()  // a truncated response
        case .idle, .dialingHTTP, .dialingTunnel, .tunnel, .closed:
            return .none
        }
    }

    // MARK: endings

    private mutating func deny(_ denial: Denial) -> Action {
        state = .closed
        upstream = nil
        queue.removeAll()
        return .deny(denial)
    }

    private mutating func close() -> Action {
        state = .closed
        upstream = nil
        queue.removeAll()
        return .close
    }

    // MARK: response framing

    /// How the body of a response is delimited, as the response decoder read it.
    static func framing(of head: HTTPResponseHead, requestIsHead: Bool) -> Framing {
        let code = head.status.code
        if requestIsHead || code == 204 || code == 304 || code == 101 { return .bodiless }
        if head.headers.contains(name: "content-length") { return .raw }
        if let te = head.headers["transfer-encoding"].last,
           te.split(separator: ",").last?.trimming(" \t").lowercased() == "chunked" {
            return .chunked
        }
        return .closeDelimited
    }

    /// NIO's response encoder chunks a body exactly when the head is HTTP/1.x
    /// with x >= 1 and its first Transfer-Encoding value is `chunked`. Makes the head
    /// say so exactly when the body is to be chunked, without changing what it
    /// means: a lone chunked coding in another spelling is written `chunked`;
    /// several Transfer-Encoding lines become one comma-separated line (the same
    /// list); a chunked body that cannot be re-chunked as such (after other
    /// codings, or in another HTTP version) is sent without its chunked coding and ends with
    /// the connection instead. A bodiless response is left alone: nothing of its
    /// body reaches the encoder.
    static func alignTransferEncoding(_ head: inout HTTPResponseHead, framing: Framing) -> Framing {
        let lines = head.headers["transfer-encoding"]
        guard !lines.isEmpty, framing != .bodiless else { return framing }
        let codings = lines.flatMap { $0.split(separator: ",") }.map { $0.trimming(" \t") }
            .filter { !$0.isEmpty }
        let modern = head.version.major == 1 && head.version.minor >= 1
        let encoderChunks = modern && head.headers.first(name: "transfer-encoding") == "chunked"
        switch framing {
        case .chunked:
            if modern && codings.count == 1 {
                if !(encoderChunks && lines.count == 1) { replaceTransferEncoding(&head.headers, with: "chunked") }
                return .chunked
            }
            let rest = codings.dropLast().joined(separator: ", ")
            replaceTransferEncoding(&head.headers, with: rest.isEmpty ? nil : rest)
            return .closeDelimited
        case .raw, .closeDelimited:
            if encoderChunks { replaceTransferEncoding(&head.headers, with: codings.joined(separator: ", ")) }
            return framing
        case .bodiless:
            return framing
        }
    }

    /// Replaces every Transfer-Encoding line by one (at the first one's place and
    /// spelling), or removes them all.
    private static func replaceTransferEncoding(_ headers: inout HTTPHeaders, with value: String?) {
        var out = HTTPHeaders()
        var done = false
        for (name, v) in headers {
            guard name.lowercased() == "transfer-encoding" else {
                out.add(name: name, value: v)
                continue
            }
            if !done, let value { out.add(name: name, value: value) }
            done = true
        }
        headers = out
    }
}
