import ClawjailParsers

/// The one error type of clawjail. Messages say what failed and where; `hint` says
/// what to do about it.
public struct ClawjailError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case config          // agent.toml / tool.toml / profile is invalid
        case usage           // command-line arguments
        case permission      // host permissions (not root, unfixable credentials, ...)
        case setup           // creating the jail failed
        case conflict        // already running, lock held
        case notFound        // unknown agent, run, file
        case state           // the state database
        case cgroup
        case network
        case seccomp
        case internalError
    }

    public var code: Code
    public var message: String
    public var hint: String?
    /// What the failure came from, kept as the error itself (an `Errno`, a
    /// `StoreError`, another `ClawjailError`) so that a caller can still ask for the
    /// errno after wrapping (`errnoCode`, or ClawjailSystem's `errno`). A cause given
    /// as text is a `TextCause`. `description` prints it as text either way.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, hint: String? = nil, cause: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.cause = cause.map(TextCause.init)
    }

    public init(_ code: Code, _ message: String, hint: String? = nil, cause: some Error) {
        self.code = code
        self.message = message
        self.hint = hint
        self.cause = cause
    }

    /// A cause that is only text ("out of memory", a libnl message).
    public struct TextCause: Error, Sendable, Hashable, CustomStringConvertible {
        public var text: String
        public init(_ text: String) { self.text = text }
        public var description: String { text }
    }

    public var description: String {
        var s = message
        if let cause { s += ": \(cause)" }
        if let hint { s += "\n  hint: \(hint)" }
        return s
    }

    /// The first error of type `E` down the chain of causes (through wrapped
    /// ClawjailErrors), or nil.
    public func underlying<E: Error>(_ type: E.Type) -> E? {
        var next = cause
        while let current = next {
            if let found = current as? E { return found }
            next = (current as? ClawjailError)?.cause
        }
        return nil
    }
}

extension ClawjailError: ErrnoCarrying {
    /// The errno at the bottom of the chain of causes, nil when the failure was not a
    /// system call's.
    public var errnoCode: Int32? { (cause as? any ErrnoCarrying)?.errnoCode }
}

/// A config problem at a position in a file: "agent.toml:12:5: unknown key 'memroy' in [limits]".
public struct ConfigIssue: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var location: SourceLocation?
    public var message: String
    public var hint: String?

    public init(file: String, location: SourceLocation?, message: String, hint: String? = nil) {
        self.file = file
        self.location = location
        self.message = message
        self.hint = hint
    }

    public var description: String {
        var s = file
        if let location { s += ":\(location.line):\(location.column)" }
        s += ": \(message)"
        if let hint { s += "\n  hint: \(hint)" }
        return s
    }
}

/// All the problems found in one config file (validation does not stop at the first).
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var issues: [ConfigIssue]
    public init(_ issues: [ConfigIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
