#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// splice(2) between a socket and a pipe, for tunnels the kernel copies without the
/// bytes ever reaching user space. Every call is non-blocking.
public enum Splice {
    public enum Step: Equatable {
        case moved(Int)
        /// The source is empty or the destination is full.
        case wouldBlock
        /// The source reached end of file.
        case endOfFile
    }

    /// Moves up to `max` bytes from `source` to `destination`; one of them must be a pipe.
    public static func move(from source: CInt, to destination: CInt, max: Int) throws(Errno) -> Step {
        while true {
            let n = cj_sys_splice(source, destination, max)
            if n > 0 { return .moved(n) }
            if n == 0 { return .endOfFile }
            let e = Errno.current
            if e == .EINTR { continue }
            if e == .EAGAIN || e == .EWOULDBLOCK { return .wouldBlock }
            throw e
        }
    }

    /// Writes what it can of `bytes` to a non-blocking socket; nil when it would block.
    public static func send(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int? {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
        while true {
            let n = Glibc.send(fd, base, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            let e = Errno.current
            if e == .EINTR { continue }
            if e == .EAGAIN || e == .EWOULDBLOCK { return nil }
            throw e
        }
    }

    /// A non-blocking, close-on-exec pipe of about `size` bytes, and its real capacity.
    public static func pipe(size: Int) throws(Errno) -> (read: FD, write: FD, capacity: Int) {
        var fds: [Int32] = [-1, -1]
        let capacity = try syscallRetrying { cj_sys_splice_pipe(&fds, Int32(size)) }
        return (FD(fds[0]), FD(fds[1]), Int(capacity))
    }

    /// `shutdown(fd, SHUT_WR)`: the peer reads end of file once what was sent arrives.
    public static func shutdownWrite(_ fd: CInt) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// A close-on-exec duplicate of a descriptor someone else owns.
    public static func duplicate(_ fd: CInt) throws(Errno) -> FD {
        FD(try syscallRetrying { fcntl(fd, F_DUPFD_CLOEXEC, 3) })
    }

    /// Blocks SIGPIPE in the calling thread, so writing to a reset peer fails with EPIPE.
    public static func blockSIGPIPEInThisThread() {
        cj_block_sigpipe()
    }
}

/// An edge-triggered epoll set, plus an eventfd to wake its waiter.
public final class Epoll: @unchecked Sendable {
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: cj_epoll_in())
        public static let writable = Events(rawValue: cj_epoll_out())
        public static let peerClosed = Events(rawValue: cj_epoll_rdhup())
        public static let edgeTriggered = Events(rawValue: cj_epoll_et())
    }

    /// The `data` of the wake-up eventfd's events.
    public static let wakeToken = UInt64.max

    private let fd: FD
    private let wakeFD: FD

    public init() throws(Errno) {
        fd = FD(try syscallRetrying { cj_sys_epoll_create() })
        do {
            wakeFD = FD(try syscallRetrying { cj_sys_eventfd() })
        } catch {
            fd.close()
            throw error
        }
        do {
            try add(wakeFD.rawValue, events: [.readable], token: Epoll.wakeToken)
        } catch {
            wakeFD.close()
            fd.close()
            throw error
        }
    }

    deinit {
        wakeFD.close()
        fd.close()
    }

    public func add(_ target: CInt, events: Events, token: UInt64) throws(Errno) {
        _ = try syscallRetrying { cj_sys_epoll_ctl(fd.rawValue, 0, target, events.rawValue, token) }
    }

    public func remove(_ target: CInt) {
        _ = cj_sys_epoll_ctl(fd.rawValue, 1, target, 0, 0)
    }

    /// Makes a `wait` in another thread return (with `wakeToken`).
    public func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD.rawValue, &one, 8)
    }

    /// Clears the wake-up counter; call when `wakeToken` comes back.
    public func drainWake() {
        var n: UInt64 = 0
        _ = Glibc.read(wakeFD.rawValue, &n, 8)
    }

    /// Up to 64 ready (token, events), waiting at most `timeoutMs` (-1: forever).
    public func wait(timeoutMs: Int32) -> [(token: UInt64, events: Events)] {
        var out = [cj_epoll_event](repeating: cj_epoll_event(), count: 64)
        let n = out.withUnsafeMutableBufferPointer { cj_sys_epoll_wait(fd.rawValue, $0.baseAddress, 64, timeoutMs) }
        guard n > 0 else { return [] }
        return (0..<Int(n)).map { (out[$0].data, Events(rawValue: out[$0].events)) }
    }
}
