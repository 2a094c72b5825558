import ClawjailCore
import NIOCore
import NIOPosix

/// Why a name could not be resolved. All of them become `dns-failure`.
enum DNSResolveError: Error, Hashable {
    case nxdomain
    case noAddresses
    case timeout
    case serverFailure(UInt16)
    case noResolvers
}

/// The proxy's own stub resolver: A and AAAA over UDP, TCP when the answer is
/// truncated. Nothing is cached, so every new upstream connection re-checks
/// the name's current addresses, and a denial is never remembered either.
/// Queries carry a random ID from a fresh socket (random source port) and
/// answers are accepted only from the server's address with the same ID and
/// question.
final class DNSResolver: Sendable {
    let servers: [SocketAddress]
    let timeout: TimeAmount

    init(servers: [SocketAddress], timeout: TimeAmount) {
        self.servers = servers
        self.timeout = timeout
    }

    /// Addresses for `name` (already normalised), IPv4 first. Tries the servers
    /// in order; a definite answer (addresses, NXDOMAIN, NODATA) ends the search.
    func resolve(_ name: String, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        guard let dnsName = DNSName(name) else { return loop.makeFailedFuture(DNSResolveError.nxdomain) }
        guard !servers.isEmpty else { return loop.makeFailedFuture(DNSResolveError.noResolvers) }
        return attempt(dnsName, serverIndex: 0, on: loop)
    }

    private func attempt(_ name: DNSName, serverIndex: Int, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        let server = servers[serverIndex]
        return queryServer(name, server: server, on: loop).flatMapError { error in
            let definite = (error as? DNSResolveError).map { $0 == .nxdomain || $0 == .noAddresses } ?? false
            if definite || serverIndex + 1 >= self.servers.count {
                return loop.makeFailedFuture(error)
            }
            return self.attempt(name, serverIndex: serverIndex + 1, on: loop)
        }
    }

    /// One server: A and AAAA in parallel over one UDP socket.
    private func queryServer(_ name: DNSName, server: SocketAddress, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        let idA = UInt16.random(in: 0...UInt16.max)
        var idAAAA = UInt16.random(in: 0...UInt16.max)
        if idAAAA == idA { idAAAA &+= 1 }
        let promiseA = loop.makePromise(of: DNSMessage.self)
        let promiseAAAA = loop.makePromise(of: DNSMessage.self)
        let pending: [UInt16: (UInt16, EventLoopPromise<DNSMessage>)] = [
            idA: (DNSType.a, promiseA), idAAAA: (DNSType.aaaa, promiseAAAA),
        ]
        let bindHost = server.protocol == .inet6 ? "::" : "0.0.0.0"
        let timeout = self.timeout
        let channelFuture = DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DNSUDPQueryHandler(server: server, name: name, pending: pending))
                }
            }
            .bind(host: bindHost, port: 0)

        channelFuture.whenComplete { result in
            switch result {
            case .failure(let error):
                promiseA.fail(error)
                promiseAAAA.fail(error)
            case .success(let channel):
                for (id, (type, _)) in pending {
                    let bytes = DNSMessage.query(id: id, name: name, type: type).encode()
                    let env = AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: bytes))
                    channel.write(env, promise: nil)
                }
                channel.flush()
                let timer = loop.scheduleTask(in: timeout) {
                    promiseA.fail(DNSResolveError.timeout)
                    promiseAAAA.fail(DNSResolveError.timeout)
                }
                let both = promiseA.futureResult.map { _ in () }.recover { _ in () }
                    .and(promiseAAAA.futureResult.map { _ in () }.recover { _ in () })
                both.whenComplete { _ in
                    timer.cancel()
                    channel.close(promise: nil)
                }
            }
        }

        // Truncated answers are retried over TCP; both must finish.
        let a = promiseA.futureResult.flatMap { self.completeOverTCP($0, name: name, type: DNSType.a, server: server, on: loop) }
        let aaaa = promiseAAAA.futureResult.flatMap {
            self.completeOverTCP($0, name: name, type: DNSType.aaaa, server: server, on: loop)
        }
        func settled(_ f: EventLoopFuture<DNSMessage>) -> EventLoopFuture<Result<DNSMessage, any Error>> {
            f.map { .success($0) }.recover { .failure($0) }
        }
        return settled(a).and(settled(aaaa)).flatMapThrowing { (ra, raaaa) in
            try DNSResolver.combine(name: name, a: ra, aaaa: raaaa)
        }
    }

    /// Addresses from whichever of the two answers has them. A failed AAAA
    /// query (timeout, SERVFAIL: common with broken middleboxes) does not
    /// spoil a good A answer: only addresses that were received are ever
    /// checked and dialled, so nothing can hide in the failed half.
    static func combine(
        name: DNSName, a: Result<DNSMessage, any Error>, aaaa: Result<DNSMessage, any Error>
    ) throws -> [IPAddress] {
        var addrs: [IPAddress] = []
        var nx = false
        var definite = 0
        for (result, type) in [(a, DNSType.a), (aaaa, DNSType.aaaa)] {
            guard case .success(let m) = result else { continue }
            switch m.rcode {
            case DNSRcode.noError:
                definite += 1
                addrs += m.addresses(for: name, type: type)
            case DNSRcode.nxDomain:
                definite += 1
                nx = true
            default:
                continue
            }
        }
        if !addrs.isEmpty { return addrs }
        if nx { throw DNSResolveError.nxdomain }
        if definite == 2 { throw DNSResolveError.noAddresses }
        // Something failed and nothing usable arrived: let the next server try.
        if case .failure(let e) = a { throw e }
        if case .failure(let e) = aaaa { throw e }
        throw DNSResolveError.serverFailure(DNSRcode.servFail)
    }

    private func completeOverTCP(
        _ m: DNSMessage, name: DNSName, type: UInt16, server: SocketAddress, on loop: any EventLoop
    ) -> EventLoopFuture<DNSMessage> {
        guard m.isTruncated else { return loop.makeSucceededFuture(m) }
        let id = UInt16.random(in: 0...UInt16.max)
        let promise = loop.makePromise(of: DNSMessage.self)
        let query = DNSMessage.query(id: id, name: name, type: type).encode()
        let timer = loop.scheduleTask(in: timeout) { promise.fail(DNSResolveError.timeout) }
        ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSTCPFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        DNSTCPQueryHandler(id: id, question: DNSQuestion(name: name, type: type), promise: promise))
                }
            }
            .connect(to: server)
            .whenComplete { result in
                switch result {
                case .failure(let error): promise.fail(error)
                case .success(let channel):
                    var buf = channel.allocator.buffer(capacity: query.count + 2)
                    buf.writeInteger(UInt16(query.count))
                    buf.writeBytes(query)
                    channel.writeAndFlush(buf, promise: nil)
                    promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                }
            }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }
}

