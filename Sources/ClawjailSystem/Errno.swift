#if canImport(Glibc)
import Glibc
#endif
import ClawjailCore

/// A kernel error number, named the way a man page names it.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The current thread's errno.
    public static var current: Errno { Errno(rawValue: Glibc.errno) }

    public static let EPERM = Errno(rawValue: Glibc.EPERM)
    public static let ENOENT = Errno(rawValue: Glibc.ENOENT)
    public static let ESRCH = Errno(rawValue: Glibc.ESRCH)
    public static let EINTR = Errno(rawValue: Glibc.EINTR)
    public static let EIO = Errno(rawValue: Glibc.EIO)
    public static let EBADF = Errno(rawValue: Glibc.EBADF)
    public static let EAGAIN = Errno(rawValue: Glibc.EAGAIN)
    public static let ENOMEM = Errno(rawValue: Glibc.ENOMEM)
    public static let EACCES = Errno(rawValue: Glibc.EACCES)
    public static let EBUSY = Errno(rawValue: Glibc.EBUSY)
    public static let EEXIST = Errno(rawValue: Glibc.EEXIST)
    public static let ENODEV = Errno(rawValue: Glibc.ENODEV)
    public static let ENOTDIR = Errno(rawValue: Glibc.ENOTDIR)
    public static let EISDIR = Errno(rawValue: Glibc.EISDIR)
    public static let EINVAL = Errno(rawValue: Glibc.EINVAL)
    public static let ENOSPC = Errno(rawValue: Glibc.ENOSPC)
    public static let EROFS = Errno(rawValue: Glibc.EROFS)
    public static let ENAMETOOLONG = Errno(rawValue: Glibc.ENAMETOOLONG)
    public static let ELOOP = Errno(rawValue: Glibc.ELOOP)
    public static let ENOTEMPTY = Errno(rawValue: Glibc.ENOTEMPTY)
    public static let EXDEV = Errno(rawValue: Glibc.EXDEV)
    public static let ENOSYS = Errno(rawValue: Glibc.ENOSYS)
    public static let EWOULDBLOCK = Errno(rawValue: Glibc.EWOULDBLOCK)
    public static let EOPNOTSUPP = Errno(rawValue: Glibc.EOPNOTSUPP)
    public static let ETIMEDOUT = Errno(rawValue: Glibc.ETIMEDOUT)
    public static let EINPROGRESS = Errno(rawValue: Glibc.EINPROGRESS)
    public static let EDQUOT = Errno(rawValue: Glibc.EDQUOT)
    public static let EPIPE = Errno(rawValue: Glibc.EPIPE)
    public static let EMSGSIZE = Errno(rawValue: Glibc.EMSGSIZE)
    public static let ECONNREFUSED = Errno(rawValue: Glibc.ECONNREFUSED)

    /// "EINVAL", or "errno 1234" for numbers this table does not know.
    public var name: String { Errno.names[rawValue] ?? "errno \(rawValue)" }

    /// The C library's text for it: "Invalid argument".
    public var text: String { String(cString: strerror(rawValue)) }

    /// "Invalid argument (EINVAL)"
    public var description: String { "\(text) (\(name))" }

    /// Resolves "EPERM" and friends (and ENOTSUP, which seccomp profiles use); nil for
    /// unknown names.
    public init?(name: String) {
        guard let value = Errno.numbers[name] else { return nil }
        self.rawValue = value
    }

    /// The one errno table (Linux, x86_64): messages, seccomp profiles and probe output
    /// all name errors from it.
    static let names: [Int32: String] = [
        1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 8: "ENOEXEC",
        9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 15: "ENOTBLK",
        16: "EBUSY", 17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL",
        23: "ENFILE", 24: "EMFILE", 25: "ENOTTY", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE",
        30: "EROFS", 31: "EMLINK", 32: "EPIPE", 33: "EDOM", 34: "ERANGE", 35: "EDEADLK", 36: "ENAMETOOLONG",
        37: "ENOLCK", 38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP", 42: "ENOMSG", 43: "EIDRM", 61: "ENODATA",
        62: "ETIME", 71: "EPROTO", 74: "EBADMSG", 75: "EOVERFLOW", 84: "EILSEQ", 88: "ENOTSOCK",
        89: "EDESTADDRREQ", 90: "EMSGSIZE", 91: "EPROTOTYPE", 92: "ENOPROTOOPT", 93: "EPROTONOSUPPORT",
        94: "ESOCKTNOSUPPORT", 95: "EOPNOTSUPP", 96: "EPFNOSUPPORT", 97: "EAFNOSUPPORT", 98: "EADDRINUSE",
        99: "EADDRNOTAVAIL", 100: "ENETDOWN", 101: "ENETUNREACH", 102: "ENETRESET", 103: "ECONNABORTED",
        104: "ECONNRESET", 105: "ENOBUFS", 106: "EISCONN", 107: "ENOTCONN", 110: "ETIMEDOUT",
        111: "ECONNREFUSED", 113: "EHOSTUNREACH", 114: "EALREADY", 115: "EINPROGRESS", 116: "ESTALE",
        122: "EDQUOT", 125: "ECANCELED", 126: "ENOKEY",
    ]

    /// Name -> number: every name above, plus ENOTSUP (EOPNOTSUPP on Linux).
    static let numbers: [String: Int32] = {
        var map: [String: Int32] = ["ENOTSUP": 95]
        for (number, name) in names { map[name] = number }
        return map
    }()
}

extension Errno: ErrnoCarrying {
    public var errnoCode: Int32? { rawValue }
}

extension ClawjailError {
    /// The errno behind this error, however deeply it was wrapped:
    /// `error.errno == .ENOSPC`.
    public var errno: Errno? { errnoCode.map(Errno.init(rawValue:)) }
}

/// Runs a libc call that returns -1 and sets errno on failure, retrying EINTR.
/// Every syscall the Swift side makes goes through here (or `syscallValue`), so a
/// failure always carries its errno.
@inline(__always)
public func syscallRetrying<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = Errno.current
        if e == .EINTR { continue }
        throw e
    }
}

/// Like `syscallRetrying`, for calls that must not be retried (close, for one).
@inline(__always)
public func syscallOnce<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    let r = body()
    if r < 0 { throw Errno.current }
    return r
}

/// Like `syscallRetrying`, for a non-blocking fd: nil when the call would block
/// (EAGAIN or EWOULDBLOCK), so the caller waits for readiness instead of failing.
@inline(__always)
public func syscallUnlessWouldBlock<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T? {
    do throws(Errno) {
        return try syscallRetrying(body)
    } catch where error == .EAGAIN || error == .EWOULDBLOCK {
        return nil
    }
}
