#if canImport(Glibc)
import Glibc
#endif
import CClawjailChild
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
            runID = try store.beginRun(agent: name, kind: .agent, supervisorPid: getpid(),
                                       supervisorStart: ProcessInfoLite.startTime(of: getpid()) ?? 0,
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
        cj_release_launch_memory()
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
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX))
        guard getcwd(&buf, buf.count) != nil else { return p }
        let cwd = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return cwd + "/" + p
    }
}

/// Secrets the output filter redacts: the contents of the credentials files, and
/// environment values whose names say they are secrets.
enum Secrets {
    static func collect(spec: JailSpec) -> [String] {
        var out: [String] = []
        for v in spec.environment where v.looksSecret {
            out.append(v.value)
        }
        for m in spec.mounts where m.role == .credentials {
            out += fileSecrets(m.host, depth: 0)
        }
        return out.filter { $0.utf8.count >= 8 }
    }

    private static func fileSecrets(_ dir: String, depth: Int) -> [String] {
        guard depth < 4, let names = try? FileSystem.listDirectory(dir) else { return [] }
        var out: [String] = []
        for n in names {
            let p = dir + "/" + n
            guard let st = try? FileSystem.stat(p) else { continue }
            if st.isDirectory {
                out += fileSecrets(p, depth: depth + 1)
            } else if st.isRegular && st.size <= 64 * 1024, let text = try? FileSystem.readText(p, limit: 65536) {
                // Whole values, and each line (KEY=VALUE files, JSON with one value per line).
                let trimmed = String(text.trimming(" \n\r\t"))
                out.append(trimmed)
                for line in trimmed.split(separator: "\n") {
                    let l = String(line.trimming(" \r\t"))
                    out.append(l)
                    if let eq = l.firstIndex(of: "=") { out.append(String(l[l.index(after: eq)...])) }
                    if let colon = l.firstIndex(of: ":") {
                        out.append(String(l[l.index(after: colon)...].trimming(" \"',")))
                    }
                }
            }
        }
        return out
    }
}

/// The run's effective policy, recorded with it in the store: what could this agent do?
struct Manifest {
    var json: String
    var hash: String

    static func make(spec: JailSpec, plan: LaunchPlan, ids: IdMap, cgroups: any CgroupManager) -> Manifest {
        let seccompHash = plan.seccomp.contentHash
        var mounts: [JSONValue] = []
        for m in spec.mounts {
            mounts.append(.object(["role": .string(m.role.rawValue), "host": .string(m.host), "target": .string(m.target),
                                   "mode": .string(m.writable ? "rw" : "ro")]))
        }
        let l = spec.limits
        var limits: [String: JSONValue] = ["memory": .int(Int64(l.memory)), "pids": .int(Int64(l.pids)),
                                           "tmp": .int(Int64(l.tmp)), "open_files": .int(Int64(l.openFiles)),
                                           "wall_time_ms": .int(Int64(l.wallTimeMs))]
        if let c = l.cpu { limits["cpu"] = .double(c) }
        if let w = l.ioWeight { limits["io_weight"] = .int(Int64(w)) }
        if let f = l.fileSize { limits["file_size"] = .int(Int64(f)) }
        var seccomp: [String: JSONValue] = ["profile": .string(spec.seccompProfile)]
        if let h = seccompHash { seccomp["hash"] = .string(h) }
        let rootfs: JSONValue
        switch spec.rootfs {
        case .host: rootfs = .string("host")
        case .directory(let p): rootfs = .string(p)
        }
        let value: JSONValue = .object([
            "kind": .string(spec.kind.rawValue),
            "name": .string(spec.name),
            "agent": spec.agent.map { .string($0) } ?? .null,
            "argv": .array(spec.argv.map { .string($0) }),
            "cwd": .string(spec.cwd),
            "hostname": .string(spec.hostname),
            "uid_map": .object(["inside": .int(0), "outside": .int(Int64(ids.base)), "count": .int(Int64(ids.count)),
                                "user_inside": .int(Int64(spec.user)), "user_outside": .int(Int64(ids.outside(spec.user)))]),
            "rootfs": rootfs,
            "mounts": .array(mounts),
            "limits": .object(limits),
            "cgroup": .string(cgroups.summary),
            "seccomp": .object(seccomp),
            "network": .object(["mode": .string(spec.network.mode.rawValue),
                                "allow": .array(spec.network.allow.map { .string($0.description) }),
                                "resolvers": .array(spec.network.resolvers.map { .string($0) }),
                                "allow_non_tls_443": .bool(spec.network.allowNonTLS443),
                                "ingress": .array(spec.network.ingress.map { .object(["port": .int(Int64($0.port)), "socket": .string($0.socket)]) })]),
            // Names only: values may be secrets.
            "environment": .array(spec.environment.map { .string($0.name) }),
            "protect": .array(spec.protect.map { .string($0) }),
            // BEGIN protect hashes (operator commands: Operator/ProtectTree.swift)
            // SHA-256 of each protected file at run start: which SOUL.md did this run have?
            "protect_hashes": ProtectHashes.manifestValue(spec: spec),
            // END protect hashes
            // Every step the executor took (LaunchPlan): `clawjail check --json` of the
            // same config on the same host prints the same.
            "plan": plan.json,
        ])
        let text = (try? value.canonicalText()) ?? "{}"
        return Manifest(json: text, hash: SHA256.hexDigest(of: text))
    }
}

