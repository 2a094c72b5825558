#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Prepares the state directory (0700) and the database file (0600) before SQLite
/// opens it. The file is created with an explicit mode through O_EXCL rather than by
/// changing the umask: umask is process-wide, and the supervisor has other threads
/// that create files. SQLite gives the -wal and -shm files the mode of the database
/// file, so they are 0600 from creation too.
struct StateDirectory: ~Copyable {
    let path: String
    let databasePath: String
    /// What was changed on the way (permissions tightened), for the operator.
    let notices: [String]
    private let fd: Int32

    init(path rawPath: String, databaseName: String) throws {
        // Every stored property is assigned once, at the end: a noncopyable value
        // cannot be partly initialized when a step throws.
        var path = rawPath
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        guard !path.isEmpty else {
            throw StoreError(.invalidArgument, "the state directory path is empty; pass a directory such as /var/lib/clawjail")
        }
        let databasePath = path == "/" ? "/" + databaseName : path + "/" + databaseName

        try Self.makeDirectories(path)
        // A symlinked state directory is followed (an operator may move the state to
        // another disk) but never chmod'ed: through a link planted in a shared
        // directory, that chmod could land on /etc.
        var linkInfo = stat()
        let isSymlink = lstat(path, &linkInfo) == 0 && linkInfo.st_mode & S_IFMT == S_IFLNK
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (isSymlink ? 0 : O_NOFOLLOW))
        guard fd >= 0 else {
            throw Self.ioError("open the state directory \(path)", errno: errno)
        }
        var notices: [String] = []
        do {
            try Self.secure(fd: fd, name: path, wantedMode: 0o700, isDirectory: true, mayFix: !isSymlink,
                            notices: &notices)
            try Self.prepareDatabaseFile(directoryFD: fd, fullPath: databasePath, name: databaseName,
                                         notices: &notices)
        } catch {
            close(fd)
            throw error
        }
        self.path = path
        self.databasePath = databasePath
        self.notices = notices
        self.fd = fd
    }

    deinit { close(fd) }

    /// Serializes schema migrations between processes that open a new database at
    /// the same moment (the first open also switches the file to WAL, outside any
    /// transaction). Held only while migrations are pending.
    func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw Self.ioError("lock the state directory \(path)", errno: errno) }
        }
        defer { _ = flock(fd, LOCK_UN) }
        return try body()
    }

    /// mkdir -p: parents as 0755 (they are not ours to lock down), the last one 0700.
    private static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            let last = index == components.count - 1
            if mkdir(prefix, last ? 0o700 : 0o755) != 0, errno != EEXIST {
                throw ioError("create the directory \(prefix)", errno: errno)
            }
        }
    }

    private static func prepareDatabaseFile(directoryFD: Int32, fullPath: String, name: String,
                                            notices: inout [String]) throws {
        let created = openat(directoryFD, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if created >= 0 {
            close(created)
        } else if errno != EEXIST {
            throw ioError("create \(fullPath)", errno: errno)
        }
        // An existing file (and its -wal/-shm) may predate us: check owner, type and mode.
        for suffix in ["", "-wal", "-shm"] {
            let fd = openat(directoryFD, name + suffix, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            if fd < 0 {
                let code = errno
                if suffix != "", code == ENOENT { continue }
                if code == ELOOP {
                    throw StoreError(.insecurePath, "\(fullPath + suffix) is a symbolic link; "
                                     + "remove it: the database must be a plain file in the state directory")
                }
                throw ioError("open \(fullPath + suffix)", errno: code)
            }
            defer { close(fd) }
            try secure(fd: fd, name: fullPath + suffix, wantedMode: 0o600, isDirectory: false, mayFix: true,
                       notices: &notices)
        }
    }

    /// Refuses a path that another user owns (they could rewrite the audit chain) and
    /// sets `wantedMode` on one of ours that has another mode, or refuses it when
    /// `mayFix` is false.
    private static func secure(fd: Int32, name: String, wantedMode: mode_t, isDirectory: Bool, mayFix: Bool,
                               notices: inout [String]) throws {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ioError("stat \(name)", errno: errno) }
        let type = info.st_mode & S_IFMT
        guard type == (isDirectory ? S_IFDIR : S_IFREG) else {
            throw StoreError(.insecurePath, "\(name) is not a \(isDirectory ? "directory" : "regular file"); "
                             + "move it away and retry")
        }
        let euid = geteuid()
        guard info.st_uid == euid else {
            throw StoreError(.insecurePath, "\(name) is owned by uid \(info.st_uid), not by uid \(euid) that runs "
                             + "clawjail; another user could rewrite the state and the audit log. "
                             + "Fix it with `chown \(euid) \(name)` or use another state directory")
        }
        let mode = info.st_mode & 0o7777
        if mode != wantedMode {
            guard mayFix else {
                throw StoreError(.insecurePath, "\(name) is a symbolic link to a directory with mode \(octal(mode)); "
                                 + "clawjail changes no mode through a link: run `chmod \(octal(wantedMode)) "
                                 + "\(name)/` or pass the real path")
            }
            guard fchmod(fd, wantedMode) == 0 else { throw ioError("chmod \(name)", errno: errno) }
            notices.append("changed the permissions of \(name) from \(octal(mode)) to \(octal(wantedMode))")
        }
    }

    private static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    static func ioError(_ what: String, errno code: Int32) -> StoreError {
        let reason = String(cString: strerror(code))
        var hint = ""
        if code == EACCES || code == EPERM {
            hint = "; run clawjail as root or pass a state directory you own"
        } else if code == EROFS {
            hint = "; the filesystem is read-only, pass a writable state directory"
        } else if code == ENOSPC || code == EDQUOT {
            hint = "; the filesystem is full: free space there"
        }
        return StoreError(code == ENOSPC || code == EDQUOT ? .full : .io, "cannot \(what): \(reason)\(hint)",
                          errno: code)
    }
}
