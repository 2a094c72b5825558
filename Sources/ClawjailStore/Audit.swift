import ClawjailCore

/// An event to append to the audit chain.
public struct AuditEventInput: Sendable, Hashable {
    /// The agent the event is about; "" for host-wide events such as `kill --all`.
    public var agent: String
    /// Dotted kind: "run.start", "seccomp.violation", "egress.allow", "egress.deny",
    /// "emergency.stop", "protect.snapshot", ...
    public var kind: String
    public var runID: RunID?
    public var payload: [String: JSONValue]

    public init(agent: String, kind: String, runID: RunID? = nil, payload: [String: JSONValue] = [:]) {
        self.agent = agent
        self.kind = kind
        self.runID = runID
        self.payload = payload
    }
}

/// A row of the audit chain as it was written.
public struct AuditEvent: Sendable, Hashable {
    public let seq: Int64
    /// Unix milliseconds.
    public let ts: Int64
    public let agent: String
    public let kind: String
    public let runID: RunID?
    /// The payload in canonical JSON, exactly as hashed.
    public let payloadJSON: String
    public let prevHash: String
    public let hash: String
}

public enum AuditBreakReason: String, Sendable, Hashable {
    /// The row's content no longer matches its hash.
    case edited
    /// Rows are missing: a gap in seq, a row whose predecessor is gone, or a chain
    /// head that counts more rows than exist (the tail was cut off).
    case deleted
    /// The row links to a row that exists but is not its predecessor.
    case reordered
    /// The row lies beyond the chain head: it was added outside clawjail.
    case inserted
}

public enum AuditVerification: Sendable, Hashable {
    case ok(count: Int64)
    /// The first bad row. `seq` 0 means the chain head itself is missing or unreadable.
    case broken(seq: Int64, reason: AuditBreakReason, detail: String)
}

/// The audit chain.
///
/// One global chain over all rows, ordered by a strictly increasing `seq`:
/// `hash = SHA-256(prev_hash_hex + "\n" + row_text)` where `row_text` is the
/// canonical JSON object `{"agent":…,"kind":…,"payload":{…},"run_id":…|null,"seq":…,"ts":…}`
/// (see `JSONValue`), and the first row's `prev_hash` is 64 zeros. A one-row head
/// table holds the last seq and hash, updated in the same transaction as each
/// append, so cutting rows off the end shows too.
///
/// Limit: whoever can write the file (root) can rewrite the whole chain and the head
/// consistently. Only a copy taken off the box earlier (`audit export`) catches that,
/// by comparing the hash of its last row with the same seq here.
extension Store {
    /// Appends one event, serialized with every other writer by an IMMEDIATE transaction.
    @discardableResult
    public func append(_ event: AuditEventInput) throws -> AuditEvent {
        try writeImmediate("appending a '\(event.kind)' audit event") { db in
            try appendEvent(db, event, ts: Self.nowMs())
        }
    }

    /// Appends several events in one IMMEDIATE transaction, in order: one commit (and
    /// one WAL write) for the lot.
    public func append(contentsOf events: [AuditEventInput]) throws {
        guard !events.isEmpty else { return }
        try writeImmediate("appending \(events.count) audit events") { db in
            for e in events { try appendEvent(db, e, ts: Self.nowMs()) }
        }
    }

    /// Appends inside the caller's IMMEDIATE transaction, so a state change and its
    /// audit row commit together or not at all.
    @discardableResult
    func appendEvent(_ db: Database, _ input: AuditEventInput, ts: Int64) throws -> AuditEvent {
        guard !input.kind.isEmpty else {
            throw StoreError(.invalidArgument, "an audit event needs a kind such as \"run.start\"")
        }
        guard let head = try db.row("SELECT seq, hash FROM audit_head WHERE id = 1") else {
            throw StoreError(.corrupt, "the audit chain head is missing from \(databasePath); "
                             + "the database was edited by hand: run `clawjail audit verify`")
        }
        let seq: Int64 = try head.decode(forColumn: "seq") + 1
        let prevHash: String = try head.decode(forColumn: "hash")
        let payloadJSON = try StoreError.json { try JSONValue.object(input.payload).canonicalText() }
        let hash = Self.chainHash(prevHash: prevHash, seq: seq, ts: ts, agent: input.agent, kind: input.kind,
                                  runID: input.runID?.rawValue, payloadJSON: payloadJSON)
        try db.run("""
            INSERT INTO event (seq, ts, agent, kind, run_id, payload, prev_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """, [seq, ts, input.agent, input.kind, input.runID?.rawValue, payloadJSON, prevHash, hash])
        try db.run("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", [seq, hash])
        return AuditEvent(seq: seq, ts: ts, agent: input.agent, kind: input.kind, runID: input.runID,
                          payloadJSON: payloadJSON, prevHash: prevHash, hash: hash)
    }

