import ClawjailCore

extension LaunchPlan {
    /// The plan of one jail. No side effects: everything it needs to know about the
    /// host is in `facts`. `ids` is the jail's outside id range (nil: not allocated
    /// yet); `seccompContentHash` the resolved profile's hash, when known.
    public static func make(_ spec: JailSpec, facts: HostFacts, ids: (base: UInt32, count: UInt32)?,
                            seccompContentHash: String?) -> LaunchPlan {
        let network = networkPlan(spec)
        let mounts = MountPlanner(spec: spec, facts: facts, resolvConf: network.resolvConf).steps()
        let path = spec.environment.first { $0.name == "PATH" }?.value ?? Defaults.path
        var vm: VMPlan?
        var cgroupLimits = spec.limits
        if let v = spec.vm {
            let vmFacts = facts.vm ?? VMFacts(kernel: .init(path: v.kernel), initrd: .init(path: v.initrd))
            let plan = VMPlan.make(spec, v, facts: vmFacts, baseEntries: facts.baseEntries, mountSources: facts.mountSources)
            cgroupLimits.memory = plan.cgroupMemory
            cgroupLimits.pids = plan.vmmPids
            cgroupLimits.openFiles = plan.vmmOpenFiles
            vm = plan
        }
        var plan = LaunchPlan(
            kind: spec.kind, name: spec.name, agent: spec.agent,
            // In a guest, a jail with egress or ingress keeps the VM's network namespace
            // (the host's proxy bounds it); one without gets an empty one, as on a host.
            namespaces: spec.guest?.sharesNetwork == true ? Namespace.allCases.filter { $0 != .net } : Namespace.allCases,
            ids: ids.map { IdMapping(base: $0.base, count: $0.count, userInside: spec.user) },
            root: Root(staging: facts.stagingRoot, emptyDirectory: facts.emptyDirectory, tmpfsOptions: "size=4m,nr_inodes=4096,mode=0755", readOnly: true),
            mounts: mounts,
            rlimits: rlimits(cgroupLimits),
            cgroup: cgroupPlan(cgroupLimits, facts: facts.cgroup),
            network: network,
            seccomp: SeccompIdentity(profile: spec.seccompProfile, onViolation: spec.seccompOnViolation,
                                     contentHash: seccompContentHash),
            process: Process(argv: spec.argv, environment: spec.environment, pathSearch: path, cwd: spec.cwd,
                             hostname: spec.hostname, uid: spec.user, gid: spec.user, capLastCap: facts.capLastCap,
                             noNewPrivileges: true, loopbackUp: spec.guest?.sharesNetwork != true, forwardedSignals: forwardedSignals))
        if let vm {
            plan.becomeVMMJail(vm)
        }
        return plan
    }