/// The store, opened with clawjail's error conventions.
enum StoreAccess {
    static func open(_ layout: HostLayout) throws(ClawjailError) -> Store {
        do {
            return try Store.open(directory: layout.stateDirectory)
        } catch {
            throw wrap(error, "opening the state database in \(layout.stateDirectory)")
        }
    }

    static func wrap(_ error: any Error, _ doing: String) -> ClawjailError {
        if let e = error as? ClawjailError { return e }
        if let s = error as? StoreError {
            if case .alreadyRunning = s.code {
                return ClawjailError(.conflict, s.description)
            }
            if s.code == .full || s.isRetryable {
                return ClawjailError(.state, "state database error while \(doing): \(s.cause)", hint: s.message)
            }
            return ClawjailError(.state, "state database error while \(doing)", cause: s.description)
        }
        return ClawjailError(.state, "state database error while \(doing)", cause: error)
    }

    /// For the writes before a jail starts: a jail whose record cannot be written does
    /// not run (it would run unaudited), and the error says so.
    static func wrapStart(_ error: any Error, _ doing: String) -> ClawjailError {
        var e = wrap(error, doing)
        if let s = error as? StoreError, s.code == .full || s.isRetryable {
            e.message += "; the jail does not start without its record"
        }
        return e
    }

    /// `markLostRuns` for the read-only operator commands: when the state directory is
    /// full they still show what is recorded (readers derive lost and unrecorded ends
    /// themselves), with a warning instead of failing.
    static func settleRuns(_ store: Store) throws(ClawjailError) {
        do {
            try store.markLostRuns()
        } catch let e as StoreError where e.isRetryable {
            Log.warning("could not write down the runs of dead supervisors in \(store.directory) (\(e.cause)); "
                        + "showing them as they are: free space in \(store.directory)")
        } catch {
            throw wrap(error, "marking runs of dead supervisors as lost")
        }
    }

    static func outcome(_ r: RunResult) -> RunOutcome {
        let status: RunStatus
        switch r.end {
        case .exited(let c): status = .exited(code: c)
        case .signaled(let s): status = r.stoppedBy.map { RunStatus.killed(by: "operator (\($0))") } ?? .signaled(signal: s)
        case .oomKilled: status = .oomKilled
        case .timedOut: status = .timedOut
        case .setupFailed(let m): status = .setupFailed(message: m)
        case .execFailed(let m, _): status = .setupFailed(message: m)
        }
        return RunOutcome(status: status, exitCode: r.exitStatus, durationMs: Int64(r.durationMs),
                          peakMemoryBytes: r.stats.memoryPeak.map { Int64(clamping: $0) },
                          cpuUsec: r.stats.cpuUsageMicros.map { Int64(clamping: $0) })
    }
}
