import ClawjailCore
import ClawjailSystem

public enum RunKind: String, Sendable, Hashable, Codable {
    /// `clawjail run`: at most one live run per agent.
    case agent
    /// `clawjail exec`: any number at once.
    case tool
}

public struct RunID: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
}

public enum RunState: String, Sendable, Hashable {
    case running
    case finished
    /// Its supervisor died without ending it (SIGKILL, crash, reboot).
    case lost
    /// The run has ended, but its end could not be written (the state directory was
    /// full): `RunRecord.unrecordedEnd` has the outcome, from the run's end marker.
    /// Never stored: the row says running until the end is recorded.
    case endNotRecorded = "end_not_recorded"
}

/// Why a run ended.
public enum RunStatus: Sendable, Hashable {
    case exited(code: Int32)
    case signaled(signal: Int32)
    case oomKilled
    case timedOut
    case setupFailed(message: String)
    /// Stopped by an operator or an emergency stop; `by` says who or what.
    case killed(by: String)
}

public struct RunOutcome: Sendable, Hashable {
    public var status: RunStatus
    /// The status clawjail itself exits with for this run.
    public var exitCode: Int32
    public var durationMs: Int64
    public var peakMemoryBytes: Int64?
    public var cpuUsec: Int64?

    public init(status: RunStatus, exitCode: Int32, durationMs: Int64, peakMemoryBytes: Int64? = nil,
                cpuUsec: Int64? = nil) {
        self.status = status
        self.exitCode = exitCode
        self.durationMs = durationMs
        self.peakMemoryBytes = peakMemoryBytes
        self.cpuUsec = cpuUsec
    }
}

public struct RunRecord: Sendable, Hashable {
    public let id: RunID
    /// "" for an anonymous tool run.
    public let agent: String
    public let kind: RunKind
    public let state: RunState
    public let supervisorPid: Int32
    /// Field 22 of the supervisor's /proc/<pid>/stat when the run began.
    public let supervisorStart: UInt64
    public let planHash: String
    /// The effective policy of the run, as canonical JSON.
    public let manifestJSON: String
    /// Unix milliseconds.
    public let startedMs: Int64
    public let endedMs: Int64?
    /// Set once the run has finished; nil while running and for lost runs.
    public let outcome: RunOutcome?
    /// Set while the supervisor says it cannot write the run's records (from the end marker).
    public let recordingFailure: RecordingFailure?
    /// Set for `.endNotRecorded`: how the run ended, as its supervisor kept it.
    public let unrecordedEnd: UnrecordedEnd?

    /// Whether the supervisor that wrote this row still exists (same pid, same start time).
    public var supervisorIsAlive: Bool {
        ProcessIdentity.isAlive(pid: supervisorPid, startTime: supervisorStart)
    }
}

extension Store {
    /// Records the start of a run and its `run.start` audit event (with the plan hash and
    /// the plan itself) in one transaction.
    ///
    /// For `.agent` runs, fails with `alreadyRunning` when another run of that agent
    /// is marked running and its supervisor is alive. Runs of the agent whose
    /// supervisor is gone (or whose pid now belongs to another process) are settled:
    /// ended from their end marker when it holds their outcome, else marked `lost`,
    /// each with its audit event.
    ///
    /// The run's end marker, with `endReserveBytes` reserved for its end (RunEnds.swift),
    /// is created in the same transaction: a run whose end would have nowhere to go
    /// does not begin.
    public func beginRun(agent: String, kind: RunKind, supervisorPid: Int32, supervisorStart: UInt64,
                         planHash: String, manifestJSON: String,
                         endReserveBytes: Int64 = Store.defaultEndReserveBytes) throws -> RunID {
        if kind == .agent { try Self.requireAgentName(agent) }
        let plan = try StoreError.json { try JSONValue.parse(manifestJSON) }
        let canonicalManifest = try StoreError.json { try plan.canonicalText() }
        let manifestSHA = Self.sha256Hex(canonicalManifest)
        var createdMarker: RunID?
        var settled: [RunID] = []
        do {
            let id = try writeImmediate("recording the start of a run of agent '\(agent)'") { db in
                let id = try beginRun(db, agent: agent, kind: kind, supervisorPid: supervisorPid,
                                      supervisorStart: supervisorStart, planHash: planHash, plan: plan,
                                      canonicalManifest: canonicalManifest, manifestSHA: manifestSHA,
                                      endReserveBytes: endReserveBytes, settled: &settled)
                createdMarker = id
                return id
            }
            for stale in settled { removeEndMarker(stale) }
            return id
        } catch {
            // The transaction rolled back: the marker belongs to no run.
            if let createdMarker { removeEndMarker(createdMarker) }
            throw error
        }
    }

