import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailStore
import ClawjailSystem
import ClawjailRuntime

/// `clawjail doctor`: the host against the hardening checklists that followed the 2026
/// agent-gateway exposures. Every finding says what is wrong, how bad it is and how to
/// fix it. Without --fix nothing is changed (the store is opened read-only); with
/// --fix only permissions and the state directory layout are changed, never owners,
/// never anything reached through a symlink.
public enum Doctor {
    public enum Severity: String, Sendable, Comparable, CaseIterable {
        case ok, info, warning, critical

        var rank: Int { Severity.allCases.firstIndex(of: self) ?? 0 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    public struct Finding {
        public var id: String
        public var area: String
        public var severity: Severity
        public var message: String
        public var fix: String?
        /// What `--fix` does about it (permissions and layout only).
        var repair: (() throws(ClawjailError) -> String)?
        public var fixable: Bool { repair != nil }
    }

    public struct Report {
        public var findings: [Finding]
        public var kernel: String
        public var stateDirectory: String
        /// What --fix did (or could not do), in order.
        public var fixes: [(message: String, ok: Bool)] = []

        public var worst: Severity { findings.map(\.severity).max() ?? .ok }
        public func count(_ s: Severity) -> Int { findings.filter { $0.severity == s }.count }
    }

    public static func run(layout: HostLayout, fix: Bool) -> Report {
        var report = check(layout: layout)
        guard fix else { return report }
        var fixes: [(String, Bool)] = []
        // Two rounds: the first fix of the database's mode lets the agents be checked.
        for _ in 0..<2 {
            var did = false
            for f in report.findings where f.severity > .ok {
                guard let repair = f.repair else { continue }
                did = true
                do { fixes.append((try repair(), true)) } catch { fixes.append(("\(f.area): could not fix: \(error.description)", false)) }
            }
            // The result as it is now.
            report = check(layout: layout)
            if !did { break }
        }
        report.fixes = fixes
        return report
    }

    static func check(layout: HostLayout) -> Report {
        var c = Checker(layout: layout)
        c.privileges()
        c.cgroups()
        c.userNamespaces()
        c.kernel()
        c.overlayfs()
        c.microVM()
        c.stateDirectory()
        c.runDirectory()
        c.seccompCache()
        c.agents()
        c.listeners()
        c.auditExport()
        c.auditChain()
        return Report(findings: c.findings, kernel: c.kernelText, stateDirectory: layout.stateDirectory)
    }

    /// Exit status: 2 with a critical finding, 1 with a warning, else 0.
    public static func exitStatus(_ r: Report) -> Int32 {
        switch r.worst {
        case .critical: return 2
        case .warning: return 1
        default: return 0
        }
    }

    public static func render(_ r: Report) -> String {
        var out = "clawjail doctor  (state \(r.stateDirectory), kernel \(r.kernel))\n\n"
        if !r.fixes.isEmpty {
            for f in r.fixes { out += (f.ok ? "fixed     " : "NOT FIXED ") + OperatorText.safeLine(f.message) + "\n" }
            out += "\n"
        }
        for f in r.findings {
            let label = f.severity == .critical ? "CRITICAL" : f.severity.rawValue
            out += label.padding(10) + f.area.padding(18) + OperatorText.safeLine(f.message) + "\n"
            if let fix = f.fix, f.severity > .ok { out += String(repeating: " ", count: 28) + "fix: " + OperatorText.safeLine(fix) + "\n" }
        }
        out += "\n\(r.count(.critical)) critical, \(r.count(.warning)) warning\(r.count(.warning) == 1 ? "" : "s"), "
            + "\(r.count(.info)) info, \(r.count(.ok)) ok\n"
        let fixable = r.findings.filter { $0.severity > .ok && $0.fixable }.count
        if fixable > 0 {
            out += "`clawjail doctor --fix` can fix \(fixable) of them (permissions and the state directory layout); the rest need the fix shown.\n"
        }
        return out
    }

    public static func json(_ r: Report) -> JSONValue {
        .object([
            "state_directory": .string(r.stateDirectory), "kernel": .string(r.kernel),
            "worst": .string(r.worst.rawValue),
            "counts": .object(Dictionary(uniqueKeysWithValues: Severity.allCases.map { ($0.rawValue, JSONValue.int(Int64(r.count($0)))) })),
            "findings": .array(r.findings.map { f in
                .object(["id": .string(f.id), "area": .string(f.area), "severity": .string(f.severity.rawValue),
                         "message": .string(f.message), "fix": f.fix.map { .string($0) } ?? .null, "fixable": .bool(f.fixable)])
            }),
            "fixes": .array(r.fixes.map { .object(["message": .string($0.message), "ok": .bool($0.ok)]) }),
        ])
    }
}

/// The checks, each appending findings.
struct Checker {
    let layout: HostLayout
    var findings: [Doctor.Finding] = []
    var kernelText = "?"
    let isRoot = ProcessInfoLite.effectiveUserID == 0

