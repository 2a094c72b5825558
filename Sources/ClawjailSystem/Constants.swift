#if canImport(Glibc)
import Glibc
#endif

// GNU/Linux constants that Swift's Glibc module does not import (they sit behind
// _GNU_SOURCE). Values from the kernel's uapi headers, x86_64 and generic.
public let O_PATH: Int32 = 0o10000000
public let AT_EMPTY_PATH: Int32 = 0x1000
public let AT_RECURSIVE: Int32 = 0x8000

// The C type names modules without `import Glibc` still use in their signatures. A
// type alias of the same type as Glibc's is not ambiguous where both are imported
// (a constant or function of the same name would be, so those get Swift names below).
public typealias pid_t = Glibc.pid_t
public typealias uid_t = Glibc.uid_t
public typealias gid_t = Glibc.gid_t
public typealias mode_t = Glibc.mode_t
public typealias off_t = Glibc.off_t
public typealias pthread_t = Glibc.pthread_t

/// open(2) flags. `FileSystem.open` adds O_CLOEXEC whatever is passed.
public struct OpenFlags: OptionSet, Sendable, Hashable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// O_RDONLY is 0: the flags without a write mode.
    public static let readOnly = OpenFlags(rawValue: O_RDONLY)
    public static let writeOnly = OpenFlags(rawValue: O_WRONLY)
    public static let readWrite = OpenFlags(rawValue: O_RDWR)
    public static let create = OpenFlags(rawValue: O_CREAT)
    public static let exclusive = OpenFlags(rawValue: O_EXCL)
    public static let truncate = OpenFlags(rawValue: O_TRUNC)
    public static let noFollow = OpenFlags(rawValue: O_NOFOLLOW)
    public static let directory = OpenFlags(rawValue: O_DIRECTORY)
    public static let nonBlocking = OpenFlags(rawValue: O_NONBLOCK)
    public static let closeOnExec = OpenFlags(rawValue: O_CLOEXEC)
    public static let noControllingTerminal = OpenFlags(rawValue: O_NOCTTY)
    public static let path = OpenFlags(rawValue: O_PATH)
    public static let append = OpenFlags(rawValue: O_APPEND)
}

/// A signal number, for the calls that send one.
public struct Signal: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let hangUp = Signal(rawValue: SIGHUP)
    public static let interrupt = Signal(rawValue: SIGINT)
    public static let kill = Signal(rawValue: SIGKILL)
    public static let terminate = Signal(rawValue: SIGTERM)
    public static let pipe = Signal(rawValue: SIGPIPE)
    public static let child = Signal(rawValue: SIGCHLD)
    public static let quit = Signal(rawValue: SIGQUIT)
    public static let user1 = Signal(rawValue: SIGUSR1)
    public static let user2 = Signal(rawValue: SIGUSR2)
    public static let windowChange = Signal(rawValue: SIGWINCH)

    /// "SIGKILL"
    public var description: String { signalName(rawValue) }
}

/// The file type bits of a mode (S_IFMT and its values), for code that compares
/// `Stat.mode` itself.
public enum FileType {
    public static let mask: UInt32 = S_IFMT
    public static let regular: UInt32 = S_IFREG
    public static let directory: UInt32 = S_IFDIR
    public static let symlink: UInt32 = S_IFLNK
    public static let socket: UInt32 = S_IFSOCK
}
