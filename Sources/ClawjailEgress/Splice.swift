import NIOCore

/// Copies bytes between two channels on the same event loop (NIO's "glue"
/// pattern). ByteBuffers are passed through, never copied. Backpressure: a
/// side only reads while its partner is writable. Half-close is forwarded,
/// so protocols that shut down one direction still work.
///
/// Until it is linked, a handler holds its channel's reads and keeps whatever
/// NIO reads anyway (it drains a socket that saw a FIN), together with the FIN
/// and the close, for the partner or for the kernel hand-over.
final class SpliceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Direction { case up, down }  // up: this side's reads go to the upstream

    private let direction: Direction
    /// Replaceable until the tunnel is linked (the CONNECT path installs the
    /// upstream side before it knows what to report).
    var record: TunnelRecord
    private(set) var partner: SpliceHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var inputClosed = false
    private var outputClosed = false
    /// Read before the link.
    private var early: [ByteBuffer] = []
    private var closedEarly = false
    /// The kernel owns the tunnel now: this side reports and forwards nothing.
    private var handedOff = false

    init(direction: Direction, record: TunnelRecord) {
        self.direction = direction
        self.record = record
    }

    /// Links two handlers; either may already be in its pipeline.
    static func link(_ a: SpliceHandler, _ b: SpliceHandler) {
        a.partner = b
        b.partner = a
        for (from, to) in [(a, b), (b, a)] {
            let held = from.early
            from.early = []
            for buf in held {
                from.count(buf)
                to.partnerWrite(buf)
            }
            if !held.isEmpty { to.partnerFlush() }
            if from.closedEarly {
                from.record.close()
                to.partnerClose()
            } else if from.inputClosed {
                to.partnerShutdownOutput()
            }
        }
        a.resumeReadIfPossible()
        b.resumeReadIfPossible()
    }

    /// A copy of what this side read before the link.
    var earlyBytes: [UInt8] {
        var bytes: [UInt8] = []
        for buf in early { bytes += buf.readableBytesView }
        return bytes
    }

    /// Whether this side's peer sent a FIN before the link.
    var sawInputClosed: Bool { inputClosed }

    /// The kernel owns the tunnel now: drop what was held; closing this channel
    /// reports and forwards nothing.
    func markHandedOff() {
        handedOff = true
        early = []
    }

    /// Closed, or about to be: the tunnel cannot be handed over.
    var hasEnded: Bool { closedEarly || !(context?.channel.isActive ?? false) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buf = unwrapInboundIn(data)
        guard !handedOff else { return }
        guard let partner else {
            early.append(buf)
            return
        }
        count(buf)
        partner.partnerWrite(buf)
    }

    private func count(_ buf: ByteBuffer) {
        switch direction {
        case .up: record.bytesUp &+= UInt64(buf.readableBytes)
        case .down: record.bytesDown &+= UInt64(buf.readableBytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !handedOff {
            if let partner {
                record.close()
                partner.partnerClose()
            } else {
                closedEarly = true
            }
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputClosed = true
            guard !handedOff else { return }
            partner?.partnerShutdownOutput()
            if outputClosed { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReadIfPossible() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        guard !handedOff else { return }
        if let partner, partner.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }

    /// Issues a read if one was held (e.g. while the tunnel was being set up).
    func kick() {
        pendingRead = true
        resumeReadIfPossible()
    }

    // MARK: partner-facing

    private var isWritable: Bool { context?.channel.isWritable ?? false }

    private func resumeReadIfPossible() {
        guard pendingRead, let context, let partner, partner.isWritable else { return }
        pendingRead = false
        context.read()
    }

    private func partnerWrite(_ buf: ByteBuffer) {
        context?.write(wrapOutboundOut(buf), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerShutdownOutput() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        // Pending writes go out before the FIN (writes are ordered).
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)))
            .assumeIsolated()
            .whenComplete { [weak self] _ in
                guard let self, let ctx = self.context else { return }
                ctx.close(mode: .output, promise: nil)
                if self.inputClosed { ctx.close(promise: nil) }
            }
    }

    private func partnerClose() {
        guard let context else { return }
        // Flush what the partner already handed us, then close.
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)))
            .assumeIsolated()
            .whenComplete { [weak self] _ in
                self?.context?.close(promise: nil)
            }
    }
}

/// Closes a channel when IdleStateHandler reports it idle.
final class IdleCloseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
