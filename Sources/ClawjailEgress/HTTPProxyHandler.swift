import ClawjailCore
import NIOCore
import NIOHTTP1

/// What every connection handler needs; immutable and shared.
struct ProxyShared: Sendable {
    let agent: String
    let allowlist: Allowlist
    let dialer: Dialer
    let audit: @Sendable (EgressDecision) -> Void
    let syntheticRange: IPPrefix
    let firstRequestTimeout: TimeAmount
    let transparentHTTPPort: UInt16
    let transparentTLSPort: UInt16
    /// Where established tunnels go; nil keeps them in NIO.
    let tunnels: KernelTunnels?
    /// See `EgressConfig.connectTLSPorts` and `allowNonTLSConnect`.
    var connectTLSPorts: Set<UInt16> = [443]
    var allowNonTLSConnect = false

    /// The original destination, if it is one of the responder's synthetic
    /// addresses. Any other destination address is not trusted and not logged.
    func syntheticDestination(_ channel: any Channel) -> String? {
        guard let ip = channel.localAddress?.ipAddress, let addr = IPAddress(ip),
              syntheticRange.contains(addr) else { return nil }
        return addr.description
    }

    func elapsedMs(since start: NIODeadline) -> UInt64 {
        UInt64(max(0, (NIODeadline.now() - start).nanoseconds / 1_000_000))
    }
}

/// Request headers never forwarded upstream: hop-by-hop headers, proxy
/// credentials, and everything that claims to say where the request came from
/// (a server behind which trusted "local" clients must never see our jail as one).
let strippedRequestHeaders: Set<String> = [
    "proxy-connection", "proxy-authorization", "proxy-authenticate", "keep-alive", "te", "upgrade",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-server",
    "x-forwarded-prefix", "x-forwarded-ssl", "forwarded", "x-real-ip", "x-client-ip", "true-client-ip",
    "x-originating-ip", "x-cluster-client-ip", "cf-connecting-ip", "client-ip", "fastly-client-ip",
]

