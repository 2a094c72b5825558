import Foundation
import Testing
@testable import ClawjailStore

@Suite("protected-file snapshots")
struct SnapshotTests {
    private func files(_ version: Int) -> [SnapshotFile] {
        [
            SnapshotFile(path: "memory/SOUL.md", sha256: sha256Hex("soul \(version)"), size: 100 + Int64(version)),
            SnapshotFile(path: "AGENTS.md", sha256: sha256Hex("agents \(version)"), size: 10),
        ]
    }

    @Test func recordsSortedFilesAndATotalHash() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let (id, pruned) = try store.recordSnapshot(agent: "mail", files: files(1), keep: 5)
        #expect(pruned.isEmpty)
        let record = try #require(try store.snapshot(id: id))
        #expect(record.agent == "mail")
        #expect(record.files.map(\.path) == ["AGENTS.md", "memory/SOUL.md"])
        #expect(record.files == files(1).reversed())
        let canonical = #"[{"path":"AGENTS.md","sha256":"\#(sha256Hex("agents 1"))","size":10},"#
            + #"{"path":"memory/SOUL.md","sha256":"\#(sha256Hex("soul 1"))","size":101}]"#
        #expect(record.totalHash == sha256Hex(canonical))
        #expect(try store.snapshot(id: id + 100) == nil)
        // Recorded in the audit chain in the same transaction.
        var events: [[String: Any]] = []
        try store.exportAudit { line in
            events.append(try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]))
        }
        #expect(events.count == 1)
        #expect(events.first?["kind"] as? String == "protect.snapshot")
        let payload = events.first?["payload"] as? [String: Any]
        #expect(payload?["total_hash"] as? String == record.totalHash)
        #expect(payload?["snapshot_id"] as? Int == Int(id))
    }

    @Test func prunesOldestBeyondKeepPerAgent() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        var ids: [Int64] = []
        var prunedAll: [Int64] = []
        for version in 1...5 {
            let (id, pruned) = try store.recordSnapshot(agent: "mail", files: files(version), keep: 3)
            ids.append(id)
            prunedAll += pruned
            // Another agent's snapshots are never pruned by this one's.
            _ = try store.recordSnapshot(agent: "calendar", files: files(version), keep: 10)
        }
        #expect(prunedAll == [ids[0], ids[1]])
        #expect(try store.snapshots(agent: "mail").map(\.id) == [ids[4], ids[3], ids[2]])
        #expect(try store.snapshots(agent: "calendar").count == 5)
        // Lowering the limit prunes several at once, oldest first.
        let (newest, pruned) = try store.recordSnapshot(agent: "mail", files: files(6), keep: 1)
        #expect(pruned == [ids[2], ids[3], ids[4]])
        #expect(try store.snapshots(agent: "mail").map(\.id) == [newest])
        #expect(try store.verifyAudit() == .ok(count: 11))
    }

    @Test func rejectsBadInput() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let good = sha256Hex("x")
        let cases: [(String, [SnapshotFile], Int)] = [
            ("mail", [SnapshotFile(path: "a", sha256: good, size: 1)], 0),
            ("", [SnapshotFile(path: "a", sha256: good, size: 1)], 1),
            ("mail", [SnapshotFile(path: "a", sha256: good.uppercased(), size: 1)], 1),
            ("mail", [SnapshotFile(path: "a", sha256: "abc", size: 1)], 1),
            ("mail", [SnapshotFile(path: "a", sha256: good, size: -1)], 1),
            ("mail", [SnapshotFile(path: "", sha256: good, size: 1)], 1),
            ("mail", [SnapshotFile(path: "a", sha256: good, size: 1), SnapshotFile(path: "a", sha256: good, size: 2)], 1),
        ]
        for (agent, files, keep) in cases {
            let error = try #require(throws: StoreError.self) {
                try store.recordSnapshot(agent: agent, files: files, keep: keep)
            }
            #expect(error.code == .invalidArgument)
        }
        #expect(try store.snapshots(agent: "mail").isEmpty)
        // An empty file list is a valid (empty) snapshot.
        let (id, _) = try store.recordSnapshot(agent: "mail", files: [], keep: 1)
        #expect(try store.snapshot(id: id)?.totalHash == sha256Hex("[]"))
    }
}
