import ClawjailCore
/// One protected file in a snapshot.
public struct SnapshotFile: Sendable, Hashable, Codable {
    /// Path relative to the agent's workspace.
    public let path: String
    /// Lowercase hex SHA-256 of the contents.
    public let sha256: String
    public let size: Int64

    public init(path: String, sha256: String, size: Int64) {
        self.path = path
        self.sha256 = sha256
        self.size = size
    }
}

public struct SnapshotRecord: Sendable, Hashable {
    public let id: Int64
    public let agent: String
    /// Unix milliseconds.
    public let createdMs: Int64
    /// Sorted by path.
    public let files: [SnapshotFile]
    /// SHA-256 of the canonical JSON of `files` (`[{"path":…,"sha256":…,"size":…},…]`).
    public let totalHash: String
}

extension Store {
    /// Records the metadata of a protected-file snapshot (the caller stores the file
    /// copies) with a `protect.snapshot` audit event, and prunes the agent's oldest
    /// snapshots beyond `keep`. Returns the new id and the pruned ids, oldest first,
    /// so the caller deletes those copies.
    public func recordSnapshot(agent: String, files: [SnapshotFile], keep: Int) throws -> (id: Int64, pruned: [Int64]) {
        try Self.requireAgentName(agent)
        guard keep >= 1 else {
            throw StoreError(.invalidArgument, "a snapshot limit of \(keep) would delete the snapshot just taken; "
                             + "keep at least 1")
        }
        let sorted = files.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
        for (index, file) in sorted.enumerated() {
            guard !file.path.isEmpty, file.size >= 0, Self.isSHA256Hex(file.sha256) else {
                throw StoreError(.invalidArgument, "snapshot entry '\(file.path)' needs a path, a size ≥ 0 and a "
                                 + "64-digit lowercase hex SHA-256 (got size \(file.size), hash '\(file.sha256)')")
            }
            if index > 0, sorted[index - 1].path == file.path {
                throw StoreError(.invalidArgument, "snapshot lists '\(file.path)' twice")
            }
        }
        let filesJSON = try StoreError.json { try JSONValue.array(sorted.map(Self.json)).canonicalText() }
        let totalHash = Self.sha256Hex(filesJSON)
        return try writeImmediate("recording a snapshot of agent '\(agent)'") { db in
            let now = Self.nowMs()
            try db.execute(sql: "INSERT INTO snapshot (agent, created_ms, files, total_hash) VALUES (?, ?, ?, ?)",
                           arguments: [agent, now, filesJSON, totalHash])
            let id = db.lastInsertedRowID
            let pruned = try Int64.fetchAll(db, sql: """
                SELECT id FROM snapshot WHERE agent = ? AND id NOT IN
                    (SELECT id FROM snapshot WHERE agent = ? ORDER BY id DESC LIMIT ?)
                ORDER BY id
                """, arguments: [agent, agent, keep])
            for old in pruned {
                try db.execute(sql: "DELETE FROM snapshot WHERE id = ?", arguments: [old])
            }
            try appendEvent(db, AuditEventInput(agent: agent, kind: "protect.snapshot", payload: [
                "snapshot_id": .int(id),
                "total_hash": .string(totalHash),
                "file_count": .int(Int64(sorted.count)),
                "pruned": .array(pruned.map { .int($0) }),
            ]), ts: now)
            return (id, pruned)
        }
    }

    /// The agent's snapshots, newest first.
    public func snapshots(agent: String) throws -> [SnapshotRecord] {
        try readSnapshot("listing the snapshots of agent '\(agent)'") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM snapshot WHERE agent = ? ORDER BY id DESC", arguments: [agent])
                .map(Self.snapshotRecord)
        }
    }

    public func snapshot(id: Int64) throws -> SnapshotRecord? {
        try readSnapshot("reading snapshot \(id)") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM snapshot WHERE id = ?", arguments: [id]).map(Self.snapshotRecord)
        }
    }

    private static func json(_ file: SnapshotFile) -> JSONValue {
        .object(["path": .string(file.path), "sha256": .string(file.sha256), "size": .int(file.size)])
    }

    private static func snapshotRecord(_ row: Row) throws -> SnapshotRecord {
        let id: Int64 = try row.decode(forColumn: "id")
        let filesJSON: String = try row.decode(forColumn: "files")
        guard case .array(let items) = try StoreError.json({ try JSONValue.parse(filesJSON) }) else {
            throw StoreError(.corrupt, "snapshot \(id) has a file list that is not a JSON array")
        }
        let files = try items.map { item -> SnapshotFile in
            guard case .object(let fields) = item, case .string(let path)? = fields["path"],
                  case .string(let sha256)? = fields["sha256"], case .int(let size)? = fields["size"] else {
                throw StoreError(.corrupt, "snapshot \(id) has a malformed file entry")
            }
            return SnapshotFile(path: path, sha256: sha256, size: size)
        }
        return SnapshotRecord(id: id, agent: try row.decode(forColumn: "agent"),
                              createdMs: try row.decode(forColumn: "created_ms"), files: files,
                              totalHash: try row.decode(forColumn: "total_hash"))
    }

    static func isSHA256Hex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
