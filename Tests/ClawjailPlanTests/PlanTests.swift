import Foundation
import Testing
@testable import ClawjailPlan
import ClawjailCore

// LaunchPlan.make as a pure function: a table of configs and hand-built host facts,
// each compared with a golden plan in Golden/ (CLAWJAIL_UPDATE_GOLDEN=1 rewrites them;
// review the diff), plus the rules the plan must keep whatever the table holds.

private let hostEnvironment = ["PATH": "/root/bin", "HOME": "/root", "ANTHROPIC_API_KEY": "sk-host"]

private func agent(_ body: String) throws -> JailSpec {
    let config = try AgentConfig.parse(body, file: "/srv/clawjail/alice/agent.toml", kind: .agent)
    return JailSpec.forAgent(config, hostEnvironment: hostEnvironment)
}

private func tool(_ o: ToolRunOptions, toolConfig: String? = nil) throws -> JailSpec {
    let tc = try toolConfig.map { try AgentConfig.parse($0, file: "/srv/tools/tool.toml", kind: .tool) }
    return try JailSpec.forTool(o, toolConfig: tc, agentConfig: nil, runID: "0123abcd", hostEnvironment: hostEnvironment)
}

/// A Debian host with merged /usr and the hybrid v1 layout of this project's CI machine.
private func hybridHost() -> HostFacts {
    var f = HostFacts(cgroup: CgroupFacts(mode: .v1, v1Hierarchies: [["memory"], ["pids"], ["cpu", "cpuacct"], ["freezer"], ["blkio"]],
                                          v1BlkioWeightFile: "blkio.weight", location: "v1 under clawjail/"),
                      stagingRoot: "/run/clawjail/root", emptyDirectory: "/run/clawjail/empty")
    f.baseEntries = [.init("usr", .directory), .init("bin", .symlink(target: "usr/bin")), .init("sbin", .symlink(target: "usr/sbin")),
                     .init("lib", .symlink(target: "usr/lib")), .init("lib64", .symlink(target: "usr/lib64"))]
    f.etcHiddenPresent = ["shadow", "gshadow", "ssh", "sudoers", "ssl/private"]
    f.procToMask = ["keys", "kallsyms", "sysvipc"]
    f.procToMakeReadOnly = ["sys", "sysrq-trigger", "irq"]
    f.hostMachineID = Array("0123456789abcdef0123456789abcdef\n".utf8)
    f.capLastCap = 40
    return f
}

/// A pure cgroup v2 host (the qemu tier's kernel), no /lib64, fewer /proc entries.
private func v2Host() -> HostFacts {
    var f = hybridHost()
    f.cgroup = CgroupFacts(mode: .v2, location: "v2, jails under /sys/fs/cgroup/clawjail")
    f.baseEntries = [.init("usr", .directory), .init("bin", .directory), .init("lib", .directory)]
    f.procToMask = ["kcore", "keys"]
    return f
}

private struct Case: CustomTestStringConvertible, Sendable {
    let name: String
    let spec: @Sendable () throws -> JailSpec
    let facts: @Sendable () -> HostFacts
    var ids: (base: UInt32, count: UInt32)? = (0x7001_0000, 65536)
    var testDescription: String { name }
}

