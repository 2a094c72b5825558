import ClawjailCore
import NIOCore

/// Stable synthetic addresses for allowlisted names. The address is a keyed
/// hash of the name into the range, so it is stable for the proxy's life and
/// needs no table that a wildcard rule (`*.example.com` allows unboundedly many
/// names) could grow. Collisions are harmless: the transparent listeners take
/// the destination from SNI/Host, never from the address.
struct SyntheticAddresses: Sendable {
    let range: IPPrefix
    let key: UInt64

    init(range: IPPrefix, key: UInt64 = UInt64.random(in: 0...UInt64.max)) {
        self.range = range
        self.key = key
    }

    /// nil if the range is not IPv4.
    func address(for name: String) -> UInt32? {
        guard case .v4(let base) = range.address else { return nil }
        // FNV-1a over the key and the lower-cased name.
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ key
        for c in name.lowercased().utf8 {
            h ^= UInt64(c)
            h &*= 0x0000_0100_0000_01B3
        }
        h ^= h >> 33
        let size = range.size
        // Skip the network and broadcast addresses when the range is big enough.
        guard size > 2 else { return base }
        return base &+ 1 &+ UInt32(truncatingIfNeeded: h % (size - 2))
    }
}

/// Folds repeated identical DNS decisions: at most one record per
/// (name, verdict) per second, and at most `globalPerSecond` records in all,
/// so a jail that queries random names cannot flood the audit log. Suppressed
/// decisions are counted and reported by `flush()` (called every second).
final class DNSAuditLimiter {
    private struct Entry {
        var windowStart: NIODeadline
        var suppressed: Int
        var template: EgressDecision
    }

    private var entries: [String: Entry] = [:]
    private var globalWindowStart = NIODeadline.uptimeNanoseconds(0)
    private var globalCount = 0
    private var globalSuppressed = 0
    private let globalPerSecond: Int
    private let emit: (EgressDecision) -> Void
    private let window = TimeAmount.seconds(1)

    init(globalPerSecond: Int = 100, emit: @escaping (EgressDecision) -> Void) {
        self.globalPerSecond = globalPerSecond
        self.emit = emit
    }

    func record(_ d: EgressDecision, now: NIODeadline = .now()) {
        let key = d.verdict.rawValue + " " + d.host
        if var e = entries[key], now - e.windowStart < window {
            e.suppressed += 1
            entries[key] = e
            return
        }
        if now - globalWindowStart >= window {
            globalWindowStart = now
            globalCount = 0
        }
        guard globalCount < globalPerSecond else {
            globalSuppressed += 1
            return
        }
        globalCount += 1
        var out = d
        if let old = entries[key] { out.suppressed = old.suppressed }
        entries[key] = Entry(windowStart: now, suppressed: 0, template: d)
        emit(out)
    }

    /// Reports suppressed counts of finished windows and forgets them.
    func flush(now: NIODeadline = .now()) {
        for (key, e) in entries where now - e.windowStart >= window {
            if e.suppressed > 0 {
                var d = e.template
                d.suppressed = e.suppressed
                emit(d)
            }
            entries[key] = nil
        }
        if globalSuppressed > 0 && now - globalWindowStart >= window {
            emit(EgressDecision(
                agent: "", mode: .dns, verdict: .deny, rule: "rate-limited", host: "*", port: 53,
                suppressed: globalSuppressed))
            globalSuppressed = 0
        }
    }

    var trackedNames: Int { entries.count }
}

/// The jail's DNS server. Answers A queries for allowlisted names with a
/// synthetic address, gives allowlisted names NOERROR/NODATA for every other
/// type (AAAA included, so clients fall back to IPv4 at once), and NXDOMAIN
/// for everything else. It never forwards a query anywhere: a name that is not
/// allowlisted cannot leak out through DNS.
final class DNSResponderHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    static let answerTTL: UInt32 = 60

    private let shared: ProxyShared
    private let synthetic: SyntheticAddresses
    private var limiter: DNSAuditLimiter?
    private var flushTask: RepeatedTask?

    init(shared: ProxyShared, synthetic: SyntheticAddresses) {
        self.shared = shared
        self.synthetic = synthetic
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let shared = self.shared
        let agent = shared.agent
        let limiter = DNSAuditLimiter { d in
            var d = d
            d.agent = agent
            shared.audit(d)
        }
        self.limiter = limiter
        let bound = NIOLoopBound(limiter, eventLoop: context.eventLoop)
        flushTask = context.eventLoop.scheduleRepeatedTask(
            initialDelay: TimeAmount.seconds(1), delay: TimeAmount.seconds(1)
        ) { _ in bound.value.flush() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        flushTask?.cancel()
        limiter?.flush(now: .now() + .seconds(2))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = unwrapInboundIn(data)
        let bytes = Array(env.data.readableBytesView)
        guard let reply = respond(to: bytes) else { return }
        let out = AddressedEnvelope(remoteAddress: env.remoteAddress, data: context.channel.allocator.buffer(bytes: reply))
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A UDP socket survives per-datagram errors (e.g. ICMP unreachable).
    }

    /// The reply for one datagram, or nil to stay silent.
    func respond(to bytes: [UInt8]) -> [UInt8]? {
        guard let (id, flags) = DNSMessage.decodeHeader(bytes) else { return nil }
        // Never answer a response: two responders must not ping-pong.
        guard flags & DNSMessage.qrBit == 0 else { return nil }
        let rd = flags & DNSMessage.rdBit
        let opcode = (flags >> 11) & 0xF
        func header(_ rcode: UInt16, aa: Bool = false) -> UInt16 {
            DNSMessage.qrBit | (opcode << 11) | (aa ? DNSMessage.aaBit : 0) | rd | DNSMessage.raBit | rcode
        }
        guard opcode == 0 else {
            return DNSMessage(id: id, flags: header(DNSRcode.notImp)).encode()
        }
        guard let query = try? DNSMessage.decode(bytes), query.questions.count == 1 else {
            return DNSMessage(id: id, flags: header(DNSRcode.formErr)).encode()
        }
        let q = query.questions[0]
        var reply = DNSMessage(id: id, flags: header(DNSRcode.noError), questions: [q])
        guard q.klass == DNSType.classIN else {
            reply.flags = header(DNSRcode.refused)
            return reply.encode()
        }
        let text = q.name.text ?? ""
        let rule = q.name.text.flatMap { shared.allowlist.ruleForName($0) }
        guard let rule else {
            reply.flags = header(DNSRcode.nxDomain)
            let deny: DenyRule
            switch Allowlist.screen(text) {
            case .failure(let r): deny = r
            case .success: deny = .notAllowlisted
            }
            limiter?.record(EgressDecision(
                agent: shared.agent, mode: .dns, verdict: .deny, rule: deny.rawValue, denyRule: deny,
                host: text.isEmpty ? "." : text, port: 53))
            return reply.encode()
        }
        reply.flags = header(DNSRcode.noError, aa: true)
        if q.type == DNSType.a || q.type == DNSType.any, let addr = synthetic.address(for: text) {
            reply.answers = [DNSRecord.a(q.name, addr, ttl: DNSResponderHandler.answerTTL)]
        }
        limiter?.record(EgressDecision(
            agent: shared.agent, mode: .dns, verdict: .allow, rule: rule.description, host: text, port: 53))
        return reply.encode()
    }
}
