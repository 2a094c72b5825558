import ClawjailCore
import NIOCore

/// Transparent port 443: buffers the ClientHello (within the parser's bound,
/// `TLSClientHello.maxFirstFlightBytes`, and `firstRequestTimeout`), takes the
/// name from SNI, applies the same rules as CONNECT, dials the checked address
/// on the TLS port, replays the buffered bytes and splices. The original
/// destination address is never used to decide: only the name counts. TLS is
/// not terminated.
final class TransparentTLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case sniffing, dialing, done }

    private let shared: ProxyShared
    private var context: ChannelHandlerContext?
    private var state: State = .sniffing
    private var buffered: ByteBuffer?
    private var readPending = false
    private var timer: Scheduled<Void>?
    private var dstIP: String?

    init(shared: ProxyShared) {
        self.shared = shared
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        dstIP = shared.syntheticDestination(context.channel)
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: shared.firstRequestTimeout) { [weak self] in
            guard let self, self.state == .sniffing else { return }
            self.state = .done
            self.context?.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    func read(context: ChannelHandlerContext) {
        if state == .dialing { readPending = true } else { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        guard state != .done else { return }
        if buffered == nil {
            buffered = chunk
        } else {
            buffered?.writeBuffer(&chunk)
        }
        guard state == .sniffing, let buf = buffered else { return }
        let port = shared.transparentTLSPort
        switch TLSClientHello.parse(buf.readableBytesView) {
        case .needMore:
            // The parser bounds the bytes it waits for (maxFirstFlightBytes) and
            // answers .invalid beyond; a bound here on what has arrived so far
            // would make the answer depend on how the reads were cut.
            break
        case .invalid:
            deny(.badRequest, auditHost: dstIP ?? "-", port: port)
        case .noServerName:
            // Without a name there is nothing to allowlist. A synthetic
            // destination means our DNS answered the name but the client sent
            // no SNI; anything else is a connection to an IP literal.
            deny(dstIP == nil ? .ipLiteral : .badRequest, auditHost: dstIP ?? "-", port: port)
        case .serverName(let sni):
            timer?.cancel()
            switch shared.allowlist.decide(host: sni, port: port) {
            case .denied(let rule):
                deny(rule, auditHost: sni, port: port)
            case .allowed(let rule):
                guard case .success(let name) = Allowlist.screen(sni) else {
                    return deny(.badRequest, auditHost: sni, port: port)
                }
                dial(name: name, port: port, rule: rule)
            }
        }
    }

    private func dial(name: String, port: UInt16, rule: AllowRule) {
        guard let context else { return }
        state = .dialing
        let start = NIODeadline.now()
        shared.dialer.dial(name: name, port: port, on: context.eventLoop) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    SpliceHandler(direction: .down, record: TunnelRecord(finish: { _, _ in })))
            }
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .failure(let error):
                deny((error as? DialFailure)?.rule ?? .connectFailed, auditHost: name, port: port)
            case .success(let dial):
                guard state == .dialing, let context = self.context,
                      let upSplice = try? dial.channel.pipeline.syncOperations.handler(type: SpliceHandler.self)
                else {
                    dial.channel.close(promise: nil)
                    return
                }
                state = .done
                let shared = self.shared
                let dstIP = self.dstIP
                let record = TunnelRecord { up, down in
                    shared.audit(EgressDecision(
                        agent: shared.agent, mode: .transparentTLS, verdict: .allow, rule: rule.description,
                        host: name, port: port, dstIP: dstIP, upstreamIP: dial.address.description,
                        bytesUp: up, bytesDown: down, durationMs: shared.elapsedMs(since: start)))
                }
                upSplice.record = record
                let clientSplice = SpliceHandler(direction: .up, record: record)
                do {
                    try context.pipeline.syncOperations.addHandler(clientSplice)
                } catch {
                    dial.channel.close(promise: nil)
                    context.close(promise: nil)
                    return
                }
                // Replay the ClientHello (and anything after it) upstream.
                if let buf = buffered {
                    buffered = nil
                    record.bytesUp &+= UInt64(buf.readableBytes)
                    dial.channel.write(buf, promise: nil)
                }
                let client = context.channel
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                KernelTunnels.start(client: client, clientSplice, upstream: dial.channel, upSplice,
                                    record: record, via: shared.tunnels)
            }
        }
    }

    private func deny(_ rule: DenyRule, auditHost: String, port: UInt16) {
        guard state != .done else { return }
        state = .done
        timer?.cancel()
        shared.audit(EgressDecision(
            agent: shared.agent, mode: .transparentTLS, verdict: .deny, rule: rule.rawValue, denyRule: rule,
            host: auditHost, port: port, dstIP: dstIP))
        guard let context else { return }
        // A fatal access_denied alert makes TLS clients fail at once with a
        // recognisable error instead of a bare reset.
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: TLSAlert.accessDenied)))
            .assumeIsolated().whenComplete { [weak self] _ in self?.context?.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .done
        timer?.cancel()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