private let cases: [Case] = [
    Case(name: "agent-minimal-v1", spec: { try agent("name = \"alice\"\ncommand = [\"/usr/bin/node\", \"gw.js\"]\n") },
         facts: hybridHost, ids: nil),
    Case(name: "agent-full-v1", spec: { try agent("""
        name = "alice"
        command = ["/usr/bin/node", "gw.js"]
        user = 1000
        [workspace]
        host = "/srv/alice/ws"
        [credentials]
        host = "/srv/alice/creds"
        [[mount]]
        host = "/opt/models"
        path = "/models"
        [[mount]]
        host = "/srv/alice/npmrc"
        path = "/etc/npmrc"
        [limits]
        memory = "2G"
        pids = 256
        cpu = 1.5
        io_weight = 500
        file_size = "1G"
        [network]
        mode = "egress"
        allow = ["api.anthropic.com", "*.github.com:443"]
        [env]
        GITHUB_TOKEN = "ghp_secret_value"
        LANG = "C.UTF-8"
        [protect]
        paths = ["SOUL.md", "memory/", "skills/a/b.md"]
        """) }, facts: hybridHost),
    Case(name: "agent-full-v2", spec: { try agent("""
        name = "alice"
        command = ["/usr/bin/node", "gw.js"]
        [workspace]
        host = "/srv/alice/ws"
        [limits]
        cpu = 0.5
        io_weight = 100
        [network]
        mode = "egress"
        allow = ["api.anthropic.com"]
        """) }, facts: v2Host),
    Case(name: "preset-openclaw-v2", spec: { try agent("""
        name = "claw"
        preset = "openclaw"
        command = ["/usr/bin/node", "openclaw.mjs"]
        [workspace]
        host = "/srv/claw/ws"
        """) }, facts: v2Host),
    Case(name: "preset-nanoclaw-v1", spec: { try agent("""
        name = "nano"
        preset = "nanoclaw"
        command = ["/usr/bin/node", "dist/index.js"]
        [workspace]
        host = "/srv/nano/ws"
        """) }, facts: hybridHost),
    Case(name: "tool-default-v1", spec: {
        var o = ToolRunOptions(argv: ["make", "-j2"])
        o.workspace = "/srv/tools/run1"
        o.readOnly = [("/opt/sdk", "/sdk")]
        return try tool(o)
    }, facts: hybridHost, ids: (0x7000_0000, 65536)),
    Case(name: "tool-egress-v2", spec: {
        var o = ToolRunOptions(argv: ["curl", "https://example.com"])
        o.network = .egress
        o.allow = [try AllowRule.parse("example.com").get()]
        o.cpu = 2
        return try tool(o)
    }, facts: v2Host, ids: (0x7000_0000, 65536)),
    Case(name: "tool-directory-rootfs-v1", spec: {
        try tool(ToolRunOptions(argv: ["/bin/sh"]), toolConfig: """
            [rootfs]
            path = "/srv/rootfs/bookworm"
            """)
    }, facts: {
        var f = hybridHost()
        f.rootfsEntries = [.init("bin", .symlink(target: "usr/bin")), .init("dev", .directory), .init("etc", .directory),
                           .init("proc", .directory), .init("usr", .directory), .init("var", .directory), .init("fifo", .other)]
        f.rootfsEtcEntries = [.init("hosts", .file), .init("os-release", .symlink(target: "../usr/lib/os-release")),
                              .init("passwd", .file), .init("shadow", .file), .init("ssl", .directory)]
        f.etcHiddenPresent = ["ssl/private"]
        return f
    }, ids: (0x7000_0000, 65536)),
    Case(name: "vm-none-tcg-v2", spec: { try agent("""
        name = "vmnone"
        command = ["/usr/bin/python3", "agent.py"]
        isolation = "vm"
        [workspace]
        host = "/srv/vmnone/ws"
        [limits]
        cpu = 1.5
        [vm]
        accel = "tcg"
        allow_tcg = true
        memory = "256M"
        """) }, facts: { vmHost(v2Host()) }),
    Case(name: "vm-egress-kvm-v1", spec: { try agent("""
        name = "vmegress"
        command = ["/usr/bin/node", "gw.js"]
        isolation = "vm"
        [workspace]
        host = "/srv/vmegress/ws"
        [credentials]
        host = "/srv/vmegress/creds"
        [[mount]]
        host = "/opt/models"
        path = "/models"
        [protect]
        paths = ["SOUL.md", "skills/"]
        [limits]
        memory = "1G"
        [network]
        mode = "egress"
        allow = ["api.anthropic.com"]
        [vm]
        kernel = "/srv/vm/vmlinuz-6.1"
        initrd = "/srv/vm/initramfs.cpio.gz"
        kernel_sha256 = "\(String(repeating: "ab", count: 32))"
        vcpus = 2
        """) }, facts: { vmHost(hybridHost(), kernel: "/srv/vm/vmlinuz-6.1", initrd: "/srv/vm/initramfs.cpio.gz") }),
]

