import ClawjailCgroup
import ClawjailCore
import ClawjailStore
import ClawjailSystem
import ClawjailRuntime

/// `clawjail ps` and `clawjail stats`: what runs now. The registry lock files are the
/// source of truth (a held lock is a live supervisor: the kernel drops it whatever way
/// the supervisor dies); the cgroup says what the jail uses; the run row in the store
/// says what it is allowed (its manifest).
public enum JailStatus {
    public struct Entry: Sendable {
        public var name: String
        /// agent, tool, or restore (`protect restore` holds the agent's lock meanwhile).
        public var kind: String
        /// The agent a tool run belongs to (or the agent itself).
        public var agent: String?
        public var supervisorPid: Int32
        public var startedMs: Int64
        public var uptimeMs: Int64
        public var runID: Int64?
        public var stats: CgroupStats?
        public var events: CgroupEvents?
        public var cgroupPaths: [String] = []
        public var manifest: JSONValue?
        public var status: String
        /// A VM agent's guest's last memory report (HostLayout.vmGuestMemoryFile).
        public var guestReport: JSONValue? = nil

        public var network: String? { manifest?["network"]?["mode"]?.stringValue }
        /// "namespace", or "vm" with its accelerator ("vm/tcg").
        public var isolation: String? {
            guard let kind = manifest?["isolation"]?["kind"]?.stringValue else { return manifest == nil ? nil : "namespace" }
            if kind == "vm", let accel = manifest?["isolation"]?["accel"]?.stringValue { return "vm/" + accel }
            return kind
        }
        /// The jail's cgroup limits (a VM agent's: the VMM jail's, guest RAM + overhead).
        public var memoryLimit: Int64? {
            manifest?["isolation"]?["vmm_memory_limit"]?.intValue ?? manifest?["limits"]?["memory"]?.intValue
        }
        public var pidsLimit: Int64? { manifest?["isolation"]?["vmm_pids_limit"]?.intValue ?? manifest?["limits"]?["pids"]?.intValue }
        public var guestMemory: Int64? { manifest?["isolation"]?["guest_memory"]?.intValue }
    }

    public struct Listing: Sendable {
        public var jails: [Entry]
        /// Runs whose supervisor died without recording the end, newest first.
        public var lost: [RunRecord]
        /// Lost runs older than the window that were left out (see `ps --all`).
        public var olderLost: Int
        /// Runs that ended while their end could not be recorded (a full state
        /// directory), newest first; every one, whatever its age: the next `ps` that can
        /// write records them.
        public var unrecorded: [RunRecord] = []
    }

    static let lostWindowMs: Int64 = 24 * 3_600_000

    /// The store when it exists; read-only commands do not create one.
    static func existingStore(_ layout: HostLayout) throws(ClawjailError) -> Store? {
        guard FileSystem.exists(layout.stateDirectory + "/" + Store.databaseFileName) else { return nil }
        return try StoreAccess.open(layout)
    }

    public static func list(layout: HostLayout, allLost: Bool) throws(ClawjailError) -> Listing {
        let store = try existingStore(layout)
        // Marking lost runs is what `ps` is for too: the store decides by pid + start time.
        if let store { try StoreAccess.settleRuns(store) }
        let running: [RunRecord]
        do { running = try store?.runningRuns() ?? [] } catch { throw StoreAccess.wrap(error, "listing running runs") }
        let cgroups = try? Cgroups.detect()
        let now = ProcessInfoLite.wallClockMilliseconds
        let jails = JailRegistry.running(layout: layout).map { entry(for: $0, runs: running, cgroups: cgroups, layout: layout, now: now) }

        var lost: [RunRecord] = []
        var unrecorded: [RunRecord] = []
        var older = 0
        if let store {
            do {
                for agent in try store.agents() {
                    for run in try store.runs(agent: agent.name, limit: 200) {
                        if run.state == .endNotRecorded { unrecorded.append(run) }
                        guard run.state == .lost else { continue }
                        if allLost || (run.endedMs ?? run.startedMs) >= now - lostWindowMs {
                            lost.append(run)
                        } else {
                            older += 1
                        }
                    }
                }
            } catch { throw StoreAccess.wrap(error, "listing lost runs") }
        }
        lost.sort { $0.id.rawValue > $1.id.rawValue }
        unrecorded.sort { $0.id.rawValue > $1.id.rawValue }
        return Listing(jails: jails, lost: lost, olderLost: older, unrecorded: unrecorded)
    }