/// The client side of the HTTP proxy (and of transparent port 80): parses each
/// request, decides, and forwards it over an upstream connection that it
/// reuses while the destination stays the same. CONNECT and accepted upgrades
/// turn the connection into a byte tunnel.
final class HTTPFrontHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Mode {
        case forward
        case transparent
    }

    private enum State {
        case idle, dialing, request, response, tunnel, closed
    }

    private enum Framing {
        case bodiless, raw, chunked, closeDelimited
    }

    /// The request in flight, for the response path and the audit record.
    private struct Current {
        var target: NamedTarget
        var rule: String
        var start: NIODeadline
        var bytesUp: UInt64 = 0
        var bytesDown: UInt64 = 0
        var isHead: Bool
        var isUpgrade: Bool
        var clientWantsClose: Bool
        var framing: Framing? = nil
        var closeAfter = false
        var switching = false
        var upstreamIP: String? = nil
    }

    private final class UpstreamLink {
        let channel: any Channel
        let handler: UpstreamHTTPHandler
        let target: NamedTarget
        let address: IPAddress

        init(channel: any Channel, handler: UpstreamHTTPHandler, target: NamedTarget, address: IPAddress) {
            self.channel = channel
            self.handler = handler
            self.target = target
            self.address = address
        }
    }

    private let shared: ProxyShared
    private let mode: Mode
    private let decoder: ByteToMessageHandler<HTTPRequestDecoder>
    private var context: ChannelHandlerContext?
    private var state: State = .idle
    private var queue = CircularBuffer<HTTPServerRequestPart>()
    private var upstream: UpstreamLink?
    private var current: Current?
    private var pendingHead: HTTPRequestHead?
    private var readPending = false
    private var firstRequestTimer: Scheduled<Void>?
    private var clientInputClosed = false
    private var dstIP: String?

    init(shared: ProxyShared, mode: Mode, decoder: ByteToMessageHandler<HTTPRequestDecoder>) {
        self.shared = shared
        self.mode = mode
        self.decoder = decoder
    }

    private var auditMode: EgressDecision.Mode { mode == .forward ? .http : .transparentHTTP }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if mode == .transparent { dstIP = shared.syntheticDestination(context.channel) }
        firstRequestTimer = context.eventLoop.assumeIsolated().scheduleTask(in: shared.firstRequestTimeout) { [weak self] in
            guard let self, let ctx = self.context, self.state == .idle, self.current == nil else { return }
            self.state = .closed
            ctx.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        firstRequestTimer?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        firstRequestTimer?.cancel()
        if let c = current, c.framing != nil {
            auditAllow(c)  // the client went away mid-response
        }
        current = nil
        state = .closed
        closeUpstream()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            clientInputClosed = true
            if state == .idle { close() }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // HTTP parse errors arrive here. Before a response has started we can
        // still say why; otherwise just drop the connection.
        if error is HTTPParserError, state == .idle || state == .dialing || state == .request,
           current?.framing == nil {
            deny(.badRequest, host: nil, port: nil, auditHost: "-", auditPort: 0)
        } else {
            close()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { upstream?.handler.resumeRead() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: reads and backpressure

    /// Reads from the client pause while a destination is being dialled, while
    /// a response is outstanding (no pipelining), and while the upstream
    /// cannot take more bytes.
    func read(context: ChannelHandlerContext) {
        if holdReads { readPending = true } else { context.read() }
    }

    private var holdReads: Bool {
        switch state {
        case .dialing, .response: return true
        case .request: return !(upstream?.channel.isWritable ?? false)
        default: return false
        }
    }

    func resumeClientReads() {
        guard readPending, !holdReads, let context else { return }
        readPending = false
        context.read()
    }

    var clientWritable: Bool { context?.channel.isWritable ?? false }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .idle, .request: handle(part)
        case .dialing, .response: queue.append(part)
        case .tunnel, .closed: break
        }
    }

    private func drainQueue() {
        while state == .idle || state == .request, let part = queue.popFirst() {
            handle(part)
        }
    }

    private func handle(_ part: HTTPServerRequestPart) {
        switch (state, part) {
        case (.idle, .head(let head)):
            handleHead(head)
        case (.request, .body(let body)):
            current?.bytesUp &+= UInt64(body.readableBytes)
            upstream?.handler.send(.body(.byteBuffer(body)))
        case (.request, .end(let trailers)):
            upstream?.handler.send(.end(trailers))
            upstream?.handler.flush()
            state = .response
        default:
            break  // body/end of a request that was refused, or of a CONNECT
        }
    }

    // MARK: requests

    private func handleHead(_ head: HTTPRequestHead) {
        firstRequestTimer?.cancel()
        firstRequestTimer = nil
        let hostHeaders = head.headers["host"]
        if hostHeaders.count > 1 {
            return deny(.badRequest, host: nil, port: nil, auditHost: hostHeaders.joined(separator: ","), auditPort: 0)
        }
        let hostHeader = hostHeaders.first.map { Substring($0) }

        if head.method == .CONNECT {
            guard mode == .forward else { return deny(.badRequest, host: nil, port: nil, auditHost: head.uri, auditPort: 0) }
            switch RequestTarget.authority(Substring(head.uri), defaultPort: nil) {
            case .failure(let rule):
                let (h, p) = RequestTarget.auditParts(head.uri, defaultPort: 0)
                return deny(rule, host: nil, port: nil, auditHost: h, auditPort: p, auditMode: .connect)
            case .success(let target):
                if let hostHeader {
                    // A CONNECT Host header without a port names the same authority.
                    guard case .success(let h) = RequestTarget.authority(hostHeader, defaultPort: target.port),
                          h == target else {
                        return deny(.hostMismatch, host: nil, port: nil, auditHost: target.host, auditPort: target.port,
                                    auditMode: .connect)
                    }
                }
                return handleConnect(target)
            }
        }

        // Where is this request going?
        var target: NamedTarget
        var path = head.uri
        let logicalPort: UInt16 = mode == .forward ? 80 : shared.transparentHTTPPort
        if head.uri.hasPrefix("/") || head.uri == "*" {
            guard mode == .transparent else {
                // Origin-form at a forward proxy: the client did not mean to use a proxy.
                return deny(.badRequest, host: nil, port: nil, auditHost: head.uri, auditPort: 0)
            }
            guard let hostHeader else {
                return deny(dstIP == nil ? .ipLiteral : .badRequest, host: nil, port: nil,
                            auditHost: dstIP ?? "-", auditPort: logicalPort)
            }
            switch RequestTarget.authority(hostHeader, defaultPort: logicalPort) {
            case .failure(let rule):
                let (h, p) = RequestTarget.auditParts(String(hostHeader), defaultPort: logicalPort)
                return deny(rule, host: nil, port: nil, auditHost: h, auditPort: p)
            case .success(let t):
                target = t
                if mode == .transparent && t.port != logicalPort {
                    return deny(.hostMismatch, host: nil, port: nil, auditHost: t.host, auditPort: t.port)
                }
            }
        } else {
            switch RequestTarget.absolute(head.uri) {
            case .failure(let rule):
                let (h, p) = RequestTarget.auditParts(head.uri, defaultPort: 80)
                return deny(rule, host: nil, port: nil, auditHost: h, auditPort: p)
            case .success(let (t, p)):
                target = t
                path = p
            }
            if let hostHeader {
                guard case .success(let h) = RequestTarget.authority(hostHeader, defaultPort: 80), h == target else {
                    return deny(.hostMismatch, host: nil, port: nil, auditHost: target.host, auditPort: target.port)
                }
            } else if head.version.major == 1 && head.version.minor >= 1 {
                return deny(.badRequest, host: target.host, port: target.port, auditHost: target.host, auditPort: target.port)
            }
            if mode == .transparent {
                guard target.port == logicalPort else {
                    return deny(.hostMismatch, host: nil, port: nil, auditHost: target.host, auditPort: target.port)
                }
            }
        }

        let rule: AllowRule
        switch shared.allowlist.decide(host: target.host, port: target.port) {
        case .denied(let r):
            return deny(r, host: target.host, port: target.port, auditHost: target.host, auditPort: target.port)
        case .allowed(let r):
            rule = r
        }

        // Rewrite for the origin server.
        let connectionTokens = head.headers["connection"]
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingASCIIWhitespace().lowercased() }
        let isUpgrade = connectionTokens.contains("upgrade") && head.headers.contains(name: "upgrade")
        var headers = HTTPHeaders()
        for (name, value) in head.headers {
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
        if hostHeader == nil {
            headers.add(name: "Host", value: target.port == 80 ? target.host : "\(target.host):\(target.port)")
        }
        let upstreamHead = HTTPRequestHead(version: head.version, method: head.method, uri: path, headers: headers)

        current = Current(
            target: target, rule: rule.description, start: .now(), isHead: head.method == .HEAD,
            isUpgrade: isUpgrade, clientWantsClose: !head.isKeepAlive)

        if let up = upstream, up.target == target, up.channel.isActive, !isUpgrade {
            current?.upstreamIP = up.address.description
            up.handler.send(.head(upstreamHead))
            state = .request
            return
        }
        closeUpstream()
        state = .dialing
        pendingHead = upstreamHead
        dialHTTP(target)
    }

    private func dialHTTP(_ target: NamedTarget) {
        guard let context else { return }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        shared.dialer.dial(name: target.host, port: target.port, on: loop) { channel in
            channel.eventLoop.makeCompletedFuture {
                let front = bound.value
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(HTTPRequestEncoder())
                try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder(
                    leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)))
                try sync.addHandler(UpstreamHTTPHandler(front: front))
            }
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .failure(let error):
                guard state == .dialing else { return }
                let rule = (error as? DialFailure)?.rule ?? .connectFailed
                deny(rule, host: target.host, port: target.port, auditHost: target.host, auditPort: target.port)
            case .success(let dial):
                guard state == .dialing, let handler = try? dial.channel.pipeline.syncOperations.handler(
                    type: UpstreamHTTPHandler.self), let head = pendingHead else {
                    dial.channel.close(promise: nil)
                    return
                }
                pendingHead = nil
                upstream = UpstreamLink(channel: dial.channel, handler: handler, target: target, address: dial.address)
                current?.upstreamIP = dial.address.description
                handler.link()
                handler.send(.head(head))
                state = .request
                drainQueue()
                if state == .request { handler.flush() }
                resumeClientReads()
            }
        }
    }

    private func handleConnect(_ target: NamedTarget) {
        let rule: AllowRule
        switch shared.allowlist.decide(host: target.host, port: target.port) {
        case .denied(let r):
            return deny(r, host: target.host, port: target.port, auditHost: target.host, auditPort: target.port,
                        auditMode: .connect)
        case .allowed(let r):
            rule = r
        }
        guard let context else { return }
        state = .dialing
        let loop = context.eventLoop
        let start = NIODeadline.now()
        shared.dialer.dial(name: target.host, port: target.port, on: loop) { channel in
            channel.eventLoop.makeCompletedFuture {
                // Holds reads until linked, so a server that speaks first loses nothing.
                try channel.pipeline.syncOperations.addHandler(
                    SpliceHandler(direction: .down, record: TunnelRecord(finish: { _, _ in })))
            }
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .failure(let error):
                guard state == .dialing else { return }
                let rule = (error as? DialFailure)?.rule ?? .connectFailed
                deny(rule, host: target.host, port: target.port, auditHost: target.host, auditPort: target.port,
                     auditMode: .connect)
            case .success(let dial):
                guard state == .dialing, let context = self.context else {
                    dial.channel.close(promise: nil)
                    return
                }
                var ok = context.channel.allocator.buffer(capacity: 40)
                ok.writeString("HTTP/1.1 200 Connection Established\r\n\r\n")
                context.writeAndFlush(wrapOutboundOut(ok), promise: nil)
                let shared = self.shared
                let record = TunnelRecord { up, down in
                    shared.audit(EgressDecision(
                        agent: shared.agent, mode: .connect, verdict: .allow, rule: rule.description,
                        host: target.host, port: target.port, upstreamIP: dial.address.description,
                        bytesUp: up, bytesDown: down, durationMs: shared.elapsedMs(since: start)))
                }
                // A tunnel to a TLS port is spliced only once its ClientHello
                // names the CONNECT host (ConnectFirstFlight.swift).
                let inspect = shared.connectTLSPorts.contains(target.port) ? target : nil
                do {
                    try enterTunnel(upstream: dial.channel, record: record, upstreamHTTPHandlers: false,
                                    inspectingFirstFlightFor: inspect)
                } catch {
                    record.close()
                    dial.channel.close(promise: nil)
                    close()
                }
            }
        }
    }

    /// Replaces HTTP handling on both channels by a splice. Bytes the HTTP
    /// decoders already buffered are forwarded into the tunnel. With
    /// `inspectingFirstFlightFor`, the client's first flight is checked
    /// against that CONNECT target before the tunnel starts.
    private func enterTunnel(
        upstream channel: any Channel, record: TunnelRecord, upstreamHTTPHandlers: Bool,
        inspectingFirstFlightFor inspected: NamedTarget? = nil
    ) throws {
        guard let context else { return }
        let up = channel.pipeline.syncOperations
        let client = context.pipeline.syncOperations
        let upSplice: SpliceHandler
        if upstreamHTTPHandlers {
            upSplice = SpliceHandler(direction: .down, record: record)
            try up.addHandler(upSplice)
        } else {
            // The CONNECT path installed the upstream splice at dial time.
            upSplice = try up.handler(type: SpliceHandler.self)
            upSplice.record = record
        }
        let clientSplice = SpliceHandler(direction: .up, record: record)
        let tunnels = shared.tunnels
        let clientChannel = context.channel
        let startTunnel = {
            KernelTunnels.start(client: clientChannel, clientSplice, upstream: channel, upSplice,
                                record: record, via: tunnels)
        }
        // In front of the splice handler, so the client's bytes reach it first.
        let inspector = inspected.map {
            ConnectFirstFlightHandler(shared: shared, target: $0, upstream: channel, startTunnel: startTunnel)
        }
        if let inspector { try client.addHandler(inspector) }
        try client.addHandler(clientSplice)
        state = .tunnel
        self.upstream = nil
        if upstreamHTTPHandlers {
            if let h = try? up.handler(type: UpstreamHTTPHandler.self) { up.removeHandler(h, promise: nil) }
            if let e = try? up.handler(type: HTTPRequestEncoder.self) { up.removeHandler(e, promise: nil) }
            if let d = try? up.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self) { up.removeHandler(d, promise: nil) }
        }
        client.removeHandler(context: context, promise: nil)
        client.removeHandler(decoder, promise: nil)
        // Removing a decoder forwards its leftover bytes (to the unlinked
        // splice handlers, which keep them, or to the inspector) only once its
        // own decode call unwinds, so the tunnel starts, or the first flight is
        // looked at, on the next tick.
        clientChannel.eventLoop.assumeIsolated().execute {
            if let inspector { inspector.begin() } else { startTunnel() }
        }
    }

    // MARK: responses (called by UpstreamHTTPHandler, same event loop)

    func upstreamRead(_ part: HTTPClientResponsePart, from handler: UpstreamHTTPHandler) {
        guard let up = upstream, up.handler === handler, var cur = current,
              state == .request || state == .response, let context else {
            handler.closeChannel()  // nothing asked for this
            return
        }
        switch part {
        case .head(let head):
            let code = head.status.code
            if (100..<200).contains(code) && code != 101 {
                writeResponseHead(head, connectionClose: false)
                return
            }
            if code == 101 {
                guard cur.isUpgrade else { return close() }  // a 101 nobody asked for
                cur.switching = true
            }
            let framing: Framing
            if cur.isHead || code == 204 || code == 304 || code == 101 {
                framing = .bodiless
            } else if head.headers.contains(name: "content-length") {
                framing = .raw
            } else if let te = head.headers["transfer-encoding"].last,
                      te.split(separator: ",").last?.trimmingASCIIWhitespace().lowercased() == "chunked" {
                framing = .chunked
            } else {
                framing = .closeDelimited
            }
            cur.framing = framing
            // After an upgrade request the client-side parser has stopped (the
            // rest of the stream would belong to the new protocol), so a
            // refused upgrade must end the connection.
            cur.closeAfter = cur.clientWantsClose || clientInputClosed || framing == .closeDelimited
                || !head.isKeepAlive || state == .request || (cur.isUpgrade && !cur.switching)
            current = cur
            writeResponseHead(head, connectionClose: cur.closeAfter && !cur.switching)
        case .body(let body):
            cur.bytesDown &+= UInt64(body.readableBytes)
            current = cur
            if cur.framing == .chunked {
                var line = context.channel.allocator.buffer(capacity: 12)
                line.writeString(String(body.readableBytes, radix: 16) + "\r\n")
                context.write(wrapOutboundOut(line), promise: nil)
                context.write(wrapOutboundOut(body), promise: nil)
                context.write(wrapOutboundOut(ByteBuffer(string: "\r\n")), promise: nil)
            } else {
                context.write(wrapOutboundOut(body), promise: nil)
            }
        case .end(let trailers):
            if cur.framing == .chunked {
                var tail = context.channel.allocator.buffer(capacity: 64)
                tail.writeString("0\r\n")
                if let trailers {
                    for (n, v) in trailers { tail.writeString("\(n): \(v)\r\n") }
                }
                tail.writeString("\r\n")
                context.write(wrapOutboundOut(tail), promise: nil)
            }
            context.flush()
            auditAllow(cur)
            current = nil
            if cur.switching {
                let shared = self.shared
                let mode = self.auditMode
                let dstIP = self.dstIP
                let ended = cur
                let record = TunnelRecord { up, down in
                    let cur = ended
                    shared.audit(EgressDecision(
                        agent: shared.agent, mode: mode, verdict: .allow, rule: cur.rule,
                        host: cur.target.host, port: cur.target.port, dstIP: dstIP, upstreamIP: cur.upstreamIP,
                        bytesUp: up, bytesDown: down, durationMs: shared.elapsedMs(since: cur.start)))
                }
                do {
                    try enterTunnel(upstream: up.channel, record: record, upstreamHTTPHandlers: true)
                } catch {
                    close()
                }
                return
            }
            if cur.closeAfter || state == .request {
                close()
                return
            }
            state = .idle
            drainQueue()
            resumeClientReads()
        }
    }

    func flushClient() {
        context?.flush()
    }

    func upstreamInactive(_ handler: UpstreamHTTPHandler) {
        guard let up = upstream, up.handler === handler else { return }
        upstream = nil
        switch state {
        case .request, .response:
            if let cur = current, cur.framing == nil {
                // Closed before answering: say so rather than hang up silently.
                let t = cur.target
                deny(.connectFailed, host: t.host, port: t.port, auditHost: t.host, auditPort: t.port)
            } else {
                close()  // truncated response
            }
        default:
            break
        }
    }

    private func writeResponseHead(_ head: HTTPResponseHead, connectionClose: Bool) {
        guard let context else { return }
        var buf = context.channel.allocator.buffer(capacity: 256)
        buf.writeString("HTTP/\(head.version.major).\(head.version.minor) \(head.status.code) \(head.status.reasonPhrase)\r\n")
        for (name, value) in head.headers {
            if connectionClose && name.lowercased() == "connection" { continue }
            buf.writeString(name)
            buf.writeString(": ")
            buf.writeString(value)
            buf.writeString("\r\n")
        }
        if connectionClose { buf.writeString("Connection: close\r\n") }
        buf.writeString("\r\n")
        context.write(wrapOutboundOut(buf), promise: nil)
    }

    // MARK: endings

    private func auditAllow(_ c: Current) {
        shared.audit(EgressDecision(
            agent: shared.agent, mode: auditMode, verdict: .allow, rule: c.rule, host: c.target.host,
            port: c.target.port, dstIP: dstIP, upstreamIP: c.upstreamIP, bytesUp: c.bytesUp, bytesDown: c.bytesDown,
            durationMs: shared.elapsedMs(since: c.start)))
    }

    /// Answers with the deny response, audits, and closes. `host` is echoed
    /// in the body and must be a validated name or nil; `auditHost` is what
    /// the client sent (sanitised by EgressDecision).
    private func deny(
        _ rule: DenyRule, host: String?, port: UInt16?, auditHost: String, auditPort: UInt16,
        auditMode: EgressDecision.Mode? = nil
    ) {
        shared.audit(EgressDecision(
            agent: shared.agent, mode: auditMode ?? self.auditMode, verdict: .deny, rule: rule.rawValue,
            denyRule: rule, host: auditHost, port: auditPort, dstIP: dstIP))
        current = nil
        closeUpstream()
        guard let context, state != .closed else { return }
        state = .closed
        let buf = DenyResponse.buffer(rule, host: host, port: port, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(buf)).assumeIsolated().whenComplete { [weak self] _ in
            self?.context?.close(promise: nil)
        }
    }

    private func close() {
        state = .closed
        closeUpstream()
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)))
            .assumeIsolated().whenComplete { [weak self] _ in
                self?.context?.close(promise: nil)
            }
    }

    private func closeUpstream() {
        if let up = upstream {
            upstream = nil
            up.channel.close(promise: nil)
        }
    }
}