    private func beginRun(_ db: Database, agent: String, kind: RunKind, supervisorPid: Int32, supervisorStart: UInt64,
                          planHash: String, plan: JSONValue, canonicalManifest: String, manifestSHA: String,
                          endReserveBytes: Int64, settled: inout [RunID]) throws -> RunID {
        let now = Self.nowMs()
        let running = try Self.runningRows(db, agent: agent)
        // Decide on conflicts before changing anything. A supervisor that still retries
        // the end of a run that is over (its marker holds the outcome) runs no jail: the
        // kernel lock that guards the agent is released by then.
        if kind == .agent, let live = running.first(where: { row in
            row.kind == .agent && row.supervisorIsAlive && marker(of: row)?.end == nil
        }) {
            throw StoreError.alreadyRunning(agent: agent, pid: live.supervisorPid)
        }
        for stale in running where !stale.supervisorIsAlive {
            try settle(db, stale, now: now)
            settled.append(stale.id)
        }
        try db.run("INSERT OR IGNORE INTO manifest (sha256, json, created_ms) VALUES (?, ?, ?)",
                   [manifestSHA, canonicalManifest, now])
        try db.run("""
            INSERT INTO run (agent, kind, state, supervisor_pid, supervisor_start, plan_hash,
                             manifest_sha256, started_ms)
            VALUES (?, ?, 'running', ?, ?, ?, ?, ?)
            """, [agent, kind.rawValue, supervisorPid, Int64(bitPattern: supervisorStart), planHash,
                  manifestSHA, now])
        let id = RunID(rawValue: db.lastInsertedRowID)
        try appendEvent(db, AuditEventInput(agent: agent, kind: "run.start", runID: id, payload: [
            "run_kind": .string(kind.rawValue),
            "plan_hash": .string(planHash),
            "plan": plan,
            "supervisor_pid": .int(Int64(supervisorPid)),
        ]), ts: now)
        try createEndMarker(EndMarker(runID: id, supervisorPid: supervisorPid, supervisorStart: supervisorStart,
                                      startedMs: now), reserveBytes: endReserveBytes)
        return id
    }

    /// Records how a run ended, with its `run.end` audit event, plus `run.oom` or
    /// `run.timeout` when that was the cause. A run marked lost can still be ended:
    /// the real outcome replaces the guess. Removes the run's end marker.
    ///
    /// `late` says that the end is recorded after recording had failed: the row gets
    /// `endedMs` (when the run really ended), and the `run.end` event, whose own time
    /// is that of the write like every row of the chain, says why it came late and how
    /// many of the run's audit events were given up. `precededBy` are audit events
    /// of the run that were held back by the failure: they go into the chain in the
    /// same transaction, just before the end, so the order stays that of the run.
    public func endRun(id: RunID, outcome: RunOutcome, endedMs: Int64? = nil, late: RecordingFailure? = nil,
                       precededBy events: [AuditEventInput] = [], eventsNotRecorded: Int = 0) throws {
        try writeImmediate("recording the end of run \(id)") { db in
            for event in events { try appendEvent(db, event, ts: Self.nowMs()) }
            let now = Self.nowMs()
            guard let run = try db.row("SELECT agent, state FROM run WHERE id = ?", [id.rawValue]) else {
                throw StoreError(.notFound, "run \(id) does not exist in \(databasePath)")
            }
            let agent: String = try run.decode(forColumn: "agent")
            guard try run.decode(String.self, forColumn: "state") != RunState.finished.rawValue else {
                throw StoreError(.invalidState, "run \(id) of agent '\(agent)' has already ended")
            }
            var extra: [String: JSONValue] = [:]
            if let late {
                var note: [String: JSONValue] = ["cause": .string(late.cause), "since_ms": .int(late.sinceMs),
                                                 "errno": late.errno.map { .int(Int64($0)) } ?? .null]
                if eventsNotRecorded > 0 { note["events_not_recorded"] = .int(Int64(eventsNotRecorded)) }
                extra["recorded_late"] = .object(note)
            }
            try recordEnd(db, id: id, agent: agent, outcome: outcome, endedMs: endedMs ?? now, ts: now, extra: extra)
        }
        removeEndMarker(id)
    }

