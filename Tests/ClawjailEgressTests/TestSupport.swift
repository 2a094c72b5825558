// Loopback-only test fixtures: a fake DNS server, an HTTP upstream, a raw TCP
// echo upstream, and a blocking TCP client. Nothing here sends a packet to
// any address other than 127.0.0.1.
import ClawjailCore
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
@testable import ClawjailEgress

let loopback = "127.0.0.1"

/// Thread-safe append-only log.
final class Recorder<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ t: T) { items.withLock { $0.append(t) } }
    var all: [T] { items.withLock { $0 } }
    var count: Int { items.withLock { $0.count } }
}

// MARK: - Fake DNS

enum FakeAnswer: Sendable {
    case records(a: [UInt32], aaaa: [UInt128], ttl: UInt32)
    case nxdomain
    case servfail
    /// UDP answers are truncated (TC, no records); TCP gets `records`.
    case truncated(a: [UInt32])
    case silent
}

/// A tiny authoritative-looking DNS server on 127.0.0.1 (UDP and TCP on the
/// same port). It records every question it is asked.
final class FakeDNSServer: Sendable {
    let queries = Recorder<(name: String, type: UInt16, tcp: Bool)>()
    let answer: @Sendable (_ name: String, _ type: UInt16, _ sequence: Int) -> FakeAnswer
    private let counter = Mutex<[String: Int]>([:])
    private let channels = Mutex<[any Channel]>([])
    private let boundPort = Mutex<Int>(0)

    var port: Int { boundPort.withLock { $0 } }

    init(answer: @escaping @Sendable (_ name: String, _ type: UInt16, _ sequence: Int) -> FakeAnswer) {
        self.answer = answer
    }

    var address: SocketAddress {
        try! SocketAddress(ipAddress: loopback, port: port)
    }

    func start(group: any EventLoopGroup) async throws {
        // UDP and TCP share one port number; another test may hold the TCP
        // side of a random port, so retry with a fresh one (bounded).
        var lastError: (any Error)?
        for _ in 0..<20 {
            let udp = try await DatagramBootstrap(group: group)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(FakeDNSUDPHandler(server: self)) }
                }
                .bind(host: loopback, port: 0).get()
            let port = udp.localAddress?.port ?? 0
            do {
                let tcp = try await ServerBootstrap(group: group)
                    .childChannelInitializer { ch in
                        ch.eventLoop.makeCompletedFuture {
                            try ch.pipeline.syncOperations.addHandler(FakeDNSTCPHandler(server: self))
                        }
                    }
                    .bind(host: loopback, port: port).get()
                boundPort.withLock { $0 = port }
                channels.withLock { $0 = [udp, tcp] }
                return
            } catch {
                lastError = error
                try? await udp.close()
            }
        }
        throw lastError ?? TestClientError.socket(0)
    }

    func stop() async {
        for c in channels.withLock({ $0 }) { try? await c.close() }
    }

    /// The reply to one query, read and written byte by byte here: DNSMessage is the
    /// codec under test, so the server the tests talk to must not be built from it too.
    /// nil for a query it cannot read and for `.silent`.
    func reply(to bytes: [UInt8], tcp: Bool) -> [UInt8]? {
        guard let q = Self.readQuery(bytes) else { return nil }
        queries.append((q.name, q.type, tcp))
        let seq = counter.withLock { c -> Int in
            let key = "\(q.name)/\(q.type)"
            defer { c[key, default: 0] += 1 }
            return c[key, default: 0]
        }
        // QR, AA and RA set, RD copied from the query.
        var flags: UInt16 = 0x8000 | 0x0400 | (q.flags & 0x0100) | 0x0080
        var ttl: UInt32 = 0
        var rdata: [[UInt8]] = []
        func v4(_ a: [UInt32]) -> [[UInt8]] { a.map { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } } }
        func v6(_ a: [UInt128]) -> [[UInt8]] { a.map { v in (0..<16).map { UInt8(truncatingIfNeeded: v >> (120 - 8 * $0)) } } }
        switch answer(q.name, q.type, seq) {
        case .silent:
            return nil
        case .nxdomain:
            flags |= 3
        case .servfail:
            flags |= 2
        case .truncated(let a):
            if !tcp { flags |= 0x0200 } else if q.type == 1 { rdata = v4(a) }
        case .records(let a, let aaaa, let t):
            ttl = t
            if q.type == 1 { rdata = v4(a) }
            if q.type == 28 { rdata = v6(aaaa) }
        }
        func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
        // Header: the query's id, one question, the answers, no other records.
        var out = u16(q.id) + u16(flags) + u16(1) + u16(UInt16(rdata.count)) + u16(0) + u16(0)
        out += q.question
        for r in rdata {
            // The owner name as a pointer to the question's (offset 12), as servers send it.
            out += [0xC0, 0x0C] + u16(q.type) + u16(1) + u16(UInt16(ttl >> 16)) + u16(UInt16(ttl & 0xffff)) + u16(UInt16(r.count)) + r
        }
        return out
    }

    /// A query's id and flags, its first question as sent (name, type, class), and that
    /// name as lower-case dotted text. nil unless the name is plain printable labels.
    static func readQuery(_ b: [UInt8]) -> (id: UInt16, flags: UInt16, question: [UInt8], name: String, type: UInt16)? {
        guard b.count >= 12, b[4] != 0 || b[5] != 0 else { return nil }
        var labels: [String] = []
        var i = 12
        while i < b.count, b[i] != 0 {
            let length = Int(b[i])
            guard length < 64, i + length < b.count else { return nil }
            let label = b[(i + 1)...(i + length)]
            guard label.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2E }) else { return nil }
            labels.append(String(decoding: label.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self))
            i += 1 + length
        }
        // The root label, then type and class.
        guard i + 4 < b.count else { return nil }
        return (UInt16(b[0]) << 8 | UInt16(b[1]), UInt16(b[2]) << 8 | UInt16(b[3]), Array(b[12...(i + 4)]),
                labels.joined(separator: "."), UInt16(b[i + 1]) << 8 | UInt16(b[i + 2]))
    }
}

