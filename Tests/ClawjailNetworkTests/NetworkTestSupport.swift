import ClawjailCore
import ClawjailNetwork
import ClawjailSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Raw IPv4 TCP sockets for the network tests. Every helper that opens a socket is
/// called inside `NetworkNamespace.run`, so the socket belongs to that namespace.
enum NetTest {
    static var isRoot: Bool { getuid() == 0 }

    /// The inode of the calling thread's netns (net:[inode]).
    static func threadNetnsInode() -> UInt64? {
        try? FileSystem.stat("/proc/thread-self/ns/net", followSymlinks: true).inode
    }

    /// Refuses to go on unless the calling thread is in `ns`: the tests dial
    /// addresses that must never be tried from the host's namespace.
    static func requireInside(_ ns: NetworkNamespace) throws(ClawjailError) {
        guard threadNetnsInode() == ns.inode else {
            throw ClawjailError(.internalError, "test thread is not inside \(ns)")
        }
    }

    static func sockaddr(_ ip: String, _ port: UInt16) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, ip, &sa.sin_addr)
        return sa
    }

    static func describe(_ sa: sockaddr_in) -> String {
        var sa = sa
        var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &sa.sin_addr, &buf, socklen_t(buf.count))
        let ip = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(ip):\(UInt16(bigEndian: sa.sin_port))"
    }

    static func tcpSocket() throws(ClawjailError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw ClawjailError(.internalError, "socket", cause: Errno.current) }
        return fd
    }

    /// A listener on 0.0.0.0:port in the calling thread's netns.
    static func listen(port: UInt16) throws(ClawjailError) -> Int32 {
        let fd = try tcpSocket()
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = sockaddr("0.0.0.0", port)
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if r != 0 || Glibc.listen(fd, 8) != 0 {
            let e = Errno.current
            close(fd)
            throw ClawjailError(.internalError, "listen on 0.0.0.0:\(port)", cause: e)
        }
        return fd
    }

    /// Non-blocking connect bounded by `timeoutMs`. Returns the connected fd, or the
    /// errno the connection failed with (ETIMEDOUT when the time ran out).
    static func connect(_ ip: String, _ port: UInt16, timeoutMs: Int32 = 2000) throws(ClawjailError) -> Result<Int32, Errno> {
        let fd = try tcpSocket()
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var sa = sockaddr(ip, port)
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if r != 0 {
            let e = Errno.current
            guard e.rawValue == EINPROGRESS else {
                close(fd)
                return .failure(e)
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&pfd, 1, timeoutMs) != 1 {
                close(fd)
                return .failure(Errno(rawValue: ETIMEDOUT))
            }
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
            if soError != 0 {
                close(fd)
                return .failure(Errno(rawValue: soError))
            }
        }
        _ = fcntl(fd, F_SETFL, flags)
        return .success(fd)
    }

    /// accept(2) bounded by `timeoutMs`.
    static func accept(_ listener: Int32, timeoutMs: Int32 = 2000) throws(ClawjailError) -> Int32 {
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) == 1 else {
            throw ClawjailError(.internalError, "no connection arrived within \(timeoutMs) ms")
        }
        let fd = Glibc.accept(listener, nil, nil)
        if fd < 0 { throw ClawjailError(.internalError, "accept", cause: Errno.current) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    static func localAddress(_ fd: Int32) -> String { name(fd, peer: false) }
    static func peerAddress(_ fd: Int32) -> String { name(fd, peer: true) }

    private static func name(_ fd: Int32, peer: Bool) -> String {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let r = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) {
                peer ? getpeername(fd, $0, &len) : getsockname(fd, $0, &len)
            }
        }
        return r == 0 ? describe(sa) : "?"
    }

    /// One byte each way, bounded in time by SO_RCVTIMEO.
    static func exchangeByte(_ a: Int32, _ b: Int32) -> Bool {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        for fd in [a, b] { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) }
        var out: UInt8 = 0x2a, back: UInt8 = 0
        guard write(a, &out, 1) == 1, read(b, &back, 1) == 1, back == 0x2a else { return false }
        out = 0x17
        guard write(b, &out, 1) == 1, read(a, &back, 1) == 1, back == 0x17 else { return false }
        return true
    }

    /// Lines of a /proc/thread-self/net file: the calling thread's namespace.
    static func procNet(_ file: String) -> [String] {
        guard let text = try? FileSystem.readText("/proc/thread-self/net/\(file)") else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    /// IPv4 routes of the calling thread's netns as "dev dest/len via gw" (main table).
    static func ipv4Routes() -> [String] {
        procNet("route").dropFirst().compactMap { line in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard f.count >= 8, let dst = UInt32(f[1], radix: 16), let gw = UInt32(f[2], radix: 16),
                  let mask = UInt32(f[7], radix: 16) else { return nil }
            // /proc/net/route prints the raw (network-order) words in host order.
            func ip(_ v: UInt32) -> String { "\(v & 0xff).\((v >> 8) & 0xff).\((v >> 16) & 0xff).\(v >> 24)" }
            return "\(f[0]) \(ip(dst))/\(mask.nonzeroBitCount) via \(ip(gw))"
        }
    }

    /// Link names of the calling thread's netns (/proc/thread-self/net/dev).
    static func linkNames() -> [String] {
        procNet("dev").dropFirst(2).compactMap { line in
            line.split(separator: ":").first.map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }

    /// Interfaces with an IPv6 address in the calling thread's netns.
    static func ipv6AddressedLinks() -> Set<String> {
        Set(procNet("if_inet6").compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).last.map(String.init) })
    }

    static func sysctl(_ path: String) -> String? {
        (try? FileSystem.readText("/proc/sys/\(path)"))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Links of the host's namespace, from `ip -o -d link` (a check only).
    struct HostLink: Hashable {
        let index: Int
        let name: String
        let isVeth: Bool
    }

    static func hostLinks() throws -> [HostLink] {
        let out = try run("/usr/sbin/ip", ["-o", "-d", "link", "show"])
        return out.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", maxSplits: 2).map { $0.trimmingCharacters(in: .whitespaces) }
            guard f.count == 3, let index = Int(f[0]) else { return nil }
            let name = String(f[1].split(separator: "@").first ?? "")
            return HostLink(index: index, name: name, isVeth: line.contains(" veth "))
        }
    }

    static func run(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// Polls `condition` every 10 ms for at most `seconds`.
    static func eventually(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = ProcessInfoLite.monotonicNanoseconds + UInt64(seconds * 1e9)
        while ProcessInfoLite.monotonicNanoseconds < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }
}
