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
    /// supervisor is gone (or whose pid now belongs to another process) are marked
    /// `lost`, each with a `run.lost` audit event.
    public func beginRun(agent: String, kind: RunKind, supervisorPid: Int32, supervisorStart: UInt64,
                         planHash: String, manifestJSON: String) throws -> RunID {
        if kind == .agent { try Self.requireAgentName(agent) }
        let plan = try JSONValue.parse(manifestJSON)
        let canonicalManifest = try plan.canonicalText()
        let manifestSHA = Self.sha256Hex(canonicalManifest)
        return try writeImmediate("recording the start of a run of agent '\(agent)'") { db in
            let now = Self.nowMs()
            let running = try Self.runningRows(db, agent: agent)
            // Decide on conflicts before changing anything.
            if kind == .agent, let live = running.first(where: { $0.kind == .agent && $0.supervisorIsAlive }) {
                throw StoreError.alreadyRunning(agent: agent, pid: live.supervisorPid)
            }
            for stale in running where !stale.supervisorIsAlive {
                try markLost(db, stale, now: now)
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
            return id
        }
    }

    /// Records how a run ended, with its `run.end` audit event, plus `run.oom` or
    /// `run.timeout` when that was the cause. A run marked lost can still be ended:
    /// the real outcome replaces the guess.
    public func endRun(id: RunID, outcome: RunOutcome) throws {
        try writeImmediate("recording the end of run \(id)") { db in
            let now = Self.nowMs()
            guard let run = try db.row("SELECT agent, state FROM run WHERE id = ?", [id.rawValue]) else {
                throw StoreError(.notFound, "run \(id) does not exist in \(databasePath)")
            }
            let agent: String = try run.decode(forColumn: "agent")
            guard try run.decode(String.self, forColumn: "state") != RunState.finished.rawValue else {
                throw StoreError(.invalidState, "run \(id) of agent '\(agent)' has already ended")
            }
            let status = Self.columns(outcome.status)
            try db.run("""
                UPDATE run SET state = 'finished', ended_ms = ?, status = ?, status_code = ?, status_detail = ?,
                               exit_code = ?, duration_ms = ?, peak_memory_bytes = ?, cpu_usec = ?
                WHERE id = ?
                """, [now, status.name, status.code, status.detail, outcome.exitCode, outcome.durationMs,
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
    }

    /// Marks every running row whose supervisor is gone as lost (for `ps` and `gc`).
    @discardableResult
    public func markLostRuns() throws -> [RunID] {
        return try writeImmediate("marking runs of dead supervisors as lost") { db in
            let now = Self.nowMs()
            var lost: [RunID] = []
            for run in try Self.runningRows(db, agent: nil) where !run.supervisorIsAlive {
                try markLost(db, run, now: now)
                lost.append(run.id)
            }
            return lost
        }
    }

    /// Rows marked running, oldest first. Check `supervisorIsAlive` before trusting one.
    public func runningRuns() throws -> [RunRecord] {
        try readSnapshot("listing running runs") { db in
            try Self.fetchRuns(db, where: "run.state = 'running'", [])
        }
    }

    /// The agent's most recent runs, newest first.
    public func runs(agent: String, limit: Int = 50) throws -> [RunRecord] {
        try readSnapshot("listing the runs of agent '\(agent)'") { db in
            try Self.fetchRuns(db, where: "run.agent = ?", [agent], order: "run.id DESC", limit: max(0, limit))
        }
    }

    public func run(id: RunID) throws -> RunRecord? {
        try readSnapshot("reading run \(id)") { db in
            try Self.fetchRuns(db, where: "run.id = ?", [id.rawValue]).first
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

        var supervisorIsAlive: Bool {
            ProcessIdentity.isAlive(pid: supervisorPid, startTime: supervisorStart)
        }
    }

    private static func runningRows(_ db: Database, agent: String?) throws -> [RunningRow] {
        let columns = "SELECT id, agent, kind, supervisor_pid, supervisor_start FROM run"
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
                              supervisorStart: UInt64(bitPattern: start))
        }
    }

    private func markLost(_ db: Database, _ run: RunningRow, now: Int64) throws {
        try db.run("UPDATE run SET state = 'lost', ended_ms = ? WHERE id = ?", [now, run.id.rawValue])
        try appendEvent(db, AuditEventInput(agent: run.agent, kind: "run.lost", runID: run.id, payload: [
            "run_kind": .string(run.kind.rawValue),
            "supervisor_pid": .int(Int64(run.supervisorPid)),
        ]), ts: now)
    }

    private static func columns(_ status: RunStatus) -> (name: String, code: Int32?, detail: String?) {
        switch status {
        case .exited(let code): ("exited", code, nil)
        case .signaled(let signal): ("signaled", signal, nil)
        case .oomKilled: ("oom_killed", nil, nil)
        case .timedOut: ("timed_out", nil, nil)
        case .setupFailed(let message): ("setup_failed", nil, message)
        case .killed(let by): ("killed", nil, by)
        }
    }

    private static func fetchRuns(_ db: Database, where condition: String, _ arguments: StatementArguments,
                                  order: String = "run.id", limit: Int? = nil) throws -> [RunRecord] {
        var sql = """
            SELECT run.*, manifest.json AS manifest_json FROM run
            JOIN manifest ON manifest.sha256 = run.manifest_sha256
            WHERE \(condition) ORDER BY \(order)
            """
        if let limit { sql += " LIMIT \(limit)" }
        return try Row.fetchAll(db, sql: sql, arguments: arguments).map(runRecord)
    }

    private static func runRecord(_ row: Row) throws -> RunRecord {
        let id: Int64 = try row.decode(forColumn: "id")
        let kindName: String = try row.decode(forColumn: "kind")
        let stateName: String = try row.decode(forColumn: "state")
        guard let kind = RunKind(rawValue: kindName), let state = RunState(rawValue: stateName) else {
            throw StoreError(.corrupt, "run \(id) has kind '\(kindName)' and state '\(stateName)', which this "
                             + "version of clawjail does not know; the database is newer or was edited by hand")
        }
        var outcome: RunOutcome?
        if state == .finished {
            outcome = RunOutcome(status: try runStatus(row, id: id), exitCode: try row.decode(forColumn: "exit_code"),
                                 durationMs: try row.decode(forColumn: "duration_ms"),
                                 peakMemoryBytes: try row.decode(forColumn: "peak_memory_bytes"),
                                 cpuUsec: try row.decode(forColumn: "cpu_usec"))
        }
        let start: Int64 = try row.decode(forColumn: "supervisor_start")
        return RunRecord(id: RunID(rawValue: id), agent: try row.decode(forColumn: "agent"), kind: kind, state: state,
                         supervisorPid: try row.decode(forColumn: "supervisor_pid"),
                         supervisorStart: UInt64(bitPattern: start), planHash: try row.decode(forColumn: "plan_hash"),
                         manifestJSON: try row.decode(forColumn: "manifest_json"),
                         startedMs: try row.decode(forColumn: "started_ms"), endedMs: try row.decode(forColumn: "ended_ms"),
                         outcome: outcome)
    }

    private static func runStatus(_ row: Row, id: Int64) throws -> RunStatus {
        let name: String? = try row.decode(forColumn: "status")
        let code: Int32? = try row.decode(forColumn: "status_code")
        let detail: String? = try row.decode(forColumn: "status_detail")
        switch (name, code, detail) {
        case ("exited", let code?, _): return .exited(code: code)
        case ("signaled", let signal?, _): return .signaled(signal: signal)
        case ("oom_killed", _, _): return .oomKilled
        case ("timed_out", _, _): return .timedOut
        case ("setup_failed", _, let message?): return .setupFailed(message: message)
        case ("killed", _, let by?): return .killed(by: by)
        default:
            throw StoreError(.corrupt, "run \(id) has the status '\(name ?? "NULL")' with missing details; "
                             + "the database was edited by hand")
        }
    }
}
