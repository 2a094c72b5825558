import CClawjailChild
import CClawjailShims
import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// Work the parent does while the child waits on its sync pipe, after the id maps and
/// the cgroup: netns wiring, for one. It gets the child's pid (in our namespace).
public protocol ParentHook: AnyObject {
    func childCreated(pid: pid_t) throws(ClawjailError)
    /// Undo whatever childCreated did (called when a later step fails, and at teardown).
    func teardown()
}

public struct LaunchRequest {
    public var spec: JailSpec
    /// Every step of the jail, made from `spec` (LaunchPlan.make); what runs.
    public var plan: LaunchPlan
    public var ids: IdMap
    public var layout: HostLayout
    /// The cgroup manager the plan's cgroup section was made for.
    public var cgroups: any CgroupManager
    /// Raw `struct sock_filter` array; empty for no filter.
    public var seccompBPF: [UInt8] = []
    public var seccompFlags: UInt32 = 0
    /// A seccomp choice still being made on another thread: joined only when the child
    /// plan needs the filter, so the index lookup overlaps the lock and the mount plan.
    /// Takes the place of seccompBPF and seccompFlags.
    var pendingSeccomp: BackgroundWork<SeccompChoice>?
    /// fds for the command's 0, 1, 2 (nil keeps the supervisor's own).
    public var stdio: [Int32]?
    /// An fd of ours the command gets as its fd 3 (a VM agent's tap).
    public var passFD: Int32?
    public var hooks: [any ParentHook] = []
    /// The jail's registry lock, when the caller took it already (agent runs do, before
    /// touching the store); otherwise start() takes it.
    public var lock: FileLock?

    public init(spec: JailSpec, plan: LaunchPlan, ids: IdMap, layout: HostLayout, cgroups: any CgroupManager) {
        self.spec = spec
        self.plan = plan
        self.ids = ids
        self.layout = layout
        self.cgroups = cgroups
    }
}

/// A started jail: its init (watched through a pidfd), the report pipe, the lifeline,
/// its cgroup and whatever the hooks set up.
public final class RunningJail {
    public let spec: JailSpec
    public let initProcess: PidFD
    public let reportFD: FD
    /// The parent's end of the sync pipe. Kept open for the jail's life: its hang-up
    /// tells a late-starting child that the supervisor is gone.
    let lifeline: FD
    public let cgroup: any JailCgroup
    public let hooks: [any ParentHook]
    let plan: ChildPlan
    /// The command's pid inside the jail, from the STARTED report.
    public internal(set) var commandPid: Int32 = 0
    /// The seccomp listener fd number in init, when the profile asks for notifications.
    public internal(set) var listenerFD: Int32?
    public let startedAt: UInt64
    public let ids: IdMap
    let lock: FileLock
    let layout: HostLayout
    private var finished = false

    init(spec: JailSpec, initProcess: PidFD, reportFD: FD, lifeline: FD, cgroup: any JailCgroup,
         hooks: [any ParentHook], plan: ChildPlan, ids: IdMap, lock: FileLock, layout: HostLayout) {
        self.lock = lock
        self.layout = layout
        self.spec = spec
        self.initProcess = initProcess
        self.reportFD = reportFD
        self.lifeline = lifeline
        self.cgroup = cgroup
        self.hooks = hooks
        self.plan = plan
        self.ids = ids
        self.startedAt = ProcessInfoLite.monotonicNanoseconds
    }

    /// Kills whatever is left and removes the cgroup and the hooks' objects. Idempotent.
    public func tearDown() throws(ClawjailError) {
        if finished { return }
        finished = true
        try? initProcess.signal(.kill)
        _ = try? initProcess.tryWait()
        for h in hooks.reversed() { h.teardown() }
        defer {
            initProcess.close()
            reportFD.close()
            lifeline.close()
        }
        try cgroup.destroy()
        // Only once the cgroup is gone: an unheld lock means "nothing left to clean".
        JailRegistry.release(lock, name: spec.name, layout: layout)
    }

