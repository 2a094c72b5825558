#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// Filesystem calls. Paths that an agent (or its config) controls are always opened
/// relative to a directory fd with RESOLVE_NO_SYMLINKS, so a symlink swapped in during
/// setup can never redirect what we act on (CVE-2021-30465).
public enum FileSystem {
    public static let resolveNoSymlinks: UInt64 = 0x04   // RESOLVE_NO_SYMLINKS
    public static let resolveNoMagiclinks: UInt64 = 0x02 // RESOLVE_NO_MAGICLINKS
    public static let resolveBeneath: UInt64 = 0x08      // RESOLVE_BENEATH
    public static let resolveNoXdev: UInt64 = 0x01       // RESOLVE_NO_XDEV

    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0, at dir: FD = .cwd) throws(Errno) -> FD {
        FD(try syscallRetrying { openat(dir.rawValue, path, flags | O_CLOEXEC, mode) })
    }

    public static func open(_ path: String, _ flags: OpenFlags, mode: mode_t = 0, at dir: FD = .cwd) throws(Errno) -> FD {
        try open(path, flags.rawValue, mode: mode, at: dir)
    }

    /// openat2 with a RESOLVE_* mask. O_CLOEXEC is always added.
    public static func openat2(_ path: String, _ flags: Int32, mode: UInt64 = 0, resolve: UInt64, at dir: FD = .cwd) throws(Errno) -> FD {
        FD(try syscallRetrying { cj_sys_openat2(dir.rawValue, path, UInt64(flags | O_CLOEXEC), mode, resolve) })
    }

    public static func openat2(_ path: String, _ flags: OpenFlags, mode: UInt64 = 0, resolve: UInt64, at dir: FD = .cwd) throws(Errno) -> FD {
        try openat2(path, flags.rawValue, mode: mode, resolve: resolve, at: dir)
    }

    /// Opens an absolute path component by component from "/", refusing every symlink
    /// on the way (an O_PATH fd). This is how config-controlled host paths are opened.
    public static func openNoSymlinks(_ absolutePath: String, _ flags: Int32 = O_PATH) throws(Errno) -> FD {
        try openat2(absolutePath, flags, resolve: resolveNoSymlinks | resolveNoMagiclinks)
    }

    public static func openNoSymlinks(_ absolutePath: String, _ flags: OpenFlags) throws(Errno) -> FD {
        try openNoSymlinks(absolutePath, flags.rawValue)
    }

    public static func stat(_ path: String, at dir: FD = .cwd, followSymlinks: Bool = false) throws(Errno) -> Stat {
        var st = Glibc.stat()
        _ = try syscallRetrying { fstatat(dir.rawValue, path, &st, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW) }
        return Stat(st)
    }

    /// fstat of an O_PATH fd (fstatat with AT_EMPTY_PATH works on O_PATH fds).
    public static func stat(_ fd: FD) throws(Errno) -> Stat {
        var st = Glibc.stat()
        _ = try syscallRetrying { fstatat(fd.rawValue, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) }
        return Stat(st)
    }

    public static func exists(_ path: String) -> Bool {
        (try? stat(path)) != nil
    }

    public static func mkdir(_ path: String, mode: mode_t = 0o755, at dir: FD = .cwd) throws(Errno) {
        _ = try syscallRetrying { mkdirat(dir.rawValue, path, mode) }
    }

    /// mkdir that treats an existing entry as success: true when it made the directory,
    /// false when something was there already.
    @discardableResult
    public static func ensureDirectory(_ path: String, mode: mode_t = 0o755, at dir: FD = .cwd) throws(Errno) -> Bool {
        if mkdirat(dir.rawValue, path, mode) == 0 { return true }
        let e = Errno.current
        if e != .EEXIST { throw e }
        return false
    }

    /// mkdir -p for an absolute path; existing directories are fine. Returns the
    /// components it created (for undo).
    @discardableResult
    public static func mkdirs(_ path: String, mode: mode_t = 0o755) throws(Errno) -> [String] {
        var created: [String] = []
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            do {
                try mkdir(prefix, mode: mode)
                created.append(prefix)
            } catch where error == .EEXIST {
                continue
            }
        }
        return created
    }

    public static func chmod(_ path: String, _ mode: mode_t, at dir: FD = .cwd) throws(Errno) {
        _ = try syscallRetrying { fchmodat(dir.rawValue, path, mode, 0) }
    }

    /// chmod through an fd that may be O_PATH: via its /proc/self/fd magic link, which
    /// names exactly the inode we opened.
    public static func chmod(_ fd: FD, _ mode: mode_t) throws(Errno) {
        _ = try syscallRetrying { fchmodat(AT_FDCWD, fd.procPath, mode, 0) }
    }

    /// lchown through an fd (works on O_PATH fds, never follows a symlink).
    public static func chown(_ fd: FD, uid: UInt32, gid: UInt32) throws(Errno) {
        _ = try syscallRetrying { fchownat(fd.rawValue, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) }
    }

    public static func chown(_ path: String, at dir: FD = .cwd, uid: UInt32, gid: UInt32) throws(Errno) {
        _ = try syscallRetrying { fchownat(dir.rawValue, path, uid, gid, AT_SYMLINK_NOFOLLOW) }
    }

    public static func unlink(_ path: String, at dir: FD = .cwd) throws(Errno) {
        _ = try syscallRetrying { unlinkat(dir.rawValue, path, 0) }
    }

    public static func rmdir(_ path: String, at dir: FD = .cwd) throws(Errno) {
        _ = try syscallRetrying { unlinkat(dir.rawValue, path, AT_REMOVEDIR) }
    }

    public static func rename(_ from: String, _ to: String, at dir: FD = .cwd) throws(Errno) {
        _ = try syscallRetrying { renameat(dir.rawValue, from, dir.rawValue, to) }
    }

    public static func readlink(_ path: String, at dir: FD = .cwd) throws(Errno) -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try syscallRetrying { readlinkat(dir.rawValue, path, &buf, buf.count - 1) }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func readFile(_ path: String, at dir: FD = .cwd, limit: Int = 64 << 20) throws(Errno) -> [UInt8] {
        let fd = try open(path, O_RDONLY | O_NOFOLLOW, at: dir)
        defer { fd.close() }
        return try fd.readAll(limit: limit)
    }

    public static func readText(_ path: String, at dir: FD = .cwd, limit: Int = 64 << 20) throws(Errno) -> String {
        String(decoding: try readFile(path, at: dir, limit: limit), as: UTF8.self)
    }

    /// Writes a short control file (cgroupfs, procfs) in one write(2), as the kernel expects.
    public static func writeControl(_ path: String, _ value: String, at dir: FD = .cwd) throws(Errno) {
        let fd = try open(path, O_WRONLY, at: dir)
        defer { fd.close() }
        try fd.writeAll(Array(value.utf8))
    }

    /// Atomically replaces `path` with `bytes` (temp file + fsync + rename), mode from creation.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws(Errno) {
        let tmp = path + ".tmp.\(getpid())"
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: mode)
        do {
            try fd.writeAll(bytes)
            _ = try syscallRetrying { fsync(fd.rawValue) }
            _ = try syscallRetrying { fchmod(fd.rawValue, mode) }
            fd.close()
            try rename(tmp, path)
        } catch {
            fd.close()
            try? unlink(tmp)
            throw error
        }
    }

    /// Directory entries (names only, without "." and ".."), from an fd or a path.
    /// A symlink at `path` is refused unless `followSymlinks`.
    public static func listDirectory(_ path: String, at dir: FD = .cwd, followSymlinks: Bool = false) throws(Errno) -> [String] {
        let fd = try open(path, O_RDONLY | O_DIRECTORY | (followSymlinks ? 0 : O_NOFOLLOW), at: dir)
        guard let d = fdopendir(fd.rawValue) else {
            let e = Errno.current
            fd.close()
            throw e
        }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        return names
    }

    public static func umask(_ mask: mode_t) -> mode_t { Glibc.umask(mask) }

    /// getcwd(3); nil when the working directory is gone or unreachable.
    public static func currentDirectory() -> String? {
        guard let p = getcwd(nil, 0) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// getxattr(2) into `buffer`: the value's length.
    public static func extendedAttribute(_ name: String, of path: String, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try syscallRetrying { cj_sys_getxattr(path, name, buffer.baseAddress, buffer.count) }
    }
}

/// An advisory lock held for as long as the fd is open; the kernel drops it when the
/// process dies, however it dies. That is what makes "one supervisor per agent" safe
/// against SIGKILL.
public struct FileLock: Sendable {
    public let fd: FD

    /// Returns nil when another process holds the lock.
    public static func tryExclusive(_ path: String, mode: mode_t = 0o600) throws(Errno) -> FileLock? {
        let fd = try FileSystem.open(path, O_RDWR | O_CREAT | O_NOFOLLOW, mode: mode)
        do {
            _ = try syscallRetrying { flock(fd.rawValue, LOCK_EX | LOCK_NB) }
            return FileLock(fd: fd)
        } catch {
            fd.close()
            if error == .EWOULDBLOCK || error == .EAGAIN { return nil }
            throw error
        }
    }

    /// True when some process holds the lock on `path` (without taking it for long).
    public static func isHeld(_ path: String) -> Bool {
        guard let fd = try? FileSystem.open(path, O_RDONLY | O_NOFOLLOW) else { return false }
        defer { fd.close() }
        if flock(fd.rawValue, LOCK_SH | LOCK_NB) == 0 {
            _ = flock(fd.rawValue, LOCK_UN)
            return false
        }
        return true
    }

    public func release() { fd.close() }
}