    /// The canonical JSON text of a row without its hashes (keys in sorted order).
    static func rowText(seq: Int64, ts: Int64, agent: String, kind: String, runID: Int64?,
                        payloadJSON: String) -> String {
        "{\"agent\":" + JSONValue.quoted(agent) + ",\"kind\":" + JSONValue.quoted(kind)
            + ",\"payload\":" + payloadJSON + ",\"run_id\":" + (runID.map { String($0) } ?? "null")
            + ",\"seq\":" + String(seq) + ",\"ts\":" + String(ts) + "}"
    }

    static func chainHash(prevHash: String, seq: Int64, ts: Int64, agent: String, kind: String, runID: Int64?,
                          payloadJSON: String) -> String {
        sha256Hex(prevHash + "\n" + rowText(seq: seq, ts: ts, agent: agent, kind: kind, runID: runID,
                                            payloadJSON: payloadJSON))
    }

    static func sha256Hex(_ text: String) -> String { SHA256.hexDigest(of: text) }

    // MARK: - Verify

    /// Walks the chain in seq order and reports the first row that was edited,
    /// deleted, reordered or added behind clawjail's back.
    public func verifyAudit() throws -> AuditVerification {
        try readSnapshot("verifying the audit chain") { db in
            try Self.verify(db)
        }
    }

    private static func verify(_ db: Database) throws -> AuditVerification {
        let headSeq: Int64
        let headHash: String
        do {
            guard let head = try db.row("SELECT seq, hash FROM audit_head WHERE id = 1") else {
                return .broken(seq: 0, reason: .deleted, detail: "the chain head row is missing")
            }
            headSeq = try head.decode(forColumn: "seq")
            headHash = try head.decode(forColumn: "hash")
        } catch let error as RowDecodingError {
            return .broken(seq: 0, reason: .edited, detail: "the chain head row is unreadable: \(error)")
        }

        var expectedSeq: Int64 = 1
        var prevHash = Schema.zeroHash
        let rows = try Row.fetchCursor(db, sql: """
            SELECT seq, ts, agent, kind, run_id, payload, prev_hash, hash FROM event ORDER BY seq
            """)
        while let row = try rows.next() {
            let seq: Int64 = try row.decode(forColumn: "seq")
            if seq < expectedSeq {
                return .broken(seq: seq, reason: .inserted, detail: "row \(seq) precedes the first row of the chain")
            }
            if seq > expectedSeq {
                let missing = seq - 1 == expectedSeq ? "row \(expectedSeq) is" : "rows \(expectedSeq)–\(seq - 1) are"
                return .broken(seq: expectedSeq, reason: .deleted, detail: "\(missing) missing")
            }
            if seq > headSeq {
                return .broken(seq: seq, reason: .inserted,
                               detail: "row \(seq) lies beyond the chain head (\(headSeq)); it was added outside clawjail")
            }
            let fields: (ts: Int64, agent: String, kind: String, runID: Int64?, payload: String,
                         prevHash: String, hash: String)
            do {
                fields = (try row.decode(forColumn: "ts"), try row.decode(forColumn: "agent"),
                          try row.decode(forColumn: "kind"), try row.decode(forColumn: "run_id"),
                          try row.decode(forColumn: "payload"), try row.decode(forColumn: "prev_hash"),
                          try row.decode(forColumn: "hash"))
            } catch let error as RowDecodingError {
                return .broken(seq: seq, reason: .edited, detail: "row \(seq) has a value of the wrong type: \(error)")
            }
            if fields.prevHash != prevHash {
                if let linked = try Int64.fetchOne(db, sql: "SELECT seq FROM event WHERE hash = ? LIMIT 1",
                                                   arguments: [fields.prevHash]) {
                    return .broken(seq: seq, reason: .reordered,
                                   detail: "row \(seq) follows row \(linked) in the chain, not row \(seq - 1)")
                }
                return .broken(seq: seq, reason: .deleted,
                               detail: "the row that row \(seq) follows in the chain is gone: "
                                   + "a row before it was deleted (and the rest renumbered) or rewritten")
            }
            let hash = chainHash(prevHash: fields.prevHash, seq: seq, ts: fields.ts, agent: fields.agent,
                                 kind: fields.kind, runID: fields.runID, payloadJSON: fields.payload)
            if hash != fields.hash {
                return .broken(seq: seq, reason: .edited, detail: "row \(seq) does not match its hash")
            }
            prevHash = hash
            expectedSeq += 1
        }
        let count = expectedSeq - 1
        if headSeq > count {
            let missing = headSeq == expectedSeq ? "row \(expectedSeq) is" : "rows \(expectedSeq)–\(headSeq) are"
            return .broken(seq: expectedSeq, reason: .deleted,
                           detail: "the chain head counts \(headSeq) rows; \(missing) missing")
        }
        if headHash != prevHash {
            return .broken(seq: headSeq, reason: .edited,
                           detail: "row \(headSeq) is not the row the chain head recorded")
        }
        return .ok(count: count)
    }