    func message(for r: cj_report) -> String {
        let err = Errno(rawValue: r.err)
        switch Int(r.type) {
        case Int(CJ_REPORT_EXEC_FAILED.rawValue):
            return "cannot execute \(spec.argv[0]) in the jail: \(err)"
        default:
            let stage = Launcher.stageName(r.stage, op: r.op, plan: plan)
            return "jail setup failed at \(stage): \(err)"
        }
    }
}

/// A jail's new cgroup with the `tasks` files its child writes to join it (v1), opened
/// by root before the clone.
struct PlacedCgroup: Sendable {
    let cgroup: any JailCgroup
    let joinFDs: [FD]

    init(_ cgroup: any JailCgroup) throws(ClawjailError) {
        var fds: [FD] = []
        if cgroup.cloneTarget == nil {
            for path in cgroup.selfJoinFiles.prefix(Int(8)) {
                do { fds.append(try FileSystem.open(path, .writeOnly)) } catch {
                    for f in fds { f.close() }
                    try? cgroup.destroy()
                    throw ClawjailError(.cgroup, "cannot open \(path)", cause: error)
                }
            }
        }
        self.cgroup = cgroup
        self.joinFDs = fds
    }

    func close() { for f in joinFDs { f.close() } }
}

public enum Launcher {
    /// Builds everything, clones the jail, does the parent's half of the setup and
    /// releases the child. On any failure nothing is left behind.
    public static func start(_ request: LaunchRequest) throws(ClawjailError) -> RunningJail {
        let spec = request.spec
        let lock: FileLock
        if let given = request.lock { lock = given } else {
            lock = try JailRegistry.acquire(spec.name, kind: spec.kind, layout: request.layout)
        }
        var lockHandedOver = false
        defer { if !lockHandedOver { JailRegistry.release(lock, name: spec.name, layout: request.layout) } }

        // The cgroup directories (kernel work: a memcg is costly to create) are made on
        // a second thread while this one prepares the mount steps.
        let manager = request.cgroups
        let cgroupPlan = request.plan.cgroup
        let name = spec.name
        let cgroupWork = BackgroundWork.start { () throws(ClawjailError) -> PlacedCgroup in
            Trace.mark("cgroup: begins")
            defer { Trace.mark("cgroup: created") }
            return try PlacedCgroup(manager.create(name: name, plan: cgroupPlan))
        }
        func placedCgroup() throws(ClawjailError) -> PlacedCgroup {
            let placed = try cgroupWork.join()
            JailRegistry.recordCgroup(lock, paths: placed.cgroup.paths)
            return placed
        }

        var builder = MountExecutor(plan: request.plan, outsideUid: request.ids.outside(spec.user))
        Trace.mark("lock taken")
        let plan: ChildPlan
        do {
            try builder.run()
            Trace.mark("mount steps prepared")
            plan = try makePlan(request, ops: builder.ops)
            Trace.mark("child plan built")
        } catch {
            builder.closeAll()
            if let placed = try? cgroupWork.join() { placed.close(); try? placed.cgroup.destroy() }
            throw error
        }
        defer { builder.closeAll() }

        let placed = try placedCgroup()
        let cgroup = placed.cgroup
        Trace.mark("cgroup created")
        if let target = cgroup.cloneTarget { plan.raw.pointee.cgroup_fd = target.rawValue }
        let joinFDs = placed.joinFDs
        defer { placed.close() }
        if cgroup.cloneTarget == nil {
            withUnsafeMutableBytes(of: &plan.raw.pointee.cgroup_join_fds) { buf in
                let fds = buf.bindMemory(to: Int32.self)
                for (i, f) in joinFDs.enumerated() { fds[i] = f.rawValue }
            }
            plan.raw.pointee.n_cgroup_join_fds = Int32(joinFDs.count)
        }

        // The jail's init starts as a copy of this process: hand the heap's free pages
        // back first, so neither the init nor the long-lived supervisor keeps them.
        ProcessMemory.trimHeap()
        var result = cj_spawn_result()
        let rc = cj_spawn(plan.raw, &result)
        Trace.mark("clone3 returned")
        if rc != 0 {
            try? cgroup.destroy()
            let e = Errno(rawValue: -rc)
            throw ClawjailError(.setup, "cannot create the jail (clone3)", hint: hintForClone(e), cause: e)
        }
        // The child holds its own copies of the mount trees and of the filter now.
        builder.closeAll()
        plan.closeLaunchFDs()
        let initProcess = PidFD(fd: FD(result.pidfd), pid: result.pid)
        let jail = RunningJail(spec: spec, initProcess: initProcess, reportFD: FD(result.report_fd),
                               lifeline: FD(result.sync_fd), cgroup: cgroup, hooks: request.hooks, plan: plan,
                               ids: request.ids, lock: lock, layout: request.layout)
        lockHandedOver = true
        do {
            try writeIdMaps(pid: result.pid, ids: request.ids)
            if cgroup.cloneTarget == nil && joinFDs.isEmpty { try cgroup.join(pid: result.pid) }
            Trace.mark("id maps written")
            for h in request.hooks { try h.childCreated(pid: result.pid) }
            // Release the child.
            var go: UInt8 = 0x47
            _ = try withUnsafeBytes(of: &go) { (b) throws(Errno) -> Int in try jail.lifeline.write(b) }
            try awaitStart(jail)
            Trace.mark("command started")
        } catch let error as ClawjailError {
            try? jail.tearDown()
            throw error
        } catch {
            try? jail.tearDown()
            throw ClawjailError(.setup, "cannot start the jail", cause: error)
        }
        return jail
    }