    /// The row update and the audit events of an end, inside the caller's transaction.
    private func recordEnd(_ db: Database, id: RunID, agent: String, outcome: RunOutcome, endedMs: Int64, ts now: Int64,
                           extra: [String: JSONValue]) throws {
        let status = Self.columns(outcome.status)
        try db.run("""
            UPDATE run SET state = 'finished', ended_ms = ?, status = ?, status_code = ?, status_detail = ?,
                           exit_code = ?, duration_ms = ?, peak_memory_bytes = ?, cpu_usec = ?
            WHERE id = ?
            """, [endedMs, status.name, status.code, status.detail, outcome.exitCode, outcome.durationMs,
                  outcome.peakMemoryBytes, outcome.cpuUsec, id.rawValue])
        var payload: [String: JSONValue] = [
            "status": .string(status.name),
            "exit_code": .int(Int64(outcome.exitCode)),
            "duration_ms": .int(outcome.durationMs),
        ]
        switch outcome.status {
        case .exited(let code): payload["code"] = .int(Int64(code))
        case .signaled(let signal): payload["signal"] = .int(Int64(signal))
        case .setupFailed(let message): payload["message"] = .string(message)
        case .killed(let by): payload["killed_by"] = .string(by)
        case .oomKilled, .timedOut: break
        }
        if let peak = outcome.peakMemoryBytes { payload["peak_memory_bytes"] = .int(peak) }
        if let cpu = outcome.cpuUsec { payload["cpu_usec"] = .int(cpu) }
        for (key, value) in extra { payload[key] = value }
        try appendEvent(db, AuditEventInput(agent: agent, kind: "run.end", runID: id, payload: payload), ts: now)
        switch outcome.status {
        case .oomKilled:
            var cause: [String: JSONValue] = [:]
            if let peak = outcome.peakMemoryBytes { cause["peak_memory_bytes"] = .int(peak) }
            try appendEvent(db, AuditEventInput(agent: agent, kind: "run.oom", runID: id, payload: cause), ts: now)
        case .timedOut:
            try appendEvent(db, AuditEventInput(agent: agent, kind: "run.timeout", runID: id,
                                                payload: ["duration_ms": .int(outcome.durationMs)]), ts: now)
        default:
            break
        }
    }

    /// Settles every running row whose supervisor is gone (for `ps`, `logs` and `gc`):
    /// a run whose end marker holds its outcome (its supervisor could not write it) is
    /// ended with that outcome; the others are marked lost. Returns the lost ones.
    @discardableResult
    public func markLostRuns() throws -> [RunID] {
        var settled: [RunID] = []
        let lost = try writeImmediate("marking runs of dead supervisors as lost") { db in
            let now = Self.nowMs()
            var lost: [RunID] = []
            let running = try Self.runningRows(db, agent: nil)
            for run in running where !run.supervisorIsAlive {
                if try !settle(db, run, now: now) { lost.append(run.id) }
                settled.append(run.id)
            }
            // Under the write lock, so no run can begin (and create its marker) meanwhile.
            removeStaleEndMarkers(runningIDs: Set(running.map(\.id.rawValue)))
            return lost
        }
        // Only once committed: until then the marker may be all there is of an end.
        for id in settled { removeEndMarker(id) }
        return lost
    }

    /// Rows marked running, oldest first, with the state a reader should show: a row
    /// whose supervisor is gone reads `.lost` (or `.endNotRecorded` with its end
    /// marker's outcome) even before `markLostRuns` could write that down. Check
    /// `supervisorIsAlive` before trusting one.
    public func runningRuns() throws -> [RunRecord] {
        try readSnapshot("listing running runs") { db in
            try fetchRuns(db, where: "run.state = 'running'", [])
        }
    }

    /// The agent's most recent runs, newest first.
    public func runs(agent: String, limit: Int = 50) throws -> [RunRecord] {
        try readSnapshot("listing the runs of agent '\(agent)'") { db in
            try fetchRuns(db, where: "run.agent = ?", [agent], order: "run.id DESC", limit: max(0, limit))
        }
    }

