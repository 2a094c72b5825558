#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// The rest of what the store, the seccomp cache and the notifier do with an fd.
extension FD {
    /// One read(2) into the start of `bytes`; 0 at end of file.
    public func read(into bytes: inout [UInt8]) throws(Errno) -> Int {
        try syscallRetrying { bytes.withUnsafeMutableBytes { Glibc.read(rawValue, $0.baseAddress, $0.count) } }
    }

    /// pread(2): reads at `offset` without moving the file position.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(Errno) -> Int {
        try syscallRetrying { Glibc.pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// pread(2) into the start of `bytes`, at `offset`.
    public func read(into bytes: inout [UInt8], at offset: Int64) throws(Errno) -> Int {
        try syscallRetrying { bytes.withUnsafeMutableBytes { Glibc.pread(rawValue, $0.baseAddress, $0.count, off_t(offset)) } }
    }

    /// pwrite(2): writes at `offset` without moving the file position (one call: the
    /// caller checks for a short write).
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(Errno) -> Int {
        try syscallRetrying { Glibc.pwrite(rawValue, bytes.baseAddress, bytes.count, off_t(offset)) }
    }

    /// fsync(2).
    public func sync() throws(Errno) {
        _ = try syscallRetrying { fsync(rawValue) }
    }

    /// ftruncate(2).
    public func truncate(to size: Int64) throws(Errno) {
        _ = try syscallRetrying { ftruncate(rawValue, off_t(size)) }
    }

    /// posix_fallocate(3) of [0, length). It returns its error instead of setting
    /// errno, and is not retried: a filesystem without fallocate answers EOPNOTSUPP or
    /// EINVAL, which the caller handles.
    public func allocate(length: Int64) throws(Errno) {
        let code = posix_fallocate(rawValue, 0, off_t(length))
        if code != 0 { throw Errno(rawValue: code) }
    }

    /// fchmod(2).
    public func setMode(_ mode: mode_t) throws(Errno) {
        _ = try syscallRetrying { fchmod(rawValue, mode) }
    }

    /// lseek(2) to an absolute offset.
    public func seek(to offset: Int64) throws(Errno) {
        _ = try syscallRetrying { lseek(rawValue, off_t(offset), SEEK_SET) }
    }

    /// lseek(2) to the end of the file: the file's size.
    @discardableResult
    public func seekToEnd() throws(Errno) -> Int64 {
        Int64(try syscallRetrying { lseek(rawValue, 0, SEEK_END) })
    }

    public enum LockKind: Sendable {
        case shared, exclusive
    }

    /// flock(2), waiting for the lock (EINTR retried).
    public func lock(_ kind: LockKind) throws(Errno) {
        _ = try syscallRetrying { flock(rawValue, kind == .shared ? LOCK_SH : LOCK_EX) }
    }

    /// flock(LOCK_UN).
    public func unlock() {
        _ = flock(rawValue, LOCK_UN)
    }

    /// recv(2) with no flags.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try syscallRetrying { recv(rawValue, buffer.baseAddress, buffer.count, 0) }
    }
}

/// eventfd(2) counters used to wake a thread blocked in poll or epoll.
public enum EventCounter {
    /// A new counter at 0, non-blocking and close-on-exec.
    public static func make() throws(Errno) -> FD {
        FD(try syscallRetrying { cj_sys_eventfd() })
    }

    /// Adds 1, making the fd readable. Best effort: a full counter is readable anyway.
    public static func signal(_ fd: FD) {
        var one: UInt64 = 1
        _ = try? syscallRetrying { Glibc.write(fd.rawValue, &one, 8) }
    }

    /// Reads the counter back to 0. Best effort: a counter at 0 has nothing to read
    /// (EAGAIN, the fd is non-blocking), which is the state wanted.
    public static func reset(_ fd: FD) {
        var count: UInt64 = 0
        _ = try? syscallRetrying { Glibc.read(fd.rawValue, &count, 8) }
    }
}

/// poll(2).
public enum Poll {
    public struct Events: OptionSet, Sendable, Hashable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: Int16(POLLIN))
        public static let writable = Events(rawValue: Int16(POLLOUT))
        public static let error = Events(rawValue: Int16(POLLERR))
        public static let hangUp = Events(rawValue: Int16(POLLHUP))
        public static let invalid = Events(rawValue: Int16(POLLNVAL))
    }

    public struct Entry: Sendable {
        public var fd: FD
        public var events: Events
        /// What happened, after `wait`.
        public var returned: Events = []
        public init(fd: FD, events: Events) {
            self.fd = fd
            self.events = events
        }
    }

    /// Waits up to `timeoutMs` (-1: forever) for one of `entries`; fills in their
    /// `returned` events and gives the number ready (0 on timeout). EINTR is retried.
    public static func wait(_ entries: inout [Entry], timeoutMs: Int32) throws(Errno) -> Int {
        var fds = entries.map { pollfd(fd: $0.fd.rawValue, events: $0.events.rawValue, revents: 0) }
        let n = try syscallRetrying { poll(&fds, nfds_t(fds.count), timeoutMs) }
        for i in entries.indices { entries[i].returned = Events(rawValue: fds[i].revents) }
        return Int(n)
    }

    /// Like `wait`, but an EINTR is thrown instead of retried: for a loop that works
    /// out its timeout from deadlines again each time round.
    public static func waitOnce(_ entries: inout [Entry], timeoutMs: Int32) throws(Errno) -> Int {
        var fds = entries.map { pollfd(fd: $0.fd.rawValue, events: $0.events.rawValue, revents: 0) }
        let n = try syscallOnce { poll(&fds, nfds_t(fds.count), timeoutMs) }
        for i in entries.indices { entries[i].returned = Events(rawValue: fds[i].revents) }
        return Int(n)
    }
}

/// Memory a C library hands over with malloc, for the caller to free.
public enum CMemory {
    /// The string at `pointer`, which is then freed (libseccomp's syscall names).
    public static func takeString(_ pointer: UnsafeMutablePointer<CChar>) -> String {
        defer { free(pointer) }
        return String(cString: pointer)
    }
}