    /// One running jail, by its name (an agent, or exec-ID for a tool run).
    public static func one(_ name: String, layout: HostLayout) throws(ClawjailError) -> Entry {
        guard let reg = JailRegistry.running(layout: layout).first(where: { $0.name == name }) else {
            var hint = "`clawjail ps` lists the running jails"
            if let store = try? existingStore(layout), let last = try? store.runs(agent: name, limit: 1).first {
                hint = "its last run (\(last.id)) " + describeEnd(last) + "; `clawjail logs \(name)` has its record"
            }
            throw ClawjailError(.notFound, "no running jail named \(OperatorText.safeLine(name))", hint: hint)
        }
        let store = try existingStore(layout)
        let running = (try? store?.runningRuns()) ?? []
        return entry(for: reg, runs: running, cgroups: try? Cgroups.detect(), layout: layout,
                     now: ProcessInfoLite.wallClockMilliseconds)
    }

    static func entry(for reg: JailRegistry.Entry, runs: [RunRecord], cgroups: (any CgroupManager)?, layout: HostLayout,
                      now: Int64) -> Entry {
        let run = runs.first { r in
            r.supervisorPid == reg.supervisorPid && (reg.kind != "agent" || r.agent == reg.name) && r.supervisorIsAlive
        }
        var e = Entry(name: reg.name, kind: reg.kind, agent: run?.agent ?? (reg.kind == "agent" ? reg.name : nil),
                      supervisorPid: reg.supervisorPid, startedMs: reg.startedAtMs, uptimeMs: now - reg.startedAtMs,
                      runID: run?.id.rawValue, manifest: run.flatMap { try? JSONValue.parse($0.manifestJSON) },
                      status: "running")
        if e.agent == "" { e.agent = nil }
        if e.guestMemory != nil, let bytes = try? FileSystem.readFile(layout.vmGuestMemoryFile(reg.name), limit: 4096) {
            e.guestReport = try? JSONValue.parse(String(decoding: bytes, as: UTF8.self))
        }
        let group = reg.kind == "restore" ? nil
            : cgroups?.open(name: reg.name) ?? reg.cgroupPaths.first.flatMap { Cgroups.openV2(path: $0) }
        if let group {
            e.stats = group.stats()
            e.events = group.events()
            e.cgroupPaths = group.paths
        }
        let state = processState(reg.supervisorPid)
        if reg.kind == "restore" {
            e.status = "protect restore in progress"
        } else if state == "T" || state == "t" {
            e.status = "supervisor stopped"
        } else if FileSystem.exists(EmergencyStop.markerPath(reg.name, layout: layout)) {
            e.status = "being killed"
        } else if group == nil {
            e.status = "starting"
        }
        return e
    }

    /// The state letter of /proc/PID/stat (R, S, D, T, Z, ...).
    static func processState(_ pid: Int32) -> String? {
        guard let text = try? FileSystem.readText("/proc/\(pid)/stat", limit: 4096),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ").first.map(String.init)
    }

    public static func describeEnd(_ r: RunRecord) -> String {
        switch r.state {
        case .running: return "is marked running (supervisor pid \(r.supervisorPid))"
        case .lost:
            return "was lost" + (r.endedMs.map { " (noticed \(OperatorText.timestamp(ms: $0)))" } ?? "")
                + ": its supervisor (pid \(r.supervisorPid)) died without recording the end"
        case .endNotRecorded:
            let when = r.unrecordedEnd.map { " at \(OperatorText.timestamp(ms: $0.endedMs))" } ?? ""
            return "ended\(when), " + unrecordedText(r)
        case .finished:
            let when = r.endedMs.map { " at \(OperatorText.timestamp(ms: $0))" } ?? ""
            return "ended\(when): " + (r.outcome.map(outcomeText) ?? "unknown")
        }
    }