    public func run(id: RunID) throws -> RunRecord? {
        try readSnapshot("reading run \(id)") { db in
            try fetchRuns(db, where: "run.id = ?", [id.rawValue]).first
        }
    }

    // MARK: - Internals

    /// The identity columns of a running row: all that liveness checks need.
    private struct RunningRow {
        let id: RunID
        let agent: String
        let kind: RunKind
        let supervisorPid: Int32
        let supervisorStart: UInt64
        let startedMs: Int64

        var supervisorIsAlive: Bool {
            ProcessIdentity.isAlive(pid: supervisorPid, startTime: supervisorStart)
        }
    }

    private static func runningRows(_ db: Database, agent: String?) throws -> [RunningRow] {
        let columns = "SELECT id, agent, kind, supervisor_pid, supervisor_start, started_ms FROM run"
        let rows = if let agent {
            try db.rows(columns + " WHERE agent = ? AND state = 'running' ORDER BY id", [agent])
        } else {
            try db.rows(columns + " WHERE state = 'running' ORDER BY id")
        }
        return try rows.map { row in
            let id: Int64 = try row.decode(forColumn: "id")
            let kindName: String = try row.decode(forColumn: "kind")
            guard let kind = RunKind(rawValue: kindName) else {
                throw StoreError(.corrupt, "run \(id) has the unknown kind '\(kindName)'; "
                                 + "the database is newer than this clawjail or was edited by hand")
            }
            let start: Int64 = try row.decode(forColumn: "supervisor_start")
            return RunningRow(id: RunID(rawValue: id), agent: try row.decode(forColumn: "agent"), kind: kind,
                              supervisorPid: try row.decode(forColumn: "supervisor_pid"),
                              supervisorStart: UInt64(bitPattern: start), startedMs: try row.decode(forColumn: "started_ms"))
        }
    }

    private func marker(of run: RunningRow) -> EndMarker? {
        guard let marker = readEndMarker(run.id),
              marker.matches(id: run.id, supervisorPid: run.supervisorPid, supervisorStart: run.supervisorStart,
                             startedMs: run.startedMs) else { return nil }
        return marker
    }

    /// Ends a run of a dead supervisor from its end marker, or marks it lost. True when
    /// it was ended. The caller removes the marker once the transaction has committed.
    @discardableResult
    private func settle(_ db: Database, _ run: RunningRow, now: Int64) throws -> Bool {
        let marker = marker(of: run)
        if let end = marker?.end {
            var late: [String: JSONValue] = [
                "cause": .string(end.failure.cause), "since_ms": .int(end.failure.sinceMs),
                "errno": end.failure.errno.map { .int(Int64($0)) } ?? .null,
                // Not the supervisor: whoever found the outcome in the end marker.
                "from_end_marker": .bool(true), "recorded_by_pid": .int(Int64(ProcessInfoLite.pid)),
                "supervisor_gave_up_ms": end.gaveUpMs.map { .int($0) } ?? .null,
            ]
            if end.eventsNotRecorded > 0 { late["events_not_recorded"] = .int(Int64(end.eventsNotRecorded)) }
            try recordEnd(db, id: run.id, agent: run.agent, outcome: end.outcome, endedMs: end.endedMs, ts: now,
                          extra: ["recorded_late": .object(late)])
            return true
        }
        try db.run("UPDATE run SET state = 'lost', ended_ms = ? WHERE id = ?", [now, run.id.rawValue])
        var payload: [String: JSONValue] = [
            "run_kind": .string(run.kind.rawValue),
            "supervisor_pid": .int(Int64(run.supervisorPid)),
        ]
        if let failure = marker?.failure {
            // It died while its records could not be written: say so, it may be why.
            payload["recording_failure"] = .object(["cause": .string(failure.cause), "since_ms": .int(failure.sinceMs)])
        }
        try appendEvent(db, AuditEventInput(agent: run.agent, kind: "run.lost", runID: run.id, payload: payload), ts: now)
        return false
    }

    static func columns(_ status: RunStatus) -> (name: String, code: Int32?, detail: String?) {
        switch status {
        case .exited(let code): ("exited", code, nil)
        case .signaled(let signal): ("signaled", signal, nil)
        case .oomKilled: ("oom_killed", nil, nil)
        case .timedOut: ("timed_out", nil, nil)
        case .setupFailed(let message): ("setup_failed", nil, message)
        case .killed(let by): ("killed", nil, by)
        }
    }

