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
    public static func move(from source: FD, to destination: FD, max: Int) throws(Errno) -> Step {
        guard let n = try syscallUnlessWouldBlock({ cj_sys_splice(source.rawValue, destination.rawValue, max) }) else {
            return .wouldBlock
        }
        return n == 0 ? .endOfFile : .moved(n)
    }

    /// Writes what it can of `bytes` to a non-blocking socket; nil when it would block.
    public static func send(_ fd: FD, _ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int? {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
        return try syscallUnlessWouldBlock { Glibc.send(fd.rawValue, base, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    /// A non-blocking, close-on-exec pipe of about `size` bytes, and its real capacity.
    public static func pipe(size: Int) throws(Errno) -> (read: FD, write: FD, capacity: Int) {
        var fds: [Int32] = [-1, -1]
        let capacity = try syscallRetrying { cj_sys_splice_pipe(&fds, Int32(size)) }
        return (FD(fds[0]), FD(fds[1]), Int(capacity))
    }

    /// `shutdown(fd, SHUT_WR)`: the peer reads end of file once what was sent arrives.
    /// Best effort: a peer that already reset the connection has nothing left to tell.
    public static func shutdownWrite(_ fd: FD) {
        _ = try? syscallOnce { Glibc.shutdown(fd.rawValue, Int32(SHUT_WR)) }
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
            wakeFD = try EventCounter.make()
        } catch {
            fd.close()
            throw error
        }
        do {
            try add(wakeFD, events: [.readable], token: Epoll.wakeToken)
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

    /// cj_sys_epoll_ctl's operations.
    private static let controlAdd: Int32 = 0
    private static let controlDelete: Int32 = 1

    public func add(_ target: FD, events: Events, token: UInt64) throws(Errno) {
        _ = try syscallRetrying { cj_sys_epoll_ctl(fd.rawValue, Epoll.controlAdd, target.rawValue, events.rawValue, token) }
    }

    /// Best effort: the caller closes `target` right after, which takes it out too.
    public func remove(_ target: FD) {
        _ = try? syscallOnce { cj_sys_epoll_ctl(fd.rawValue, Epoll.controlDelete, target.rawValue, 0, 0) }
    }

    /// Makes a `wait` in another thread return (with `wakeToken`).
    public func wake() { EventCounter.signal(wakeFD) }

    /// Clears the wake-up counter; call when `wakeToken` comes back.
    public func drainWake() { EventCounter.reset(wakeFD) }

    /// Up to 64 ready (token, events), waiting at most `timeoutMs` (-1: forever). A
    /// signal or an error gives an empty list: the caller's loop comes back anyway.
    public func wait(timeoutMs: Int32) -> [(token: UInt64, events: Events)] {
        var out = [cj_epoll_event](repeating: cj_epoll_event(), count: 64)
        let n = out.withUnsafeMutableBufferPointer { buffer in
            (try? syscallOnce { cj_sys_epoll_wait(fd.rawValue, buffer.baseAddress, 64, timeoutMs) }) ?? 0
        }
        return (0..<Int(n)).map { (out[$0].data, Events(rawValue: out[$0].events)) }
    }
}
