import CNetlink
import ClawjailCore
import ClawjailSystem

/// One rtnetlink request: a libnl message plus what it does, for error messages.
final class RouteRequest {
    let message: OpaquePointer   // struct nl_msg *, owned
    let what: String

    fileprivate init(_ message: OpaquePointer, _ what: String) {
        self.message = message
        self.what = what
    }

    deinit { nlmsg_free(message) }
}

/// An rtnetlink socket. It belongs to the network namespace of the thread that
/// opened it, and every request sent on it acts there.
///
/// `perform` sends a whole batch in one sendmsg: the kernel runs the messages in
/// order (an error in one does not stop the rest) and queues one ACK each before
/// sendmsg returns, so a batch costs one round trip however long it is.
final class RouteSocket {
    private let sock: OpaquePointer   // struct nl_sock *
    private let context: String

    /// `context` names the namespace in error messages.
    init(in context: String) throws(ClawjailError) {
        self.context = context
        guard let sock = nl_socket_alloc() else {
            throw ClawjailError(.network, "allocating an rtnetlink socket in \(context)", cause: "out of memory")
        }
        let err = nl_connect(sock, NETLINK_ROUTE)
        if err < 0 {
            nl_socket_free(sock)
            throw ClawjailError(.network, "opening an rtnetlink socket in \(context)", cause: libnlText(err))
        }
        let fd = nl_socket_get_fd(sock)
        cj_nl_enable_ext_ack(fd)
        _ = cj_nl_set_recv_timeout(fd, 5)
        self.sock = sock
    }

    deinit { nl_socket_free(sock) }   // closes the fd too

    /// Sends `requests` as one batch and waits for every ACK. Throws for the first
    /// request (in batch order) that the kernel refused.
    func perform(_ requests: [RouteRequest]) throws(ClawjailError) {
        guard !requests.isEmpty else { return }
        var batch: [UInt8] = []
        var pending: [UInt32: Int] = [:]
        for (index, request) in requests.enumerated() {
            nl_complete_msg(sock, request.message)   // port id, sequence number, NLM_F_REQUEST|NLM_F_ACK
            guard let header = nlmsg_hdr(request.message) else { continue }
            let length = Int(header.pointee.nlmsg_len)
            pending[header.pointee.nlmsg_seq] = index
            UnsafeRawBufferPointer(start: header, count: length).withMemoryRebound(to: UInt8.self) { batch.append(contentsOf: $0) }
            batch.append(contentsOf: repeatElement(0, count: align4(length) - length))
        }
        let sent = batch.withUnsafeMutableBytes { nl_sendto(sock, $0.baseAddress, $0.count) }
        if sent < 0 {
            throw ClawjailError(.network, "\(requests[0].what): sending to rtnetlink in \(context)", cause: libnlText(sent))
        }

        var failures: [Int: NetlinkRefusal] = [:]
        var buffer = [UInt8](repeating: 0, count: 8192)
        let fd = FD(nl_socket_get_fd(sock))
        // Every ACK is already queued when sendmsg returns; the receive timeout
        // bounds the wait should the kernel ever not answer.
        while !pending.isEmpty {
            let received = buffer.withUnsafeMutableBytes { raw in Result { () throws(Errno) in try fd.receive(into: raw) } }
            let n: Int
            switch received {
            case .success(let count): n = count
            case .failure(let e):
                let first = pending.values.min() ?? 0
                throw ClawjailError(.network, "\(requests[first].what): waiting for the kernel's answer in \(context)", cause: e)
            }
            buffer.withUnsafeBytes { raw in
                Self.parseAcks(UnsafeRawBufferPointer(rebasing: raw[0..<n]), pending: &pending, failures: &failures)
            }
        }
        if let first = failures.keys.min(), let cause = failures[first] {
            throw ClawjailError(.network, "\(requests[first].what) in \(context)", cause: cause)
        }
    }

    /// Reads the NLMSG_ERROR messages (ACKs have error 0) in one datagram.
    private static func parseAcks(_ data: UnsafeRawBufferPointer, pending: inout [UInt32: Int], failures: inout [Int: NetlinkRefusal]) {
        let headerSize = 16, errSize = 20   // struct nlmsghdr, struct nlmsgerr
        var offset = 0
        while offset + headerSize <= data.count {
            let length = Int(data.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let type = data.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            let flags = data.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self)
            guard length >= headerSize, offset + length <= data.count else { return }
            if type == cj_nlmsg_error(), length >= headerSize + errSize {
                let body = offset + headerSize
                let error = data.loadUnaligned(fromByteOffset: body, as: Int32.self)
                let originalLength = Int(data.loadUnaligned(fromByteOffset: body + 4, as: UInt32.self))
                let originalSeq = data.loadUnaligned(fromByteOffset: body + 4 + 8, as: UInt32.self)
                if let index = pending.removeValue(forKey: originalSeq), error != 0 {
                    var cause = NetlinkRefusal(errno: Errno(rawValue: -error), kernelMessage: nil)
                    if flags & cj_nlm_f_ack_tlvs() != 0 {
                        // With NLM_F_CAPPED only the request's header is echoed.
                        let echoed = flags & 0x100 != 0 ? headerSize : align4(originalLength)
                        cause.kernelMessage = extAckMessage(data, from: body + 4 + echoed, to: offset + length)
                    }
                    failures[index] = cause
                }
            }
            offset += align4(length)
        }
    }

