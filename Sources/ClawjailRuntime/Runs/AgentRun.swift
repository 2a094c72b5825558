import ClawjailCgroup
import ClawjailNetwork
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
        if let vm = spec.vm {
            // Missing or changed boot files, or a KVM that cannot boot a guest: refused
            // before anything exists.
            let vmFacts = HostProbe.vmFacts(vm, layout: r.layout)
            let problems = vmFacts.bootProblems(vm) + CheckReport.vmShareProblems(spec)
            if !problems.isEmpty {
                throw ClawjailError(.config, "\(r.configPath): the VM of \(name) cannot boot:\n  " + problems.joined(separator: "\n  "))
            }
            if vm.accel == .kvm {
                let v = KVMProbe.verdict(kernel: vm.kernel, initrd: vm.initrd, kernelSHA256: vmFacts.kernel.sha256, layout: r.layout)
                if !v.usable {
                    throw ClawjailError(.setup, "\(name) has vm.accel = \"kvm\", and this host's KVM cannot run its guest: \(v.reason)",
                                        hint: "run it on a host whose KVM boots a stock guest; or set vm.accel = \"tcg\" and vm.allow_tcg = true "
                                            + "to run it under software emulation, which is not a security boundary")
                }
                Log.debug("kvm: \(v.reason)")
            }
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
        // A VM agent's guest builds its jail from these: made before anything starts.
        var guestFiles: [ControlFrame] = []
        if let v = plan.vm { guestFiles = try GuestFiles.make(v, spec: spec, layout: r.layout) }
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
        // A VM agent's comes over the control channel instead; the VMM's own stdout is
        // the guest console and its stderr the VMM's messages, both for the log.
        let vm = plan.vm.map { _ in try? VMChannelFDs.make() } ?? nil
        if plan.vm != nil && vm == nil { throw ClawjailError(.setup, "cannot create the VM's control socket and log pipes") }
        let out: (read: FD, write: FD)
        let err: (read: FD, write: FD)
        do {
            out = try pipe()
            err = try pipe()
        } catch {
            vm?.closeAll()
            throw ClawjailError(.setup, "cannot create the output pipes", cause: error)
        }
        var request = LaunchRequest(spec: spec, plan: plan, ids: ids, layout: r.layout, cgroups: cgroups)
        if let vm {
            request.stdio = [vm.vmmControl.rawValue, vm.console.write.rawValue, vm.vmmErrors.write.rawValue]
        } else {
            request.stdio = [0, out.write.rawValue, err.write.rawValue]
        }
        request.seccompBPF = seccomp.filter.bpf
        request.seccompFlags = seccomp.flags
        // A VM agent's NIC: a tap opened now, in a scratch netns, that the VMM inherits as
        // fd 3; the network hook moves it into the jail's netns.
        var tap: VMTap?
        if let name = plan.vm?.network.tap {
            do { tap = try VMTap(name: name) } catch {
                vm?.closeAll()
                out.write.close(); err.write.close(); out.read.close(); err.read.close()
                _ = recorder.finish(end: RunOutcome(status: .setupFailed(message: error.message), exitCode: 125, durationMs: 0),
                                    summary: "setup failed", retryForNs: retryNs)
                throw error
            }
            request.passFD = tap?.fd.rawValue
        }
        defer { tap?.close() }
        if NetworkHook.isNeeded(for: spec) {
            let hook = NetworkAudit.hook(spec: spec, recorder: recorder)
            hook.vmTap = tap
            request.hooks.append(hook)
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
            vm?.closeAll()
            _ = recorder.finish(end: RunOutcome(status: .setupFailed(message: error.message), exitCode: 125, durationMs: 0),
                                summary: "setup failed", retryForNs: retryNs)
            throw error
        }
        out.write.close()
        err.write.close()
        vm?.closeJailEnds()
        if let v = plan.vm {
            Log.info("agent \(name) started in a VM (\(v.vmm.rawValue), accel \(v.accel.rawValue)\(v.accel == .tcg ? ": software emulation, not a security boundary" : ""); "
                     + "VMM jail pid \(jail.initProcess.pid), uid \(v.vmmUser) -> \(ids.outside(v.vmmUser)))")
        } else {
            Log.info("agent \(name) started (jail pid \(jail.initProcess.pid), uid \(spec.user) -> \(ids.outside(spec.user)))")
        }

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
        var control: VMControl?
        if let v = plan.vm, let vm {
            out.read.close()
            err.read.close()
            let c = VMControl(plan: v, guestFiles: guestFiles, socket: vm.supervisor, consolePipe: vm.console.read, vmmErrors: vm.vmmErrors.read,
                              stdout: .standardOutput, stderr: .standardError, stdin: .standardInput, filter: filter,
                              killVM: { try? jail.initProcess.signal(.kill) })
            // `exec --agent` of this agent runs its tools in the guest, asked for here.
            let socketPath = r.layout.vmToolSocket(name)
            do throws(Errno) {
                _ = try FileSystem.mkdirs(r.layout.vmSocketDirectory, mode: 0o700)
                let listener = try Sockets.unixListener(path: socketPath, mode: 0o600, gid: nil)
                c.acceptToolRuns(listener: listener, path: socketPath, agent: name)
                c.publishGuestMemory(to: r.layout.vmGuestMemoryFile(name))
            } catch {
                Log.warning("vm: tool runs of \(name) cannot reach its guest: cannot listen on \(socketPath): \(error)")
            }
            options.channel = c
            control = c
        } else {
            options.outputs = [OutputRelay(source: out.read, destination: .standardOutput, filter: filter),
                               OutputRelay(source: err.read, destination: .standardError, filter: filter)]
        }
        PosixThread.unmapRetiredStacks()
        ProcessMemory.releaseLaunchMemory()
        var result = Supervisor.supervise(jail, options: options)
        if let control {
            result = control.finish(result)
            vm?.closeSupervisorEnds()
        }
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


/// The fds between the supervisor and a VM agent's VMM: the control socketpair (the
/// VMM's stdin end is its virtio-serial port's backend) and the two log pipes.
struct VMChannelFDs {
    let supervisor: FD
    let vmmControl: FD
    let console: (read: FD, write: FD)
    let vmmErrors: (read: FD, write: FD)

    static func make() throws(Errno) -> VMChannelFDs {
        let (a, b) = try Sockets.streamPair()
        let c: (read: FD, write: FD)
        do throws(Errno) { c = try pipe() } catch { a.close(); b.close(); throw error }
        let e: (read: FD, write: FD)
        do throws(Errno) { e = try pipe() } catch { a.close(); b.close(); c.read.close(); c.write.close(); throw error }
        return VMChannelFDs(supervisor: a, vmmControl: b, console: c, vmmErrors: e)
    }

    /// Once the jail holds its copies.
    func closeJailEnds() {
        vmmControl.close()
        console.write.close()
        vmmErrors.write.close()
    }

    func closeSupervisorEnds() {
        supervisor.close()
        console.read.close()
        vmmErrors.read.close()
    }

    func closeAll() {
        closeJailEnds()
        closeSupervisorEnds()
    }
}