/// A host with qemu and virtiofsd, and the boot files read (8 MiB kernel, 24 MiB initramfs).
private func vmHost(_ base: HostFacts, kernel: String = "/var/lib/clawjail/vm/vmlinuz",
                    initrd: String = "/var/lib/clawjail/vm/initramfs.cpio.gz") -> HostFacts {
    var f = base
    f.vm = VMFacts(kernel: .init(path: kernel, sha256: String(repeating: "ab", count: 32), size: 8 << 20),
                   initrd: .init(path: initrd, sha256: String(repeating: "cd", count: 32), size: 24 << 20),
                   tscKHz: 2_300_000)
    return f
}

private let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

/// Pretty, key-sorted JSON, so a golden file reads and diffs line by line.
private func pretty(_ plan: LaunchPlan) throws -> String {
    let object = try JSONSerialization.jsonObject(with: Data(plan.jsonText.utf8))
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self) + "\n"
}

@Suite("LaunchPlan: golden plans")
struct GoldenPlanTests {
    @Test(arguments: cases)
    fileprivate func planMatchesGolden(_ c: Case) throws {
        let plan = LaunchPlan.make(try c.spec(), facts: c.facts(), ids: c.ids, seccompContentHash: "f00d")
        let text = try pretty(plan)
        let file = goldenDirectory.appendingPathComponent(c.name + ".json")
        if ProcessInfo.processInfo.environment["CLAWJAIL_UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: goldenDirectory, withIntermediateDirectories: true)
            try text.write(to: file, atomically: true, encoding: .utf8)
        }
        let golden = try #require(try? String(contentsOf: file, encoding: .utf8),
                                  "no golden plan \(file.path): run with CLAWJAIL_UPDATE_GOLDEN=1 and review it")
        if golden != text {
            let diff = text.split(separator: "\n", omittingEmptySubsequences: false)
                .difference(from: golden.split(separator: "\n", omittingEmptySubsequences: false))
            let lines: [String] = diff.prefix(40).map { change in
                switch change {
                case .insert(_, let line, _): return "+ " + String(line)
                case .remove(_, let line, _): return "- " + String(line)
                }
            }
            let diffText = lines.joined(separator: "\n")
            Issue.record("\(c.name): the plan differs from \(file.lastPathComponent):\n\(diffText)")
        }
    }

    @Test(arguments: cases)
    fileprivate func planIsAFunctionOfItsInputs(_ c: Case) throws {
        let spec = try c.spec()
        let a = LaunchPlan.make(spec, facts: c.facts(), ids: c.ids, seccompContentHash: nil)
        let b = LaunchPlan.make(spec, facts: c.facts(), ids: c.ids, seccompContentHash: nil)
        #expect(a == b)
        #expect(a.jsonText == b.jsonText)
        #expect(try JSONValue.parse(a.jsonText) == a.json)
    }
}

@Suite("LaunchPlan: rules")
struct PlanRuleTests {
    private func spec(_ i: Int) throws -> JailSpec { try cases[i].spec() }

    @Test func parentsMountBeforeChildrenAndTheBaseComesFirst() throws {
        let plan = LaunchPlan.make(try spec(1), facts: hybridHost(), ids: nil, seccompContentHash: nil)
        let targets = plan.mounts.map(\.target)
        #expect(targets.first == "usr")
        let etc = try #require(targets.firstIndex(of: "etc"))
        let tmp = try #require(targets.firstIndex(of: "tmp"))
        let ws = try #require(targets.firstIndex(of: "workspace"))
        #expect(etc < tmp && tmp < ws)
        // Every protect path after the pins of its ancestors, and after the workspace.
        let soul = try #require(targets.firstIndex(of: "workspace/SOUL.md"))
        let pinA = try #require(targets.firstIndex(of: "workspace/skills"))
        let pinAB = try #require(targets.firstIndex(of: "workspace/skills/a"))
        let deep = try #require(targets.firstIndex(of: "workspace/skills/a/b.md"))
        #expect(ws < soul && ws < pinA && pinA < pinAB && pinAB < deep)
        // The /etc mount point exists in the overlay's top layer before the overlay.
        let point = try #require(plan.mounts.firstIndex { $0.target == "etc/npmrc" && $0.label.hasPrefix("create the mount point") })
        #expect(point < etc)
    }