    init(layout: HostLayout) { self.layout = layout }

    mutating func add(_ id: String, _ area: String, _ severity: Doctor.Severity, _ message: String, fix: String? = nil,
                      repair: (() throws(ClawjailError) -> String)? = nil) {
        findings.append(Doctor.Finding(id: id, area: area, severity: severity, message: message, fix: fix, repair: repair))
    }

    static func octal(_ m: UInt32) -> String { String(m, radix: 8) }

    static func sysctl(_ name: String) -> String? {
        (try? FileSystem.readText("/proc/sys/" + name.replacingAll(".", with: "/"), limit: 256)).map { String($0.trimming("\n ")) }
    }

    // MARK: privileges, cgroups, namespaces, kernel

    mutating func privileges() {
        if isRoot {
            add("privileges", "privileges", .ok, "running as root (clawjail supervisors must)")
        } else {
            add("privileges", "privileges", .warning, "running as uid \(ProcessInfoLite.effectiveUserID): root-owned state cannot be checked completely",
                fix: "run `sudo clawjail doctor`")
        }
    }

    mutating func cgroups() {
        let mounts = CgroupMounts.read()
        let manager: any CgroupManager
        do { manager = try Cgroups.detect() } catch {
            add("cgroup.mode", "cgroups", .critical, "no usable cgroup hierarchy: \(error.message)", fix: error.hint ?? "mount cgroup2 at /sys/fs/cgroup")
            return
        }
        if manager.mode == .v1 {
            let hybrid = mounts.unified != nil ? "hybrid host" : "legacy host"
            add("cgroup.mode", "cgroups", .warning,
                "cgroup v1 fallback (\(hybrid)): \(manager.summary); no cgroup.kill, no per-jail memory.peak, and systemd cannot delegate to clawjail",
                fix: "boot with systemd.unified_cgroup_hierarchy=1 so that clawjail uses cgroup v2")
            if mounts.v1["freezer"] == nil {
                add("cgroup.freezer", "cgroups", .warning, "no v1 freezer controller: `clawjail kill --all` cannot freeze jails before killing them",
                    fix: "mount the freezer controller (or move to cgroup v2)")
            }
            add("cgroup.delegation", "cgroups", .info, "delegation (Delegate=yes) applies to cgroup v2 only; on v1 jails live under clawjail/ in each hierarchy")
            return
        }
        guard let v2 = manager as? V2Manager else { return }
        add("cgroup.mode", "cgroups", .ok, "cgroup " + manager.summary)
        let own = ((try? FileSystem.readText("/proc/self/cgroup")) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) } ?? "/"
        if v2.supervisorLeaf != nil {
            add("cgroup.delegation", "cgroups", .ok, "delegated: jails live inside this unit's cgroup \(v2.root)")
        } else if own.contains(".service") {
            add("cgroup.delegation", "cgroups", .warning,
                "running in \(own) without delegation: jails go to \(v2.root), outside the unit, so systemd neither accounts nor stops them with it",
                fix: "set Delegate=yes in the unit (systemd/clawjail@.service has it)")
        } else {
            add("cgroup.delegation", "cgroups", .info,
                "not in a delegated unit: jails go under \(v2.root); services should use clawjail@.service (Delegate=yes)")
        }
        let available = (try? FileSystem.readText(Paths.dirname(v2.root) + "/cgroup.controllers")) ?? ""
        for ctl in ["cpu", "io"] where !available.contains(ctl) {
            add("cgroup.\(ctl)", "cgroups", .warning, "the \(ctl) controller is not available to \(Paths.dirname(v2.root)): \(ctl) limits are not enforced",
                fix: "enable it in the parent's cgroup.subtree_control (Delegate=yes does this for a unit)")
        }
    }