/// The origin-server side of a forwarded HTTP exchange.
final class UpstreamHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private weak var front: HTTPFrontHandler?
    private var context: ChannelHandlerContext?
    private var linked = false
    private var pendingRead = false

    init(front: HTTPFrontHandler) {
        self.front = front
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func link() {
        linked = true
        resumeRead()
    }

    func send(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    func closeChannel() { context?.close(promise: nil) }

    func resumeRead() {
        guard pendingRead, linked, let context, front?.clientWritable ?? false else { return }
        pendingRead = false
        context.read()
    }

    func read(context: ChannelHandlerContext) {
        if linked, front?.clientWritable ?? false { context.read() } else { pendingRead = true }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        front?.upstreamRead(unwrapInboundIn(data), from: self)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        front?.flushClient()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { front?.resumeClientReads() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            context.close(promise: nil)  // the decoder has already seen the EOF
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        front?.upstreamInactive(self)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension StringProtocol {
    func trimmingASCIIWhitespace() -> Substring {
        let s = Substring(self)
        let start = s.firstIndex { $0 != " " && $0 != "\t" } ?? s.endIndex
        let end = s.lastIndex { $0 != " " && $0 != "\t" }.map { s.index(after: $0) } ?? start
        return start < end ? s[start..<end] : s[start..<start]
    }
}