    @Test func onlyPresentHiddenEntriesGetAWhiteout() throws {
        var facts = hybridHost()
        facts.etcHiddenPresent = ["shadow"]
        let plan = LaunchPlan.make(try spec(0), facts: facts, ids: nil, seccompContentHash: nil)
        let whiteouts = plan.mounts.filter { $0.action == .whiteout }.map(\.target)
        #expect(whiteouts == ["etc/shadow"])
    }

    @Test func aMountUnderEtcReplacesItsWhiteoutWithAMountPointOfItsType() throws {
        var facts = hybridHost()
        facts.etcHiddenPresent = ["npmrc"]
        facts.mountSources["/srv/alice/npmrc"] = .file
        let plan = LaunchPlan.make(try spec(1), facts: facts, ids: nil, seccompContentHash: nil)
        #expect(!plan.mounts.contains { $0.action == .whiteout && $0.target == "etc/npmrc" })
        #expect(plan.mounts.contains { $0.target == "etc/npmrc" && $0.action == .writeFile(content: [], mode: 0o444) })
        facts.mountSources["/srv/alice/npmrc"] = .directory
        let dir = LaunchPlan.make(try spec(1), facts: facts, ids: nil, seccompContentHash: nil)
        #expect(dir.mounts.contains { $0.target == "etc/npmrc" && $0.action == .mkdir(mode: 0o755) })
    }

    @Test func v1GetsTheCpuAndBlkioHierarchiesOnlyForTheirLimits() throws {
        var limits = Defaults.agentLimits
        limits.cpu = nil
        var facts = hybridHost().cgroup
        // cpu shares its hierarchy with cpuacct, which the supervisor reads: kept, unwritten.
        let shared = LaunchPlan.cgroupPlan(limits, facts: facts)
        #expect(shared.hierarchies == [["memory"], ["pids"], ["cpu", "cpuacct"], ["freezer"]])
        #expect(!shared.writes.contains { $0.controller == "cpu" || $0.controller == "blkio" })
        facts.v1Hierarchies = [["memory"], ["pids"], ["cpu"], ["cpuacct"], ["freezer"], ["blkio"]]
        let apart = LaunchPlan.cgroupPlan(limits, facts: facts)
        #expect(apart.hierarchies == [["memory"], ["pids"], ["cpuacct"], ["freezer"]])
        limits.cpu = 0.25
        limits.ioWeight = 10000
        let both = LaunchPlan.cgroupPlan(limits, facts: facts)
        #expect(both.hierarchies == [["memory"], ["pids"], ["cpu"], ["cpuacct"], ["freezer"], ["blkio"]])
        #expect(both.writes.contains(.init(controller: "cpu", file: "cpu.cfs_quota_us", value: "25000", optional: false)))
        #expect(both.writes.contains(.init(controller: "blkio", file: "blkio.weight", value: "1000", optional: true)))
    }

    @Test func v2WritesTheUnifiedFiles() {
        var limits = Defaults.toolLimits
        limits.cpu = 0.001
        let plan = LaunchPlan.cgroupPlan(limits, facts: CgroupFacts(mode: .v2, location: "x"))
        #expect(plan.writes.map(\.file) == ["memory.max", "memory.swap.max", "pids.max", "cpu.max"])
        // The kernel's minimum quota is 1 ms.
        #expect(plan.writes.last?.value == "1000 100000")
        #expect(plan.writes.allSatisfy { $0.controller == nil })
    }

    @Test func secretValuesAreHashedInThePrintedPlan() throws {
        let plan = LaunchPlan.make(try spec(1), facts: hybridHost(), ids: nil, seccompContentHash: nil)
        let text = plan.jsonText
        #expect(!text.contains("ghp_secret_value"))
        #expect(text.contains(SHA256.hexDigest(of: "ghp_secret_value")))
        #expect(text.contains("C.UTF-8"))
        // The executor still gets the value.
        #expect(plan.process.environment.contains { $0.name == "GITHUB_TOKEN" && $0.value == "ghp_secret_value" })
    }

