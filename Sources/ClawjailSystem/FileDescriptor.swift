#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// An owned or borrowed file descriptor number. Closing is explicit (`close()`),
/// usually in a `defer` right after the open.
public struct FD: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }
    public var description: String { "fd \(rawValue)" }

    public static let cwd = FD(AT_FDCWD)
    public static let standardInput = FD(0)
    public static let standardOutput = FD(1)
    public static let standardError = FD(2)

    public func close() { _ = Glibc.close(rawValue) }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try syscallRetrying { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads until EOF (or `limit` bytes).
    public func readAll(limit: Int = 64 << 20) throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while out.count < limit {
            let n = try readChunk(&chunk)
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    private func readChunk(_ chunk: inout [UInt8]) throws(Errno) -> Int {
        let r = chunk.withUnsafeMutableBytes { Glibc.read(rawValue, $0.baseAddress, $0.count) }
        if r < 0 {
            let e = Errno.current
            if e == .EINTR { return try readChunk(&chunk) }
            throw e
        }
        return r
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try syscallRetrying { Glibc.write(rawValue, bytes.baseAddress, bytes.count) }
    }

    public func writeAll(_ bytes: [UInt8]) throws(Errno) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { b in
                Glibc.write(rawValue, b.baseAddress.map { $0 + offset }, b.count - offset)
            }
            if n < 0 {
                let e = Errno.current
                if e == .EINTR { continue }
                throw e
            }
            offset += n
        }
    }

    public func writeAll(_ string: String) throws(Errno) { try writeAll(Array(string.utf8)) }

    public func stat() throws(Errno) -> Stat {
        var st = Glibc.stat()
        _ = try syscallRetrying { fstat(rawValue, &st) }
        return Stat(st)
    }

    public func setCloseOnExec(_ on: Bool) throws(Errno) {
        _ = try syscallRetrying { fcntl(rawValue, F_SETFD, on ? FD_CLOEXEC : 0) }
    }

    /// A close-on-exec duplicate (F_DUPFD_CLOEXEC, numbered 3 or above), owned by the
    /// caller whoever owns this one.
    public func duplicate() throws(Errno) -> FD {
        FD(try syscallRetrying { fcntl(rawValue, F_DUPFD_CLOEXEC, 3) })
    }

    public func setNonBlocking(_ on: Bool) throws(Errno) {
        let flags = try syscallRetrying { fcntl(rawValue, F_GETFL) }
        _ = try syscallRetrying { fcntl(rawValue, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) }
    }

    /// The path this fd refers to, from /proc/self/fd (for messages only, never for access).
    public var procPath: String { "/proc/self/fd/\(rawValue)" }
}

public struct Stat: Sendable {
    public let mode: UInt32
    public let uid: UInt32
    public let gid: UInt32
    public let size: Int64
    public let inode: UInt64
    public let device: UInt64
    public let nlink: UInt64
    /// mtime and ctime, in ns since the epoch.
    public let modifiedNanoseconds: Int64
    public let changedNanoseconds: Int64

    init(_ st: Glibc.stat) {
        mode = st.st_mode
        uid = st.st_uid
        gid = st.st_gid
        size = Int64(st.st_size)
        inode = UInt64(st.st_ino)
        device = UInt64(st.st_dev)
        nlink = UInt64(st.st_nlink)
        modifiedNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        changedNanoseconds = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }

    public var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
    public var isRegular: Bool { mode & S_IFMT == S_IFREG }
    public var isSymlink: Bool { mode & S_IFMT == S_IFLNK }
    public var isSocket: Bool { mode & S_IFMT == S_IFSOCK }
    public var permissions: UInt32 { mode & 0o7777 }
    /// The sticky bit: in a directory, only an entry's owner may remove or rename it.
    public var isSticky: Bool { mode & S_ISVTX != 0 }
}

public func pipe(cloexec: Bool = true) throws(Errno) -> (read: FD, write: FD) {
    var fds: [Int32] = [-1, -1]
    _ = try syscallRetrying { cj_sys_pipe2(&fds, cloexec ? O_CLOEXEC : 0) }
    return (FD(fds[0]), FD(fds[1]))
}
