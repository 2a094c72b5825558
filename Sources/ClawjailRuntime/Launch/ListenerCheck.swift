import ClawjailCore
import ClawjailSystem

/// Finds out whether the agent's server listens on loopback only, by reading the
/// jail's /proc/net/tcp through the jail's init.
enum ListenerCheck {
    static func listensOnLoopbackOnly(initPid pid: pid_t, port: UInt16) -> Bool {
        guard let text = try? FileSystem.readText("/proc/\(pid)/net/tcp", limit: 1 << 20) else { return false }
        return loopbackOnly(text, port: port)
    }

    /// Whether the only IPv4 listeners on `port` are bound to 127.0.0.1 (and there is one).
    static func loopbackOnly(_ tcpTable: String, port: UInt16) -> Bool {
        let onPort = ProcNetTCP.listeners(tcpTable, ipv6: false).filter { $0.port == port }
        return !onPort.isEmpty && onPort.allSatisfy { $0.address == [127, 0, 0, 1] }
    }
}
