/// Symbolic constants a profile may use in a rule's `value` and `mask`, so that a
/// policy says `"CLONE_NEW_ALL"` or `"TIOCSTI"` rather than a number. Values are the
/// x86_64 Linux ABI's (the only arch clawjail builds filters for).
enum SeccompConstants {
    static let cloneNewAll: UInt64 = 0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000
        | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0000_0080

    static let symbols: [String: UInt64] = [
        // clone(2) namespace flags. CLONE_NEWTIME shares its bit with the exit signal
        // in clone() (signals >= 128 are invalid there), so masking it costs nothing.
        "CLONE_NEWNS": 0x0002_0000,
        "CLONE_NEWCGROUP": 0x0200_0000,
        "CLONE_NEWUTS": 0x0400_0000,
        "CLONE_NEWIPC": 0x0800_0000,
        "CLONE_NEWUSER": 0x1000_0000,
        "CLONE_NEWPID": 0x2000_0000,
        "CLONE_NEWNET": 0x4000_0000,
        "CLONE_NEWTIME": 0x0000_0080,
        "CLONE_NEW_ALL": cloneNewAll,
        // Terminal ioctls that inject input or reach the console.
        "TIOCSTI": 0x5412,
        "TIOCLINUX": 0x541C,
        // Address families.
        "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4,
        "AF_APPLETALK": 5, "AF_X25": 9, "AF_INET6": 10, "AF_KEY": 15, "AF_NETLINK": 16,
        "AF_PACKET": 17, "AF_RDS": 21, "AF_IRDA": 23, "AF_LLC": 26, "AF_CAN": 29, "AF_TIPC": 30,
        "AF_BLUETOOTH": 31, "AF_RXRPC": 33, "AF_ALG": 38, "AF_VSOCK": 40, "AF_KCM": 41,
        "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44, "AF_MCTP": 45,
        // Socket types (the low 4 bits of socket()'s type; the rest are SOCK_NONBLOCK/CLOEXEC).
        "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3, "SOCK_RDM": 4, "SOCK_SEQPACKET": 5,
        "SOCK_PACKET": 10, "SOCK_TYPE_MASK": 0xF,
        // Netlink protocols.
        "NETLINK_ROUTE": 0, "NETLINK_SOCK_DIAG": 4, "NETLINK_NFLOG": 5, "NETLINK_XFRM": 6,
        "NETLINK_SELINUX": 7, "NETLINK_AUDIT": 9, "NETLINK_NETFILTER": 12,
        "NETLINK_KOBJECT_UEVENT": 15, "NETLINK_GENERIC": 16,
        // personality(2) values and flags.
        "PER_LINUX": 0, "PER_LINUX32": 0x0008, "PER_QUERY": 0xFFFF_FFFF,
        "UNAME26": 0x0002_0000, "ADDR_NO_RANDOMIZE": 0x0004_0000, "READ_IMPLIES_EXEC": 0x0040_0000,
        "ADDR_COMPAT_LAYOUT": 0x0020_0000, "MMAP_PAGE_ZERO": 0x0010_0000,
    ]

    /// Resolves "A", "A|B" or a number written in a string ("0x10"); nil when a part
    /// is unknown.
    static func value(of expression: String) -> UInt64? {
        var result: UInt64 = 0
        for part in expression.split(separator: "|", omittingEmptySubsequences: false) {
            let name = String(part.trimming(" \t"))
            if let v = symbols[name] {
                result |= v
            } else if name.hasPrefix("0x"), let v = UInt64(name.dropFirst(2), radix: 16) {
                result |= v
            } else if let v = UInt64(name) {
                result |= v
            } else {
                return nil
            }
        }
        return result
    }
}
