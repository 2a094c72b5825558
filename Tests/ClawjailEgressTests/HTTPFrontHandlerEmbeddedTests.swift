// HTTPFrontHandler on EmbeddedChannels: the client pipeline the proxy builds, and
// upstream channels a fake dialer hands it. Exact bytes both ways, no sockets.
import ClawjailCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import ClawjailEgress

/// Gives the proxy EmbeddedChannels on the test's loop instead of connections.
/// Only ever used on that loop's (the test's) thread.
final class FakeDialer: UpstreamDialer, @unchecked Sendable {
    enum Outcome { case connect, hold, fail(DenyRule) }

    let loop: EmbeddedEventLoop
    var outcome = Outcome.connect
    var dials: [String] = []
    var upstreams: [EmbeddedChannel] = []
    var held: [(EventLoopPromise<DialResult>, EmbeddedChannel)] = []

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    func dial(
        name: String, port: UInt16, on loop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<DialResult> {
        dials.append("\(name):\(port)")
        // Completed on a later tick, as a real dial is: the request's end has
        // been decoded by then.
        let promise = self.loop.makePromise(of: DialResult.self)
        if case .fail(let rule) = outcome {
            self.loop.execute { promise.fail(DialFailure(rule: rule)) }
            return promise.futureResult
        }
        let channel = EmbeddedChannel(loop: self.loop)
        upstreams.append(channel)
        let hold: Bool
        if case .hold = outcome { hold = true } else { hold = false }
        initializer(channel).whenComplete { _ in
            channel.connect(to: try! SocketAddress(ipAddress: "127.0.0.1", port: Int(port)), promise: nil)
            if hold {
                self.held.append((promise, channel))
            } else {
                self.loop.execute { promise.succeed(DialResult(channel: channel, address: .v4(0x7F00_0001))) }
            }
        }
        return promise.futureResult
    }

    func completeHeld() {
        for (promise, channel) in held { promise.succeed(DialResult(channel: channel, address: .v4(0x7F00_0001))) }
        held = []
        loop.run()
    }
}

/// Counts the reads that reach the socket end of the client pipeline.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny
    var reads = 0
    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

/// One client connection of the proxy on an EmbeddedChannel.
final class EmbeddedProxy {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let dialer: FakeDialer
    let audit = Recorder<EgressDecision>()
    let reads = ReadCounter()

    init(allow: [String] = ["web.test", "plain.test:8443"], mode: ProxyMode = .forward,
         firstRequestTimeout: TimeAmount = .seconds(10)) throws {
        dialer = FakeDialer(loop: loop)
        client = EmbeddedChannel(loop: loop)
        let audit = self.audit
        let shared = ProxyShared(
            agent: "t", allowlist: try Allowlist(parsing: allow), dialer: dialer, audit: { audit.append($0) },
            syntheticRange: EgressConfig.defaultSyntheticRange, firstRequestTimeout: firstRequestTimeout,
            transparentHTTPPort: 80, transparentTLSPort: 443, tunnels: nil)
        try client.pipeline.syncOperations.addHandler(reads)
        try HTTPFrontHandler.addHandlers(to: client.pipeline.syncOperations, shared: shared, mode: mode)
        client.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 40000), promise: nil)
    }

    var upstream: EmbeddedChannel? { dialer.upstreams.last }

    /// Delivers bytes from the client and runs what they set off (dials, tunnel starts).
    func send(_ text: String) throws {
        try client.writeInbound(ByteBuffer(string: text))
        loop.run()
    }

    /// Everything the client has been sent (flushed) so far.
    func received() throws -> String { try Self.drain(client) }

    /// Everything the upstream has been sent (flushed) so far.
    func sentUpstream(_ index: Int = 0) throws -> String { try Self.drain(dialer.upstreams[index]) }

    static func drain(_ channel: EmbeddedChannel) throws -> String {
        var out = ""
        while let buf = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: buf) }
        return out
    }

    func finish() {
        for up in dialer.upstreams { _ = try? up.finish(acceptAlreadyClosed: true) }
        _ = try? client.finish(acceptAlreadyClosed: true)
    }
}

