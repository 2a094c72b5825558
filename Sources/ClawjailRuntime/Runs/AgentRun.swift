import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailSeccomp
import ClawjailStore
import ClawjailSystem

public struct AgentRunRequest {
    public var configPath: String
    public var layout: HostLayout
    public var graceMs: UInt64 = 10_000
    /// How long the supervisor retries the run's end record after the jail has ended,
    /// when the state directory cannot be written (RunRecorder).
    public var recordRetryMs: UInt64 = 30_000
    public init(configPath: String, layout: HostLayout) {
        self.configPath = configPath
        self.layout = layout
    }
}

/// `clawjail run agent.toml`: one agent in the foreground, until it exits or is stopped.
public enum AgentRun {
    public static func run(_ r: AgentRunRequest) throws(ClawjailError) -> Int32 {
        let config = try CheckReport.loadAgentConfig(r.configPath, layout: r.layout)
        for w in config.warnings { Log.warning(w.description) }
        let spec = JailSpec.forAgent(config, hostEnvironment: ProcessInfoLite.environment())
        let name = spec.name
        // Before the lock, the store and the cgroup: nothing is created for a VM agent yet.
        if spec.vm != nil {
            throw ClawjailError(.setup, "\(name) has isolation = \"vm\", and the VM executor is not built yet",
                                hint: "clawjail check \(r.configPath) shows the VM plan (VMM command line, guest memory, shares, network); "
                                    + "remove isolation = \"vm\" and [vm] to run it as a namespace jail")
        }

        // One supervisor per agent, decided by the kernel (the lock dies with us).
        let lock = try JailRegistry.acquire(name, kind: .agent, layout: r.layout)
        var lockHandedOver = false
        defer { if !lockHandedOver { JailRegistry.release(lock, name: name, layout: r.layout) } }

        let store = try StoreAccess.open(r.layout)
        let range: UidRange
        do {
            try store.upsertAgent(name: name, configPath: Paths.normalizeAbsolute(absolutePath(r.configPath)) ?? r.configPath)
            range = try store.uidRange(forAgent: name)
        } catch {
            throw StoreAccess.wrapStart(error, "allocating the uid range of \(name)")
        }
        let ids = IdMap(base: UInt32(range.base), count: UInt32(range.count))

        // A previous supervisor of this agent that was SIGKILLed left its cgroup.
        let cgroups = try Cgroups.detect()
        let gc = JailRegistry.collectGarbage(layout: r.layout, cgroups: cgroups, only: name)
        for n in gc.removedCgroups { Log.info("removed the leftover cgroup of a previous run of \(n)") }

        let seccomp = try SeccompSetup.choose(spec, layout: r.layout)
        let facts = HostProbe.facts(for: spec, layout: r.layout, cgroup: cgroups.facts)
        let plan = LaunchPlan.make(spec, facts: facts, ids: (ids.base, ids.count), seccompContentHash: seccomp.filter.profileHash)
        let manifest = Manifest.make(spec: spec, plan: plan, ids: ids, cgroups: cgroups)
        let runID: RunID
        do {
            runID = try store.beginRun(agent: name, kind: .agent, supervisorPid: ProcessInfoLite.pid,
                                       supervisorStart: ProcessInfoLite.startTime(of: ProcessInfoLite.pid) ?? 0,
                                       planHash: manifest.hash, manifestJSON: manifest.json,
                                       endReserveBytes: r.layout.recordReserveBytes)
        } catch {
            throw StoreAccess.wrapStart(error, "recording the start of \(name)")
        }
        let recorder = RunRecorder(store: store, runID: runID, agent: name, label: "run \(runID) of agent \(name)")
        let retryNs = r.recordRetryMs * 1_000_000

        // The agent's output reaches the terminal and the journal escaped and redacted.
        let out: (read: FD, write: FD)
        let err: (read: FD, write: FD)
        do {
            out = try pipe()
            err = try pipe()
        } catch {
            throw ClawjailError(.setup, "cannot create the output pipes", cause: error)
        }
        var request = LaunchRequest(spec: spec, plan: plan, ids: ids, layout: r.layout, cgroups: cgroups)
        request.stdio = [0, out.write.rawValue, err.write.rawValue]
        request.seccompBPF = seccomp.filter.bpf
        request.seccompFlags = seccomp.flags
        if NetworkHook.isNeeded(for: spec) {
            request.hooks.append(NetworkAudit.hook(spec: spec, recorder: recorder))
        }
        request.lock = lock
        lockHandedOver = true
        let jail: RunningJail
        do {
            jail = try Launcher.start(request)
        } catch {
            out.write.close()
            err.write.close()
            out.read.close()
            err.read.close()
            _ = recorder.finish(end: RunOutcome(status: .setupFailed(message: error.message), exitCode: 125, durationMs: 0),
                                summary: "setup failed", retryForNs: retryNs)
            throw error
        }
        out.write.close()
        err.write.close()
        Log.info("agent \(name) started (jail pid \(jail.initProcess.pid), uid \(spec.user) -> \(ids.outside(spec.user)))")

        // Violations (log and kill modes): a line on our stderr and an audit event.
        let notifier = SeccompSetup.startNotifier(jail, seccomp) { v in
            Log.error(SeccompSetup.logLine(v, jail: name))
            recorder.enqueue(AuditEventInput(agent: name, kind: "seccomp.violation", runID: runID, payload: [
                "syscall": .string(v.syscall), "number": .int(Int64(v.number)), "pid": .int(Int64(v.pid)),
                "response": .string(v.response.rawValue), "profile": .string(seccomp.profileName),
            ]))
        }
        let filter = OutputFilter(secrets: Secrets.collect(spec: spec))
        var options = SuperviseOptions()
        options.graceMs = r.graceMs
        options.outputs = [OutputRelay(source: out.read, destination: .standardOutput, filter: filter),
                           OutputRelay(source: err.read, destination: .standardError, filter: filter)]
        PosixThread.unmapRetiredStacks()
        ProcessMemory.releaseLaunchMemory()
        let result = Supervisor.supervise(jail, options: options)
        notifier?.stop()
        do { try jail.tearDown() } catch { Log.warning(error.description) }
        let summary = result.summary(limits: spec.limits)
        // The status stays the agent's even when its end could not be recorded: see RunRecorder.
        _ = recorder.finish(end: StoreAccess.outcome(result), summary: summary, retryForNs: retryNs)
        Log.info("agent \(name) \(summary)")
        for hint in result.hints(for: spec) { Log.info("hint: " + hint) }
        return result.exitStatus
    }

    static func absolutePath(_ p: String) -> String {
        if p.hasPrefix("/") { return p }
        guard let cwd = FileSystem.currentDirectory() else { return p }
        return cwd + "/" + p
    }
}

