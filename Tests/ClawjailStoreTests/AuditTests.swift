import Foundation
import Testing
@testable import ClawjailStore
import ClawjailCore

@Suite("audit chain")
struct AuditTests {
    /// A store holding `count` events: seq 1...count, agents alternating a/b.
    private func storeWithEvents(_ count: Int, in temp: TempDir) throws -> Store {
        let store = try Store.open(directory: temp.state)
        for index in 1...count {
            try store.append(AuditEventInput(agent: index % 2 == 0 ? "b" : "a", kind: "egress.deny",
                                             payload: ["host": .string("h\(index).example"), "port": 443]))
        }
        return store
    }

    @Test func appendChainsRowsAsDocumented() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let first = try store.append(AuditEventInput(agent: "mail", kind: "seccomp.violation", runID: RunID(rawValue: 7),
                                                     payload: ["syscall": "bpf", "nr": 321, "arch": "x86_64"]))
        let second = try store.append(AuditEventInput(agent: "", kind: "emergency.stop",
                                                      payload: ["by": "kill --all", "note": "line\nbreak \"q\""]))
        #expect(first.seq == 1)
        #expect(second.seq == 2)
        #expect(first.prevHash == String(repeating: "0", count: 64))
        #expect(second.prevHash == first.hash)
        #expect(first.payloadJSON == #"{"arch":"x86_64","nr":321,"syscall":"bpf"}"#)
        // Recompute both hashes from the documented formula, independently of the store.
        let firstText = #"{"agent":"mail","kind":"seccomp.violation","payload":{"arch":"x86_64","nr":321,"#
            + #""syscall":"bpf"},"run_id":7,"seq":1,"ts":\#(first.ts)}"#
        #expect(first.hash == sha256Hex(first.prevHash + "\n" + firstText))
        let secondText = #"{"agent":"","kind":"emergency.stop","payload":{"by":"kill --all","note":"line\nbreak "#
            + #"\"q\""},"run_id":null,"seq":2,"ts":\#(second.ts)}"#
        #expect(second.hash == sha256Hex(first.hash + "\n" + secondText))
        #expect(try store.verifyAudit() == .ok(count: 2))
        let head = try store.dbQueue.read { db in try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_head") }
        #expect(head?["seq"] as Int64? == 2)
        #expect(head?["hash"] as String? == second.hash)
    }