    // MARK: - Export

    /// Writes events as JSON Lines, oldest first: one canonical JSON object per line
    /// (no trailing newline in the string) with `agent`, `hash`, `kind`, `payload`,
    /// `prev_hash`, `run_id`, `seq`, `ts` (RFC 3339 UTC with milliseconds) and `ts_ms`
    /// (the exact value that was hashed). `since` is unix milliseconds, inclusive;
    /// `agent` matches exactly ("" selects the host-wide events). A filtered export
    /// links to rows it leaves out, so only a full export verifies on its own.
    /// Rows are read from one snapshot while `write` runs; `write` must not call back
    /// into this store (its connection is not reentrant). An error thrown by
    /// `write` stops the export and is rethrown unchanged.
    public func exportAudit(since: Int64? = nil, agent: String? = nil,
                            write: (String) throws -> Void) throws {
        var sql = "SELECT seq, ts, agent, kind, run_id, payload, prev_hash, hash FROM event"
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let since {
            conditions.append("ts >= ?")
            arguments += [since]
        }
        if let agent {
            conditions.append("agent = ?")
            arguments += [agent]
        }
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY seq"
        // The writer's own error (EPIPE, a full disk) is rethrown as it is, not as a database error.
        var writerError: (any Error)?
        try readSnapshot("exporting the audit log") { db in
            let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
            while let row = try rows.next() {
                let ts: Int64 = try row.decode(forColumn: "ts")
                let runID: Int64? = try row.decode(forColumn: "run_id")
                let payload: String = try row.decode(forColumn: "payload")
                let seq: Int64 = try row.decode(forColumn: "seq")
                var line = "{\"agent\":" + JSONValue.quoted(try row.decode(forColumn: "agent"))
                line += ",\"hash\":" + JSONValue.quoted(try row.decode(forColumn: "hash"))
                line += ",\"kind\":" + JSONValue.quoted(try row.decode(forColumn: "kind"))
                // Spliced verbatim: it is the exact canonical text that was hashed.
                line += ",\"payload\":" + payload
                line += ",\"prev_hash\":" + JSONValue.quoted(try row.decode(forColumn: "prev_hash"))
                line += ",\"run_id\":" + (runID.map { String($0) } ?? "null")
                line += ",\"seq\":" + String(seq)
                line += ",\"ts\":" + JSONValue.quoted(RFC3339.format(unixMs: ts))
                line += ",\"ts_ms\":" + String(ts) + "}"
                do {
                    try write(line)
                } catch {
                    writerError = error
                    return
                }
            }
        }
        if let writerError { throw writerError }
    }
}

/// RFC 3339 timestamps in UTC with milliseconds, without Foundation's formatters.
enum RFC3339 {
    static func format(unixMs: Int64) -> String {
        let (seconds, millis) = floorDivide(unixMs, 1000)
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T"
            + pad(secondOfDay / 3600, 2) + ":" + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2)
            + "." + pad(millis, 3) + "Z"
    }

    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let remainder = value % divisor
        return remainder < 0 ? (value / divisor - 1, remainder + divisor) : (value / divisor, remainder)
    }

    /// Howard Hinnant's days_from_civil inverse (proleptic Gregorian calendar).
    private static func civilDate(daysSinceEpoch: Int64) -> (Int64, Int64, Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
