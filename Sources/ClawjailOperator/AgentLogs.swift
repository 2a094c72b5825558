import ClawjailCore
import ClawjailStore
import ClawjailSystem
import ClawjailRuntime

/// `clawjail logs NAME`: the supervisor's record of an agent, from the store: its runs
/// (agent runs and tool runs, with how each ended) and its audit events. The agent's
/// own stdout/stderr is not here: it went to the supervisor's stdout/stderr (the
/// journal under systemd).
public enum AgentLogs {
    public struct Record: Sendable {
        public var name: String
        public var agent: AgentRecord?
        public var uidRange: UidRange?
        public var runs: [RunRecord]
        /// The last `limit` audit events of the agent, oldest first, as exported.
        public var events: [JSONValue]
        public var totalEvents: Int
    }

    public static func collect(_ name: String, limit: Int, layout: HostLayout) throws(ClawjailError) -> Record {
        guard let store = try JailStatus.existingStore(layout) else {
            throw ClawjailError(.notFound, "no state database in \(layout.stateDirectory): no agent has run yet",
                                hint: "pass --state-dir if the agents use another one")
        }
        try StoreAccess.settleRuns(store)
        do {
            let agent = try store.agent(name: name)
            let runs = try store.runs(agent: name, limit: limit)
            var ring: [String] = []
            var total = 0
            try store.exportAudit(agent: name) { line in
                total += 1
                ring.append(line)
                if ring.count > limit { ring.removeFirst(ring.count - limit) }
            }
            if agent == nil && runs.isEmpty && total == 0 {
                throw ClawjailError(.notFound, "no agent named \(OperatorText.safeLine(name)) in \(store.databasePath)",
                                    hint: "an agent is known once `clawjail run` has started it; `clawjail ps` lists what runs")
            }
            let range = try store.uidRanges()[name]
            return Record(name: name, agent: agent, uidRange: range, runs: runs,
                          events: ring.compactMap { try? JSONValue.parse($0) }, totalEvents: total)
        } catch let e as ClawjailError {
            throw e
        } catch {
            throw StoreAccess.wrap(error, "reading the record of \(name)")
        }
    }

    public static func render(_ r: Record, now: Int64 = ProcessInfoLite.wallClockMilliseconds) -> String {
        var out = "agent \(OperatorText.safeLine(r.name))"
        if let a = r.agent { out += ": config " + OperatorText.safeLine(a.configPath) }
        if let u = r.uidRange { out += ", uids \(u.base)-\(u.base + u.count - 1)" }
        out += "\n\n"
        if r.runs.isEmpty {
            out += "no runs recorded\n"
        } else {
            out += "runs (newest first):\n"
            let rows = r.runs.map { run -> [String] in
                let duration: String
                if let o = run.outcome ?? run.unrecordedEnd?.outcome {
                    duration = OperatorText.duration(ms: o.durationMs)
                } else if run.state == .running {
                    duration = OperatorText.duration(ms: now - run.startedMs) + "+"
                } else {
                    duration = "-"
                }
                let outcome: String
                switch run.state {
                case .running:
                    outcome = "supervisor pid \(run.supervisorPid)"
                        + (run.recordingFailure.map { "; cannot record since \(OperatorText.timestamp(ms: $0.sinceMs)) (\(OperatorText.safeLine($0.cause)))" } ?? "")
                case .lost:
                    outcome = "supervisor pid \(run.supervisorPid) died without recording the end"
                        + (run.recordingFailure.map { "; recording had failed since \(OperatorText.timestamp(ms: $0.sinceMs)) (\(OperatorText.safeLine($0.cause)))" } ?? "")
                case .endNotRecorded: outcome = JailStatus.unrecordedText(run)
                case .finished: outcome = run.outcome.map { o in
                    JailStatus.outcomeText(o) + (o.peakMemoryBytes.map { ", peak " + OperatorText.bytes(UInt64(max(0, $0))) } ?? "")
                } ?? "-"
                }
                return [String(run.id.rawValue), run.kind.rawValue, OperatorText.timestamp(ms: run.startedMs), duration,
                        run.state.rawValue, outcome]
            }
            out += OperatorText.table(["RUN", "KIND", "STARTED", "DURATION", "STATE", "OUTCOME"], rows)
        }
        out += "\n"
        if r.events.isEmpty {
            out += "no audit events\n"
        } else {
            let shown = r.events.count < r.totalEvents ? "last \(r.events.count) of \(r.totalEvents)" : "\(r.totalEvents)"
            out += "audit events (\(shown), oldest first; `clawjail audit export --agent \(OperatorText.safeLine(r.name))` has them all):\n"
            for e in r.events { out += eventLine(e) + "\n" }
        }
        return out
    }

    /// "2026-03-01T12:00:00.000Z  #12  run.end  run 4  exit_code=0 status=exited"
    public static func eventLine(_ e: JSONValue) -> String {
        let ts = e["ts"]?.stringValue ?? "-"
        let seq = e["seq"]?.intValue.map { "#\($0)" } ?? "#?"
        let kind = OperatorText.safeLine(e["kind"]?.stringValue ?? "?")
        var parts = [ts, seq.padding(5), kind.padding(18)]
        if let run = e["run_id"]?.intValue { parts.append("run \(run)") }
        parts.append(payloadSummary(e["payload"]))
        return parts.joined(separator: "  ")
    }

    static func payloadSummary(_ payload: JSONValue?) -> String {
        guard let o = payload?.objectValue else { return "" }
        var items: [String] = []
        for key in o.keys.sorted() where key != "plan" {
            guard let v = o[key] else { continue }
            var text = compact(v)
            if key.hasSuffix("hash") { text = String(text.prefix(12)) }
            items.append(OperatorText.safeLine(key) + "=" + text)
        }
        return items.joined(separator: " ")
    }

    static func compact(_ v: JSONValue) -> String {
        let raw: String
        switch v {
        case .string(let s): raw = s.contains(" ") ? "\"\(s)\"" : s
        case .null: raw = "null"
        default: raw = (try? v.canonicalText()) ?? "?"
        }
        let safe = OperatorText.safeLine(raw)
        return safe.count > 80 ? String(safe.prefix(77)) + "..." : safe
    }

    public static func json(_ r: Record) -> JSONValue {
        .object([
            "agent": .string(r.name),
            "config_path": r.agent.map { .string($0.configPath) } ?? .null,
            "uid_range": r.uidRange.map { .object(["base": .int(Int64($0.base)), "count": .int(Int64($0.count))]) } ?? .null,
            "runs": .array(r.runs.map { run in
                var o = JailStatus.runJSON(run).objectValue ?? [:]
                o["manifest"] = (try? JSONValue.parse(run.manifestJSON)) ?? .null
                return .object(o)
            }),
            "events": .array(r.events),
            "total_events": .int(Int64(r.totalEvents)),
        ])
    }
}