    private func fetchRuns(_ db: Database, where condition: String, _ arguments: StatementArguments,
                           order: String = "run.id", limit: Int? = nil) throws -> [RunRecord] {
        var sql = """
            SELECT run.*, manifest.json AS manifest_json FROM run
            JOIN manifest ON manifest.sha256 = run.manifest_sha256
            WHERE \(condition) ORDER BY \(order)
            """
        if let limit { sql += " LIMIT \(limit)" }
        return try Row.fetchAll(db, sql: sql, arguments: arguments).map { try runRecord($0) }
    }

    private func runRecord(_ row: Row) throws -> RunRecord {
        let id: Int64 = try row.decode(forColumn: "id")
        let kindName: String = try row.decode(forColumn: "kind")
        let stateName: String = try row.decode(forColumn: "state")
        guard let kind = RunKind(rawValue: kindName), var state = RunState(rawValue: stateName),
              state != .endNotRecorded else {
            throw StoreError(.corrupt, "run \(id) has kind '\(kindName)' and state '\(stateName)', which this "
                             + "version of clawjail does not know; the database is newer or was edited by hand")
        }
        var outcome: RunOutcome?
        if state == .finished {
            outcome = RunOutcome(status: try Self.runStatus(row, id: id), exitCode: try row.decode(forColumn: "exit_code"),
                                 durationMs: try row.decode(forColumn: "duration_ms"),
                                 peakMemoryBytes: try row.decode(forColumn: "peak_memory_bytes"),
                                 cpuUsec: try row.decode(forColumn: "cpu_usec"))
        }
        let start = UInt64(bitPattern: try row.decode(Int64.self, forColumn: "supervisor_start"))
        let pid: Int32 = try row.decode(forColumn: "supervisor_pid")
        let startedMs: Int64 = try row.decode(forColumn: "started_ms")
        var failure: RecordingFailure?
        var unrecorded: UnrecordedEnd?
        if state == .running {
            // What the row cannot say yet: the supervisor's end marker, or its death.
            let marker = readEndMarker(RunID(rawValue: id)).flatMap { m in
                m.matches(id: RunID(rawValue: id), supervisorPid: pid, supervisorStart: start, startedMs: startedMs) ? m : nil
            }
            failure = marker?.failure
            if let end = marker?.end {
                state = .endNotRecorded
                unrecorded = end
            } else if !ProcessIdentity.isAlive(pid: pid, startTime: start) {
                state = .lost
            }
        }
        return RunRecord(id: RunID(rawValue: id), agent: try row.decode(forColumn: "agent"), kind: kind, state: state,
                         supervisorPid: pid, supervisorStart: start, planHash: try row.decode(forColumn: "plan_hash"),
                         manifestJSON: try row.decode(forColumn: "manifest_json"),
                         startedMs: startedMs, endedMs: try row.decode(forColumn: "ended_ms"),
                         outcome: outcome, recordingFailure: failure, unrecordedEnd: unrecorded)
    }

    private static func runStatus(_ row: Row, id: Int64) throws -> RunStatus {
        let name: String? = try row.decode(forColumn: "status")
        let code: Int32? = try row.decode(forColumn: "status_code")
        let detail: String? = try row.decode(forColumn: "status_detail")
        guard let name, let status = status(name: name, code: code, detail: detail) else {
            throw StoreError(.corrupt, "run \(id) has the status '\(name ?? "NULL")' with missing details; "
                             + "the database was edited by hand")
        }
        return status
    }

    /// The status from its stored columns (the run row, or an end marker); nil when they do not fit.
    static func status(name: String, code: Int32?, detail: String?) -> RunStatus? {
        switch (name, code, detail) {
        case ("exited", let code?, _): return .exited(code: code)
        case ("signaled", let signal?, _): return .signaled(signal: signal)
        case ("oom_killed", _, _): return .oomKilled
        case ("timed_out", _, _): return .timedOut
        case ("setup_failed", _, let message?): return .setupFailed(message: message)
        case ("killed", _, let by?): return .killed(by: by)
        default: return nil
        }
    }
}