private final class FakeDNSUDPHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let server: FakeDNSServer
    init(server: FakeDNSServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = unwrapInboundIn(data)
        // No reply is how the server plays `.silent` (and ignores what it cannot read).
        if let out = server.reply(to: Array(env.data.readableBytesView), tcp: false) {
            context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: env.remoteAddress,
                                                                    data: context.channel.allocator.buffer(bytes: out))),
                                  promise: nil)
        }
    }
}

private final class FakeDNSTCPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let server: FakeDNSServer
    var buffer: [UInt8] = []
    init(server: FakeDNSServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        buffer += Array(unwrapInboundIn(data).readableBytesView)
        while buffer.count >= 2 {
            let len = Int(buffer[0]) << 8 | Int(buffer[1])
            guard buffer.count >= 2 + len else { return }
            let msg = Array(buffer[2..<2 + len])
            buffer.removeFirst(2 + len)
            if let out = server.reply(to: msg, tcp: true) {
                var b = context.channel.allocator.buffer(capacity: out.count + 2)
                b.writeInteger(UInt16(out.count))
                b.writeBytes(out)
                context.writeAndFlush(wrapOutboundOut(b), promise: nil)
            }
        }
    }
}

// MARK: - HTTP upstream

struct ReceivedRequest: Sendable {
    var head: HTTPRequestHead
    var body: [UInt8]
}

/// An HTTP/1.1 origin server on 127.0.0.1 that records what it receives.
/// Paths: `/redirect` answers 302 to an unlisted host, `/chunked` streams a
/// chunked body, `/big?n=BYTES` sends n bytes, anything else says hello.
final class TestHTTPServer: Sendable {
    let requests = Recorder<ReceivedRequest>()
    let connections = Recorder<String>()
    private let channel = Mutex<(any Channel)?>(nil)

    var port: Int { channel.withLock { $0?.localAddress?.port ?? 0 } }

    func start(group: any EventLoopGroup) async throws {
        let ch = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                self.connections.append(ch.remoteAddress?.description ?? "?")
                return ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.configureHTTPServerPipeline()
                    try ch.pipeline.syncOperations.addHandler(TestHTTPHandler(server: self))
                }
            }
            .bind(host: loopback, port: 0).get()
        channel.withLock { $0 = ch }
    }

    func stop() async {
        if let c = channel.withLock({ $0 }) { try? await c.close() }
    }
}