    @Test func egressPutsTheProxyInTheEnvironmentAndResolvConf() throws {
        let plan = LaunchPlan.make(try spec(1), facts: hybridHost(), ids: nil, seccompContentHash: nil)
        #expect(plan.network.resolvConf.contains("nameserver \(NetworkLayout.peerAddress)"))
        let resolv = try #require(plan.mounts.first { $0.target == "etc/resolv.conf" })
        #expect(resolv.action == .writeFile(content: Array(plan.network.resolvConf.utf8), mode: 0o644))
        #expect(plan.process.environment.contains { $0.name == "HTTPS_PROXY" && $0.value == NetworkLayout.proxyURL })
    }

    @Test func aDirectoryRootfsKeepsItsOwnEntriesOutAndHidesSecrets() throws {
        let c = cases[7]
        let plan = LaunchPlan.make(try c.spec(), facts: c.facts(), ids: c.ids, seccompContentHash: nil)
        let targets = Set(plan.mounts.map(\.target))
        #expect(targets.contains("usr") && targets.contains("var") && targets.contains("etc/os-release"))
        #expect(!targets.contains("fifo"))
        #expect(!plan.mounts.contains { $0.target == "etc/shadow" })
        #expect(!plan.mounts.contains { $0.target == "proc" && $0.kindName == "attach" })
        #expect(plan.mounts.contains { $0.target == "etc/ssl/private" && $0.action == .mask })
    }

    @Test func rlimitsFollowTheLimits() throws {
        let plan = LaunchPlan.make(try spec(1), facts: hybridHost(), ids: nil, seccompContentHash: nil)
        #expect(plan.rlimits.map(\.resource) == [.core, .nofile, .nproc, .fsize])
        #expect(plan.rlimits[2].soft == 256 + 8)
        #expect(plan.rlimits[3].soft == 1 << 30)
    }
}