/// Checks that `m` answers the question we asked.
private func answers(_ m: DNSMessage, id: UInt16, question: DNSQuestion) -> Bool {
    guard m.id == id, m.isResponse, m.opcode == 0, m.questions.count == 1 else { return false }
    let q = m.questions[0]
    return q.type == question.type && q.klass == question.klass && q.name.lowercased == question.name.lowercased
}

private final class DNSUDPQueryHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let server: SocketAddress
    let name: DNSName
    var pending: [UInt16: (UInt16, EventLoopPromise<DNSMessage>)]

    init(server: SocketAddress, name: DNSName, pending: [UInt16: (UInt16, EventLoopPromise<DNSMessage>)]) {
        self.server = server
        self.name = name
        self.pending = pending
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = unwrapInboundIn(data)
        // Off-path spoofing needs the right source address, port, ID and question.
        guard env.remoteAddress == server else { return }
        let bytes = Array(env.data.readableBytesView)
        guard let m = try? DNSMessage.decode(bytes), let (type, promise) = pending[m.id],
              answers(m, id: m.id, question: DNSQuestion(name: name, type: type)) else { return }
        pending[m.id] = nil
        promise.succeed(m)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and similar: fail fast instead of waiting for the timeout.
        for (_, (_, p)) in pending { p.fail(error) }
        pending = [:]
    }
}

/// Two-byte length-prefixed DNS messages (RFC 1035 §4.2.2).
private struct DNSTCPFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let len = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(len) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        guard let frame = buffer.readSlice(length: Int(len)) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
}

private final class DNSTCPQueryHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let id: UInt16
    let question: DNSQuestion
    let promise: EventLoopPromise<DNSMessage>

    init(id: UInt16, question: DNSQuestion, promise: EventLoopPromise<DNSMessage>) {
        self.id = id
        self.question = question
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).readableBytesView)
        guard let m = try? DNSMessage.decode(bytes), answers(m, id: id, question: question) else { return }
        promise.succeed(m)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSResolveError.timeout)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