private final class TestHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let server: TestHTTPServer
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    init(server: TestHTTPServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
        case .body(let b):
            body += Array(b.readableBytesView)
        case .end:
            guard let h = head else { return }
            server.requests.append(ReceivedRequest(head: h, body: body))
            respond(context: context, to: h)
        }
    }

    func respond(context: ChannelHandlerContext, to h: HTTPRequestHead) {
        var headers = HTTPHeaders()
        if h.uri == "/redirect" {
            headers.add(name: "Location", value: "http://evil.test/")
            headers.add(name: "Content-Length", value: "0")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .found, headers: headers))),
                          promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if h.uri == "/chunked" {
            headers.add(name: "Transfer-Encoding", value: "chunked")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                          promise: nil)
            for part in ["alpha-", "beta-", "gamma"] {
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: part)))), promise: nil)
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        var payload = ByteBuffer(string: "hello from upstream \(h.method) \(h.uri)")
        if h.uri.hasPrefix("/big?n="), let n = Int(h.uri.dropFirst(7)) {
            payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: n)
        }
        headers.add(name: "Content-Length", value: "\(payload.readableBytes)")
        headers.add(name: "X-Upstream", value: "yes")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                      promise: nil)
        if h.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(payload))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

// MARK: - Raw TCP echo upstream

/// Records the bytes each connection sends and echoes them back, prefixed
/// once with "ECHO:".
final class EchoServer: Sendable {
    let received = Recorder<[UInt8]>()
    let connections = Recorder<String>()
    private let channel = Mutex<(any Channel)?>(nil)

    var port: Int { channel.withLock { $0?.localAddress?.port ?? 0 } }

    func start(group: any EventLoopGroup) async throws {
        let ch = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                self.connections.append(ch.remoteAddress?.description ?? "?")
                return ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(EchoHandler(server: self))
                }
            }
            .bind(host: loopback, port: 0).get()
        channel.withLock { $0 = ch }
    }

    func stop() async {
        if let c = channel.withLock({ $0 }) { try? await c.close() }
    }
}

private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let server: EchoServer
    var first = true
    init(server: EchoServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let b = unwrapInboundIn(data)
        server.received.append(Array(b.readableBytesView))
        if first {
            first = false
            context.write(wrapOutboundOut(ByteBuffer(string: "ECHO:")), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(b), promise: nil)
    }
}

// MARK: - Blocking client

enum TestClientError: Error { case socket(Int32), connect(Int32) }

/// A plain blocking TCP client with a receive timeout, so tests read exactly
/// what a real client would.
final class TestClient {
    let fd: Int32

    init(port: Int, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClientError.socket(errno) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw TestClientError.connect(e)
        }
    }

    deinit { Glibc.close(fd) }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    func send(_ s: String) { send(Array(s.utf8)) }

    func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until `done` says so, EOF, or the timeout. Returns all bytes read.
    func read(until done: ([UInt8]) -> Bool) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while !done(out) {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    func readToEOF() -> [UInt8] { read(until: { _ in false }) }

    /// Reads until the peer closes or the receive timeout expires, and says
    /// which: a test that expects the proxy to hang up must not pass because
    /// its own timeout ran out.
    func readUntilClosed() -> (bytes: [UInt8], closed: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                out += buf[0..<n]
                continue
            }
            // 0: EOF; ECONNRESET is a close too. EAGAIN is the timeout.
            return (out, n == 0 || errno == ECONNRESET)
        }
    }

    /// Sends each byte in its own segment (TCP_NODELAY), pausing between them.
    func sendBytewise(_ bytes: [UInt8], pauseMicroseconds: UInt32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        for b in bytes {
            send([b])
            usleep(pauseMicroseconds)
        }
    }

    /// One HTTP response with a Content-Length (or to EOF without one).
    func readResponse() -> HTTPTestResponse? {
        var raw: [UInt8] = []
        raw = read(until: { $0.firstRange(of: Array("\r\n\r\n".utf8)) != nil })
        guard let r = raw.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let headText = String(decoding: raw[..<r.lowerBound], as: UTF8.self)
        var body = Array(raw[r.upperBound...])
        let resp = HTTPTestResponse(headText: headText, body: [])
        if let len = resp.header("content-length").flatMap({ Int($0) }) {
            if body.count < len {
                body += read(until: { body.count + $0.count >= len })
            }
            return HTTPTestResponse(headText: headText, body: Array(body.prefix(len)))
        }
        if resp.status == 200 && resp.header("transfer-encoding") == "chunked" {
            body += read(until: { (body + $0).firstRange(of: Array("0\r\n\r\n".utf8)) != nil })
            return HTTPTestResponse(headText: headText, body: body)
        }
        return HTTPTestResponse(headText: headText, body: body)
    }
}

struct HTTPTestResponse {
    let headText: String
    let body: [UInt8]

    var status: Int {
        let parts = headText.split(separator: " ", maxSplits: 2)
        return parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
    }