    /// "end not recorded (disk full: ENOSPC (errno 28: ...), SQLITE_FULL): exited 0; ..."
    public static func unrecordedText(_ r: RunRecord) -> String {
        guard let u = r.unrecordedEnd else { return "end not recorded" }
        var text = "end not recorded (" + OperatorText.safeLine(u.failure.cause) + "): " + outcomeText(u.outcome)
        if u.eventsNotRecorded > 0 { text += "; \(u.eventsNotRecorded) audit events not recorded" }
        if u.gaveUpMs == nil && r.supervisorIsAlive {
            text += "; supervisor pid \(r.supervisorPid) still retrying"
        } else {
            text += "; recorded once the state directory has space and `clawjail ps` runs"
        }
        return text
    }

    public static func outcomeText(_ o: RunOutcome) -> String {
        switch o.status {
        case .exited(let c): return "exited \(c)"
        case .signaled(let s): return "killed by \(signalName(s))"
        case .oomKilled: return "OOM-killed"
        case .timedOut: return "timed out"
        case .setupFailed(let m): return "setup failed: " + OperatorText.safeLine(m)
        case .killed(let by): return "killed by " + OperatorText.safeLine(by)
        }
    }

    // MARK: - ps

    public static func renderList(_ l: Listing) -> String {
        var out = ""
        if l.jails.isEmpty {
            out += "no jails running\n"
        } else {
            let rows = l.jails.map { e -> [String] in
                let mem = e.stats?.memoryCurrent.map(OperatorText.bytes) ?? "-"
                let memLimit = e.memoryLimit.map { " / " + OperatorText.bytes(UInt64($0)) } ?? ""
                let pids = e.stats?.pidsCurrent.map { String($0) } ?? "-"
                let pidsLimit = e.pidsLimit.map { " / \($0)" } ?? ""
                var status = e.status
                if e.kind == "tool", let a = e.agent { status += " (tool of \(a))" }
                return [e.name, e.kind, String(e.supervisorPid), OperatorText.duration(ms: e.uptimeMs),
                        mem + memLimit, pids + pidsLimit, e.network ?? "-", e.isolation ?? "-", status]
            }
            out += OperatorText.table(["NAME", "KIND", "PID", "UPTIME", "MEMORY", "PIDS", "NETWORK", "ISOLATION", "STATUS"], rows)
        }
        if !l.lost.isEmpty {
            out += "\nlost runs (the supervisor died without recording the end; `clawjail logs NAME` has the record):\n"
            let rows = l.lost.map { r in
                [String(r.id.rawValue), r.agent, r.kind.rawValue, String(r.supervisorPid), OperatorText.timestamp(ms: r.startedMs),
                 r.endedMs.map(OperatorText.timestamp) ?? "-", "lost"]
            }
            out += OperatorText.table(["RUN", "AGENT", "KIND", "PID", "STARTED", "NOTICED", "STATUS"], rows)
        }
        if l.olderLost > 0 {
            out += "\n\(l.olderLost) older lost run\(l.olderLost == 1 ? "" : "s") not shown: `clawjail ps --all`\n"
        }
        if !l.unrecorded.isEmpty {
            // Not lost: their supervisor knew how they ended and could not write it down.
            out += "\nruns whose end is not recorded (the state directory could not be written; the outcome is kept "
                + "until it can):\n"
            let rows = l.unrecorded.map { r in
                [String(r.id.rawValue), r.agent, r.kind.rawValue, String(r.supervisorPid), OperatorText.timestamp(ms: r.startedMs),
                 r.unrecordedEnd.map { OperatorText.timestamp(ms: $0.endedMs) } ?? "-", unrecordedText(r)]
            }
            out += OperatorText.table(["RUN", "AGENT", "KIND", "PID", "STARTED", "ENDED", "STATUS"], rows)
        }
        return out
    }

    public static func listJSON(_ l: Listing) -> JSONValue {
        .object([
            "jails": .array(l.jails.map(entryJSON(includeManifest: false))),
            "lost_runs": .array(l.lost.map(runJSON)),
            "older_lost_runs": .int(Int64(l.olderLost)),
            "end_not_recorded_runs": .array(l.unrecorded.map(runJSON)),
        ])
    }

