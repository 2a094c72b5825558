#if canImport(Glibc)
import Glibc
#endif
import ClawjailCore

extension Sockets {
    /// getifaddrs(3): the IPv4 and IPv6 addresses of this network namespace's
    /// interfaces; empty when the list cannot be read.
    public static func interfaceAddresses() -> [IPAddress] {
        var out: [IPAddress] = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return out }
        defer { freeifaddrs(list) }
        var p = list
        while let entry = p {
            if let sa = entry.pointee.ifa_addr {
                if sa.pointee.sa_family == sa_family_t(AF_INET) {
                    let v4 = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                    out.append(.v4(UInt32(bigEndian: v4)))
                } else if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                    let bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                        withUnsafeBytes(of: s.pointee.sin6_addr) { Array($0) }
                    }
                    if let a = IPAddress(bytes: bytes) { out.append(a) }
                }
            }
            p = entry.pointee.ifa_next
        }
        return out
    }
}
