import ClawjailCore
import NIOCore

// Domain fronting through CONNECT. `CONNECT allowed.example:443` followed by a
// ClientHello for `evil.example` reaches allowed.example's address, and on a
// shared CDN that address serves evil.example too. So before a CONNECT tunnel
// to a TLS port (`EgressConfig.connectTLSPorts`, 443) is spliced, the proxy
// reads the client's first flight and decides on it:
//
// - a ClientHello whose server_name is the CONNECT host (case-insensitive, one
//   trailing dot ignored) passes, and the tunnel carries on exactly as before
//   (the bytes read go first, then the splice, kernel or NIO);
// - a ClientHello with another server name is refused (sni-mismatch). With ECH
//   that is the outer (public) name: the inner name is encrypted and unseen;
// - a ClientHello without server_name is refused too (sni-mismatch): the server
//   then answers with its default virtual host, which on a shared front end can
//   be anyone's, so nothing ties the tunnel to the name that was allowed;
// - a malformed or oversized ClientHello, or one not complete within the
//   first-request timeout or before the client closes, is refused (bad-request);
// - a first flight that does not start with a TLS handshake record is refused
//   (not-tls) unless `allowNonTLSConnect` says otherwise. Even then a flight
//   that starts as TLS is checked as above, so the option cannot be used to
//   slip a fronted ClientHello through;
// - a client that sends nothing is closed after the first-request timeout. It
//   is never waved through on silence: a client could otherwise wait out the
//   timer and then send the fronted ClientHello unseen.
//
// The 200 has been sent by then, so a refusal can only come from inside the
// tunnel: a fatal access_denied(49) alert for anything that started as TLS,
// the same alert the transparent 443 listener sends for every refusal (so a
// client fails the same way whichever path it took, and "access denied" names
// a policy decision; unrecognized_name(112) would blame the server's
// configuration, and some clients take it as a cue to retry without SNI). A
// flight that is not TLS gets the proxy's usual 403 text, which a plain-HTTP
// client can show. Every refusal is audited with a reason.
//
// What this cannot see without terminating TLS: the HTTP Host header (or
// :authority) inside the tunnel, the inner name of an ECH ClientHello, and
// what a server that ignores SNI chooses to serve.

/// Alerts the proxy sends in place of a TLS server.
enum TLSAlert {
    /// Fatal access_denied, TLS 1.2 record version (what TLS 1.3 servers send too).
    static let accessDenied: [UInt8] = [21, 3, 3, 0, 2, 2, 49]
}

/// The decision on a CONNECT tunnel's first flight; pure, so every case can be
/// tested without sockets.
enum ConnectFirstFlight {
    enum Reply: Equatable {
        case tlsAlert
        case denyResponse
        /// Nothing was said, so nothing is answered: just close.
        case none
    }

    struct Refusal: Equatable {
        var rule: DenyRule
        var reason: String
        var reply: Reply
    }

    enum Verdict: Equatable {
        case needMore
        case pass
        case refuse(Refusal)
    }

    /// Why no more bytes will be looked at.
    enum Ending: Equatable {
        /// The client sent its FIN, or the connection is gone.
        case closed
        case timedOut(TimeAmount)
    }

    /// `bytes`: everything the client sent into the tunnel so far. `host`: the
    /// CONNECT host, already normalised (`Allowlist.screen`). `ending`: set
    /// when no more bytes will come, so waiting is no longer an answer.
    static func decide(
        _ bytes: some Collection<UInt8>, host: String, allowNonTLS: Bool, ending: Ending? = nil
    ) -> Verdict {
        guard let first = bytes.first else {
            guard let ending else { return .needMore }
            let what: String
            switch ending {
            case .closed: what = "the client closed the tunnel to \(host) before sending anything"
            case .timedOut(let t): what = "the client sent nothing into the tunnel to \(host) within \(format(t))"
            }
            return .refuse(Refusal(rule: .notTLS, reason: "no first flight: " + what, reply: .none))
        }
        // 22: a TLS handshake record. The only byte a decision on non-TLS
        // needs, so that answer cannot depend on segmentation either.
        guard first == 22 else {
            if allowNonTLS { return .pass }
            return .refuse(Refusal(
                rule: .notTLS, reason: "not tls: the tunnel to \(host) does not start with a TLS ClientHello",
                reply: .denyResponse))
        }
        switch TLSClientHello.parse(bytes) {
        case .needMore:
            guard let ending else { return .needMore }
            let why: String
            switch ending {
            case .closed: why = "the client closed the tunnel before the ClientHello was complete"
            case .timedOut(let t): why = "the ClientHello was not complete within \(format(t))"
            }
            return .refuse(Refusal(rule: .badRequest, reason: "incomplete ClientHello for \(host): " + why,
                                   reply: .tlsAlert))
        case .invalid:
            return .refuse(Refusal(rule: .badRequest, reason: "malformed or oversized ClientHello for \(host)",
                                   reply: .tlsAlert))
        case .noServerName:
            return .refuse(Refusal(rule: .sniMismatch, reason: "sni missing: a ClientHello without a server name for \(host)",
                                   reply: .tlsAlert))
        case .serverName(let sni):
            if case .success(let name) = Hostname.normalise(sni), name == host { return .pass }
            return .refuse(Refusal(rule: .sniMismatch, reason: "sni mismatch: \(sni) for \(host)", reply: .tlsAlert))
        }
    }