    mutating func userNamespaces() {
        if !FileSystem.exists("/proc/self/ns/user") {
            add("userns.kernel", "user namespaces", .critical, "this kernel has no user namespaces (CONFIG_USER_NS): clawjail cannot build jails",
                fix: "use a kernel built with CONFIG_USER_NS=y")
            return
        }
        if let max = Self.sysctl("user.max_user_namespaces").flatMap({ Int($0) }) {
            if max == 0 {
                add("userns.max", "user namespaces", .critical, "user.max_user_namespaces = 0: no jail can start",
                    fix: "sysctl -w user.max_user_namespaces=65536 (and in /etc/sysctl.d/ to keep it)")
            } else if max < 1024 {
                add("userns.max", "user namespaces", .warning, "user.max_user_namespaces = \(max): at most \(max) jails at once",
                    fix: "sysctl -w user.max_user_namespaces=65536 (and in /etc/sysctl.d/)")
            } else {
                add("userns.max", "user namespaces", .ok, "user.max_user_namespaces = \(max)")
            }
        }
        if let v = Self.sysctl("kernel.unprivileged_userns_clone") {
            if v == "0" {
                add("userns.unprivileged", "user namespaces", isRoot ? .ok : .critical,
                    "kernel.unprivileged_userns_clone = 0: only root creates user namespaces" + (isRoot ? " (clawjail runs as root: fine, and safer for the host)" : ""),
                    fix: "run clawjail as root")
            } else {
                add("userns.unprivileged", "user namespaces", .info,
                    "kernel.unprivileged_userns_clone = \(v): every local user can create user namespaces; clawjail does not need that",
                    fix: "sysctl -w kernel.unprivileged_userns_clone=0 if nothing else on the host (rootless containers, browsers) needs it")
            }
        }
        if let v = Self.sysctl("kernel.apparmor_restrict_unprivileged_userns"), v != "0" {
            add("userns.apparmor", "user namespaces", isRoot ? .info : .critical,
                "kernel.apparmor_restrict_unprivileged_userns = \(v): AppArmor restricts user namespaces of unprivileged processes"
                    + (isRoot ? "; clawjail runs as root (CAP_SYS_ADMIN) and is not restricted" : ", which stops clawjail running as this user"),
                fix: "run clawjail as root, or give it an AppArmor profile with the `userns,` rule")
        } else {
            add("userns.apparmor", "user namespaces", .ok, "no AppArmor user namespace restriction in the way")
        }
    }

    /// Every jail's /etc is a read-only overlay over the host's (RootfsBuilder).
    mutating func overlayfs() {
        let known = ((try? FileSystem.readText("/proc/filesystems")) ?? "").split(separator: "\n")
            .contains { $0.split(whereSeparator: { $0 == "\t" || $0 == " " }).last == "overlay" }
        let release = ProcessInfoLite.kernelRelease
        if known {
            add("overlayfs", "kernel", .ok, "overlayfs is available (each jail's /etc is a read-only overlay over the host's)")
        } else if FileSystem.exists("/lib/modules/\(release)/kernel/fs/overlayfs") {
            add("overlayfs", "kernel", .info, "overlayfs is a module that is not loaded yet; the first jail loads it")
        } else {
            add("overlayfs", "kernel", .critical, "this kernel has no overlayfs: no jail can build its /etc",
                fix: "modprobe overlay, or use a kernel built with CONFIG_OVERLAY_FS")
        }
    }

