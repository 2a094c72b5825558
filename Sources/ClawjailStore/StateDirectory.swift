import ClawjailSystem

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
    private let fd: FD

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
        let isSymlink = (try? FileSystem.stat(path, followSymlinks: false))?.isSymlink == true
        let fd: FD
        do {
            fd = try FileSystem.open(path, isSymlink ? [.readOnly, .directory] : [.readOnly, .directory, .noFollow])
        } catch {
            throw Self.ioError("open the state directory \(path)", errno: error.rawValue)
        }
        var notices: [String] = []
        do {
            try Self.secure(fd: fd, name: path, wantedMode: 0o700, isDirectory: true, mayFix: !isSymlink,
                            notices: &notices)
            try Self.prepareDatabaseFile(directoryFD: fd, fullPath: databasePath, name: databaseName,
                                         notices: &notices)
        } catch {
            fd.close()
            throw error
        }
        self.path = path
        self.databasePath = databasePath
        self.notices = notices
        self.fd = fd
    }

    deinit { fd.close() }

    /// Serializes schema migrations between processes that open a new database at
    /// the same moment (the first open also switches the file to WAL, outside any
    /// transaction). Held only while migrations are pending.
    func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        do {
            try fd.lock(.exclusive)
        } catch {
            throw Self.ioError("lock the state directory \(path)", errno: error.rawValue)
        }
        defer { fd.unlock() }
        return try body()
    }

    /// mkdir -p: parents as 0755 (they are not ours to lock down), the last one 0700.
    private static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            let last = index == components.count - 1
            do {
                try FileSystem.mkdir(prefix, mode: last ? 0o700 : 0o755)
            } catch where error != .EEXIST {
                throw ioError("create the directory \(prefix)", errno: error.rawValue)
            } catch {}
        }
    }

    private static func prepareDatabaseFile(directoryFD: FD, fullPath: String, name: String,
                                            notices: inout [String]) throws {
        do {
            try FileSystem.open(name, [.readWrite, .create, .exclusive, .noFollow], mode: 0o600, at: directoryFD).close()
        } catch where error != .EEXIST {
            throw ioError("create \(fullPath)", errno: error.rawValue)
        } catch {}
        // An existing file (and its -wal/-shm) may predate us: check owner, type and mode.
        for suffix in ["", "-wal", "-shm"] {
            let fd: FD
            do {
                fd = try FileSystem.open(name + suffix, [.readOnly, .noFollow, .nonBlocking], at: directoryFD)
            } catch {
                if suffix != "", error == .ENOENT { continue }
                if error == .ELOOP {
                    throw StoreError(.insecurePath, "\(fullPath + suffix) is a symbolic link; "
                                     + "remove it: the database must be a plain file in the state directory")
                }
                throw ioError("open \(fullPath + suffix)", errno: error.rawValue)
            }
            defer { fd.close() }
            try secure(fd: fd, name: fullPath + suffix, wantedMode: 0o600, isDirectory: false, mayFix: true,
                       notices: &notices)
        }
    }

    /// Refuses a path that another user owns (they could rewrite the audit chain) and
    /// sets `wantedMode` on one of ours that has another mode, or refuses it when
    /// `mayFix` is false.
    private static func secure(fd: FD, name: String, wantedMode: mode_t, isDirectory: Bool, mayFix: Bool,
                               notices: inout [String]) throws {
        let info: Stat
        do {
            info = try fd.stat()
        } catch {
            throw ioError("stat \(name)", errno: error.rawValue)
        }
        guard isDirectory ? info.isDirectory : info.isRegular else {
            throw StoreError(.insecurePath, "\(name) is not a \(isDirectory ? "directory" : "regular file"); "
                             + "move it away and retry")
        }
        let euid = ProcessInfoLite.effectiveUserID
        guard info.uid == euid else {
            throw StoreError(.insecurePath, "\(name) is owned by uid \(info.uid), not by uid \(euid) that runs "
                             + "clawjail; another user could rewrite the state and the audit log. "
                             + "Fix it with `chown \(euid) \(name)` or use another state directory")
        }
        let mode = info.permissions
        if mode != wantedMode {
            guard mayFix else {
                throw StoreError(.insecurePath, "\(name) is a symbolic link to a directory with mode \(octal(mode)); "
                                 + "clawjail changes no mode through a link: run `chmod \(octal(wantedMode)) "
                                 + "\(name)/` or pass the real path")
            }
            do {
                try fd.setMode(wantedMode)
            } catch {
                throw ioError("chmod \(name)", errno: error.rawValue)
            }
            notices.append("changed the permissions of \(name) from \(octal(mode)) to \(octal(wantedMode))")
        }
    }

    private static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    static func ioError(_ what: String, errno code: Int32) -> StoreError {
        let e = Errno(rawValue: code)
        let reason = e.text
        var hint = ""
        if e == .EACCES || e == .EPERM {
            hint = "; run clawjail as root or pass a state directory you own"
        } else if e == .EROFS {
            hint = "; the filesystem is read-only, pass a writable state directory"
        } else if e == .ENOSPC || e == .EDQUOT {
            hint = "; the filesystem is full: free space there"
        }
        return StoreError(e == .ENOSPC || e == .EDQUOT ? .full : .io, "cannot \(what): \(reason)\(hint)",
                          errno: code)
    }
}