    static func format(_ t: TimeAmount) -> String {
        let ms = t.nanoseconds / 1_000_000
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}

/// Sits in front of the client side's (unlinked) splice handler of a CONNECT
/// tunnel to a TLS port and holds the client's bytes until
/// `ConnectFirstFlight` has decided. On a pass it hands them, and a FIN that
/// came with them, to the splice handler in order, leaves the pipeline and
/// starts the tunnel; on a refusal it answers, audits and closes both sides.
final class ConnectFirstFlightHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Added, but the HTTP decoder may still be handing over bytes it read
        /// behind the CONNECT head: collect, do not decide yet.
        case holding
        case inspecting
        case done
    }

    private let shared: ProxyShared
    private let target: NamedTarget
    private let upstream: any Channel
    private let startTunnel: () -> Void
    private var context: ChannelHandlerContext?
    private var state = State.holding
    private var held: ByteBuffer?
    private var inputClosed = false
    private var clientGone = false
    private var timer: Scheduled<Void>?

    /// `startTunnel` links or hands over the tunnel (`KernelTunnels.start`).
    init(shared: ProxyShared, target: NamedTarget, upstream: any Channel, startTunnel: @escaping () -> Void) {
        self.shared = shared
        self.target = target
        self.upstream = upstream
        self.startTunnel = startTunnel
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    /// Called once the HTTP handlers are gone and their leftover bytes have
    /// arrived here (the tick after they were removed).
    func begin() {
        guard state == .holding, let context else { return }
        state = .inspecting
        if clientGone {
            if settle(.closed, leave: false) { startTunnel() }
            return
        }
        let timeout = shared.firstRequestTimeout
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, self.state == .inspecting else { return }
            if self.settle(.timedOut(timeout), leave: true) { self.startTunnel() }
        }
        if settle(inputClosed ? .closed : nil, leave: true) {
            startTunnel()
        } else if state == .inspecting {
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state != .done else { return }  // refused: the rest is dropped
        var chunk = unwrapInboundIn(data)
        if held == nil {
            held = chunk
        } else {
            held?.writeBuffer(&chunk)
        }
        if state == .inspecting, settle(nil, leave: true) { startTunnel() }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // The splice handler behind holds the channel's own read requests
        // until it is linked, so this handler asks for the bytes it waits for.
        if state == .inspecting { context.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, state != .done {
            inputClosed = true  // passed on with the bytes, after them
            if state == .inspecting, settle(.closed, leave: true) { startTunnel() }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        var passed = false
        switch state {
        case .holding: clientGone = true  // begin() decides
        case .inspecting: passed = settle(.closed, leave: false)
        case .done: break
        }
        context.fireChannelInactive()
        // After the splice handler has seen the close: it forwards what it got
        // and then closes the upstream, as a tunnel whose client left does.
        if passed { startTunnel() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Decides on what is held. True when the tunnel passed: the bytes are
    /// with the splice handler and the caller must start the tunnel.
    /// `leave`: remove this handler (not while a close is on its way through).
    private func settle(_ ending: ConnectFirstFlight.Ending?, leave: Bool) -> Bool {
        let bytes = held?.readableBytesView ?? ByteBuffer().readableBytesView
        switch ConnectFirstFlight.decide(bytes, host: target.host, allowNonTLS: shared.allowNonTLSConnect,
                                         ending: ending) {
        case .needMore:
            return false
        case .pass:
            pass(leave: leave)
            return true
        case .refuse(let refusal):
            refuse(refusal)
            return false
        }
    }

    private func pass(leave: Bool) {
        state = .done
        timer?.cancel()
        guard let context else { return }
        if let buf = held {
            held = nil
            context.fireChannelRead(wrapInboundOut(buf))
        }
        if inputClosed { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        if leave { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
    }

    private func refuse(_ r: ConnectFirstFlight.Refusal) {
        state = .done
        timer?.cancel()
        held = nil
        shared.audit(EgressDecision(
            agent: shared.agent, mode: .connect, verdict: .deny, rule: r.rule.rawValue, denyRule: r.rule,
            host: target.host, port: target.port, reason: r.reason))
        upstream.close(promise: nil)
        guard let context else { return }
        let reply: ByteBuffer
        switch r.reply {
        case .tlsAlert: reply = context.channel.allocator.buffer(bytes: TLSAlert.accessDenied)
        case .denyResponse:
            reply = DenyResponse.buffer(r.rule, host: target.host, port: target.port, allocator: context.channel.allocator)
        case .none: reply = context.channel.allocator.buffer(capacity: 0)
        }
        context.writeAndFlush(wrapOutboundOut(reply)).assumeIsolated().whenComplete { [weak self] _ in
            self?.context?.close(promise: nil)
        }
    }
}