    /// Whether VM agents (isolation = "vm") can run here, and with which accelerator.
    mutating func microVM() {
        let missing = [VMFacts.defaultQemu, VMFacts.defaultVirtiofsd].filter { !FileSystem.exists($0) }
        if !missing.isEmpty {
            add("vm-vmm", "micro-VM", .info, "VM agents cannot run: \(missing.joined(separator: " and ")) missing",
                fix: "apt-get install qemu-system-x86 (virtiofsd comes with qemu-system-common)")
            return
        }
        let kernel = AgentConfig.VM.defaultKernel(stateDirectory: layout.stateDirectory)
        let initrd = AgentConfig.VM.defaultInitrd(stateDirectory: layout.stateDirectory)
        let boot = HostProbe.vmFacts(JailSpec.VMSpec(kernel: kernel, initrd: initrd, vcpus: 1, memory: 256 << 20, accel: .kvm),
                                     layout: layout)
        guard boot.kernel.sha256 != nil, boot.initrd.sha256 != nil else {
            add("vm-image", "micro-VM", .info, "no guest image at \(kernel) and \(initrd): a VM agent must name its own in [vm]",
                fix: "scripts/vm/guest-image builds one into .build/vm/guest/; copy vmlinuz and initramfs.cpio.gz to \(layout.stateDirectory)/vm/")
            return
        }
        let v = KVMProbe.verdict(kernel: kernel, initrd: initrd, kernelSHA256: boot.kernel.sha256, layout: layout)
        if v.usable {
            add("vm-kvm", "micro-VM", .ok, "VM agents can run with accel = \"kvm\": \(v.reason)")
        } else {
            // info, not a warning: it matters only to VM agents, whose own start refuses kvm.
            add("vm-kvm", "micro-VM", .info,
                "VM agents cannot use KVM here, only TCG (software emulation, not a security boundary): \(v.reason)",
                fix: "run VM agents on a host whose KVM boots a stock guest, or accept TCG per agent with vm.allow_tcg = true")
        }
    }

    mutating func kernel() {
        let id = KernelAdvisories.running()
        switch id {
        case .unknown(let release):
            kernelText = release
            add("kernel", "kernel", .info,
                "distribution kernel \(release): its upstream patch level is not visible, so the known-bad ranges cannot be checked",
                fix: "check your vendor's advisories for " + KernelAdvisories.known.map(\.cve).joined(separator: ", "))
        case .upstream(let v, let source):
            kernelText = "\(v)" + (source == "uname -r" ? "" : " (\(source))")
            let hits = KernelAdvisories.known.filter { KernelAdvisories.affects($0, v) }
            if hits.isEmpty {
                add("kernel", "kernel", .ok, "kernel \(v) is outside the known-bad ranges of "
                    + KernelAdvisories.known.map { "\($0.cve) (\($0.name))" }.joined(separator: ", "))
            }
            for a in hits {
                let branchFix = a.stableFixes.first { $0.major == v.major && $0.minor == v.minor }
                let target = branchFix.map { "\($0) or later" } ?? "a supported branch (\(a.fixedMainline.major).\(a.fixedMainline.minor)+ or a fixed stable release)"
                add("kernel.\(a.cve)", "kernel", .critical,
                    "kernel \(v) is affected by \(a.cve) (\(a.name)): \(a.summary)", fix: "upgrade the kernel to \(target) and reboot")
            }
        }
    }

    // MARK: files and directories

    /// lstat without following a final symlink.
    static func inspect(_ path: String) -> Stat? { try? FileSystem.stat(path) }

