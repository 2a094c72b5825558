import ClawjailCore
import ClawjailSystem

/// How the loader, the cache and the index read and write files: ClawjailSystem's
/// calls, with failures worded as ClawjailErrors that name the step and keep the
/// errno as their cause.
enum SeccompFiles {
    /// Reads a whole file; nil when it does not exist (ENOENT, ENOTDIR). `limit`
    /// guards against a huge or endless file (profiles are a few KiB).
    static func readFile(_ path: String, at dir: FD = .cwd, limit: Int = 1 << 20) throws -> [UInt8]? {
        guard let fd = try open(path, at: dir) else { return nil }
        defer { fd.close() }
        return try readAll(fd, what: "read \(path)", limit: limit)
    }

    /// Like `readFile`, with the file's status taken from the same fd before reading:
    /// whatever the bytes are, a later change gives the file a newer status.
    static func readFileAndStatus(_ path: String, limit: Int = 1 << 20) throws -> (bytes: [UInt8], status: Stat)? {
        guard let fd = try open(path, at: .cwd) else { return nil }
        defer { fd.close() }
        let status: Stat
        do {
            status = try fd.stat()
        } catch {
            throw ClawjailError(.seccomp, "stat \(path)", cause: error)
        }
        return (try readAll(fd, what: "read \(path)", limit: limit), status)
    }

    /// Follows symlinks; nil for ENOENT and ENOTDIR.
    private static func open(_ path: String, at dir: FD) throws(ClawjailError) -> FD? {
        do {
            return try FileSystem.open(path, [.readOnly, .noControllingTerminal], at: dir)
        } catch where error == .ENOENT || error == .ENOTDIR {
            return nil
        } catch {
            throw ClawjailError(.seccomp, "open \(path)", cause: error)
        }
    }

    enum PathStatus {
        case present(Stat)
        /// ENOENT or ENOTDIR: what `readFile` reports as "no such file".
        case absent
        case failed
    }

    /// stat(2), following symlinks as `readFile` does.
    static func status(of path: String) -> PathStatus {
        do {
            return .present(try FileSystem.stat(path, followSymlinks: true))
        } catch where error == .ENOENT || error == .ENOTDIR {
            return .absent
        } catch {
            return .failed
        }
    }

    static func readAll(_ fd: FD, what: @autoclosure () -> String, limit: Int) throws(ClawjailError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n: Int
            do {
                n = try fd.read(into: &chunk)
            } catch {
                throw ClawjailError(.seccomp, what(), cause: error)
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw ClawjailError(.seccomp, "\(what()): larger than \(limit) bytes") }
        }
    }

    static func writeAll(_ fd: FD, _ bytes: [UInt8], what: @autoclosure () -> String) throws(ClawjailError) {
        do {
            try fd.writeAll(bytes)
        } catch {
            throw ClawjailError(.seccomp, what(), cause: error)
        }
    }

    static func readText(_ path: String) throws -> String? {
        guard let bytes = try readFile(path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