    static func entryJSON(includeManifest: Bool) -> (Entry) -> JSONValue {
        { e in
            var o: [String: JSONValue] = [
                "name": .string(e.name), "kind": .string(e.kind), "agent": e.agent.map { .string($0) } ?? .null,
                "supervisor_pid": .int(Int64(e.supervisorPid)), "started_ms": .int(e.startedMs),
                "started": .string(OperatorText.timestamp(ms: e.startedMs)), "uptime_ms": .int(e.uptimeMs),
                "run_id": e.runID.map { .int($0) } ?? .null, "status": .string(e.status),
                "network": e.network.map { .string($0) } ?? .null,
                "isolation": e.isolation.map { .string($0) } ?? .null,
                "memory_current_bytes": OperatorText.optionalInt(e.stats?.memoryCurrent),
                "memory_limit_bytes": e.memoryLimit.map { .int($0) } ?? .null,
                "pids_current": OperatorText.optionalInt(e.stats?.pidsCurrent),
                "pids_limit": e.pidsLimit.map { .int($0) } ?? .null,
            ]
            if includeManifest {
                o["memory_peak_bytes"] = OperatorText.optionalInt(e.stats?.memoryPeak)
                o["cpu_usage_usec"] = OperatorText.optionalInt(e.stats?.cpuUsageMicros)
                o["cpu_throttled_periods"] = OperatorText.optionalInt(e.stats?.cpuThrottledPeriods)
                o["cpu_throttled_usec"] = OperatorText.optionalInt(e.stats?.cpuThrottledMicros)
                o["oom_kills"] = OperatorText.optionalInt(e.events?.oomKills)
                o["pids_limit_hits"] = OperatorText.optionalInt(e.events?.pidsLimitHits)
                o["cgroup_paths"] = .array(e.cgroupPaths.map { .string($0) })
                o["manifest"] = e.manifest ?? .null
                o["guest_memory"] = e.guestReport ?? .null
            }
            return .object(o)
        }
    }

    public static func runJSON(_ r: RunRecord) -> JSONValue {
        var o: [String: JSONValue] = [
            "run_id": .int(r.id.rawValue), "agent": .string(r.agent), "kind": .string(r.kind.rawValue),
            "state": .string(r.state.rawValue), "supervisor_pid": .int(Int64(r.supervisorPid)),
            "started_ms": .int(r.startedMs), "started": .string(OperatorText.timestamp(ms: r.startedMs)),
            "ended_ms": r.endedMs.map { .int($0) } ?? .null, "plan_hash": .string(r.planHash),
        ]
        if let f = r.recordingFailure {
            o["recording_failure"] = .object(["cause": .string(f.cause), "errno": f.errno.map { .int(Int64($0)) } ?? .null,
                                              "since_ms": .int(f.sinceMs)])
        }
        if let u = r.unrecordedEnd {
            o["outcome"] = .string(unrecordedText(r))
            o["ended_ms"] = .int(u.endedMs)
            o["exit_code"] = .int(Int64(u.outcome.exitCode))
            o["duration_ms"] = .int(u.outcome.durationMs)
            o["end_not_recorded"] = .object([
                "cause": .string(u.failure.cause), "errno": u.failure.errno.map { .int(Int64($0)) } ?? .null,
                "since_ms": .int(u.failure.sinceMs), "gave_up_ms": u.gaveUpMs.map { .int($0) } ?? .null,
                "events_not_recorded": .int(Int64(u.eventsNotRecorded)),
            ])
        }
        if let out = r.outcome {
            o["outcome"] = .string(outcomeText(out))
            o["exit_code"] = .int(Int64(out.exitCode))
            o["duration_ms"] = .int(out.durationMs)
            o["peak_memory_bytes"] = out.peakMemoryBytes.map { .int($0) } ?? .null
            o["cpu_usec"] = out.cpuUsec.map { .int($0) } ?? .null
        }
        return .object(o)
    }

    // MARK: - stats

