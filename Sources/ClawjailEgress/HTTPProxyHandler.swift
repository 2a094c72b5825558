import ClawjailCore
import NIOCore
import NIOHTTP1

/// Connects to an allowed name (`Dialer`; tests put channels of their own here).
protocol UpstreamDialer: Sendable {
    /// `initializer` sets up the upstream pipeline before the connection is
    /// established, so no early byte is lost.
    func dial(
        name: String, port: UInt16, on loop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<DialResult>
}

extension Dialer: UpstreamDialer {}

/// What every connection handler needs; immutable and shared.
struct ProxyShared: Sendable {
    let agent: String
    let allowlist: Allowlist
    let dialer: any UpstreamDialer
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

/// The client side of the HTTP proxy (and of transparent port 80): the shell
/// that carries out what `ProxyConnectionStateMachine` decides. It owns the
/// channels, the upstream link, the timer and read backpressure; every
/// decision is the state machine's. CONNECT and accepted upgrades turn the
/// connection into a byte tunnel.
final class HTTPFrontHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart
    typealias Mode = ProxyMode
    private typealias Action = ProxyConnectionStateMachine.Action

    private final class UpstreamLink {
        let channel: any Channel
        let handler: UpstreamHTTPHandler

        init(channel: any Channel, handler: UpstreamHTTPHandler) {
            self.channel = channel
            self.handler = handler
        }
    }

