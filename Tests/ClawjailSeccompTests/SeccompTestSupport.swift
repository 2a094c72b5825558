import Foundation
import Testing
@testable import ClawjailSeccomp

#if canImport(Glibc)
import Glibc
#endif

/// Paths and helpers shared by the Seccomp* tests.
enum SeccompFixtures {
    /// The repository root (Tests/ClawjailSeccompTests/ is two levels down).
    static let repo: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()
        url.deleteLastPathComponent()
        url.deleteLastPathComponent()
        return url.path
    }()

    static let profilesDir = repo + "/profiles"
    static let probesDir = repo + "/probes"
    static let dockerProfile = repo + "/../shared/data/docker-default-seccomp.json"

    static var dockerProfileAvailable: Bool { FileManager.default.fileExists(atPath: dockerProfile) }
    static var gccAvailable: Bool {
        ["/usr/bin/gcc", "/usr/local/bin/gcc"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func load(_ name: String) throws -> SeccompProfile {
        try ProfileLocator.load(nameOrPath: name, searchPaths: [profilesDir])
    }

    /// A fresh directory under /tmp, removed by the caller.
    static func tempDir(_ tag: String) throws -> String {
        var template = Array("/tmp/clawjail-\(tag)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { b -> String? in
            guard let base = b.baseAddress, let p = mkdtemp(base) else { return nil }
            return String(cString: p)
        }
        guard let made else { throw POSIXError(.EIO) }
        return made
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// Builds the probe and the loader statically, once: into a per-user directory
    /// that later runs reuse while the sources are unchanged (so test runs leave one
    /// directory behind, not one per run). A directory someone else owns is not used.
    static let builtProbes: Result<(probe: String, loader: String), any Error> = {
        do {
            var dir = "/tmp/clawjail-seccomp-probes-\(getuid())"
            mkdir(dir, 0o700)
            var st = stat()
            if lstat(dir, &st) != 0 || st.st_mode & S_IFMT != S_IFDIR || st.st_uid != getuid() || st.st_mode & 0o077 != 0 {
                dir = try tempDir("probes")
            }
            var outputs: [String] = []
            for (src, name) in [("sysprobe.c", "sysprobe"), ("seccomp-load.c", "seccomp-load")] {
                let source = probesDir + "/" + src
                let out = dir + "/" + name
                var s = stat(), o = stat()
                let fresh = stat(source, &s) == 0 && stat(out, &o) == 0
                    && (o.st_mtim.tv_sec, o.st_mtim.tv_nsec) > (s.st_mtim.tv_sec, s.st_mtim.tv_nsec)
                if !fresh {
                    // Build beside it and rename: a concurrent test run never sees half a binary.
                    let temp = out + ".\(getpid())"
                    let r = try run(["/usr/bin/gcc", "-O2", "-static", "-o", temp, source])
                    guard r.status == 0 else { throw ProbeError("gcc \(src) failed: \(r.output)") }
                    guard rename(temp, out) == 0 else { throw ProbeError("rename \(temp)") }
                }
                outputs.append(out)
            }
            return .success((outputs[0], outputs[1]))
        } catch {
            return .failure(error)
        }
    }()

    struct ProbeError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    struct RunResult {
        var status: Int32      // exit code, or 128 + signal
        var output: String     // stdout and stderr together
    }

    /// posix_spawn with stdout+stderr captured; `extraFD` becomes fd 3 in the child.
    /// Bounded: the child is killed after `timeout` seconds.
    static func run(_ argv: [String], extraFD: Int32? = nil, environment: [String] = [],
                    timeout: Double = 60, whileRunning: (() throws -> Void)? = nil) throws -> RunResult {
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { throw POSIXError(.EIO) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        if let extraFD { posix_spawn_file_actions_adddup2(&actions, extraFD, 3) }

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = (["PATH=/usr/bin:/bin"] + environment).map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv)
        close(pipeFDs[1])
        guard rc == 0 else {
            close(pipeFDs[0])
            throw ProbeError("posix_spawn \(argv[0]): \(String(cString: strerror(rc)))")
        }
        try whileRunning?()
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        var pfd = pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)
        while Date() < deadline {
            let n = poll(&pfd, 1, 200)
            if n == 0 { continue }
            let got = read(pipeFDs[0], &buf, buf.count)
            if got <= 0 { break }
            out += buf[0..<got]
        }
        close(pipeFDs[0])
        if Date() >= deadline { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return RunResult(status: code, output: String(decoding: out, as: UTF8.self))
    }

    /// "name verdict detail" lines of sysprobe, keyed by name.
    static func parseProbe(_ output: String) -> [String: String] {
        var lines: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            if parts[0] == "status" {
                let kv = parts[1].split(separator: " ")
                if kv.count == 2 { lines["status." + kv[0]] = String(kv[1]) }
            } else {
                lines[String(parts[0])] = String(parts[1])
            }
        }
        return lines
    }

    static func writeFilter(_ filter: CompiledFilter, to path: String) throws {
        try Data(filter.bpf).write(to: URL(fileURLWithPath: path))
    }
}
