// A request body bigger than every buffer between the client and the origin,
// through the proxy on loopback.
import ClawjailCore
import Testing
@testable import ClawjailEgress

@Suite("HTTP proxy request bodies (loopback)")
struct ProxyRequestBodyTests {
    @Test("a request body larger than the socket buffers reaches the origin whole")
    func largeBody() async throws {
        let h = Harness { name, _, _ in name == "web.test" ? .records(a: [0x7F00_0001], aaaa: [], ttl: 30) : .nxdomain }
        let web = TestHTTPServer()
        var sender: TestThread?
        do {
            try await web.start(group: h.group)
            try await h.start(allow: ["web.test:\(web.port)"])
            let size = 4 << 20
            let c = try TestClient(port: h.proxyPort, timeoutSeconds: 10)
            let head = "POST http://web.test:\(web.port)/upload HTTP/1.1\r\nHost: web.test:\(web.port)\r\n"
                + "Content-Length: \(size)\r\n\r\n"
            nonisolated(unsafe) let client = c
            sender = TestThread { client.send(Array(head.utf8) + [UInt8](repeating: 0x61, count: size)) }
            let r = c.readResponse()
            #expect(r?.status == 200)
            #expect(r?.bodyText == "hello from upstream POST /upload")
            #expect(web.requests.all.first?.body.count == size)
            #expect(await h.waitForAudit { $0.contains { $0.mode == .http && $0.bytesUp == UInt64(size) } })
        } catch {
            Issue.record(error)
        }
        // Stopping the proxy also frees a sender that a stalled proxy left blocked.
        await web.stop()
        await h.stop()
        sender?.join()
    }
}