    /// The C child's flat plan, marshalled from the LaunchPlan (and the fds and filter
    /// that only exist in this process).
    static func makePlan(_ request: LaunchRequest, ops: [ChildOp]) throws(ClawjailError) -> ChildPlan {
        let lp = request.plan
        let plan = try ChildPlan()
        let p = plan.raw
        p.pointee.clone_flags = cloneFlags(lp.namespaces)
        p.pointee.unshare_cgroupns = lp.namespaces.contains(.cgroup) ? 1 : 0
        plan.setString(\.staging, lp.root.staging)
        plan.setString(\.root_options, lp.root.tmpfsOptions)
        p.pointee.root_readonly = lp.root.readOnly ? 1 : 0
        let process = lp.process
        plan.setString(\.hostname, process.hostname)
        p.pointee.uid = process.uid
        p.pointee.gid = process.gid
        plan.setString(\.cwd, process.cwd)
        try plan.setArgv(process.argv)
        try plan.setEnvironment(process.environment.map { "\($0.name)=\($0.value)" })
        plan.setString(\.path_search, process.pathSearch)
        p.pointee.loopback_up = process.loopbackUp ? 1 : 0
        p.pointee.cap_last_cap = process.capLastCap
        p.pointee.keep_caps = process.keptCapabilities.reduce(UInt64(0)) { $0 | (UInt64(1) << UInt64($1.number)) }
        p.pointee.trace = Trace.enabled ? 1 : 0
        for r in lp.rlimits {
            try plan.addRlimit(resource(r.resource), soft: r.soft, hard: r.hard, name: r.label)
        }
        plan.setForwardedSignals(process.forwardedSignals.compactMap(signalNumber))
        if let stdio = request.stdio { plan.setStdio(stdio) }
        p.pointee.pass_fd = request.passFD ?? -1
        if let (start, length) = argumentArea() {
            p.pointee.scrub_start = start
            p.pointee.scrub_len = length
        }
        if let pending = request.pendingSeccomp {
            let choice = try pending.join()
            plan.setSeccomp(choice.filter.bpf, flags: choice.flags)
        } else {
            plan.setSeccomp(request.seccompBPF, flags: request.seccompFlags)
        }
        plan.useInitProgram()
        for op in ops { try plan.add(op) }
        return plan
    }

    /// clone3's flags for the plan's namespaces (the cgroup namespace is unshared by
    /// the child once it is in its cgroup).
    static func cloneFlags(_ namespaces: [LaunchPlan.Namespace]) -> UInt64 {
        var flags: UInt64 = 0
        for n in namespaces {
            switch n {
            case .user: flags |= CloneFlags.newUser
            case .mount: flags |= CloneFlags.newNS
            case .pid: flags |= CloneFlags.newPID
            case .net: flags |= CloneFlags.newNet
            case .ipc: flags |= CloneFlags.newIPC
            case .uts: flags |= CloneFlags.newUTS
            case .cgroup: break
            }
        }
        return flags
    }