    func header(_ name: String) -> String? {
        for line in headText.split(separator: "\r\n").dropFirst() {
            guard let c = line.firstIndex(of: ":") else { continue }
            if line[..<c].lowercased() == name.lowercased() {
                return String(line[line.index(after: c)...].trimming(" \t"))
            }
        }
        return nil
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

// MARK: - Proxy harness

/// Treats exactly 127.0.0.1 as public so the local upstreams can be reached;
/// everything else (::ffff:127.0.0.1 included) keeps the production verdict.
let testGuard = AddressGuard { $0 == .v4(0x7F00_0001) ? .public : $0.classify() }

/// One proxy with its fake DNS server, audit log and dial log.
final class Harness {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let dns: FakeDNSServer
    let audit = Recorder<EgressDecision>()
    let dials = Recorder<String>()
    var proxy: EgressProxy?
    var endpoints = EgressEndpoints()

    init(answer: @escaping @Sendable (String, UInt16, Int) -> FakeAnswer) {
        dns = FakeDNSServer(answer: answer)
    }

    /// Starts DNS and the proxy. `configure` may adjust the config.
    func start(
        allow: [String], transparent: Bool = false, dnsResponder: Bool = false,
        configure: (inout EgressConfig) -> Void = { _ in }
    ) async throws {
        try await dns.start(group: group)
        var config = EgressConfig(
            allowlist: try Allowlist(parsing: allow), resolvers: [dns.address],
            connectTimeout: .seconds(2), dnsTimeout: .seconds(1), firstRequestTimeout: .seconds(2),
            addressGuard: testGuard, refuseConnectionsToSelf: false)
        let dials = self.dials
        // Records every dial and lets only 127.0.0.1 through, so even a broken
        // proxy cannot send a packet anywhere else.
        config.dialFilter = { addr in
            dials.append(addr.ipAddress ?? "?")
            return addr.ipAddress == loopback
        }
        configure(&config)
        let audit = self.audit
        let p = EgressProxy(config: config, agent: "test", audit: { audit.append($0) }, group: group)
        let local = try SocketAddress(ipAddress: loopback, port: 0)
        endpoints = try await p.start(
            proxyListener: .address(local),
            transparentHTTP: transparent ? .address(local) : nil,
            transparentTLS: transparent ? .address(local) : nil,
            dns: dnsResponder ? .address(local) : nil)
        proxy = p
    }

    var proxyPort: Int { endpoints.proxy?.port ?? 0 }

    func stop() async {
        await proxy?.shutdown()
        await dns.stop()
        try? await group.shutdownGracefully()
    }

    func denials() -> [EgressDecision] { audit.all.filter { $0.verdict == .deny } }

    /// Waits (bounded) for the audit log to satisfy `predicate`: allow records
    /// are written when a connection ends, slightly after the client sees EOF.
    func waitForAudit(_ predicate: ([EgressDecision]) -> Bool) async -> Bool {
        for _ in 0..<100 {
            if predicate(audit.all) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return predicate(audit.all)
    }
}

/// A TLS 1.3-style ClientHello record with an optional SNI.
func makeClientHello(sni: String?, padding: Int = 0) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    var body: [UInt8] = [3, 3] + [UInt8](repeating: 0xAB, count: 32)
    body += [32] + [UInt8](repeating: 0xCD, count: 32)
    body += u16(4) + [0x13, 0x01, 0x13, 0x02]
    body += [1, 0]
    var exts: [UInt8] = []
    if let sni {
        let name = Array(sni.utf8)
        let entry: [UInt8] = [0] + u16(name.count) + name
        let list = u16(entry.count) + entry
        exts += u16(0) + u16(list.count) + list
    }
    exts += u16(43) + u16(3) + [2, 3, 4]  // supported_versions: TLS 1.3
    if padding > 0 { exts += u16(21) + u16(padding) + [UInt8](repeating: 0, count: padding) }
    body += u16(exts.count) + exts
    let hs: [UInt8] = [1, UInt8(body.count >> 16 & 0xFF), UInt8(body.count >> 8 & 0xFF), UInt8(body.count & 0xFF)] + body
    return [22, 3, 1] + u16(hs.count) + hs
}

/// The same handshake message split over several TLS records.
func splitIntoRecords(_ record: [UInt8], pieces: Int) -> [UInt8] {
    let hs = Array(record[5...])
    let size = (hs.count + pieces - 1) / pieces
    var out: [UInt8] = []
    var i = 0
    while i < hs.count {
        let chunk = hs[i..<min(i + size, hs.count)]
        out += [22, 3, 1, UInt8(chunk.count >> 8), UInt8(chunk.count & 0xFF)] + chunk
        i += size
    }
    return out
}

// MARK: - Upgrade upstream

/// Reads one request head, answers `101 Switching Protocols`, then echoes.
final class UpgradeServer: Sendable {
    let heads = Recorder<String>()
    private let channel = Mutex<(any Channel)?>(nil)

    var port: Int { channel.withLock { $0?.localAddress?.port ?? 0 } }

    func start(group: any EventLoopGroup) async throws {
        let ch = try await ServerBootstrap(group: group)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(UpgradeHandler(server: self))
                }
            }
            .bind(host: loopback, port: 0).get()
        channel.withLock { $0 = ch }
    }