    /// A VM agent's jail runs the VMM, not the agent: the same namespaces, uid range,
    /// cgroup and mount view (which the file servers export to the guest), plus the
    /// boot files and a tmpfs for the sockets; the VMM's seccomp profile; and as its
    /// command the launch script, as root of the jail's user namespace with only the
    /// capabilities the file servers need (the VMM itself gets none).
    mutating func becomeVMMJail(_ vm: VMPlan) {
        self.vm = vm
        let bind: MountOptions = [.readOnly, .noSuid, .noDev, .noExec]
        mounts.append(MountStep(.mkdir(mode: 0o755), VMPlan.bootDirectory, label: "create \(VMPlan.bootDirectory)"))
        for (file, what) in [(vm.kernel, "guest kernel"), (vm.initrd, "initramfs")] {
            mounts.append(MountStep(.writeFile(content: [], mode: 0o444), file.jailPath, label: "create \(file.jailPath)"))
            mounts.append(MountStep(.bindHost(source: file.path, options: bind), file.jailPath,
                                    label: "bind the \(what) \(file.path) read-only at \(file.jailPath)"))
        }
        if vm.accel == .kvm {
            mounts.append(MountStep(.writeFile(content: [], mode: 0o444), "dev/kvm", label: "create /dev/kvm"))
            mounts.append(MountStep(.bindHost(source: "/dev/kvm", options: [.noSuid, .noExec]), "dev/kvm", label: "bind /dev/kvm"))
        }
        mounts.append(MountStep(.mkdir(mode: 0o755), "var", label: "create /var"))
        // Each single-file share's directory holds only its file (on the read-only root).
        for share in vm.shares {
            guard let name = share.fileName, let host = share.fileHost else { continue }
            var options: MountOptions = [.noSuid, .noDev]
            if share.readOnly { options.insert(.readOnly) }
            mounts.append(MountStep(.attach(source: .hostPath(host, role: .mount, create: false, giveTree: nil, expect: .file), options: options),
                                    share.source + "/" + name, label: "mount \(host) at \(share.source)/\(name) (the file's share)"))
        }
        mounts.append(MountStep(.mkdir(mode: 0o755), VMPlan.runDirectory, label: "create \(VMPlan.runDirectory)"))
        mounts.append(MountStep(.tmpfs(data: "size=1m,nr_inodes=256,mode=0755", options: [.noSuid, .noDev, .noExec]), VMPlan.runDirectory,
                                label: "mount \(VMPlan.runDirectory) (tmpfs, the VM's sockets)"))
        seccomp = SeccompIdentity(profile: vm.seccompProfile, onViolation: nil, contentHash: seccomp.contentHash)
        process.argv = ["/bin/sh", "-c", vm.launchScript, "clawjail-vmm"]
        process.environment = [JailSpec.EnvironmentVariable(name: "PATH", value: "/usr/bin:/bin")]
        process.pathSearch = "/usr/bin:/bin"
        process.cwd = "/"
        process.uid = 0
        process.gid = 0
        process.keptCapabilities = VMPlan.fileServerCapabilities
    }

    /// /proc entries a jail must not read, and those it may read but not write; the
    /// probe keeps the ones this kernel has and that a jail could otherwise see.
    public static let maskedProc = ["kcore", "keys", "key-users", "timer_list", "sched_debug", "latency_stats", "interrupts",
                                    "acpi", "scsi", "kallsyms", "kpagecount", "kpageflags", "kpagecgroup", "vmallocinfo",
                                    "pagetypeinfo", "slabinfo", "sysvipc", "asound", "firmware", "pressure", "mtrr",
                                    "dynamic_debug"]
    public static let readOnlyProc = ["sys", "sysrq-trigger", "bus", "fs", "irq"]

    /// Signals the jail's init passes on to the command.
    public static let forwardedSignals = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"]

    /// The rlimit policy (documented in the README): no core dumps; open files from
    /// the config; processes per user capped just above the pids limit, so a fork bomb
    /// meets a wall even where the pids controller is missing; file size from the config
    /// (unlimited by default: the memory and tmpfs limits bound what a jail can fill).
    static func rlimits(_ l: JailSpec.Limits) -> [Rlimit] {
        var out = [
            Rlimit(resource: .core, soft: 0, hard: 0, label: "RLIMIT_CORE"),
            Rlimit(resource: .nofile, soft: l.openFiles, hard: l.openFiles, label: "RLIMIT_NOFILE (open_files)"),
            // A little above pids.max, so that the cgroup is the limit that fires (and is
            // counted in pids.events); NPROC only backs it up.
            Rlimit(resource: .nproc, soft: l.pids + 8, hard: l.pids + 8, label: "RLIMIT_NPROC (pids + 8)"),
        ]
        if let f = l.fileSize {
            out.append(Rlimit(resource: .fsize, soft: f, hard: f, label: "RLIMIT_FSIZE (file_size)"))
        } else {
            out.append(Rlimit(resource: .fsize, soft: .max, hard: .max, label: "RLIMIT_FSIZE"))
        }
        return out
    }

    public static let cpuPeriodMicros: UInt64 = 100_000

