import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailSeccomp
import ClawjailStore
import ClawjailSystem

public struct ToolRunRequest {
    public var options: ToolRunOptions
    public var toolConfigPath: String?
    public var agentName: String?
    public var quiet = false
    public var graceMs: UInt64 = 10_000
    /// How long the supervisor retries the run's records after the jail has ended, when
    /// the state directory cannot be written (RunRecorder). Shorter than `run`'s: the
    /// agent runtime that called exec waits for it.
    public var recordRetryMs: UInt64 = 5_000
    /// --json-status FD
    public var statusFD: Int32?
    /// --print-plan: print the run's LaunchPlan as JSON and run nothing.
    public var printPlan = false
    public var layout: HostLayout
    public init(options: ToolRunOptions, layout: HostLayout) {
        self.options = options
        self.layout = layout
    }
}

public enum ToolRun {
    /// A short random id for a tool run: names its cgroup (exec-<id>) and its row.
    public static func newRunID() -> String {
        let bytes = Random.bytes(6)
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
    }

    /// Loads and validates a tool.toml.
    public static func loadToolConfig(_ given: String, layout: HostLayout) throws(ClawjailError) -> AgentConfig {
        let path = Paths.normalizeAbsolute(AgentRun.absolutePath(given)) ?? given
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path, limit: 1 << 20) } catch {
            throw ClawjailError(.notFound, "cannot read \(path)", cause: error)
        }
        do {
            let c = try AgentConfig.parse(utf8: bytes, file: path, kind: .tool, stateDirectory: layout.stateDirectory)
            for w in c.warnings { Log.warning(w.description) }
            return c
        } catch {
            throw ClawjailError(.config, error.description)
        }
    }
}