    static func resource(_ r: LaunchPlan.Rlimit.Resource) -> Int32 {
        switch r {
        case .core: return ResourceLimit.core
        case .nofile: return ResourceLimit.openFiles
        case .nproc: return ResourceLimit.processes
        case .fsize: return ResourceLimit.fileSize
        }
    }

    static func signalNumber(_ name: String) -> Int32? {
        switch name {
        case "SIGTERM": return Signal.terminate.rawValue
        case "SIGINT": return Signal.interrupt.rawValue
        case "SIGHUP": return Signal.hangUp.rawValue
        case "SIGQUIT": return Signal.quit.rawValue
        case "SIGUSR1": return Signal.user1.rawValue
        case "SIGUSR2": return Signal.user2.rawValue
        case "SIGWINCH": return Signal.windowChange.rawValue
        default: return nil
        }
    }

    /// arg_start..env_end of this process (fields 48-51 of /proc/self/stat).
    static func argumentArea() -> (UInt, Int)? {
        guard let text = try? FileSystem.readText("/proc/self/stat", limit: 4096),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3; field 48 is index 45, field 51 index 48.
        guard fields.count > 48, let start = UInt(fields[45]), let end = UInt(fields[48].split(separator: "\n")[0]),
              end > start, end - start < 1 << 20 else { return nil }
        return (start, Int(end - start))
    }

    /// uid_map, setgroups=deny and gid_map, written by the parent (which is root in
    /// the initial user namespace) through fds on the child's /proc directory.
    static func writeIdMaps(pid: pid_t, ids: IdMap) throws(ClawjailError) {
        let line = "0 \(ids.base) \(ids.count)\n"
        do {
            let dir = try FileSystem.open("/proc/\(pid)", [.path, .directory])
            defer { dir.close() }
            try FileSystem.writeControl("uid_map", line, at: dir)
            try FileSystem.writeControl("setgroups", "deny", at: dir)
            try FileSystem.writeControl("gid_map", line, at: dir)
        } catch {
            throw ClawjailError(.setup, "cannot write the id maps of the jail", cause: error)
        }
    }

    /// Reads the child's first reports: the seccomp listener (if any), then STARTED.
    static func awaitStart(_ jail: RunningJail) throws(ClawjailError) {
        while true {
            guard let r = try readReport(jail.reportFD) else {
                let status = try? jail.initProcess.wait()
                throw ClawjailError(.setup, "the jail exited during setup (\(status.map(\.description) ?? "unknown status"))")
            }
            switch Int(r.type) {
            case Int(CJ_REPORT_LISTENER.rawValue):
                jail.listenerFD = r.value
            case Int(CJ_REPORT_STARTED.rawValue):
                jail.commandPid = r.value
                return
            default:
                throw ClawjailError(.setup, jail.message(for: r), hint: hint(forStage: r.stage, errno: r.err))
            }
        }
    }