    /// The CFS quota of `cores` per period (at least 1 ms: the kernel's minimum).
    public static func cpuQuotaMicros(_ cores: Double?) -> UInt64? {
        guard let c = cores else { return nil }
        return max(1000, UInt64((c * Double(cpuPeriodMicros)).rounded()))
    }

    /// What the jail's cgroup enforces, as the files and values written.
    public static func cgroupPlan(_ l: JailSpec.Limits, facts: CgroupFacts) -> CgroupPlan {
        let quota = cpuQuotaMicros(l.cpu)
        var writes: [CgroupPlan.Write] = []
        func w(_ controller: String?, _ file: String, _ value: String, optional: Bool = false) {
            writes.append(CgroupPlan.Write(controller: controller, file: file, value: value, optional: optional))
        }
        switch facts.mode {
        case .v2:
            w(nil, "memory.max", String(l.memory))
            // No swap at all: the limit is the limit.
            w(nil, "memory.swap.max", "0", optional: true)
            w(nil, "pids.max", String(l.pids))
            if let q = quota { w(nil, "cpu.max", "\(q) \(cpuPeriodMicros)", optional: true) }
            if let weight = l.ioWeight { w(nil, "io.weight", "default \(weight)", optional: true) }
            return CgroupPlan(mode: .v2, location: facts.location, hierarchies: [], writes: writes)
        case .v1:
            // Only the hierarchies a limit or the supervisor needs: every memcg and cgroup
            // directory costs a mkdir and an rmdir on each run.
            let used = facts.v1Hierarchies.filter { h in
                if h.contains("memory") || h.contains("pids") || h.contains("freezer") || h.contains("cpuacct") { return true }
                if h.contains("cpu") { return quota != nil }
                if h.contains("blkio") { return l.ioWeight != nil }
                return false
            }
            let has = { (c: String) in used.contains { $0.contains(c) } }
            if has("memory") {
                w("memory", "memory.limit_in_bytes", String(l.memory))
                // memsw bounds memory+swap; equal to the memory limit means no swap at all.
                w("memory", "memory.memsw.limit_in_bytes", String(l.memory), optional: true)
                w("memory", "memory.swappiness", "0", optional: true)
            }
            if has("pids") { w("pids", "pids.max", String(l.pids)) }
            if let q = quota, has("cpu") {
                w("cpu", "cpu.cfs_period_us", String(cpuPeriodMicros))
                w("cpu", "cpu.cfs_quota_us", String(q))
            }
            if let weight = l.ioWeight, has("blkio"), let file = facts.v1BlkioWeightFile {
                // v1 weights run 10-1000; map the v2 scale (1-10000) onto it as systemd does.
                w("blkio", file, String(10 + (weight - 1) * 990 / 9999), optional: true)
            }
            return CgroupPlan(mode: .v1, location: facts.location, hierarchies: used, writes: writes)
        }
    }

    static func networkPlan(_ spec: JailSpec) -> NetworkPlan {
        let n = spec.network
        let egress = n.mode == .egress
        // A guest's jail has no network of its own; its resolv.conf is the VM's.
        let resolvesThroughProxy = egress || spec.guest?.network == .egress
        return NetworkPlan(
            mode: n.mode,
            jailAddress: egress ? NetworkLayout.jailAddress : nil,
            peerAddress: egress ? NetworkLayout.peerAddress : nil,
            prefixLength: egress ? NetworkLayout.prefixLength : nil,
            proxyPort: egress ? NetworkLayout.proxyPort : nil,
            allow: n.allow.map(\.description), resolvers: n.resolvers, allowNonTLS443: n.allowNonTLS443,
            ingress: n.ingress,
            resolvConf: resolvesThroughProxy
                ? "# clawjail: the egress DNS responder answers allowlisted names only\nnameserver \(NetworkLayout.peerAddress)\noptions ndots:0 attempts:2 timeout:2\n"
                : "# no network in this jail\n")
    }
}
