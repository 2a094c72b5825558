#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// Sockets the supervisor creates itself: listeners inside a peer network namespace
/// (created on a thread that entered it), the jail-side connections of ingress, and
/// the host-side ingress Unix sockets.
public enum Sockets {
    /// if_nametoindex(3) in the calling thread's network namespace: one ioctl on a
    /// throw-away socket, cheaper than an RTM_GETLINK round trip.
    public static func interfaceIndex(of name: String) throws(Errno) -> UInt32 {
        let index = if_nametoindex(name)
        if index == 0 { throw Errno.current }
        return index
    }

    static func ipv4(_ address: String, _ port: UInt16) throws(Errno) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &sa.sin_addr) == 1 else { throw .EINVAL }
        return sa
    }

    private static func bind(_ fd: FD, _ sa: sockaddr_in) throws(Errno) {
        var sa = sa
        _ = try syscallRetrying {
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    private static func make(_ type: Int32) throws(Errno) -> FD {
        FD(try syscallRetrying { socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0) })
    }

    public static func tcpListener(address: String, port: UInt16, backlog: Int32 = 256) throws(Errno) -> FD {
        let fd = try make(Int32(SOCK_STREAM.rawValue))
        do {
            var one: Int32 = 1
            _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            try bind(fd, try ipv4(address, port))
            _ = try syscallRetrying { listen(fd.rawValue, backlog) }
            return fd
        } catch {
            fd.close()
            throw error
        }
    }

    public static func udpSocket(address: String, port: UInt16) throws(Errno) -> FD {
        let fd = try make(Int32(SOCK_DGRAM.rawValue))
        do {
            try bind(fd, try ipv4(address, port))
            return fd
        } catch {
            fd.close()
            throw error
        }
    }

    /// A blocking connect bounded by `timeoutMs`; the returned socket is blocking.
    public static func tcpConnect(address: String, port: UInt16, timeoutMs: Int32) throws(Errno) -> FD {
        let fd = try make(Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        do throws(Errno) {
            var sa = try ipv4(address, port)
            let r = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if r < 0 {
                let e = Errno.current
                guard e.rawValue == EINPROGRESS else { throw e }
                var p = pollfd(fd: fd.rawValue, events: Int16(POLLOUT), revents: 0)
                let n = poll(&p, 1, timeoutMs)
                if n == 0 { throw Errno(rawValue: ETIMEDOUT) }
                var err: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                _ = getsockopt(fd.rawValue, SOL_SOCKET, SO_ERROR, &err, &len)
                if err != 0 { throw Errno(rawValue: err) }
            }
            var one: Int32 = 1
            _ = setsockopt(fd.rawValue, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            try fd.setNonBlocking(false)
            return fd
        } catch {
            fd.close()
            throw error
        }
    }

    /// A listening Unix socket at `path` with exactly `mode` and `gid`, from the moment
    /// it is visible: it is bound inside a fresh 0700 directory next to `path`, given its
    /// mode and group there, and renamed into place (no umask race, no window where
    /// anyone else can connect).
    public static func unixListener(path: String, mode: mode_t, gid: gid_t?) throws(Errno) -> FD {
        let parent = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        var rnd: UInt32 = 0
        _ = withUnsafeMutableBytes(of: &rnd) { cj_sys_getrandom($0.baseAddress, $0.count) }
        let staging = parent + "/.clawjail-\(getpid())-\(rnd)"
        try FileSystem.mkdir(staging, mode: 0o700)
        defer { try? FileSystem.rmdir(staging) }
        let tmp = staging + "/s"
        guard tmp.utf8.count < 108, path.utf8.count < 108 else { throw Errno(rawValue: ENAMETOOLONG) }
        let fd = FD(try syscallRetrying { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
        do throws(Errno) {
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sa.sun_path) { buf in
                for (i, b) in tmp.utf8.enumerated() { buf[i] = b }
            }
            _ = try syscallRetrying {
                withUnsafePointer(to: &sa) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Glibc.bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
            try FileSystem.chmod(tmp, mode)
            if let gid { try FileSystem.chown(tmp, uid: 0, gid: gid) }
            _ = try syscallRetrying { listen(fd.rawValue, 128) }
            // A stale socket of an earlier run of this agent is replaced; anything else
            // at that path is not ours to clobber.
            if let st = try? FileSystem.stat(path) {
                guard st.mode & S_IFMT == S_IFSOCK else { throw Errno.EEXIST }
                try? FileSystem.unlink(path)
            }
            try FileSystem.rename(tmp, path)
            return fd
        } catch {
            fd.close()
            try? FileSystem.unlink(tmp)
            throw error
        }
    }
}


/// A client of a local datagram socket (the syslog export): created, connected and
/// written in separate steps, so each failure names its step.
extension Sockets {
    /// socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC).
    public static func unixDatagramSocket() throws(Errno) -> FD {
        FD(try syscallRetrying { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
    }

    /// connect(2) to the Unix socket at `path` (shorter than 108 bytes).
    public static func connect(_ fd: FD, unixPath path: String) throws(Errno) {
        guard path.utf8.count < 108 else { throw .ENAMETOOLONG }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() { buf[i] = b }
        }
        _ = try syscallRetrying {
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
    }

    /// socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): the client end of a Unix stream socket.
    public static func unixStreamSocket() throws(Errno) -> FD {
        FD(try syscallRetrying { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
    }

    /// accept4(2) of one pending connection, close-on-exec and non-blocking; nil when
    /// none is pending (EAGAIN).
    public static func accept(_ listener: FD) throws(Errno) -> FD? {
        // Glibc's module does not export accept4: accept, then the flags (the
        // supervisor starts no process while it serves connections).
        let raw = Glibc.accept(listener.rawValue, nil, nil)
        guard raw >= 0 else {
            let e = Errno(rawValue: errno)
            if e == .EAGAIN || e == .EINTR || e.rawValue == ECONNABORTED { return nil }
            throw e
        }
        let fd = FD(raw)
        _ = fcntl(raw, F_SETFD, FD_CLOEXEC)
        do throws(Errno) { try fd.setNonBlocking(true) } catch {
            fd.close()
            throw error
        }
        return fd
    }

    /// SO_SNDTIMEO: a blocking send gives up with EAGAIN after `seconds`.
    public static func setSendTimeout(_ fd: FD, seconds: Int) throws(Errno) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        _ = try syscallOnce { setsockopt(fd.rawValue, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) }
    }

    /// send(2) of all of `bytes` in one call, with no flags (EINTR retried): the
    /// number sent.
    public static func send(_ fd: FD, _ bytes: [UInt8]) throws(Errno) -> Int {
        try syscallRetrying { bytes.withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, 0) } }
    }
}

extension Sockets {
    /// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): a VM's control channel, one end
    /// for the supervisor, one for the VMM (as its stdin).
    public static func streamPair() throws(Errno) -> (FD, FD) {
        var fds: [Int32] = [-1, -1]
        _ = try syscallRetrying {
            fds.withUnsafeMutableBufferPointer { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, $0.baseAddress) }
        }
        return (FD(fds[0]), FD(fds[1]))
    }
}