@Suite("VMPlan: rules")
struct VMPlanRuleTests {
    private func vmCase(_ name: String) throws -> (JailSpec, LaunchPlan, VMPlan) {
        let c = try #require(cases.first { $0.name == name })
        let spec = try c.spec()
        let plan = LaunchPlan.make(spec, facts: c.facts(), ids: c.ids, seccompContentHash: nil)
        return (spec, plan, try #require(plan.vm))
    }

    @Test func namespacePlansHaveNoVMLayer() throws {
        for c in cases where !c.name.hasPrefix("vm-") {
            let plan = LaunchPlan.make(try c.spec(), facts: c.facts(), ids: c.ids, seccompContentHash: nil)
            #expect(plan.vm == nil, "\(c.name)")
            #expect(!plan.jsonText.contains("\"vm\":"), "\(c.name)")
        }
    }

    @Test func theCgroupAllowsGuestRAMPlusTheOverhead() throws {
        let (_, plan, vm) = try vmCase("vm-egress-kvm-v1")
        #expect(vm.guestMemory == 1 << 30)
        // 64 MiB qemu + 5 shares x 16 MiB + 32 MiB of boot files; no TCG buffer under KVM.
        #expect(vm.vmmOverhead == (64 + 5 * 16 + 32) << 20)
        #expect(vm.cgroupMemory == vm.guestMemory + vm.vmmOverhead)
        #expect(plan.cgroup.writes.contains { $0.file == "memory.limit_in_bytes" && $0.value == String(vm.cgroupMemory) })
        let (_, tcgPlan, tcg) = try vmCase("vm-none-tcg-v2")
        #expect(tcg.vmmOverhead == (64 + 5 * 16 + 32 + 128) << 20)
        #expect(tcgPlan.cgroup.writes.contains { $0.file == "memory.max" && $0.value == String(tcg.cgroupMemory) })
    }

    @Test func sharesKeepCredentialsApartAndProtectReadOnly() throws {
        let (_, _, vm) = try vmCase("vm-egress-kvm-v1")
        #expect(vm.shares.map(\.tag) == ["base-usr", "etc", "workspace", "mount-1", "credentials"])
        let ws = try #require(vm.shares.first { $0.tag == "workspace" })
        #expect(!ws.readOnly)
        // virtiofsd serves the jail's own view: the workspace at its jail path, where
        // [protect] paths are the jail's read-only binds.
        #expect(ws.source == "/workspace" && ws.guestPath == "/workspace")
        #expect(ws.readOnlyPaths == ["/workspace/SOUL.md", "/workspace/skills"])
        #expect(vm.shares.first { $0.tag == "etc" }?.source == "/etc", "the jail's filtered /etc, not the host's")
        #expect(vm.guestLinks.contains(.init(path: "/bin", target: "usr/bin")))
        #expect(vm.shares.filter { $0.role != .workspace }.allSatisfy { $0.readOnly })
        #expect(vm.fileServers.count == vm.shares.count)
        #expect(vm.fileServers.allSatisfy { $0.argv.first == "/usr/lib/qemu/virtiofsd" && $0.argv.contains("sandbox=chroot") })
    }

    /// virtiofsd serves directories: a [[mount]] of a single file is bound, in the VMM
    /// jail, into a directory of its own that its share serves; the guest's jail binds
    /// the file from where the guest mounts that share, and a tool run finds it there.
    @Test func aSingleFileMountGetsADirectoryOfItsOwn() throws {
        let c = try #require(cases.first { $0.name == "vm-egress-kvm-v1" })
        let spec = try agent("""
            name = "vmegress"
            command = ["/usr/bin/node", "gw.js"]
            isolation = "vm"
            [workspace]
            host = "/srv/vmegress/ws"
            [[mount]]
            host = "/opt/models"
            path = "/models"
            [[mount]]
            host = "/srv/vmegress/npmrc"
            path = "/home/agent/.npmrc"
            [vm]
            kernel = "/srv/vm/vmlinuz-6.1"
            initrd = "/srv/vm/initramfs.cpio.gz"
            """)
        var facts = c.facts()
        facts.mountSources["/srv/vmegress/npmrc"] = .file
        let plan = LaunchPlan.make(spec, facts: facts, ids: c.ids, seccompContentHash: nil)
        let vm = try #require(plan.vm)
        let share = try #require(vm.shares.first { $0.tag == "mount-2" })
        #expect(share.fileName == ".npmrc" && share.fileHost == "/srv/vmegress/npmrc" && share.readOnly)
        #expect(share.source == VMPlan.fileShareDirectory + "/mount-2" && share.guestPath == VMPlan.guestFileShareDirectory + "/mount-2")
        #expect(vm.shares.first { $0.tag == "mount-1" }?.fileName == nil, "a directory mount is shared at its path")
        #expect(plan.mounts.contains { "/" + $0.target == VMPlan.fileShareDirectory + "/mount-2/.npmrc"
            && $0.action == .attach(source: .hostPath("/srv/vmegress/npmrc", role: .mount, create: false, giveTree: nil, expect: .file),
                                    options: [.readOnly, .noSuid, .noDev]) })
        let i = try #require(spec.mounts.firstIndex { $0.host == "/srv/vmegress/npmrc" })
        #expect(vm.guestJail.mounts[i].host == VMPlan.guestFileShareDirectory + "/mount-2/.npmrc" && vm.guestJail.mounts[i].target == "/home/agent/.npmrc")
        #expect(VMPlan.guestSource(spec, at: i, isFile: true) == vm.guestJail.mounts[i].host)
        let models = try #require(spec.mounts.firstIndex { $0.host == "/opt/models" })
        #expect(VMPlan.guestSource(spec, at: models, isFile: false) == "/models")
        #expect(vm.text.contains("holds only /srv/vmegress/npmrc as .npmrc"))
    }

    @Test func theNetworkIsATapOnlyForEgress() throws {
        let (_, egressPlan, egress) = try vmCase("vm-egress-kvm-v1")
        #expect(egress.network.guestAddress == "10.200.0.2")
        #expect(egress.command.contains("tap,id=net0,fd=3,vhost=off"))
        #expect(egress.launchScript.contains("4<&- 5>&- 3<&- &"), "the file servers do not get the tap")
        #expect(egress.command.contains("-accel") && egress.command.contains("kvm"))
        #expect(egressPlan.mounts.contains { $0.target == "dev/kvm" && $0.action == .bindHost(source: "/dev/kvm", options: [.noSuid, .noExec]) })
        let (_, nonePlan, none) = try vmCase("vm-none-tcg-v2")
        #expect(none.network.tap == nil)
        #expect(!none.command.contains { $0.hasPrefix("tap") || $0.hasPrefix("virtio-net") })
        #expect(none.command.contains("tcg,tb-size=128") && none.command.contains("max"))
        #expect(!nonePlan.mounts.contains { $0.target == "dev/kvm" })
        #expect(none.vcpus == 2)
    }

    /// The jail runs the VMM, not the agent: root of its user namespace with only the
    /// file servers' capabilities, the vmm profile, the boot files bound read-only; the
    /// launch script hands the VMM to the agent's uid with nothing kept.
    @Test func theJailRunsTheVMMAndTheGuestRunsTheAgent() throws {
        let (spec, plan, vm) = try vmCase("vm-none-tcg-v2")
        #expect(plan.process.argv.prefix(2) == ["/bin/sh", "-c"] && plan.process.argv[2] == vm.launchScript)
        #expect(plan.process.uid == 0 && plan.process.gid == 0 && plan.process.cwd == "/")
        #expect(plan.process.keptCapabilities == VMPlan.fileServerCapabilities)
        #expect(!plan.process.keptCapabilities.contains(.setpcap) == false, "virtiofsd drops its own bounding set")
        #expect(plan.seccomp.profile == "vmm")
        #expect(plan.mounts.contains { $0.target == "vm/kernel" && $0.action == .bindHost(source: vm.kernel.path, options: [.readOnly, .noSuid, .noDev, .noExec]) })
        #expect(plan.mounts.contains { $0.target == "var/run" && { if case .tmpfs = $0.action { return true } else { return false } }($0) })
        #expect(vm.command.contains("/vm/kernel") && vm.command.contains("/vm/initrd"))
        #expect(vm.command.contains("socket,id=control,fd=4"))
        #expect(vm.guest.argv == spec.argv && vm.guest.uid == spec.user && vm.guest.cwd == spec.cwd)
        #expect(vm.vmmUser == spec.user)
        let script = vm.launchScript
        #expect(script.contains("exec 4<&0 5>&1 0</dev/null"))
        for f in vm.fileServers { #expect(script.contains(f.argv.joined(separator: " ") + " 4<&- 5>&- &")) }
        #expect(script.contains("chown \(spec.user):\(spec.user) \"$s\""))
        let last = try #require(script.split(separator: "\n").last)
        #expect(last.hasPrefix("exec /usr/bin/setpriv --reuid=\(spec.user) --regid=\(spec.user) --keep-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- /usr/bin/qemu-system-x86_64 "), "\(last)")
    }

    /// The guest's jail: the agent's spec with guest paths, sent as JSON and read back
    /// whole; its plan keeps the guest's network namespace, gives no trees and fixes no
    /// credentials (the host's executor did), and has no NIC of its own.
    @Test func theGuestJailIsTheAgentsSpecWithGuestPaths() throws {
        let (spec, _, vm) = try vmCase("vm-egress-kvm-v1")
        let g = vm.guestJail
        #expect(g.vm == nil && g.guest == JailSpec.GuestSide(network: .egress, sharesNetwork: true))
        #expect(g.argv == spec.argv && g.environment == spec.environment && g.user == spec.user && g.limits.memory == spec.limits.memory)
        #expect(g.limits.wallTimeMs == 0, "the host keeps the wall-time limit")
        #expect(g.seccompProfile == ControlFrame.fileDirectory + "/" + vm.guestProfileFile)
        for m in g.mounts where m.role != .protect { #expect(m.host == m.target, "\(m)") }
        #expect(g.mounts.filter { $0.role == .protect } == spec.mounts.filter { $0.role == .protect })
        let back = try JailSpec(guestJSON: JSONValue.parse(try g.guestJSON.canonicalText()))
        #expect(back == g)
        #expect(vm.guestJailCommand.argv == ["/init", "guest-jail", ControlFrame.fileDirectory + "/" + VMPlan.guestJailFile])

        let plan = LaunchPlan.make(g, facts: v2Host(), ids: (0, 65534), seccompContentHash: nil)
        #expect(!plan.namespaces.contains(.net) && plan.namespaces.contains(.pid) && plan.namespaces.contains(.user))
        #expect(!plan.process.loopbackUp)
        #expect(plan.vm == nil && plan.process.keptCapabilities.isEmpty && plan.seccomp.profile == g.seccompProfile)
        #expect(plan.network.mode == .none)
        let resolv = plan.mounts.first { $0.target == "etc/resolv.conf" }
        if case .writeFile(let content, _)? = resolv?.action {
            #expect(String(decoding: content, as: UTF8.self).contains("nameserver 10.200.0.1"), "the VM's egress DNS")
        } else {
            Issue.record("no resolv.conf step")
        }
        for step in plan.mounts {
            guard case .attach(let source, _) = step.action else { continue }
            switch source {
            case .hostPath(_, _, let create, let give, _): #expect(!create && give == nil, "\(step.label)")
            case .credentials: Issue.record("the guest does not fix credentials: \(step.label)")
            default: break
            }
        }
    }

    /// In a guest only a jail with egress (or an agent with [[ingress]]) keeps the VM's
    /// network; one without (a tool run with no network, an agent with mode none) gets
    /// an empty namespace with lo.
    @Test func aGuestJailWithoutEgressGetsAnEmptyNetwork() throws {
        let (_, _, vm) = try vmCase("vm-none-tcg-v2")
        #expect(vm.guestJail.guest == JailSpec.GuestSide(network: .none, sharesNetwork: false))
        let plan = LaunchPlan.make(vm.guestJail, facts: v2Host(), ids: (0, 65534), seccompContentHash: nil)
        #expect(plan.namespaces.contains(.net) && plan.process.loopbackUp)
    }

    @Test func guestSpecsThatAreNotWholeAreRefused() throws {
        let (_, _, vm) = try vmCase("vm-egress-kvm-v1")
        guard case .object(var o) = vm.guestJail.guestJSON else { Issue.record("not an object"); return }
        o["argv"] = .array([])
        #expect(throws: JailSpec.GuestSpecError.self) { try JailSpec(guestJSON: .object(o)) }
        o["argv"] = .array([.string("/bin/true")])
        o.removeValue(forKey: "limits")
        #expect(throws: JailSpec.GuestSpecError.self) { try JailSpec(guestJSON: .object(o)) }
        #expect(throws: JailSpec.GuestSpecError.self) { try JailSpec(guestJSON: .array([])) }
    }

    @Test func bootProblems() throws {
        let (spec, _, _) = try vmCase("vm-egress-kvm-v1")
        let vm = try #require(spec.vm)
        let good = VMFacts(kernel: .init(path: vm.kernel, sha256: String(repeating: "ab", count: 32)),
                           initrd: .init(path: vm.initrd, sha256: "00"))
        #expect(good.bootProblems(vm).isEmpty)
        var mismatched = good
        mismatched.kernel.sha256 = String(repeating: "ef", count: 32)
        let problems = mismatched.bootProblems(vm)
        #expect(problems.count == 1)
        #expect(problems.first?.contains("vm.kernel_sha256 pins") == true)
        #expect(problems.first?.contains("/srv/vm/vmlinuz-6.1") == true)
        var missing = good
        missing.initrd.sha256 = nil
        #expect(missing.bootProblems(vm).first?.contains("initramfs /srv/vm/initramfs.cpio.gz is missing") == true)
    }

    @Test func checkTextShowsTheVM() throws {
        let (_, plan, _) = try vmCase("vm-none-tcg-v2")
        let text = plan.stepsText
        #expect(text.contains("vm           qemu-microvm, accel tcg (software emulation: NOT a security boundary"))
        #expect(text.contains("guest memory 256M, 2 vcpus"))
        #expect(text.contains("network      none: the guest has no NIC"))
        #expect(text.contains("-M microvm,memory-backend=mem"))
    }
}