    @Test func rejectsAnEmptyKindAndNonFinitePayload() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        #expect(throws: StoreError.self) { try store.append(AuditEventInput(agent: "a", kind: "")) }
        #expect(throws: StoreError.self) {
            try store.append(AuditEventInput(agent: "a", kind: "x", payload: ["v": .double(.nan)]))
        }
        #expect(try store.verifyAudit() == .ok(count: 0))
    }

    @Test func ordinaryUpdatesAndDeletesAreRefused() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(3, in: temp)
        let update = try #require(throws: DatabaseError.self) {
            try store.dbQueue.write { db in try db.execute(sql: "UPDATE event SET payload = '{}' WHERE seq = 2") }
        }
        #expect(update.message == "audit events are append-only")
        let delete = try #require(throws: DatabaseError.self) {
            try store.dbQueue.write { db in try db.execute(sql: "DELETE FROM event WHERE seq = 3") }
        }
        #expect(delete.message == "audit events are append-only")
        #expect(try store.verifyAudit() == .ok(count: 3))
    }

    @Test func detectsAnEditedPayload() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(6, in: temp)
        try tamper(store, #"UPDATE event SET payload = '{"host":"innocent.example","port":443}' WHERE seq = 4"#)
        #expect(try reason(store.verifyAudit()) == .init(seq: 4, reason: .edited))
    }

    @Test func detectsEditedColumnsOtherThanThePayload() throws {
        for edit in ["UPDATE event SET agent = 'a' WHERE seq = 2", "UPDATE event SET ts = ts + 1 WHERE seq = 2",
                     "UPDATE event SET kind = 'egress.allow' WHERE seq = 2", "UPDATE event SET run_id = 5 WHERE seq = 2",
                     "UPDATE event SET ts = 'yesterday' WHERE seq = 2"] {
            let temp = try TempDir()
            let store = try storeWithEvents(3, in: temp)
            try tamper(store, edit)
            #expect(try reason(store.verifyAudit()) == .init(seq: 2, reason: .edited), "\(edit)")
        }
    }

    @Test func detectsADeletedMiddleRow() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(6, in: temp)
        try tamper(store, "DELETE FROM event WHERE seq = 3")
        #expect(try reason(store.verifyAudit()) == .init(seq: 3, reason: .deleted))
    }

    @Test func detectsADeletedMiddleRowWithTheRestRenumbered() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(6, in: temp)
        try tamper(store, "DELETE FROM event WHERE seq = 3")
        try tamper(store, "UPDATE event SET seq = seq - 1 WHERE seq > 3")
        try tamper(store, "UPDATE audit_head SET seq = 5")
        #expect(try reason(store.verifyAudit()) == .init(seq: 3, reason: .deleted))
    }

    @Test func detectsADeletedLastRow() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(6, in: temp)
        try tamper(store, "DELETE FROM event WHERE seq = 6")
        let verification = try store.verifyAudit()
        #expect(try reason(verification) == .init(seq: 6, reason: .deleted))
        if case .broken(_, _, let detail) = verification {
            #expect(detail.contains("chain head"))
        }
    }

    @Test func detectsADeletedFirstRow() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(4, in: temp)
        try tamper(store, "DELETE FROM event WHERE seq = 1")
        #expect(try reason(store.verifyAudit()) == .init(seq: 1, reason: .deleted))
    }

    @Test func detectsTwoRowsWithSwappedSeq() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(6, in: temp)
        try tamper(store, "UPDATE event SET seq = -1 WHERE seq = 3")
        try tamper(store, "UPDATE event SET seq = 3 WHERE seq = 4")
        try tamper(store, "UPDATE event SET seq = 4 WHERE seq = -1")
        #expect(try reason(store.verifyAudit()) == .init(seq: 3, reason: .reordered))
    }

    @Test func detectsRowsSwappedWithTheirSeqKept() throws {
        // Contents of rows 2 and 5 exchanged, seq numbers left in place.
        let temp = try TempDir()
        let store = try storeWithEvents(6, in: temp)
        try tamper(store, "UPDATE event SET seq = -2 WHERE seq = 2")
        try tamper(store, "UPDATE event SET seq = 2 WHERE seq = 5")
        try tamper(store, "UPDATE event SET seq = 5 WHERE seq = -2")
        #expect(try reason(store.verifyAudit()) == .init(seq: 2, reason: .reordered))
    }

    @Test func detectsARowRewrittenWithARecomputedHash() throws {
        // The attacker recomputes the edited row's own hash; the next row's link breaks.
        let temp = try TempDir()
        let store = try storeWithEvents(5, in: temp)
        let row = try #require(try store.dbQueue.read { db in
            try Row.fetchOne(db, sql: "SELECT ts, agent, kind, prev_hash FROM event WHERE seq = 2")
        })
        let payload = #"{"host":"innocent.example","port":443}"#
        let forged = Store.chainHash(prevHash: row["prev_hash"], seq: 2, ts: row["ts"], agent: row["agent"],
                                     kind: row["kind"], runID: nil, payloadJSON: payload)
        try tamper(store, "UPDATE event SET payload = ?, hash = ? WHERE seq = 2", arguments: [payload, forged])
        let verification = try store.verifyAudit()
        #expect(try reason(verification) == .init(seq: 3, reason: .deleted))
    }

    @Test func detectsARowAddedBehindTheStoresBack() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(3, in: temp)
        // A well-formed row that extends the chain, but the head was not moved.
        let last = try #require(try store.dbQueue.read { db in
            try String.fetchOne(db, sql: "SELECT hash FROM event WHERE seq = 3")
        })
        let payload = "{}"
        let hash = Store.chainHash(prevHash: last, seq: 4, ts: 1, agent: "a", kind: "egress.allow", runID: nil,
                                   payloadJSON: payload)
        try tamper(store, "INSERT INTO event VALUES (4, 1, 'a', 'egress.allow', NULL, ?, ?, ?)",
                   arguments: [payload, last, hash])
        #expect(try reason(store.verifyAudit()) == .init(seq: 4, reason: .inserted))
    }

    @Test func detectsAMissingHead() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(2, in: temp)
        try tamper(store, "DELETE FROM audit_head")
        #expect(try reason(store.verifyAudit()) == .init(seq: 0, reason: .deleted))
        let error = try #require(throws: StoreError.self) { try store.append(AuditEventInput(agent: "", kind: "x")) }
        #expect(error.code == .corrupt)
    }

    /// The documented limit: a consistent rewrite of the tail and the head is not
    /// visible locally; an earlier export shows it, because its last row is gone.
    @Test func consistentTruncationIsOnlyCaughtByAnEarlierExport() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(5, in: temp)
        var exported: [String] = []
        try store.exportAudit { exported.append($0) }
        let lastLine = try #require(exported.last)
        let exportedLast = try #require(try JSONSerialization.jsonObject(with: Data(lastLine.utf8)) as? [String: Any])
        let row4 = try #require(try store.dbQueue.read { db in
            try String.fetchOne(db, sql: "SELECT hash FROM event WHERE seq = 4")
        })
        try tamper(store, "DELETE FROM event WHERE seq = 5")
        try tamper(store, "UPDATE audit_head SET seq = 4, hash = ?", arguments: [row4])
        #expect(try store.verifyAudit() == .ok(count: 4))
        let seq = try #require(exportedLast["seq"] as? Int)
        let stillThere = try store.dbQueue.read { db in
            try String.fetchOne(db, sql: "SELECT hash FROM event WHERE seq = ?", arguments: [seq])
        }
        #expect(stillThere == nil)
    }

    // MARK: - Export

    @Test func exportWritesOneCanonicalObjectPerLine() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        try store.append(AuditEventInput(agent: "mail", kind: "egress.allow", runID: RunID(rawValue: 3),
                                         payload: ["host": "api.example.com", "port": 443, "ratio": 0.25]))
        try store.append(AuditEventInput(agent: "", kind: "emergency.stop", payload: ["text": "tab\there\u{1}"]))
        var lines: [String] = []
        try store.exportAudit { lines.append($0) }
        #expect(lines.count == 2)
        let timestamp = try Regex(#"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#)
        var previous = String(repeating: "0", count: 64)
        for line in lines {
            #expect(!line.contains("\n"))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(Set(object.keys) == ["seq", "ts", "ts_ms", "agent", "kind", "run_id", "payload", "prev_hash",
                                         "hash"])
            let ts = try #require(object["ts"] as? String)
            #expect(ts.wholeMatch(of: timestamp) != nil)
            let tsMs = try #require(object["ts_ms"] as? Int)
            #expect(ts == RFC3339.format(unixMs: Int64(tsMs)))
            #expect(object["prev_hash"] as? String == previous)
            previous = try #require(object["hash"] as? String)
            // The line itself is in canonical form.
            #expect(try JSONValue.parse(line).canonicalText() == line)
        }
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(first?["run_id"] as? Int == 3)
        #expect((first?["payload"] as? [String: Any])?["host"] as? String == "api.example.com")
        let second = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any]
        #expect(second?["run_id"] is NSNull)
        #expect(second?["agent"] as? String == "")
    }

    @Test func anExportCanBeVerifiedOffTheBox() throws {
        // Recompute every hash from the exported lines alone: parse, re-canonicalize
        // the payload, rebuild the row text.
        let temp = try TempDir()
        let store = try storeWithEvents(8, in: temp)
        try store.append(AuditEventInput(agent: "mail", kind: "x", runID: RunID(rawValue: 2),
                                         payload: ["d": 2.5, "big": 1e21, "s": "é\n", "n": [nil, true]]))
        var previous = String(repeating: "0", count: 64)
        var count = 0
        try store.exportAudit { line in
            guard case .object(let fields) = try JSONValue.parse(line),
                  case .int(let seq)? = fields["seq"], case .int(let ts)? = fields["ts_ms"],
                  case .string(let agent)? = fields["agent"], case .string(let kind)? = fields["kind"],
                  case .string(let prev)? = fields["prev_hash"], case .string(let hash)? = fields["hash"],
                  let payload = fields["payload"], let runID = fields["run_id"] else {
                Issue.record("malformed line \(line)")
                return
            }
            let rowText = try JSONValue.object([
                "seq": .int(seq), "ts": .int(ts), "agent": .string(agent), "kind": .string(kind),
                "run_id": runID, "payload": payload,
            ]).canonicalText()
            #expect(prev == previous)
            #expect(sha256Hex(prev + "\n" + rowText) == hash)
            previous = hash
            count += 1
        }
        #expect(count == 9)
    }

    @Test func exportFiltersBySinceAndAgent() throws {
        let temp = try TempDir()
        let store = try storeWithEvents(6, in: temp)
        // Give the rows known times (the chain is not checked here).
        try tamper(store, "UPDATE event SET ts = seq * 1000")
        func seqs(since: Int64?, agent: String?) throws -> [Int] {
            var result: [Int] = []
            try store.exportAudit(since: since, agent: agent) { line in
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                result.append(try #require(object?["seq"] as? Int))
            }
            return result
        }
        #expect(try seqs(since: nil, agent: nil) == [1, 2, 3, 4, 5, 6])
        #expect(try seqs(since: 4000, agent: nil) == [4, 5, 6])
        #expect(try seqs(since: nil, agent: "b") == [2, 4, 6])
        #expect(try seqs(since: 3000, agent: "a") == [3, 5])
        #expect(try seqs(since: nil, agent: "nobody") == [])
    }

    @Test func writerErrorsStopTheExport() throws {
        struct Stop: Error {}
        let temp = try TempDir()
        let store = try storeWithEvents(3, in: temp)
        var seen = 0
        #expect(throws: Stop.self) {
            try store.exportAudit { _ in
                seen += 1
                throw Stop()
            }
        }
        #expect(seen == 1)
    }
}

/// The part of a verification result the tampering tests compare.
struct Break: Equatable {
    let seq: Int64
    let reason: AuditBreakReason
}

func reason(_ verification: AuditVerification) throws -> Break {
    guard case .broken(let seq, let reason, _) = verification else {
        throw StoreError(.invalidState, "expected a broken chain, got \(verification)")
    }
    return Break(seq: seq, reason: reason)
}
