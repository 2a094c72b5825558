import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A state directory, config directory and workspace of its own for each operator
/// test, so that tampering with one database or counting its rows never meets another
/// test's runs. Agents here run /bin/sh from the host rootfs: no probe needed.
struct OpsSetup {
    let dir: String
    var state: String { dir + "/state" }
    var env: [String: String] { ["CLAWJAIL_STATE_DIR": state, "CLAWJAIL_CACHE_DIR": dir + "/cache"] }

    init(_ tag: String) throws {
        dir = try Harness.tempDirectory("ops-" + tag)
    }

    /// `clawjail ARGS` against this setup's state.
    func cj(_ args: [String], extra: [String: String] = [:], timeout: TimeInterval = 60) throws -> Harness.Result {
        var e = env
        for (k, v) in extra { e[k] = v }
        return try Harness.clawjail(args, environment: e, timeout: timeout)
    }

    /// Writes DIR/NAME.toml for an agent with its own workspace; returns the agent.
    func agent(_ tag: String, script: String, extra: String = "") throws -> OpsAgent {
        let name = "cjt-\(tag)-\(String(UInt32.random(in: 0...0xffffff), radix: 36))"
        let a = OpsAgent(name: name, config: "\(dir)/\(name).toml", workspace: "\(dir)/\(name)-ws")
        try FileManager.default.createDirectory(atPath: a.workspace, withIntermediateDirectories: true)
        let escaped = script.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        let text = """
        name = "\(name)"
        command = ["/bin/sh", "-c", "\(escaped)"]
        user = 1000

        [workspace]
        host = "\(a.workspace)"

        \(extra)
        """
        try text.write(toFile: a.config, atomically: true, encoding: .utf8)
        return a
    }

    /// Starts `clawjail run` in the background.
    func start(_ a: OpsAgent, args: [String] = []) throws -> Background {
        try Background([Harness.binary, "run"] + args + [a.config], environment: env)
    }

    func clean() {
        // Leftover cgroups of a test that failed half-way: only ours (cjt- names).
        _ = try? cj(["gc"])
        Harness.remove(dir)
    }
}

struct OpsAgent {
    let name: String
    let config: String
    let workspace: String
}

/// A process of ours in the background, its output collected as it comes.
final class Background: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var outText = ""
    private var errText = ""

    init(_ argv: [String], environment: [String: String]) throws {
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        var env = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        out.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock()
            self.outText += String(decoding: d, as: UTF8.self)
            self.lock.unlock()
        }
        err.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock()
            self.errText += String(decoding: d, as: UTF8.self)
            self.lock.unlock()
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { lock.lock(); defer { lock.unlock() }; return outText }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return errText }

    /// Waits (bounded) until stdout contains `text`.
    func waitFor(_ text: String, timeout: TimeInterval = 15) -> Bool {
        Harness.eventually(timeout: timeout) { self.stdout.contains(text) }
    }

    /// Waits (bounded) for the exit; the status in the shell's convention, nil on timeout.
    @discardableResult
    func wait(timeout: TimeInterval = 30) -> Int32? {
        guard Harness.eventually(timeout: timeout, { !self.process.isRunning }) else { return nil }
        process.waitUntilExit()
        usleep(50_000)   // the last output
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// Ends it whatever state it is in (it is our own child). SIGTERM suits clawjail,
    /// which reads it from a signalfd; other programs inherit this test process's
    /// blocked signals through Foundation's Process and only go with SIGKILL.
    func finish(signal: Int32 = SIGTERM) {
        if process.isRunning {
            kill(pid, SIGCONT)
            kill(pid, signal)
            if wait(timeout: 15) == nil {
                kill(pid, SIGKILL)
                process.waitUntilExit()
            }
        }
    }
}

enum OpsJSON {
    static func parse(_ text: String) throws -> [String: Any] {
        let v = try JSONSerialization.jsonObject(with: Data(text.utf8))
        guard let o = v as? [String: Any] else { throw HarnessError("not a JSON object: \(text)") }
        return o
    }

    static func lines(_ text: String) throws -> [[String: Any]] {
        try text.split(separator: "\n").map { try parse(String($0)) }
    }
}

extension Harness {
    /// sqlite3 from Debian (scripts/setup installs it), on a database no clawjail has open.
    static func sqlite(_ db: String, _ sql: String) throws -> Harness.Result {
        try run(["/usr/bin/sqlite3", db, sql])
    }

    static func sha256(_ path: String) throws -> String {
        let r = try run(["/usr/bin/sha256sum", path])
        return String(r.stdout.prefix(64))
    }

    static func mode(_ path: String) -> UInt32? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return UInt32(st.st_mode) & 0o7777
    }
}