    /// One report; nil at EOF.
    static func readReport(_ fd: FD) throws(ClawjailError) -> cj_report? {
        var r = cj_report()
        let size = MemoryLayout<cj_report>.size
        var got = 0
        while got < size {
            let n: Int
            do {
                n = try withUnsafeMutableBytes(of: &r) { (b) throws(Errno) -> Int in
                    try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: b[got...]))
                }
            } catch {
                throw ClawjailError(.setup, "cannot read the jail's report pipe", cause: error)
            }
            if n == 0 { return nil }
            got += n
        }
        return r
    }

    static func stageName(_ stage: Int32, op: Int32, plan: ChildPlan) -> String {
        switch Int(stage) {
        case Int(CJ_STAGE_SIGNALS.rawValue): return "signal setup"
        case Int(CJ_STAGE_PDEATHSIG.rawValue): return "prctl(PR_SET_PDEATHSIG)"
        case Int(CJ_STAGE_SYNC.rawValue): return "waiting for the supervisor"
        case Int(CJ_STAGE_SETID_ROOT.rawValue): return "setresuid to root inside the user namespace"
        case Int(CJ_STAGE_CGROUPNS.rawValue): return "unshare(CLONE_NEWCGROUP)"
        case Int(CJ_STAGE_MOUNT_PRIVATE.rawValue): return "making mounts private"
        case Int(CJ_STAGE_ROOT_TMPFS.rawValue): return "mounting the new root (tmpfs)"
        case Int(CJ_STAGE_CHDIR_ROOT.rawValue): return "chdir to the new root"
        case Int(CJ_STAGE_OP.rawValue): return plan.label(forOp: op)
        case Int(CJ_STAGE_PIVOT_ROOT.rawValue): return "pivot_root"
        case Int(CJ_STAGE_UMOUNT_OLD_ROOT.rawValue): return "unmounting the old root"
        case Int(CJ_STAGE_ROOT_READONLY.rawValue): return "making the root read-only"
        case Int(CJ_STAGE_HOSTNAME.rawValue): return "sethostname"
        case Int(CJ_STAGE_LOOPBACK.rawValue): return "bringing up lo"
        case Int(CJ_STAGE_RLIMIT.rawValue): return "setrlimit \(plan.label(forRlimit: op))"
        case Int(CJ_STAGE_SETSID.rawValue): return "setsid"
        case Int(CJ_STAGE_SECUREBITS.rawValue): return "prctl(PR_SET_SECUREBITS)"
        case Int(CJ_STAGE_CAPBSET.rawValue): return "dropping capability \(op) from the bounding set"
        case Int(CJ_STAGE_SETGID.rawValue): return "setresgid"
        case Int(CJ_STAGE_SETUID.rawValue): return "setresuid"
        case Int(CJ_STAGE_CAPSET.rawValue): return "capset"
        case Int(CJ_STAGE_AMBIENT.rawValue): return "clearing ambient capabilities"
        case Int(CJ_STAGE_NO_NEW_PRIVS.rawValue): return "prctl(PR_SET_NO_NEW_PRIVS)"
        case Int(CJ_STAGE_DUMPABLE.rawValue): return "prctl(PR_SET_DUMPABLE)"
        case Int(CJ_STAGE_SECCOMP.rawValue): return "loading the seccomp filter"
        case Int(CJ_STAGE_FORK.rawValue): return "fork of the command"
        case Int(CJ_STAGE_CHDIR_CWD.rawValue): return "chdir to the working directory"
        case Int(CJ_STAGE_STDIO.rawValue): return "setting up stdin/stdout/stderr"
        case Int(CJ_STAGE_CLOSE_FDS.rawValue): return "closing inherited fds"
        case Int(CJ_STAGE_EXEC.rawValue): return "execve"
        case Int(CJ_STAGE_CGROUP_JOIN.rawValue): return "joining cgroup \(op)"
        default: return "stage \(stage)"
        }
    }

    static func hint(forStage stage: Int32, errno e: Int32) -> String? {
        if stage == Int32(CJ_STAGE_CHDIR_CWD.rawValue) && e == Errno.ENOENT.rawValue {
            return "the working directory does not exist inside the jail; set cwd to the workspace or a mounted path"
        }
        if stage == Int32(CJ_STAGE_OP.rawValue) && e == Errno.EROFS.rawValue {
            return "a mount target below a read-only directory must already exist there; choose a path outside /usr and /etc"
        }
        if stage == Int32(CJ_STAGE_OP.rawValue) && e == Errno.ENODEV.rawValue {
            return "the kernel has no overlayfs, which every jail's /etc is: modprobe overlay, or use a kernel built with CONFIG_OVERLAY_FS"
        }
        return nil
    }

    static func hintForClone(_ e: Errno) -> String? {
        switch e {
        case .EPERM: return "clawjail must run as root (it maps each jail to its own unprivileged uid range)"
        case .ENOSPC: return "the host's user.max_user_namespaces (or another namespace limit) is reached or 0"
        case .EINVAL: return "this kernel lacks clone3 features clawjail needs (Linux 5.7 or later)"
        default: return nil
        }
    }
}
