#if canImport(Glibc)
import Glibc
#endif
import ClawjailCore

/// The host's own addresses: the proxy refuses to dial them even when public, so a
/// name that resolves to this machine cannot reach a host service bound to 0.0.0.0.
enum HostAddresses {
    static func current() -> Set<IPAddress> {
        var out: Set<IPAddress> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return out }
        defer { freeifaddrs(list) }
        var p = list
        while let entry = p {
            if let sa = entry.pointee.ifa_addr {
                if sa.pointee.sa_family == sa_family_t(AF_INET) {
                    let v4 = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                    out.insert(.v4(UInt32(bigEndian: v4)))
                } else if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                    let bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                        withUnsafeBytes(of: s.pointee.sin6_addr) { Array($0) }
                    }
                    if let a = IPAddress(bytes: bytes) { out.insert(a) }
                }
            }
            p = entry.pointee.ifa_next
        }
        return out
    }
}