    /// A chmod that `--fix` may do: through an O_PATH fd opened without following
    /// symlinks, only on a file or directory we own.
    static func chmodRepair(_ path: String, to mode: UInt32) -> () throws(ClawjailError) -> String {
        { () throws(ClawjailError) -> String in
            do {
                let fd = try FileSystem.open(path, [.path, .noFollow])
                defer { fd.close() }
                let st = try FileSystem.stat(fd)
                guard !st.isSymlink, st.uid == ProcessInfoLite.effectiveUserID || st.uid >= IdRanges.base else { throw Errno.EPERM }
                try FileSystem.chmod(fd, mode_t(mode))
                return "\(path): mode \(octal(st.permissions)) -> \(octal(mode))"
            } catch {
                throw ClawjailError(.permission, "chmod \(octal(mode)) \(path)", cause: error)
            }
        }
    }

    /// A directory (or file) that must be `wanted` and ours: returns false when missing.
    @discardableResult
    mutating func privatePath(_ path: String, wanted: UInt32, area: String, id: String, what: String,
                              writableIsCritical: Bool = true) -> Bool {
        guard let st = Self.inspect(path) else { return false }
        if st.isSymlink {
            add(id, area, .info, "\(path) (\(what)) is a symlink; clawjail never changes modes through a link",
                fix: "check its target by hand")
            return true
        }
        if st.uid != ProcessInfoLite.effectiveUserID {
            add(id, area, .critical, "\(path) (\(what)) belongs to uid \(st.uid), not to uid \(ProcessInfoLite.effectiveUserID) that runs clawjail",
                fix: "chown \(ProcessInfoLite.effectiveUserID) \(path)")
            return true
        }
        let extra = st.permissions & ~wanted & 0o7777
        if extra != 0 {
            let writable = st.permissions & 0o022 != 0
            add(id, area, writable && writableIsCritical ? .critical : .warning,
                "\(path) (\(what)) is mode \(Self.octal(st.permissions))" + (writable ? ": other users can write to it" : ": other users can read it"),
                fix: "chmod \(Self.octal(wanted)) \(path)", repair: Self.chmodRepair(path, to: wanted))
        }
        return true
    }

    mutating func stateDirectory() {
        let dir = layout.stateDirectory
        let before = findings.count
        guard privatePath(dir, wanted: 0o700, area: "state", id: "state.dir", what: "state directory") else {
            add("state.dir", "state", .info, "\(dir) does not exist yet; the first `clawjail run` creates it (0700)",
                fix: "mkdir -m 700 \(dir)", repair: { () throws(ClawjailError) -> String in
                    do { try FileSystem.mkdirs(Paths.dirname(dir), mode: 0o755); try FileSystem.mkdir(dir, mode: 0o700) } catch {
                        throw ClawjailError(.setup, "mkdir \(dir)", cause: error)
                    }
                    return "\(dir): created (0700)"
                })
            return
        }
        for suffix in ["", "-wal", "-shm"] {
            privatePath(dir + "/" + Store.databaseFileName + suffix, wanted: 0o600, area: "state", id: "state.db", what: "state database")
        }
        privatePath(AuditTools.markerPath(layout), wanted: 0o600, area: "state", id: "state.export-marker", what: "audit export record")
        privatePath(dir + "/" + Store.endMarkerDirectoryName, wanted: 0o700, area: "state", id: "state.run-ends",
                    what: "end markers of runs")
        let snapshots = dir + "/snapshots"
        if privatePath(snapshots, wanted: 0o700, area: "state", id: "state.snapshots", what: "protect snapshots") {
            walkSnapshots(snapshots, depth: 0)
        }
        if findings.count == before {
            add("state", "state", .ok, "\(dir): 0700, database and snapshots private to uid \(ProcessInfoLite.effectiveUserID)")
        }
    }

