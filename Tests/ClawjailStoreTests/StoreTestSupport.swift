import Foundation
import Testing
@testable import ClawjailStore

#if canImport(Glibc)
import Glibc
#endif

/// A temporary state directory, removed when the test's scope ends.
final class TempDir {
    let path: String

    init() throws {
        var template = Array("/tmp/clawjail-store-test.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.flatMap { mkdtemp($0) }
        }
        let created = try #require(made, "mkdtemp failed: errno \(errno)")
        path = String(cString: created)
    }

    /// A state directory inside the temporary one, not yet created.
    var state: String { path + "/state" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func mode(of path: String) throws -> mode_t {
    var info = stat()
    guard lstat(path, &info) == 0 else {
        throw StoreError(.io, "lstat \(path): errno \(errno)")
    }
    return info.st_mode & 0o7777
}

/// A raw connection to the database file that bypasses the store, the way an
/// attacker with file access would edit it: append-only triggers dropped.
func tamper(_ store: Store, _ sql: String, arguments: StatementArguments = []) throws {
    let raw = try DatabaseQueue(path: store.databasePath)
    try raw.write { db in
        try db.execute(sql: "DROP TRIGGER IF EXISTS event_append_only_update")
        try db.execute(sql: "DROP TRIGGER IF EXISTS event_append_only_delete")
        try db.execute(sql: sql, arguments: arguments)
    }
    try raw.close()
}

func integrityCheck(_ store: Store) throws -> [String] {
    try store.dbQueue.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
}

/// Test-side SHA-256 hex, computed independently of the store's helper: coreutils'
/// sha256sum over the text.
func sha256Hex(_ text: String) -> String {
    let input = Pipe(), output = Pipe()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    p.standardInput = input
    p.standardOutput = output
    do { try p.run() } catch { return "sha256sum did not start: \(error)" }
    input.fileHandleForWriting.write(Data(text.utf8))
    try? input.fileHandleForWriting.close()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: out.prefix(64), as: UTF8.self)
}

/// Collects values from several threads.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Runs `body(index)` on `count` real threads at once and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.start()
    }
    group.wait()
}

let testPlanJSON = #"{"network":{"mode":"none"},"limits":{"memory":536870912,"pids":256},"mounts":["/usr"]}"#