    func stop() async {
        if let c = channel.withLock({ $0 }) { try? await c.close() }
    }
}

private final class UpgradeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let server: UpgradeServer
    var head: [UInt8] = []
    var upgraded = false
    init(server: UpgradeServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let b = unwrapInboundIn(data)
        if upgraded {
            context.writeAndFlush(wrapOutboundOut(b), promise: nil)
            return
        }
        head += Array(b.readableBytesView)
        guard let r = head.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
        server.heads.append(String(decoding: head[..<r.lowerBound], as: UTF8.self))
        upgraded = true
        let rest = Array(head[r.upperBound...])
        context.write(wrapOutboundOut(ByteBuffer(string:
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nHELLO")), promise: nil)
        if !rest.isEmpty { context.write(wrapOutboundOut(ByteBuffer(bytes: rest)), promise: nil) }
        context.flush()
    }
}

/// A joinable pthread, for blocking work beside a test's async code.
final class TestThread: @unchecked Sendable {
    private final class Box { let run: () -> Void; init(_ r: @escaping () -> Void) { run = r } }
    private var thread = pthread_t()

    init(_ run: @escaping () -> Void) {
        let ctx = Unmanaged.passRetained(Box(run)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, ctx)
        precondition(rc == 0, "pthread_create: \(rc)")
    }

    func join() { pthread_join(thread, nil) }
}

/// A server that speaks first: it accepts one connection, sends its banner and
/// hangs up at once, so the banner and the FIN reach the proxy before anyone
/// asks to read.
final class BannerServer: Sendable {
    private let server: OneClientServer
    var port: Int { server.port }

    init(banner: [UInt8]) throws {
        server = try OneClientServer { c in
            _ = banner.withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }

    func stop() { server.stop() }
}

/// A loopback listener that serves one client on its own thread with `serve`,
/// then closes that client.
final class OneClientServer: @unchecked Sendable {
    let fd: Int32
    let port: Int
    private var thread: TestThread?

    init(_ serve: @escaping @Sendable (_ client: Int32) -> Void) throws {
        let (fd, port) = try boundLoopbackSocket(type: SOCK_STREAM)
        guard listen(fd, 4) == 0 else {
            Glibc.close(fd)
            throw TestClientError.socket(errno)
        }
        self.fd = fd
        self.port = port
        thread = TestThread {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            serve(c)
            Glibc.close(c)
        }
    }

    func stop() {
        Glibc.shutdown(fd, Int32(SHUT_RDWR))  // wakes the accept
        thread?.join()
        Glibc.close(fd)
    }
}

/// The byte at `offset` of a test stream: a pattern that shows any lost, repeated
/// or reordered block.
@inline(__always)
func patternByte(_ offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: (offset >> 10) &* 31 &+ offset) }

/// A server that pushes `total` pattern bytes at its one client as fast as the
/// kernel takes them, then closes. `accepted` is how far the kernel has taken them:
/// with a reader that does not read, it shows how much the path in between buffers.
final class FloodServer: Sendable {
    private final class Count: Sendable { let value = Atomic<Int>(0) }
    private let count = Count()
    private let server: OneClientServer
    var port: Int { server.port }
    var accepted: Int { count.value.load(ordering: .relaxed) }

    init(total: Int) throws {
        server = try OneClientServer { [count] c in
            var small: Int32 = 256 << 10
            setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            var off = 0
            while off < total {
                let n = min(chunk.count, total - off)
                for i in 0..<n { chunk[i] = patternByte(off + i) }
                var sent = 0
                while sent < n {
                    let r = chunk[sent..<n].withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if r <= 0 { return }
                    sent += r
                    count.value.wrappingAdd(r, ordering: .relaxed)
                }
                off += n
            }
            // Read what the client sent (a ClientHello, say): closing a socket
            // with unread bytes sends a reset, and a reset makes the path
            // discard the flood's tail before the client has read it.
            var sink = [UInt8](repeating: 0, count: 4096)
            while sink.withUnsafeMutableBytes({ recv(c, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        }
    }

    func stop() { server.stop() }
}