    mutating func walkSnapshots(_ dir: String, depth: Int) {
        guard depth < 16, let names = try? FileSystem.listDirectory(dir) else { return }
        var reported = 0
        for n in names.sorted() {
            let p = dir + "/" + n
            guard let st = Self.inspect(p), !st.isSymlink else { continue }
            if st.permissions & 0o077 != 0 && reported < 20 {
                reported += 1
                privatePath(p, wanted: st.isDirectory ? 0o700 : 0o600, area: "state", id: "state.snapshots", what: "snapshot copy")
            }
            if st.isDirectory { walkSnapshots(p, depth: depth + 1) }
        }
    }

    mutating func runDirectory() {
        let run = layout.runDirectory
        guard let st = Self.inspect(run) else {
            add("run.dir", "state", .info, "\(run) does not exist yet (created at the first run)",
                fix: "clawjail doctor --fix creates it", repair: { [layout] () throws(ClawjailError) -> String in
                    try layout.ensureRunDirectories()
                    return "\(run): created with jails/ and locks/ (0700)"
                })
            return
        }
        let before = findings.count
        if st.permissions & 0o022 != 0 && !st.isSymlink {
            add("run.dir", "state", .critical, "\(run) is mode \(Self.octal(st.permissions)): other users can replace jail locks and the staging root",
                fix: "chmod 755 \(run)", repair: Self.chmodRepair(run, to: 0o755))
        }
        for sub in ["jails", "locks"] {
            privatePath(run + "/" + sub, wanted: 0o700, area: "state", id: "run.\(sub)", what: "jail registry")
        }
        if findings.count == before { add("run.dir", "state", .ok, "\(run): locks and registry private") }
    }

    mutating func seccompCache() {
        let cache = layout.cacheDirectory
        let dir = cache + "/seccomp"
        let before = findings.count
        if let st = Self.inspect(cache), !st.isSymlink, st.permissions & 0o022 != 0 {
            add("seccomp.cache", "seccomp", .critical,
                "\(cache) is mode \(Self.octal(st.permissions)): other users can replace the compiled seccomp filters below it",
                fix: "chmod 755 \(cache)", repair: Self.chmodRepair(cache, to: 0o755))
        }
        guard privatePath(dir, wanted: 0o700, area: "seccomp", id: "seccomp.cache", what: "compiled seccomp filters") else {
            add("seccomp.cache", "seccomp", .info, "\(dir) does not exist yet (created 0700 at the first run)")
            return
        }
        for n in ((try? FileSystem.listDirectory(dir)) ?? []).sorted().prefix(1000) {
            let p = dir + "/" + n
            guard let st = Self.inspect(p), !st.isSymlink else { continue }
            if st.uid != ProcessInfoLite.effectiveUserID || st.permissions & 0o022 != 0 {
                add("seccomp.cache", "seccomp", .critical,
                    "\(p) (a compiled seccomp filter) is uid \(st.uid), mode \(Self.octal(st.permissions)): someone else could weaken a jail's filter",
                    fix: "remove it; clawjail compiles it again", repair: st.uid == ProcessInfoLite.effectiveUserID ? Self.chmodRepair(p, to: 0o600) : nil)
            }
        }
        if findings.count == before { add("seccomp.cache", "seccomp", .ok, "\(dir): 0700, filters private") }
    }

    // MARK: agents: configs and credentials

    mutating func agents() {
        guard FileSystem.exists(layout.stateDirectory + "/" + Store.databaseFileName) else {
            add("agents", "agents", .info, "no state database yet: no agent has run, no credentials to check")
            return
        }
        guard databaseIsPrivate else {
            add("agents", "agents", .info, "agents and credentials not checked: opening the database now would give SQLite's "
                + "empty -wal file its loose mode too; fix the database's permissions first (`clawjail doctor --fix`)")
            return
        }
        let store: Store
        let agents: [AgentRecord]
        let ranges: [String: UidRange]
        do {
            store = try Store.openReadOnly(directory: layout.stateDirectory)
            agents = try store.agents()
            ranges = try store.uidRanges()
        } catch {
            add("agents", "agents", .warning, "cannot read the agents from the state database: \(error)")
            return
        }
        if agents.isEmpty { add("agents", "agents", .info, "no agents registered yet") }
        for a in agents {
            configFile(a)
            let config: AgentConfig
            do { config = try CheckReport.loadAgentConfig(a.configPath, layout: layout) } catch {
                add("agent.\(a.name).config", "agent \(a.name)", .warning, "its config \(a.configPath) does not load: \(error.message)",
                    fix: "`clawjail check \(a.configPath)`")
                continue
            }
            guard let creds = config.credentials?.host else { continue }
            let agentUid = ranges[a.name].map { $0.base + (config.user ?? Defaults.toolUser) }
            credentials(a.name, creds, agentUid: agentUid)
        }
    }