@Suite("HTTP proxy front handler (EmbeddedChannel)")
struct HTTPFrontHandlerEmbeddedTests {
    @Test("a forwarded request and its response, byte for byte, audited with its counts")
    func forward() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        try p.send("POST http://web.test/submit?x=1 HTTP/1.1\r\nHost: web.test\r\nProxy-Authorization: Basic eA==\r\n"
                   + "X-Forwarded-For: 1.2.3.4\r\nContent-Length: 3\r\n\r\nabc")
        #expect(p.dialer.dials == ["web.test:80"])
        #expect(try p.sentUpstream()
                == "POST /submit?x=1 HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\n\r\nabc")
        let up = try #require(p.upstream)
        try up.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello"))
        #expect(try p.received() == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello")
        let rec = try #require(p.audit.all.first)
        #expect(rec.verdict == .allow && rec.mode == .http && rec.rule == "web.test" && rec.host == "web.test")
        #expect(rec.bytesUp == 3 && rec.bytesDown == 5 && rec.upstreamIP == "127.0.0.1")
        #expect(p.client.isActive && up.isActive)  // kept for the next request

        try p.send("GET http://web.test/again HTTP/1.1\r\nHost: web.test\r\n\r\n")
        #expect(p.dialer.dials.count == 1)
        #expect(try p.sentUpstream() == "GET /again HTTP/1.1\r\nHost: web.test\r\n\r\n")
    }

    @Test("a chunked response is re-chunked by the encoder, trailers included")
    func chunked() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        try p.send("GET http://web.test/c HTTP/1.1\r\nHost: web.test\r\n\r\n")
        let up = try #require(p.upstream)
        try up.writeInbound(ByteBuffer(string:
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"))
        #expect(try p.received()
                == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
        #expect(p.client.isActive)
    }

    @Test("a response to HEAD that says chunked gets no chunk terminator")
    func headResponse() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        try p.send("HEAD http://web.test/h HTTP/1.1\r\nHost: web.test\r\n\r\n")
        let up = try #require(p.upstream)
        try up.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
        #expect(try p.received() == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(p.client.isActive)
    }

    @Test("a body delimited by the close says Connection: close and ends the connection")
    func closeDelimited() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        try p.send("GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n")
        let up = try #require(p.upstream)
        try up.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nsome bytes"))
        try up.close().wait()
        #expect(try p.received() == "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome bytes")
        #expect(!p.client.isActive)
        #expect(p.audit.all.first?.bytesDown == 10)
    }

    @Test("a refusal is the deny response, byte for byte, then the close")
    func denied() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        try p.send("GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n")
        let expected = DenyResponse.buffer(.notAllowlisted, host: "evil.test", port: 80, allocator: ByteBufferAllocator())
        #expect(try p.received() == String(buffer: expected))
        #expect(!p.client.isActive)
        #expect(p.dialer.dials.isEmpty)
        let rec = try #require(p.audit.all.first)
        #expect(rec.verdict == .deny && rec.rule == "not-allowlisted" && rec.host == "evil.test" && rec.port == 80)
    }

    @Test("garbage gets bad-request; a failed dial its rule; an upstream that hangs up, connect-failed",
          arguments: [DenyRule.badRequest, .dnsFailure, .connectFailed])
    func failures(rule: DenyRule) throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        var host: String? = "web.test"
        switch rule {
        case .badRequest:
            host = nil
            try p.send("NOT HTTP AT ALL\r\n\r\n")
        case .dnsFailure:
            p.dialer.outcome = .fail(.dnsFailure)
            try p.send("GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n")
        default:
            try p.send("GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n")
            try #require(p.upstream).close().wait()
        }
        let expected = DenyResponse.buffer(rule, host: host, port: host == nil ? nil : 80,
                                           allocator: ByteBufferAllocator())
        #expect(try p.received() == String(buffer: expected))
        #expect(!p.client.isActive)
        #expect(p.audit.all.map(\.rule) == [rule.rawValue])
    }

    @Test("the deny response through NIO's encoder is the same bytes as DenyResponse.buffer",
          arguments: DenyRule.allCases)
    func denyBytes(rule: DenyRule) throws {
        var config = HTTPResponseEncoder.Configuration()
        config.automaticallySetFramingHeaders = false
        let channel = EmbeddedChannel(handler: HTTPResponseEncoder(configuration: config))
        defer { _ = try? channel.finish() }
        let body = DenyResponse.body(rule, host: "h.example", port: 1, limit: 3)
        try channel.writeOutbound(HTTPServerResponsePart.head(DenyResponse.head(rule, bodyLength: body.utf8.count)))
        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: body))))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        let expected = DenyResponse.buffer(rule, host: "h.example", port: 1, limit: 3, allocator: ByteBufferAllocator())
        #expect(try EmbeddedProxy.drain(channel) == String(buffer: expected))
    }

    @Test("CONNECT: the 200, then the HTTP handlers leave and bytes cross both ways")
    func connect() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        try p.send("CONNECT plain.test:8443 HTTP/1.1\r\nHost: plain.test:8443\r\n\r\nearly")
        #expect(try p.received() == "HTTP/1.1 200 Connection Established\r\n\r\n")
        let up = try #require(p.upstream)
        #expect(try p.sentUpstream() == "early")
        let sync = p.client.pipeline.syncOperations
        #expect(throws: (any Error).self) { try sync.handler(type: HTTPResponseEncoder.self) }
        #expect(throws: (any Error).self) { try sync.handler(type: HTTPFrontHandler.self) }
        #expect(throws: (any Error).self) { try sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) }
        try p.send("ping")
        #expect(try p.sentUpstream() == "ping")
        try up.writeInbound(ByteBuffer(string: "pong"))
        #expect(try p.received() == "pong")
        try p.client.close().wait()
        let rec = try #require(p.audit.all.first)
        #expect(rec.mode == .connect && rec.verdict == .allow && rec.rule == "plain.test:8443")
        #expect(rec.bytesUp == 9 && rec.bytesDown == 4)
    }

    @Test("an accepted upgrade: the 101 as sent, then a tunnel")
    func upgrade() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        try p.send("GET http://web.test/ws HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        #expect(try p.sentUpstream()
                == "GET /ws HTTP/1.1\r\nHost: web.test\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n")
        let up = try #require(p.upstream)
        try up.writeInbound(ByteBuffer(string: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nHELLO"))
        p.loop.run()  // the tunnel starts on the next tick
        #expect(try p.received() == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nHELLO")
        try p.send("through")
        #expect(try p.sentUpstream() == "through")
    }

    @Test("while dialling, reads are held and the body waits; then it goes up, flushed")
    func dialling() throws {
        let p = try EmbeddedProxy()
        defer { p.finish() }
        p.dialer.outcome = .hold
        try p.send("POST http://web.test/ HTTP/1.1\r\nHost: web.test\r\nContent-Length: 8\r\n\r\nabcd")
        let before = p.reads.reads
        p.client.read()
        #expect(p.reads.reads == before)  // held
        p.dialer.completeHeld()
        #expect(p.reads.reads == before + 1)  // the held read goes out
        #expect(try p.sentUpstream() == "POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 8\r\n\r\nabcd")
        // The rest of the body is flushed as it arrives, not held back for the end.
        try p.send("ef")
        #expect(try p.sentUpstream() == "ef")
        try p.send("gh")
        #expect(try p.sentUpstream() == "gh")
    }

    @Test("a connection that sends no request head is closed at the first-request timeout")
    func firstRequestTimeout() throws {
        let p = try EmbeddedProxy(firstRequestTimeout: .seconds(2))
        defer { p.finish() }
        try p.send("GET ")
        p.loop.advanceTime(by: .seconds(1))
        #expect(p.client.isActive)
        p.loop.advanceTime(by: .seconds(2))
        #expect(!p.client.isActive)
        #expect(try p.received() == "")
    }

    @Test("transparent port 80 without a Host header to an address that is not ours: ip-literal")
    func transparentNoHost() throws {
        let p = try EmbeddedProxy(mode: .transparent)
        defer { p.finish() }
        try p.send("GET / HTTP/1.0\r\n\r\n")
        let expected = DenyResponse.buffer(.ipLiteral, host: nil, port: nil, allocator: ByteBufferAllocator())
        #expect(try p.received() == String(buffer: expected))
        #expect(p.audit.all.first?.mode == .transparentHTTP)
    }
}