extension ToolRun {
    /// `clawjail exec`: one command in a fresh jail. Returns the exit status.
    ///
    /// Without --agent it touches no database (the fast path): the jail runs in the
    /// anonymous tool range. With --agent NAME it is that agent's tool run: the agent's
    /// [tools] policy, workspace and protect paths, its uid range, a run row and audit
    /// events in its chain; never its credentials.
    public static func run(_ r: ToolRunRequest) throws(ClawjailError) -> Int32 {
        let toolConfig = try r.toolConfigPath.map { (p) throws(ClawjailError) in try loadToolConfig(p, layout: r.layout) }
        var store: Store?
        var agentConfig: AgentConfig?
        var ids = IdRanges.anonymousTools
        if let agent = r.agentName {
            let s = try StoreAccess.open(r.layout)
            store = s
            let record: AgentRecord?
            do { record = try s.agent(name: agent) } catch { throw StoreAccess.wrapStart(error, "looking up agent \(agent)") }
            guard let record else {
                throw ClawjailError(.notFound, "no agent named \(agent)", hint: "an agent is known once `clawjail run` has started it")
            }
            agentConfig = try CheckReport.loadAgentConfig(record.configPath, layout: r.layout)
            do {
                let range = try s.uidRange(forAgent: agent)
                ids = IdMap(base: range.base, count: range.count)
            } catch { throw StoreAccess.wrapStart(error, "reading the uid range of \(agent)") }
        }
        let shortID = newRunID()
        let spec: JailSpec
        do {
            spec = try JailSpec.forTool(r.options, toolConfig: toolConfig, agentConfig: agentConfig, runID: shortID,
                                        hostEnvironment: ProcessInfoLite.environment(),
                                        stateDirectory: r.layout.stateDirectory)
        } catch {
            throw ClawjailError(.usage, error.description)
        }
        Trace.mark("jail spec built")
        // The seccomp index (file reads and hashes) runs on a thread of its own, joined
        // when the child plan needs the filter; without an agent the cgroup hierarchy is
        // detected on the thread that creates the cgroup. Both overlap the mount plan.
        let seccompWork = BackgroundWork.start { () throws(ClawjailError) in try SeccompSetup.choose(spec, layout: r.layout) }
        let cgroups = try Cgroups.detect()
        let facts = HostProbe.facts(for: spec, layout: r.layout, cgroup: cgroups.facts)
        Trace.mark("host probed")
        if r.printPlan {
            let plan = LaunchPlan.make(spec, facts: facts, ids: (ids.base, ids.count),
                                       seccompContentHash: try seccompWork.join().filter.profileHash)
            try? FD.standardOutput.writeAll(plan.jsonText + "\n")
            return 0
        }
        if store == nil && NetworkHook.isNeeded(for: spec) {
            // Egress decisions are audit events: a tool run with a network opens the store.
            store = try StoreAccess.open(r.layout)
        }
        var runID: RunID?
        let plan: LaunchPlan
        if let store, let agent = r.agentName {
            // A recorded run records the exact plan, seccomp hash included.
            plan = LaunchPlan.make(spec, facts: facts, ids: (ids.base, ids.count),
                                   seccompContentHash: try seccompWork.join().filter.profileHash)
            let manifest = Manifest.make(spec: spec, plan: plan, ids: ids, cgroups: cgroups)
            do {
                runID = try store.beginRun(agent: agent, kind: .tool, supervisorPid: ProcessInfoLite.pid,
                                           supervisorStart: ProcessInfoLite.startTime(of: ProcessInfoLite.pid) ?? 0,
                                           planHash: manifest.hash, manifestJSON: manifest.json,
                                           endReserveBytes: r.layout.recordReserveBytes)
            } catch { throw StoreAccess.wrapStart(error, "recording the tool run of \(agent)") }
        } else {
            // The filter is joined when the child plan needs it; the plan names the
            // profile without its hash.
            plan = LaunchPlan.make(spec, facts: facts, ids: (ids.base, ids.count), seccompContentHash: nil)
        }
        Trace.mark("launch plan made")
        let agentForAudit = r.agentName ?? ""
        let recorder = store.map { s in
            RunRecorder(store: s, runID: runID, agent: agentForAudit,
                        label: runID.map { "tool run \($0) of agent \(agentForAudit)" } ?? "tool run \(spec.name)")
        }
        let retryNs = r.recordRetryMs * 1_000_000
        if let agentConfig, agentConfig.isolation == .vm {
            // A VM agent's tool runs in its guest, jailed there by the guest's clawjail.
            let result: RunResult
            do {
                result = try VMToolRun.run(r, spec: spec, agentConfig: agentConfig, shortID: shortID)
            } catch {
                let failed = RunOutcome(status: .setupFailed(message: error.message), exitCode: 125, durationMs: 0)
                _ = recorder?.finish(end: runID == nil ? nil : failed, summary: "setup failed", retryForNs: retryNs)
                writeStatus(r.statusFD, runID: runID.map { "\($0)" } ?? spec.name, agent: r.agentName, result: nil, failure: error)
                throw error
            }
            let record = recorder?.finish(end: runID == nil ? nil : StoreAccess.outcome(result),
                                          summary: result.summary(limits: spec.limits), retryForNs: retryNs)
            if !r.quiet { Log.info("\(spec.name) in the guest of \(spec.agent ?? "its agent"): \(result.summary(limits: spec.limits)) (\(result.durationMs) ms)") }
            writeStatus(r.statusFD, runID: runID.map { "\($0)" } ?? spec.name, agent: r.agentName, result: result, failure: nil,
                        limits: spec.limits, record: record)
            return result.exitStatus
        }
        var request = LaunchRequest(spec: spec, plan: plan, ids: ids, layout: r.layout, cgroups: cgroups)
        request.pendingSeccomp = seccompWork
        if NetworkHook.isNeeded(for: spec) {
            request.hooks.append(NetworkAudit.hook(spec: spec, recorder: recorder))
        }
        let jail: RunningJail
        do {
            jail = try Launcher.start(request)
        } catch {
            let failed = RunOutcome(status: .setupFailed(message: error.message), exitCode: 125, durationMs: 0)
            _ = recorder?.finish(end: runID == nil ? nil : failed, summary: "setup failed", retryForNs: retryNs)
            writeStatus(r.statusFD, runID: runID.map { "\($0)" } ?? spec.name, agent: r.agentName, result: nil, failure: error)
            throw error
        }
        // Joined by the launch already: this returns the same choice at once.
        let seccomp: SeccompChoice
        do { seccomp = try seccompWork.join() } catch {
            try? jail.tearDown()
            throw error
        }
        let name = spec.name
        let auditRunID = runID
        let notifier = SeccompSetup.startNotifier(jail, seccomp) { v in
            Log.error(SeccompSetup.logLine(v, jail: name))
            recorder?.enqueue(AuditEventInput(agent: agentForAudit, kind: "seccomp.violation", runID: auditRunID, payload: [
                "syscall": .string(v.syscall), "number": .int(Int64(v.number)), "pid": .int(Int64(v.pid)),
                "response": .string(v.response.rawValue), "profile": .string(seccomp.profileName),
            ]))
        }
        var options = SuperviseOptions()
        options.graceMs = r.graceMs
        options.collectStats = r.statusFD != nil || store != nil
        // The supervisor now waits for as long as the jail lives: what the launch
        // dirtied and freed (heap, deep stack frames) goes back to the kernel.
        PosixThread.unmapRetiredStacks()
        ProcessMemory.releaseLaunchMemory()
        let result = Supervisor.supervise(jail, options: options)
        Trace.mark("jail ended")
        notifier?.stop()
        do { try jail.tearDown() } catch { Log.warning(error.description) }
        Trace.mark("cleaned up")
        // The status stays the tool's even when its end could not be recorded: see RunRecorder.
        let record = recorder?.finish(end: runID == nil ? nil : StoreAccess.outcome(result),
                                      summary: result.summary(limits: spec.limits), retryForNs: retryNs)
        let hints = result.hints(for: spec)
        if !r.quiet {
            Log.info("\(spec.name) \(result.summary(limits: spec.limits)) (\(result.durationMs) ms)")
            for hint in hints { Log.info("hint: " + hint) }
        }
        writeStatus(r.statusFD, runID: runID.map { "\($0)" } ?? spec.name, agent: r.agentName, result: result, failure: nil,
                    limits: spec.limits, record: record, hints: hints)
        return result.exitStatus
    }