    mutating func configFile(_ a: AgentRecord) {
        let area = "agent \(a.name)"
        guard let st = try? FileSystem.stat(a.configPath, followSymlinks: true) else {
            add("agent.\(a.name).config", area, .info, "its config \(a.configPath) is gone (registered by an earlier run)")
            return
        }
        if st.uid != ProcessInfoLite.effectiveUserID && st.uid != 0 {
            add("agent.\(a.name).config", area, .critical,
                "\(a.configPath) belongs to uid \(st.uid): whoever can write it decides what the jail mounts",
                fix: "chown root \(a.configPath)")
        } else if st.permissions & 0o022 != 0 {
            add("agent.\(a.name).config", area, .critical,
                "\(a.configPath) is mode \(Self.octal(st.permissions)): other users can rewrite the agent's mounts and network allowlist",
                fix: "chmod go-w \(a.configPath)", repair: Self.chmodRepair(a.configPath, to: st.permissions & ~0o022))
        }
        let dir = Paths.dirname(a.configPath)
        if let d = try? FileSystem.stat(dir, followSymlinks: true), d.permissions & 0o022 != 0, !d.isSticky {
            add("agent.\(a.name).configdir", area, .critical,
                "\(dir), which holds its config, is mode \(Self.octal(d.permissions)): other users can replace the config",
                fix: "move the config to /etc/clawjail (0755, root)")
        }
    }

    mutating func credentials(_ agent: String, _ path: String, agentUid: UInt32?) {
        let area = "agent \(agent)"
        guard let top = Self.inspect(path) else {
            add("agent.\(agent).credentials", area, .info, "credentials directory \(path) does not exist yet (created 0700 at the next run)")
            return
        }
        let before = findings.count
        var problems = 0
        func visit(_ p: String, _ st: Stat, depth: Int, into c: inout Checker) {
            guard problems < 50 else { return }
            if st.isSymlink {
                problems += 1
                c.add("agent.\(agent).credentials", area, .warning, "\(p) is a symlink: `clawjail run` refuses to start with it",
                      fix: "put the file itself in the credentials directory")
                return
            }
            let wanted: UInt32 = st.isDirectory ? 0o700 : 0o600
            if st.permissions & 0o077 != 0 {
                problems += 1
                let writable = st.permissions & 0o022 != 0
                c.add("agent.\(agent).credentials", area, .critical,
                      "\(p) is mode \(Self.octal(st.permissions)): other users can " + (writable ? "replace" : "read") + " the agent's credentials",
                      fix: "chmod \(Self.octal(wanted)) \(p)",
                      repair: st.uid == 0 || st.uid == agentUid ? Self.chmodRepair(p, to: wanted) : nil)
            }
            if st.uid != 0 && agentUid != nil && st.uid != agentUid {
                problems += 1
                c.add("agent.\(agent).credentials", area, .warning,
                      "\(p) belongs to uid \(st.uid), neither root nor the agent's uid \(agentUid ?? 0)",
                      fix: "chown root \(p); the next `clawjail run` gives it to the agent")
            }
            guard st.isDirectory, depth < 16, let names = try? FileSystem.listDirectory(p) else { return }
            for n in names.sorted() {
                if let cst = Self.inspect(p + "/" + n) { visit(p + "/" + n, cst, depth: depth + 1, into: &c) }
            }
        }
        visit(path, top, depth: 0, into: &self)
        if findings.count == before {
            add("agent.\(agent).credentials", area, .ok, "credentials \(path): 0700 directory, 0600 files")
        }
    }

