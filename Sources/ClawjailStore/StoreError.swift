import ClawjailCore
import ClawjailSystem

/// The one error type of ClawjailStore: what failed, what to do, and the cause.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Hashable {
        /// The state directory or a database file has an unsafe owner or type.
        case insecurePath
        /// A filesystem call on the state directory failed.
        case io
        /// The state directory's filesystem is full or its quota is used up (SQLITE_FULL,
        /// ENOSPC, EDQUOT): nothing more can be recorded until space is freed.
        case full
        /// SQLite reported an error (including a lock held too long).
        case database
        /// The database file is not a database or is damaged.
        case corrupt
        /// Another live supervisor runs this agent.
        case alreadyRunning(agent: String, pid: Int32)
        /// Every agent uid slot is allocated.
        case uidRangesExhausted
        case notFound
        case invalidArgument
        /// The row is not in a state that allows the operation (for example a run that already ended).
        case invalidState
    }

    public let code: Code
    public let message: String
    public let underlying: (any Error)?
    /// The OS errno behind the failure, when a system call failed (ENOSPC, EIO, EDQUOT...).
    public let errno: Int32?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
        self.errno = errno
    }

    /// SQLite's result code (extended) when SQLite reported the failure.
    public var sqliteCode: Int32? { (underlying as? DatabaseError)?.resultCode.rawValue }

    /// Whether the same write can succeed later without anyone changing clawjail: the
    /// disk or quota was full, the disk gave an I/O error, or another process held the
    /// lock too long. A supervisor keeps such a record and retries it; any other
    /// failure (a damaged database, a bad argument) will not go away by waiting.
    public var isRetryable: Bool {
        switch code {
        case .full: return true
        case .io:
            if let db = underlying as? DatabaseError { return db.resultCode == .SQLITE_IOERR }
            return errno == Errno.EIO.rawValue
        case .database:
            guard let db = underlying as? DatabaseError else { return false }
            return db.resultCode == .SQLITE_BUSY || db.resultCode == .SQLITE_LOCKED
        default: return false
        }
    }

    /// A short cause for one line of stderr and for the run's end marker:
    /// "disk full: ENOSPC (errno 28: No space left on device), SQLITE_FULL".
    public var cause: String {
        var parts: [String] = []
        if let errno { parts.append("\(Errno(rawValue: errno).name) (errno \(errno): \(Errno(rawValue: errno).text))") }
        if let db = underlying as? DatabaseError { parts.append(Self.sqliteName(db.resultCode)) }
        let detail = parts.joined(separator: ", ")
        let what: String
        switch code {
        case .full: what = "disk full"
        case .io: what = "I/O error"
        case .database where isRetryable: what = "database locked"
        default: what = "database error"
        }
        return detail.isEmpty ? what : what + ": " + detail
    }

    private static func sqliteName(_ code: ResultCode) -> String {
        let names: [ResultCode: String] = [.SQLITE_FULL: "SQLITE_FULL", .SQLITE_IOERR: "SQLITE_IOERR",
                                           .SQLITE_BUSY: "SQLITE_BUSY", .SQLITE_LOCKED: "SQLITE_LOCKED",
                                           .SQLITE_CORRUPT: "SQLITE_CORRUPT", .SQLITE_READONLY: "SQLITE_READONLY"]
        let name = names[code] ?? "SQLite code \(code.primary.rawValue)"
        return code.rawValue == code.primary.rawValue ? name : "\(name) (extended code \(code.rawValue))"
    }

    /// The directory that holds `path`, for "free space in DIR".
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public var description: String {
        guard let underlying else { return message }
        return "\(message) (cause: \(underlying))"
    }

    public static func alreadyRunning(agent: String, pid: Int32) -> StoreError {
        StoreError(.alreadyRunning(agent: agent, pid: pid),
                   "agent '\(agent)' is already running under supervisor pid \(pid); "
                   + "stop it first with `clawjail stop \(agent)`")
    }

    /// Wraps any non-StoreError thrown while doing `what`, so every error names its operation.
    static func wrap(_ error: any Error, while what: String, path: String) -> StoreError {
        if let error = error as? StoreError { return error }
        if let dbError = error as? DatabaseError {
            switch dbError.resultCode {
            case .SQLITE_BUSY, .SQLITE_LOCKED:
                return StoreError(.database,
                                  "\(what) failed: \(path) stayed locked by another clawjail process "
                                  + "for more than \(Int(Store.busyTimeoutSeconds)) s; retry, "
                                  + "and look for a hung process with `fuser \(path)`",
                                  underlying: error)
            case .SQLITE_CORRUPT, .SQLITE_NOTADB:
                return StoreError(.corrupt,
                                  "\(what) failed: \(path) is damaged or not a clawjail database; "
                                  + "move it aside (the audit chain can be checked from an export) "
                                  + "and let clawjail create a new one",
                                  underlying: error)
            case .SQLITE_FULL, .SQLITE_IOERR:
                // SQLite reports SQLITE_FULL only for ENOSPC (or a short write) and then
                // clears the errno; an IOERR keeps it, and EDQUOT arrives that way.
                let code = dbError.systemErrno != 0 ? dbError.systemErrno
                    : (dbError.resultCode == .SQLITE_FULL ? Errno.ENOSPC.rawValue : nil)
                let dir = directory(of: path)
                if dbError.resultCode == .SQLITE_FULL || code == Errno.ENOSPC.rawValue || code == Errno.EDQUOT.rawValue {
                    return StoreError(.full, "\(what) failed: cannot write \(path): the filesystem is full "
                                      + "(\(Errno(rawValue: code ?? Errno.ENOSPC.rawValue).name)); free space in \(dir)",
                                      underlying: error, errno: code)
                }
                let reason = code.map { ": " + Errno(rawValue: $0).description } ?? ""
                return StoreError(.io, "\(what) failed: cannot write \(path)\(reason); check the disk "
                                  + "(dmesg) and free space in \(dir)",
                                  underlying: error, errno: code)
            case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
                return StoreError(.io, "\(what) failed: cannot open \(path) for writing; "
                                  + "run clawjail as root or pass a state directory you own",
                                  underlying: error)
            default:
                return StoreError(.database, "\(what) failed: \(dbError.message ?? "\(dbError.resultCode)")",
                                  underlying: error)
            }
        }
        return StoreError(.database, "\(what) failed", underlying: error)
    }
}

/// So that `error.errno` finds the errno of a store failure wrapped in a ClawjailError.
extension StoreError: ErrnoCarrying {
    public var errnoCode: Int32? { errno }
}