    /// --json-status FD: one JSON object, one line, for runtimes that should not parse
    /// stderr. Fields: run_id, agent, end (exited|signaled|oom|timeout|setup-failed|
    /// exec-failed), exit_status, exit_code or signal, message, duration_ms,
    /// memory_peak_bytes, cpu_usec, oom_kills, pids_limit_hits, hints (what to do, as on
    /// stderr); and when the store was written, recorded (false when the run's records
    /// could not all be written) with record_error saying why.
    static func writeStatus(_ fd: Int32?, runID: String, agent: String?, result: RunResult?, failure: ClawjailError?,
                            limits: JailSpec.Limits? = nil, record: RunRecorder.EndRecord? = nil,
                            hints: [String] = []) {
        guard let fd else { return }
        var o: [String: JSONValue] = ["run_id": .string(runID), "agent": agent.map { .string($0) } ?? .null]
        if let record {
            o["recorded"] = .bool(record.recorded && record.problem == nil)
            if let problem = record.problem { o["record_error"] = .string(problem) }
        }
        if let result {
            o["end"] = .string(result.endKind)
            o["exit_status"] = .int(Int64(result.exitStatus))
            switch result.end {
            case .exited(let c): o["exit_code"] = .int(Int64(c))
            case .signaled(let s): o["signal"] = .int(Int64(s))
            default: break
            }
            if let limits { o["message"] = .string(result.summary(limits: limits)) }
            o["duration_ms"] = .int(Int64(result.durationMs))
            o["memory_peak_bytes"] = result.stats.memoryPeak.map { .int(Int64(clamping: $0)) } ?? .null
            o["cpu_usec"] = result.stats.cpuUsageMicros.map { .int(Int64(clamping: $0)) } ?? .null
            o["oom_kills"] = .int(Int64(clamping: result.events.oomKills))
            o["pids_limit_hits"] = .int(Int64(clamping: result.events.pidsLimitHits))
            o["hints"] = .array(hints.map { .string($0) })
        } else if let failure {
            o["end"] = .string("setup-failed")
            o["exit_status"] = .int(125)
            o["message"] = .string(failure.description)
            o["duration_ms"] = .int(0)
        }
        let line = ((try? JSONValue.object(o).canonicalText()) ?? "{}") + "\n"
        try? FD(fd).writeAll(line)
    }
}
