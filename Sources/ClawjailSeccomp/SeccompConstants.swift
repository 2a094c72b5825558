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

/// errno names for profile values and probe output (Linux, x86_64).
enum ErrnoNames {
    static let byName: [String: Int32] = [
        "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7, "ENOEXEC": 8,
        "EBADF": 9, "ECHILD": 10, "EAGAIN": 11, "ENOMEM": 12, "EACCES": 13, "EFAULT": 14, "ENOTBLK": 15,
        "EBUSY": 16, "EEXIST": 17, "EXDEV": 18, "ENODEV": 19, "ENOTDIR": 20, "EISDIR": 21, "EINVAL": 22,
        "ENFILE": 23, "EMFILE": 24, "ENOTTY": 25, "ETXTBSY": 26, "EFBIG": 27, "ENOSPC": 28, "ESPIPE": 29,
        "EROFS": 30, "EMLINK": 31, "EPIPE": 32, "EDOM": 33, "ERANGE": 34, "EDEADLK": 35,
        "ENAMETOOLONG": 36, "ENOLCK": 37, "ENOSYS": 38, "ENOTEMPTY": 39, "ELOOP": 40, "ENOMSG": 42,
        "EIDRM": 43, "ENODATA": 61, "ETIME": 62, "EPROTO": 71, "EBADMSG": 74, "EOVERFLOW": 75,
        "EILSEQ": 84, "ENOTSOCK": 88, "EDESTADDRREQ": 89, "EMSGSIZE": 90, "EPROTOTYPE": 91,
        "ENOPROTOOPT": 92, "EPROTONOSUPPORT": 93, "ESOCKTNOSUPPORT": 94, "EOPNOTSUPP": 95,
        "ENOTSUP": 95, "EPFNOSUPPORT": 96, "EAFNOSUPPORT": 97, "EADDRINUSE": 98, "EADDRNOTAVAIL": 99,
        "ENETDOWN": 100, "ENETUNREACH": 101, "ENETRESET": 102, "ECONNABORTED": 103, "ECONNRESET": 104,
        "ENOBUFS": 105, "EISCONN": 106, "ENOTCONN": 107, "ETIMEDOUT": 110, "ECONNREFUSED": 111,
        "EHOSTUNREACH": 113, "EALREADY": 114, "EINPROGRESS": 115, "ESTALE": 116, "EDQUOT": 122,
        "ECANCELED": 125, "ENOKEY": 126,
    ]

    static func name(_ value: Int32) -> String {
        if value == 0 { return "0" }
        if value == 95 { return "EOPNOTSUPP" }
        return byName.first { $0.value == value }?.key ?? "errno \(value)"
    }
}
