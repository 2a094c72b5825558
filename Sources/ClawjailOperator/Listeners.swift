import ClawjailCore
import ClawjailSystem
import ClawjailRuntime

/// TCP listeners of the current network namespace, from /proc/net/tcp and tcp6 (the
/// kernel's own table: no `ss` to parse). /proc/net is per network namespace, so run
/// doctor in the namespace to be checked.
public enum Listeners {
    public struct Socket: Sendable, Hashable {
        public var address: String
        public var port: UInt16
        public var isLoopback: Bool
        public var inode: UInt64
    }

    /// The gateway ports of the agents that were found exposed in 2026.
    public static let gatewayPorts: [UInt16: String] = [
        18789: "the OpenClaw/Clawdbot gateway port",
        3000: "a common agent web UI port",
        8080: "a common agent HTTP gateway port",
    ]

    public static func listening() -> [Socket] {
        let v4 = (try? FileSystem.readText("/proc/net/tcp")) ?? ""
        let v6 = (try? FileSystem.readText("/proc/net/tcp6")) ?? ""
        return parse(v4, ipv6: false) + parse(v6, ipv6: true)
    }

    /// The LISTEN sockets of one table (ProcNetTCP parses it), formatted for doctor.
    public static func parse(_ text: String, ipv6: Bool) -> [Socket] {
        ProcNetTCP.listeners(text, ipv6: ipv6).map {
            Socket(address: format($0.address), port: $0.port, isLoopback: isLoopback($0.address), inode: $0.inode)
        }
    }

    static func isLoopback(_ b: [UInt8]) -> Bool {
        if b.count == 4 { return b[0] == 127 }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }
        // ::ffff:127.x.y.z
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return b[12] == 127 }
        return false
    }

    static func format(_ b: [UInt8]) -> String {
        if b.count == 4 { return b.map(String.init).joined(separator: ".") }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
            return "::ffff:" + b[12...].map(String.init).joined(separator: ".")
        }
        var groups: [String] = []
        for k in stride(from: 0, to: 16, by: 2) { groups.append(String(UInt16(b[k]) << 8 | UInt16(b[k + 1]), radix: 16)) }
        // Compress the longest run of zero groups.
        var best = (start: -1, length: 0)
        var k = 0
        while k < 8 {
            if groups[k] == "0" {
                var e = k
                while e < 8 && groups[e] == "0" { e += 1 }
                if e - k > best.length && e - k > 1 { best = (k, e - k) }
                k = e
            } else {
                k += 1
            }
        }
        guard best.start >= 0 else { return groups.joined(separator: ":") }
        let head = groups[0..<best.start].joined(separator: ":"), tail = groups[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }

    /// The processes that hold a socket inode: "python3 (pid 4242)". Bounded scan of /proc.
    public static func owners(of inode: UInt64) -> [String] {
        let target = "socket:[\(inode)]"
        var out: [String] = []
        let pids = ((try? FileSystem.listDirectory("/proc")) ?? []).compactMap { Int32($0) }.prefix(100_000)
        for pid in pids {
            guard let fds = try? FileSystem.listDirectory("/proc/\(pid)/fd") else { continue }
            for fd in fds.prefix(65536) where (try? FileSystem.readlink("/proc/\(pid)/fd/\(fd)")) == target {
                let comm = ((try? FileSystem.readText("/proc/\(pid)/comm", limit: 64)) ?? "?").trimming("\n")
                out.append("\(comm) (pid \(pid))")
                break
            }
            if out.count >= 4 { break }
        }
        return out
    }
}