    private static func extAckMessage(_ data: UnsafeRawBufferPointer, from start: Int, to end: Int) -> String? {
        var offset = start
        while offset + 4 <= end {
            let length = Int(data.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = data.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & 0x3fff
            guard length >= 4, offset + length <= end else { return nil }
            if type == cj_nlmsgerr_attr_msg() {
                let bytes = data[(offset + 4)..<(offset + length)].prefix { $0 != 0 }
                return String(decoding: bytes, as: UTF8.self)
            }
            offset += align4(length)
        }
        return nil
    }
}

func align4(_ n: Int) -> Int { (n + 3) & ~3 }

/// The kernel's NLMSG_ERROR answer to one request: its errno and, with extended ACKs,
/// its own words ("Nexthop device is not up"). A ClawjailError's cause, so the errno
/// stays a value: `error.errno == .EEXIST`.
struct NetlinkRefusal: Error, ErrnoCarrying, CustomStringConvertible {
    var errno: Errno
    var kernelMessage: String?

    var errnoCode: Int32? { errno.rawValue }

    /// "File exists (EEXIST); kernel: ..."
    var description: String {
        errno.description + (kernelMessage.map { "; kernel: \($0)" } ?? "")
    }
}

/// libnl's text for one of its (negative) error codes.
func libnlText(_ code: Int32) -> String {
    guard let text = nl_geterror(code) else { return "libnl error \(code)" }
    return "\(String(cString: text)) (libnl \(code))"
}

// MARK: - Requests

/// Builders for the rtnetlink messages clawjail sends. They are put together with
/// libnl's message and attribute API rather than its rtnl_link/rtnl_addr objects:
/// the veth object's reference-counting contract changed between libnl releases
/// (rtnl_link_veth_get_peer takes a reference since 3.7), and a hand-built
/// RTM_NEWLINK keeps both ends' IFLA_NET_NS_FD explicit.
enum RouteMessages {
    static let loopbackIndex: Int32 = 1   // LOOPBACK_IFINDEX: lo is 1 in every netns

    private static func message(_ type: Int, _ flags: UInt16, _ what: String) throws(ClawjailError) -> RouteRequest {
        guard let msg = nlmsg_alloc_simple(Int32(type), Int32(flags)) else {
            throw ClawjailError(.network, "\(what): allocating a netlink message", cause: "out of memory")
        }
        return RouteRequest(msg, what)
    }

    private static func check(_ r: Int32, _ request: RouteRequest) throws(ClawjailError) {
        if r < 0 { throw ClawjailError(.network, "\(request.what): building the netlink message", cause: libnlText(r)) }
    }

    private static func append<T: BitwiseCopyable>(_ value: T, to request: RouteRequest) throws(ClawjailError) {
        var copy = value
        try check(nlmsg_append(request.message, &copy, MemoryLayout<T>.size, Int32(NLMSG_ALIGNTO)), request)
    }

    private static func putAddress(_ type: Int, _ address: IPAddress, _ request: RouteRequest) throws(ClawjailError) {
        let bytes = address.bytes
        try check(bytes.withUnsafeBytes { nla_put(request.message, Int32(type), Int32($0.count), $0.baseAddress) }, request)
    }

    private static func nest(_ type: Int, _ request: RouteRequest) throws(ClawjailError) -> UnsafeMutablePointer<nlattr> {
        guard let attr = nla_nest_start(request.message, Int32(type)) else {
            throw ClawjailError(.network, "\(request.what): building the netlink message", cause: "message too long")
        }
        return attr
    }

    private static func ifinfo(index: Int32 = 0, up: Bool = false) -> ifinfomsg {
        var ifi = ifinfomsg()
        ifi.ifi_family = UInt8(AF_UNSPEC)
        ifi.ifi_index = index
        if up {
            ifi.ifi_flags = cj_iff_up()
            ifi.ifi_change = cj_iff_up()
        }
        return ifi
    }

    /// Both ends of a jail's veth take the largest MTU: the link never forwards (the
    /// peer netns only holds the proxy's and DNS responder's sockets), so no path MTU
    /// is at stake, and 64 KiB frames cut the packets, and so the TCP work, per byte
    /// the proxy relays (A/B on one build, 3 alternations: download median 0.64 -> 0.74x
    /// direct, within this VM's noise of about +-0.15).
    static let vethMTU = 65535

