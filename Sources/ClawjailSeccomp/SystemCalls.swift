import ClawjailCore

#if canImport(Glibc)
import Glibc
#endif

/// The one place this module calls the kernel: retries EINTR and turns failures into
/// a ClawjailError that names the step.
enum SystemCall {
    @discardableResult
    static func check<T: FixedWidthInteger>(_ what: @autoclosure () -> String, _ body: () -> T) throws -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = Glibc.errno
            if e == EINTR { continue }
            throw ClawjailError(.seccomp, "\(what()): \(errnoText(e))")
        }
    }

    /// Like `check`, but hands back the errno instead of throwing.
    static func attempt<T: FixedWidthInteger>(_ body: () -> T) -> Result<T, ErrnoValue> {
        while true {
            let r = body()
            if r >= 0 { return .success(r) }
            let e = Glibc.errno
            if e == EINTR { continue }
            return .failure(ErrnoValue(code: e))
        }
    }

    struct ErrnoValue: Error, Equatable {
        var code: Int32
    }

    static func errnoText(_ e: Int32) -> String {
        "\(String(cString: strerror(e))) (\(ErrnoNames.name(e)))"
    }

    /// Reads a whole file; nil when it does not exist. `limit` guards against a
    /// huge or endless file (profiles are a few KiB).
    static func readFile(_ path: String, at dir: Int32 = AT_FDCWD, limit: Int = 1 << 20) throws -> [UInt8]? {
        let fd: Int32
        switch attempt({ openat(dir, path, O_RDONLY | O_CLOEXEC | O_NOCTTY) }) {
        case .success(let f): fd = f
        case .failure(let e) where e.code == ENOENT || e.code == ENOTDIR: return nil
        case .failure(let e): throw ClawjailError(.seccomp, "open \(path): \(errnoText(e.code))")
        }
        defer { _ = close(fd) }
        return try readAll(fd, what: "read \(path)", limit: limit)
    }

    /// Like `readFile`, with the file's status taken from the same fd before reading:
    /// whatever the bytes are, a later change gives the file a newer status.
    static func readFileAndStatus(_ path: String, limit: Int = 1 << 20) throws -> (bytes: [UInt8], status: stat)? {
        let fd: Int32
        switch attempt({ openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOCTTY) }) {
        case .success(let f): fd = f
        case .failure(let e) where e.code == ENOENT || e.code == ENOTDIR: return nil
        case .failure(let e): throw ClawjailError(.seccomp, "open \(path): \(errnoText(e.code))")
        }
        defer { _ = close(fd) }
        var st = stat()
        try check("stat \(path)") { fstat(fd, &st) }
        return (try readAll(fd, what: "read \(path)", limit: limit), st)
    }

    enum PathStatus {
        case present(stat)
        /// ENOENT or ENOTDIR: what `readFile` reports as "no such file".
        case absent
        case failed
    }

    /// stat(2), following symlinks as `readFile` does.
    static func status(of path: String) -> PathStatus {
        var st = stat()
        switch attempt({ stat(path, &st) }) {
        case .success: return .present(st)
        case .failure(let e) where e.code == ENOENT || e.code == ENOTDIR: return .absent
        case .failure: return .failed
        }
    }

    /// CLOCK_REALTIME in ns: the clock file timestamps come from.
    static func realtimeNanoseconds() -> Int64 {
        var ts = timespec()
        _ = clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    static func currentDirectory() -> String? {
        guard let p = getcwd(nil, 0) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func readAll(_ fd: Int32, what: @autoclosure () -> String, limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = try chunk.withUnsafeMutableBytes { b in try check(what()) { read(fd, b.baseAddress, b.count) } }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw ClawjailError(.seccomp, "\(what()): larger than \(limit) bytes") }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], what: @autoclosure () -> String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try bytes.withUnsafeBytes { b in
                try check(what()) { write(fd, b.baseAddress.map { $0 + offset }, b.count - offset) }
            }
            offset += n
        }
    }

    static func readText(_ path: String) throws -> String? {
        guard let bytes = try readFile(path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
