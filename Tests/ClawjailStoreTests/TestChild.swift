import Foundation
import Testing
@testable import ClawjailStore

#if canImport(Glibc)
import Glibc
#endif

/// Helper processes for the tests that need real concurrent processes or a SIGKILL.
///
/// The test binary re-executes itself (via /proc/self/exe, through posix_spawn in
/// Foundation's Process: nothing runs between fork and exec) with a Swift Testing
/// filter that selects only `clawjailStoreTestChild`, and an environment variable
/// that enables that test and says what to do. In a normal run the entry test is
/// skipped. So the writer that gets killed is the store's own code, not a stand-in.
enum TestChild {
    enum Mode: String {
        /// Allocate uid ranges for shared and own agents once a go file appears.
        case allocate
        /// Append audit events (and begin/end runs) in a tight loop until killed.
        case appendLoop = "append-loop"
        /// Create the store and write once under umask 0 (umask is process-wide, so
        /// not something to change inside the parallel test process).
        case openUnderUmask0 = "umask0"
    }

    static let variable = "CLAWJAIL_STORE_TEST_CHILD"
    static let sharedAgents = (0..<50).map { "shared-\($0)" }
    static let ownAgents = 10
    /// A child that is never killed stops by itself after this long.
    static let maxSeconds: Double = 20

    struct Request {
        let mode: Mode
        let state: String
        let index: Int
        let scratch: String
    }

    /// The request passed in the environment, when this process is a helper.
    static var request: Request? {
        guard let value = ProcessInfo.processInfo.environment[variable] else { return nil }
        let parts = value.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, let mode = Mode(rawValue: parts[0]), let index = Int(parts[2]) else { return nil }
        return Request(mode: mode, state: parts[1], index: index, scratch: parts[3])
    }

    static func spawn(_ mode: Mode, state: String, index: Int, scratch: String) throws -> Process {
        let process = Process()
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--testing-library", "swift-testing", "--filter", "clawjailStoreTestChild"]
        var environment = ProcessInfo.processInfo.environment
        environment[variable] = [mode.rawValue, state, String(index), scratch].joined(separator: "|")
        process.environment = environment
        let log = scratch + "/child-\(mode.rawValue)-\(index).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Polls until every path exists; bounded in time.
    static func waitForFiles(_ paths: [String], seconds: Double) throws {
        try waitUntil(seconds: seconds, "files \(paths)") {
            paths.allSatisfy { FileManager.default.fileExists(atPath: $0) }
        }
    }

    static func waitUntil(seconds: Double, _ what: String, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try !condition() {
            guard Date() < deadline else {
                throw StoreError(.invalidState, "timed out after \(seconds) s waiting for \(what)")
            }
            usleep(5_000)
        }
    }

    /// The child side.
    static func run(_ request: Request) throws {
        switch request.mode {
        case .allocate:
            let store = try Store.open(directory: request.state)
            _ = FileManager.default.createFile(atPath: request.scratch + "/ready-\(request.index)", contents: nil)
            try waitForFiles([request.scratch + "/go"], seconds: 60)
            let offset = request.index * 13 % sharedAgents.count
            let agents = Array(sharedAgents[offset...] + sharedAgents[..<offset])
                + (0..<ownAgents).map { "process\(request.index)-\($0)" }
            var lines = ""
            for agent in agents {
                lines += "\(agent) \(try store.uidRange(forAgent: agent).slot)\n"
            }
            let result = request.scratch + "/result-\(request.index)"
            try lines.write(toFile: result + ".tmp", atomically: false, encoding: .utf8)
            guard rename(result + ".tmp", result) == 0 else {
                throw StoreError(.io, "rename \(result): errno \(errno)")
            }
        case .openUnderUmask0:
            umask(0)
            let store = try Store.open(directory: request.state)
            try store.append(AuditEventInput(agent: "", kind: "test.umask"))
            // Keep the connection open so that the parent sees -wal and -shm.
            _ = FileManager.default.createFile(atPath: request.scratch + "/ready-\(request.index)", contents: nil)
            try waitForFiles([request.scratch + "/go"], seconds: 60)
            try store.close()
        case .appendLoop:
            let store = try Store.open(directory: request.state)
            let pid = getpid()
            let start = try #require(ProcessIdentity.startTime(pid: pid))
            let padding = String(repeating: "x", count: 300)
            let deadline = Date().addingTimeInterval(maxSeconds)
            var iteration: Int64 = 0
            while Date() < deadline {
                iteration += 1
                try store.append(AuditEventInput(agent: "crash", kind: "egress.allow",
                                                 payload: ["i": .int(iteration), "host": "example.test",
                                                           "pad": .string(padding)]))
                if iteration % 5 == 0 {
                    // A multi-statement transaction: run row, manifest and audit row together.
                    let id = try store.beginRun(agent: "crash", kind: .tool, supervisorPid: pid,
                                                supervisorStart: start, planHash: "plan-\(iteration % 3)",
                                                manifestJSON: #"{"i":\#(iteration % 3)}"#)
                    if iteration % 10 == 0 {
                        try store.endRun(id: id, outcome: RunOutcome(status: .exited(code: 0), exitCode: 0,
                                                                     durationMs: 1))
                    }
                }
            }
        }
    }
}

@Suite("helper process entry")
struct TestChildEntry {
    @Test(.enabled(if: TestChild.request != nil,
                   "helper: runs only in a process spawned by the uid-allocation and crash-safety tests"))
    func clawjailStoreTestChild() throws {
        let request = try #require(TestChild.request)
        try TestChild.run(request)
    }
}
