import Testing
@testable import ClawjailRuntime

/// The ingress hint: the agent's server refused a connection from the peer address;
/// does the jail's tcp table show it bound to 127.0.0.1 only?
@Suite("ingress listener check")
struct ListenerCheckTests {
    static let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

    static func line(_ local: String, _ state: String = "0A", inode: Int = 7) -> String {
        "   0: \(local) 00000000:0000 \(state) 00000000:00000000 00:00000000 00000000     0        0 \(inode) 1 0 100 0 0 10 0\n"
    }

    @Test("127.0.0.1 alone on the port is loopback only; any other address, or none, is not")
    func loopbackOnly() {
        let lo = Self.line("0100007F:1F90"), any = Self.line("00000000:1F90"), other = Self.line("0100007F:0BB8")
        #expect(ListenerCheck.loopbackOnly(Self.header + lo, port: 8080))
        #expect(ListenerCheck.loopbackOnly(Self.header + lo + other, port: 8080), "another port does not matter")
        #expect(!ListenerCheck.loopbackOnly(Self.header + lo + any, port: 8080))
        #expect(!ListenerCheck.loopbackOnly(Self.header + other, port: 8080))
        #expect(!ListenerCheck.loopbackOnly(Self.header + Self.line("0200007F:1F90"), port: 8080), "127.0.0.2 is not where ingress would look")
        #expect(!ListenerCheck.loopbackOnly(Self.header + Self.line("0100007F:1F90", "01"), port: 8080), "an established socket is no listener")
        #expect(!ListenerCheck.loopbackOnly("", port: 8080))
    }
}