    public static func renderStats(_ e: Entry) -> String {
        var out = "\(e.name)  \(e.kind)"
        if e.kind == "tool", let a = e.agent { out += " of \(a)" }
        out += ", supervisor pid \(e.supervisorPid), up \(OperatorText.duration(ms: e.uptimeMs)) (since \(OperatorText.timestamp(ms: e.startedMs)))"
        if let r = e.runID { out += ", run \(r)" }
        out += "\n"
        func line(_ k: String, _ v: String) { out += "  " + k.padding(11) + v + "\n" }
        line("status", e.status)
        let s = e.stats
        var mem = [s?.memoryCurrent.map { OperatorText.bytes($0) + " now" }, s?.memoryPeak.map { OperatorText.bytes($0) + " peak" }]
            .compactMap { $0 }
        if let l = e.memoryLimit { mem.append("limit " + OperatorText.bytes(UInt64(l)) + " (no swap)") }
        line("memory", mem.isEmpty ? "-" : mem.joined(separator: ", "))
        if let g = e.guestMemory, let iso = e.isolation {
            // The cgroup holds the VMM and its file servers: what the VM costs the host.
            line("isolation", "\(iso): guest RAM \(OperatorText.bytes(UInt64(g))); the memory above is the VMM's and its file servers' on the host")
            if let r = e.guestReport, let total = r["total_bytes"]?.intValue, let available = r["available_bytes"]?.intValue,
               let jails = r["jails_bytes"]?.intValue, let at = r["at_ms"]?.intValue {
                // The guest's claim, as its kernel counts (it is refreshed every 2 s).
                let age = max(0, ProcessInfoLite.wallClockMilliseconds - at)
                line("guest", "\(OperatorText.bytes(UInt64(clamping: total))) seen by its kernel: \(OperatorText.bytes(UInt64(clamping: available))) available, "
                     + "\(OperatorText.bytes(UInt64(clamping: jails))) in its jails (reported \(OperatorText.duration(ms: age)) ago)")
            }
        }
        var pids = [s?.pidsCurrent.map { "\($0) now" }].compactMap { $0 }
        if let l = e.pidsLimit { pids.append("limit \(l)") }
        if let hits = e.events?.pidsLimitHits, hits > 0 { pids.append("limit hit \(hits) times") }
        line("pids", pids.isEmpty ? "-" : pids.joined(separator: ", "))
        var cpu: [String] = []
        if let u = s?.cpuUsageMicros { cpu.append(OperatorText.duration(ms: Int64(clamping: u / 1000)) + " used") }
        if let n = s?.cpuThrottledPeriods {
            let t = s?.cpuThrottledMicros.map { " for " + OperatorText.duration(ms: Int64(clamping: $0 / 1000)) } ?? ""
            cpu.append("throttled \(n) times\(t)")
        }
        switch e.manifest?["limits"]?["cpu"] {
        case .double(let c)?: cpu.append("limit \(CheckReport.formatCores(c)) cores")
        case .int(let c)?: cpu.append("limit \(c) core\(c == 1 ? "" : "s")")
        default: break
        }
        line("cpu", cpu.isEmpty ? "-" : cpu.joined(separator: ", "))
        line("oom kills", e.events.map { String($0.oomKills) } ?? "-")
        if let m = e.manifest {
            var net = m["network"]?["mode"]?.stringValue ?? "-"
            let allow = (m["network"]?["allow"]?.arrayValue ?? []).compactMap(\.stringValue)
            if !allow.isEmpty { net += ": " + allow.map(OperatorText.safeLine).joined(separator: ", ") }
            line("network", net)
            var sec = m["seccomp"]?["profile"]?.stringValue ?? "-"
            if let h = m["seccomp"]?["hash"]?.stringValue { sec += " (filter " + String(h.prefix(12)) + ")" }
            line("seccomp", OperatorText.safeLine(sec))
            if let u = m["uid_map"], let o = u["outside"]?.intValue, let c = u["count"]?.intValue {
                line("uids", "0-\(c - 1) inside -> \(o)-\(o + c - 1) outside")
            }
            for mount in m["mounts"]?.arrayValue ?? [] where mount["role"]?.stringValue == "workspace" {
                line("workspace", OperatorText.safeLine(mount["host"]?.stringValue ?? "-"))
            }
            if let hashes = m["protect_hashes"]?.objectValue, !hashes.isEmpty {
                line("protected", "\(hashes.count) file\(hashes.count == 1 ? "" : "s") hashed at start (`clawjail protect diff \(e.agent ?? e.name)`)")
            }
        }
        if !e.cgroupPaths.isEmpty { line("cgroup", e.cgroupPaths.joined(separator: "\n" + String(repeating: " ", count: 13))) }
        return out
    }

    public static func statsJSON(_ e: Entry) -> JSONValue { entryJSON(includeManifest: true)(e) }
}
