/// The one error type of ClawjailStore: what failed, what to do, and the cause.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Hashable {
        /// The state directory or a database file has an unsafe owner or type.
        case insecurePath
        /// A filesystem call on the state directory failed.
        case io
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

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
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
                return StoreError(.io, "\(what) failed: cannot write \(path); check free space and the disk",
                                  underlying: error)
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
