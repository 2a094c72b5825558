/// The kernel's table of TCP sockets, /proc/net/tcp and /proc/net/tcp6, parsed from
/// text. One parser for doctor's listener check and the ingress hint (is the agent's
/// server bound to loopback only?); reading the file is the caller's business, so this
/// stays pure.
public enum ProcNetTCP {
    public struct Listener: Sendable, Hashable {
        /// The local address in network byte order: 4 bytes (tcp) or 16 (tcp6).
        public var address: [UInt8]
        public var port: UInt16
        public var inode: UInt64
    }

    /// The sockets in state LISTEN. Lines: "sl local_address rem_address st ... uid
    /// timeout inode ..." after one header line; state 0A is LISTEN. Lines that do not
    /// parse are skipped.
    public static func listeners(_ text: String, ipv6: Bool) -> [Listener] {
        var out: [Listener] = []
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 10, f[3] == "0A" else { continue }
            let local = f[1].split(separator: ":")
            guard local.count == 2, let port = UInt16(local[1], radix: 16), let inode = UInt64(f[9]),
                  let bytes = addressBytes(local[0], ipv6: ipv6) else { continue }
            out.append(Listener(address: bytes, port: port, inode: inode))
        }
        return out
    }

    /// The kernel prints each 32-bit word of the address in host byte order (%08X).
    static func addressBytes(_ hex: Substring, ipv6: Bool) -> [UInt8]? {
        guard hex.count == (ipv6 ? 32 : 8) else { return nil }
        var bytes: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 8)
            guard let word = UInt32(hex[i..<j], radix: 16) else { return nil }
            let host = UInt32(littleEndian: word)
            bytes += [UInt8(host & 0xff), UInt8(host >> 8 & 0xff), UInt8(host >> 16 & 0xff), UInt8(host >> 24)]
            i = j
        }
        return bytes
    }
}