    // MARK: network, audit

    mutating func listeners() {
        let exposed = Listeners.listening().filter { !$0.isLoopback && Listeners.gatewayPorts[$0.port] != nil }
        if exposed.isEmpty {
            add("network.listeners", "network", .ok,
                "no TCP listener outside loopback on the agent gateway ports " + Listeners.gatewayPorts.keys.sorted().map(String.init).joined(separator: ", "))
            return
        }
        var seen = Set<String>()
        for s in exposed {
            let host = s.address.contains(":") ? "[\(s.address)]" : s.address
            guard seen.insert("\(host):\(s.port)").inserted else { continue }
            let owners = Listeners.owners(of: s.inode)
            let who = owners.isEmpty ? "a process" : owners.joined(separator: ", ")
            let scope = s.address == "0.0.0.0" || s.address == "::" ? "every interface" : "a non-loopback address"
            add("network.listener.\(s.port)", "network", .critical,
                "\(who) listens on \(host):\(s.port) (\(Listeners.gatewayPorts[s.port] ?? "a gateway port"), \(scope)): exposed to the network",
                fix: "bind it to 127.0.0.1 or a Unix socket and put authentication in front; a jailed agent needs no host port at all ([[ingress]] sockets)")
        }
    }

    mutating func auditExport() {
        let conf = "/etc/clawjail/audit-export.conf"
        if FileSystem.exists(conf) {
            add("audit.export", "audit", .ok, "audit shipping declared in \(conf)")
            return
        }
        let targets = AuditTools.readMarker(layout)
        let latest = targets.compactMap { (k, v) -> (String, Int64, Int64?)? in
            v["at_ms"]?.intValue.map { (k, $0, v["last_seq"]?.intValue) }
        }.max { $0.1 < $1.1 }
        guard let (target, at, seq) = latest else {
            add("audit.export", "audit", .warning,
                "the audit log has never been exported: it lives only on this host, where whoever gets root can rewrite it",
                fix: "run `clawjail audit export --syslog --since-last` (or --output FILE on remote storage) from a timer; see the README")
            return
        }
        let age = ProcessInfoLite.wallClockMilliseconds - at
        let text = "last export to \(target) \(OperatorText.duration(ms: age)) ago" + (seq.map { ", up to row #\($0)" } ?? "")
        if age > 48 * 3_600_000 {
            add("audit.export", "audit", .warning, text + ": exports have stopped", fix: "check the timer that runs `clawjail audit export`")
        } else {
            add("audit.export", "audit", .ok, text)
        }
    }

    /// SQLite gives an empty -wal file the database's mode when it opens it: doctor
    /// opens the database only when that changes nothing.
    var databaseIsPrivate: Bool {
        ["", "-wal", "-shm"].allSatisfy { suffix in
            guard let st = Self.inspect(layout.stateDirectory + "/" + Store.databaseFileName + suffix) else { return suffix != "" }
            return st.isRegular && st.permissions & 0o077 == 0
        }
    }

    mutating func auditChain() {
        guard databaseIsPrivate, FileSystem.exists(layout.stateDirectory + "/" + Store.databaseFileName),
              let store = try? Store.openReadOnly(directory: layout.stateDirectory) else { return }
        do {
            switch try store.verifyAudit() {
            case .ok(let n): add("audit.chain", "audit", .ok, "audit chain intact (\(n) events)")
            case .broken(let seq, let reason, let detail):
                add("audit.chain", "audit", .critical, "audit chain broken at row #\(seq) (\(reason.rawValue)): \(detail)",
                    fix: "`clawjail audit verify` shows the row; compare with the off-box export")
            }
        } catch {
            add("audit.chain", "audit", .warning, "cannot verify the audit chain: \(error)")
        }
    }
}