    /// Adds the client side of the proxy to a new connection's pipeline: NIO's
    /// request decoder and response encoder, then this handler.
    static func addHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations, shared: ProxyShared, mode: Mode
    ) throws {
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))
        // The state machine writes every framing header itself (a response is
        // forwarded as the origin framed it, a deny response says its length).
        var config = HTTPResponseEncoder.Configuration()
        config.automaticallySetFramingHeaders = false
        let encoder = HTTPResponseEncoder(configuration: config)
        try pipeline.addHandler(decoder)
        try pipeline.addHandler(encoder)
        try pipeline.addHandler(HTTPFrontHandler(shared: shared, mode: mode, decoder: decoder, encoder: encoder))
    }

    private let shared: ProxyShared
    private let mode: Mode
    private let decoder: ByteToMessageHandler<HTTPRequestDecoder>
    private let encoder: HTTPResponseEncoder
    private var machine: ProxyConnectionStateMachine
    private var context: ChannelHandlerContext?
    private var upstream: UpstreamLink?
    private var readPending = false
    private var firstRequestTimer: Scheduled<Void>?
    private var dstIP: String?

    init(shared: ProxyShared, mode: Mode, decoder: ByteToMessageHandler<HTTPRequestDecoder>,
         encoder: HTTPResponseEncoder) {
        self.shared = shared
        self.mode = mode
        self.decoder = decoder
        self.encoder = encoder
        self.machine = ProxyConnectionStateMachine(policy: HTTPFrontHandler.policy(shared, mode, dstIP: nil))
    }

    private static func policy(_ shared: ProxyShared, _ mode: Mode, dstIP: String?) -> ProxyPolicy {
        ProxyPolicy(mode: mode, allowlist: shared.allowlist, transparentHTTPPort: shared.transparentHTTPPort,
                    dstIP: dstIP, connectTLSPorts: shared.connectTLSPorts)
    }

    private var auditMode: EgressDecision.Mode { mode == .forward ? .http : .transparentHTTP }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if mode == .transparent {
            dstIP = shared.syntheticDestination(context.channel)
            machine = ProxyConnectionStateMachine(policy: HTTPFrontHandler.policy(shared, mode, dstIP: dstIP))
        }
        firstRequestTimer = context.eventLoop.assumeIsolated().scheduleTask(in: shared.firstRequestTimeout) {
            [weak self] in
            guard let self else { return }
            self.run(self.machine.firstRequestTimedOut())
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        firstRequestTimer?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        firstRequestTimer?.cancel()
        run(machine.clientClosed())
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            run(machine.clientInputClosed())
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // HTTP parse errors arrive here; the state machine says whether they can still be answered.
        run(machine.errorCaught(isParseError: error is HTTPParserError))
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { upstream?.handler.resumeRead() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: reads and backpressure

    func read(context: ChannelHandlerContext) {
        if holdReads { readPending = true } else { context.read() }
    }

    private var holdReads: Bool {
        machine.holdsClientReads(upstreamWritable: upstream?.channel.isWritable ?? false)
    }

    func resumeClientReads() {
        guard readPending, !holdReads, let context else { return }
        readPending = false
        context.read()
    }

    var clientWritable: Bool { context?.channel.isWritable ?? false }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .head = part {
            firstRequestTimer?.cancel()
            firstRequestTimer = nil
        }
        forgetDeadUpstream()
        run(machine.clientRead(part, at: .now()))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Body parts go up as they arrive. Held back for the request's end, the
        // unflushed bytes of a body bigger than the upstream's write buffer make
        // it unwritable, which holds the client's reads: nothing moves again.
        upstream?.handler.flush()
        context.fireChannelReadComplete()
    }

    /// Carries on with what the client sent while it had to wait.
    private func drainQueue() {
        forgetDeadUpstream()
        while let action = machine.nextQueued(at: .now()) {
            run(action)
            forgetDeadUpstream()
        }
    }

    /// A kept upstream connection that closed between requests is not reused.
    private func forgetDeadUpstream() {
        guard machine.isIdle, let up = upstream, !up.channel.isActive else { return }
        upstream = nil
        run(machine.upstreamClosed())
    }

    // MARK: actions

    private func run(_ action: Action) {
        switch action {
        case .none:
            break
        case .deny(let denial):
            deny(denial)
        case .dialHTTP(let target):
            dropUpstream()
            dialHTTP(target)
        case .dialTunnel(let target):
            dropUpstream()
            dialTunnel(target)
        case .sendHead(let head):
            upstream?.handler.send(.head(head))
        case .sendBody(let body):
            upstream?.handler.send(.body(.byteBuffer(body)))
        case .sendEnd(let trailers):
            upstream?.handler.send(.end(trailers))
            upstream?.handler.flush()
        case .writeResponseHead(let head):
            context?.write(wrapOutboundOut(.head(head)), promise: nil)
        case .writeResponseBody(let body):
            context?.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        case .finishResponse(let end):
            finishResponse(end)
        case .closeUpstream:
            dropUpstream()
        case .close:
            close()
        case .clientGone(let started):
            if let started { auditAllow(started) }  // the client went away mid-response
            dropUpstream()
        case .abandonDial, .linkUpstream, .establishTunnel:
            // Answers to a finished dial; the dial's completion carries them out.
            break
        }
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
                run(machine.dialFailed((error as? DialFailure)?.rule ?? .connectFailed))
            case .success(let dial):
                let handler = try? dial.channel.pipeline.syncOperations.handler(type: UpstreamHTTPHandler.self)
                let action = machine.dialSucceeded(address: dial.address)
                guard case .linkUpstream(let head) = action, let handler else {
                    dial.channel.close(promise: nil)
                    if case .linkUpstream = action { run(machine.failed()) }
                    return
                }
                upstream = UpstreamLink(channel: dial.channel, handler: handler)
                handler.link()
                handler.send(.head(head))
                drainQueue()
                upstream?.handler.flush()
                resumeClientReads()
            }
        }
    }

    private func dialTunnel(_ target: NamedTarget) {
        guard let context else { return }
        shared.dialer.dial(name: target.host, port: target.port, on: context.eventLoop) { channel in
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
                run(machine.dialFailed((error as? DialFailure)?.rule ?? .connectFailed))
            case .success(let dial):
                guard self.context != nil, case .establishTunnel(let plan) = machine.dialSucceeded(address: dial.address)
                else {
                    dial.channel.close(promise: nil)
                    return
                }
                establishTunnel(plan, upstream: dial.channel)
            }
        }
    }

    private func establishTunnel(_ plan: ProxyConnectionStateMachine.TunnelPlan, upstream channel: any Channel) {
        guard let context else { return }
        let established = HTTPResponseHead(
            version: .http1_1, status: .custom(code: 200, reasonPhrase: "Connection Established"))
        context.write(wrapOutboundOut(.head(established)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        let shared = self.shared
        let record = TunnelRecord { up, down in
            shared.audit(EgressDecision(
                agent: shared.agent, mode: .connect, verdict: .allow, rule: plan.rule.description,
                host: plan.target.host, port: plan.target.port, upstreamIP: plan.upstreamIP,
                bytesUp: up, bytesDown: down, durationMs: shared.elapsedMs(since: plan.start)))
        }
        do {
            try enterTunnel(upstream: channel, record: record, upstreamHTTPHandlers: false,
                            inspectingFirstFlightFor: plan.inspectFirstFlight ? plan.target : nil)
        } catch {
            record.close()
            channel.close(promise: nil)
            run(machine.failed())
        }
    }

    private func finishResponse(_ end: ProxyConnectionStateMachine.ResponseEnd) {
        guard let context else { return }
        if end.writeEnd { context.write(wrapOutboundOut(.end(end.trailers)), promise: nil) }
        context.flush()
        auditAllow(end.exchange)
        switch end.next {
        case .keepAlive:
            drainQueue()
            resumeClientReads()
        case .close:
            close()
        case .upgrade:
            guard let up = upstream else { return run(machine.failed()) }
            let shared = self.shared
            let mode = self.auditMode
            let dstIP = self.dstIP
            let e = end.exchange
            let record = TunnelRecord { upBytes, downBytes in
                shared.audit(EgressDecision(
                    agent: shared.agent, mode: mode, verdict: .allow, rule: e.rule,
                    host: e.target.host, port: e.target.port, dstIP: dstIP, upstreamIP: e.upstreamIP,
                    bytesUp: upBytes, bytesDown: downBytes, durationMs: shared.elapsedMs(since: e.start)))
            }
            do {
                try enterTunnel(upstream: up.channel, record: record, upstreamHTTPHandlers: true)
            } catch {
                run(machine.failed())
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
        self.upstream = nil
        if upstreamHTTPHandlers {
            if let h = try? up.handler(type: UpstreamHTTPHandler.self) { up.removeHandler(h, promise: nil) }
            if let e = try? up.handler(type: HTTPRequestEncoder.self) { up.removeHandler(e, promise: nil) }
            if let d = try? up.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self) { up.removeHandler(d, promise: nil) }
        }
        // The tunnel writes raw bytes: the encoder goes first, as everything it
        // was given (the 200 or the 101) has passed it already.
        client.removeHandler(encoder, promise: nil)
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
        guard let up = upstream, up.handler === handler, context != nil else {
            handler.closeChannel()  // nothing asked for this
            return
        }
        run(machine.upstreamRead(part))
    }

    func flushClient() {
        context?.flush()
    }

    func upstreamInactive(_ handler: UpstreamHTTPHandler) {
        guard let up = upstream, up.handler === handler else { return }
        upstream = nil
        run(machine.upstreamClosed())
    }

    // MARK: endings

    private func auditAllow(_ e: ProxyConnectionStateMachine.Exchange) {
        shared.audit(EgressDecision(
            agent: shared.agent, mode: auditMode, verdict: .allow, rule: e.rule, host: e.target.host,
            port: e.target.port, dstIP: dstIP, upstreamIP: e.upstreamIP, bytesUp: e.bytesUp, bytesDown: e.bytesDown,
            durationMs: shared.elapsedMs(since: e.start)))
    }

    /// Audits, answers with the deny response and closes.
    private func deny(_ d: Denial) {
        shared.audit(EgressDecision(
            agent: shared.agent, mode: d.auditMode ?? auditMode, verdict: .deny, rule: d.rule.rawValue,
            denyRule: d.rule, host: d.auditHost, port: d.auditPort, dstIP: dstIP))
        dropUpstream()
        guard let context else { return }
        let text = DenyResponse.body(d.rule, host: d.host, port: d.port)
        var body = context.channel.allocator.buffer(capacity: text.utf8.count)
        body.writeString(text)
        context.write(wrapOutboundOut(.head(DenyResponse.head(d.rule, bodyLength: body.readableBytes))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [weak self] _ in
            self?.context?.close(promise: nil)
        }
    }

    /// Closes once everything written so far is out (a close drops unwritten bytes).
    private func close() {
        dropUpstream()
        guard let context else { return }
        // An empty body part passes the encoder unframed: it ends nothing, it
        // only completes after the writes before it.
        let marker = HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(capacity: 0)))
        context.writeAndFlush(wrapOutboundOut(marker)).assumeIsolated().whenComplete { [weak self] _ in
            self?.context?.close(promise: nil)
        }
    }

    private func dropUpstream() {
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