    /// RTM_NEWLINK for a veth pair with each end created directly in its namespace
    /// (IFLA_NET_NS_FD on both), so neither end ever exists in the sender's netns.
    /// Both ends start down: IPv6 is turned off before they come up.
    static func newVeth(name: String, nsFD: Int32, peerName: String, peerNSFD: Int32, what: String) throws(ClawjailError) -> RouteRequest {
        let r = try message(Int(RTM_NEWLINK), cj_nlm_f_create() | cj_nlm_f_excl(), what)
        try append(ifinfo(), to: r)
        try check(nla_put_string(r.message, Int32(IFLA_IFNAME), name), r)
        try check(nla_put_u32(r.message, Int32(IFLA_NET_NS_FD), UInt32(bitPattern: nsFD)), r)
        try check(nla_put_u32(r.message, Int32(IFLA_MTU), UInt32(vethMTU)), r)
        let linkInfo = try nest(Int(IFLA_LINKINFO), r)
        try check(nla_put_string(r.message, Int32(IFLA_INFO_KIND), "veth"), r)
        let data = try nest(Int(IFLA_INFO_DATA), r)
        let peer = try nest(Int(VETH_INFO_PEER), r)
        try append(ifinfo(), to: r)   // VETH_INFO_PEER carries its own ifinfomsg
        try check(nla_put_string(r.message, Int32(IFLA_IFNAME), peerName), r)
        try check(nla_put_u32(r.message, Int32(IFLA_NET_NS_FD), UInt32(bitPattern: peerNSFD)), r)
        try check(nla_put_u32(r.message, Int32(IFLA_MTU), UInt32(vethMTU)), r)
        try check(nla_nest_end(r.message, peer), r)
        try check(nla_nest_end(r.message, data), r)
        try check(nla_nest_end(r.message, linkInfo), r)
        return r
    }

    /// RTM_SETLINK IFF_UP, by index.
    static func setUp(index: Int32, what: String) throws(ClawjailError) -> RouteRequest {
        let r = try message(Int(RTM_SETLINK), 0, what)
        try append(ifinfo(index: index, up: true), to: r)
        return r
    }

    /// RTM_DELLINK by name (the kernel looks IFLA_IFNAME up when the index is 0).
    static func deleteLink(name: String, what: String) throws(ClawjailError) -> RouteRequest {
        let r = try message(Int(RTM_DELLINK), 0, what)
        try append(ifinfo(), to: r)
        try check(nla_put_string(r.message, Int32(IFLA_IFNAME), name), r)
        return r
    }

    /// RTM_NEWADDR: `address/prefixLength` on the link with index `index`.
    static func addAddress(_ address: IPAddress, prefixLength: Int, index: Int32, what: String) throws(ClawjailError) -> RouteRequest {
        let r = try message(Int(RTM_NEWADDR), cj_nlm_f_create() | cj_nlm_f_excl(), what)
        var ifa = ifaddrmsg()
        ifa.ifa_family = UInt8(address.isV4 ? AF_INET : AF_INET6)
        ifa.ifa_prefixlen = UInt8(prefixLength)
        ifa.ifa_scope = UInt8(RT_SCOPE_UNIVERSE.rawValue)
        ifa.ifa_index = UInt32(bitPattern: index)
        try append(ifa, to: r)
        try putAddress(Int(IFA_LOCAL), address, r)
        try putAddress(Int(IFA_ADDRESS), address, r)
        return r
    }

    /// RTM_NEWROUTE in the main table: default via `gateway` out of `index`.
    static func addDefaultRoute(via gateway: IPAddress, index: Int32, what: String) throws(ClawjailError) -> RouteRequest {
        let r = try message(Int(RTM_NEWROUTE), cj_nlm_f_create() | cj_nlm_f_excl(), what)
        var rt = rtmsg()
        rt.rtm_family = UInt8(gateway.isV4 ? AF_INET : AF_INET6)
        rt.rtm_dst_len = 0
        rt.rtm_table = UInt8(RT_TABLE_MAIN.rawValue)
        rt.rtm_protocol = UInt8(RTPROT_BOOT)
        rt.rtm_scope = UInt8(RT_SCOPE_UNIVERSE.rawValue)
        rt.rtm_type = UInt8(RTN_UNICAST)
        try append(rt, to: r)
        try putAddress(Int(RTA_GATEWAY.rawValue), gateway, r)
        try check(nla_put_u32(r.message, Int32(RTA_OIF.rawValue), UInt32(bitPattern: index)), r)
        return r
    }

    /// `ip route replace local 0.0.0.0/0 dev lo table local`. REPLACE makes it
    /// idempotent: one peer netns may serve many jails.
    static func addLocalRouteForAll(what: String) throws(ClawjailError) -> RouteRequest {
        let r = try message(Int(RTM_NEWROUTE), cj_nlm_f_create() | cj_nlm_f_replace(), what)
        var rt = rtmsg()
        rt.rtm_family = UInt8(AF_INET)
        rt.rtm_dst_len = 0
        rt.rtm_table = UInt8(RT_TABLE_LOCAL.rawValue)
        rt.rtm_protocol = UInt8(RTPROT_BOOT)
        rt.rtm_scope = UInt8(RT_SCOPE_HOST.rawValue)
        rt.rtm_type = UInt8(RTN_LOCAL)
        try append(rt, to: r)
        try check(nla_put_u32(r.message, Int32(RTA_OIF.rawValue), UInt32(bitPattern: loopbackIndex)), r)
        return r
    }
}
