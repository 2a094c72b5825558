import Foundation
import Testing
@testable import ClawjailStore

#if canImport(Glibc)
import Glibc
#endif

@Suite("crash safety")
struct CrashSafetyTests {
    /// A helper process runs the store's own append code in a tight loop and is
    /// SIGKILLed mid-write, three times over the same database. Each time the next
    /// open finds an intact database and an unbroken audit chain, and no run row
    /// exists without its audit row (they commit together).
    @Test(.timeLimit(.minutes(2)))
    func sigkillMidWriteLeavesAConsistentDatabase() throws {
        let temp = try TempDir()
        try Store.open(directory: temp.state).close()
        var verified: Int64 = 0
        for round in 0..<3 {
            let child = try TestChild.spawn(.appendLoop, state: temp.state, index: round, scratch: temp.path)
            let floor = verified
            try TestChild.waitUntil(seconds: 60, "the helper to append events") {
                let probe = try Store.open(directory: temp.state)
                defer { try? probe.close() }
                return try probe.dbQueue.read { db in
                    try Int64.fetchOne(db, sql: "SELECT seq FROM audit_head") ?? 0
                } > floor + 20
            }
            // No connection of ours is open at the kill, so the next open recovers
            // the WAL from the files alone, as after a supervisor crash.
            usleep(200_000)
            #expect(kill(child.processIdentifier, SIGKILL) == 0)
            child.waitUntilExit()
            #expect(child.terminationReason == .uncaughtSignal)
            #expect(child.terminationStatus == SIGKILL)

            let store = try Store.open(directory: temp.state)
            #expect(try integrityCheck(store) == ["ok"])
            let verification = try store.verifyAudit()
            guard case .ok(let count) = verification else {
                Issue.record("round \(round): \(verification)")
                return
            }
            #expect(count > verified + 20)
            verified = count
            let (runs, starts, finished, ends) = try store.dbQueue.read { db in
                (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM run") ?? -1,
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event WHERE kind = 'run.start'") ?? -2,
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM run WHERE state = 'finished'") ?? -1,
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event WHERE kind = 'run.end'") ?? -2)
            }
            #expect(runs == starts)
            #expect(finished == ends)
            // The dead helper's unfinished runs are found and marked lost.
            let lost = try store.markLostRuns()
            #expect(!lost.isEmpty)
            #expect(try store.runningRuns().isEmpty)
            // The chain goes on from where the killed writer left it.
            try store.append(AuditEventInput(agent: "", kind: "test.after-crash"))
            guard case .ok(let after) = try store.verifyAudit() else {
                Issue.record("round \(round): chain broken after appending")
                return
            }
            verified = after
            try store.close()
        }
    }
}
