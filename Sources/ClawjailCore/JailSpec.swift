import ClawjailParsers

/// The effective, validated description of one jail: what `clawjail check` prints and
/// what the runtime turns into kernel objects. Built without side effects from an
/// agent.toml (a long-running agent) or from `clawjail exec` options (a tool run).
public struct JailSpec: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable { case agent, tool }

    public enum MountRole: String, Sendable, Hashable {
        case workspace, mount, credentials, protect
    }

    public struct MountSpec: Sendable, Hashable {
        public var role: MountRole
        /// Absolute host path; for `protect`, relative to the workspace host path.
        public var host: String
        public var target: String
        public var writable: Bool
        /// Protect paths ending in "/" are directories (created when missing).
        public var isDirectoryHint: Bool
    }

    public struct Limits: Sendable, Hashable {
        public var memory: UInt64
        public var pids: UInt64
        public var cpu: Double?           // nil: no quota
        public var ioWeight: UInt64?
        public var tmp: UInt64
        public var openFiles: UInt64
        public var fileSize: UInt64?      // nil: unlimited
        public var wallTimeMs: UInt64     // 0: no limit
    }

    public struct Network: Sendable, Hashable {
        public var mode: AgentConfig.NetworkMode
        public var allow: [AllowRule]
        public var resolvers: [String]
        public var ingress: [AgentConfig.Ingress]
        /// `[network] allow_non_tls_443`.
        public var allowNonTLS443 = false
    }

    public var kind: Kind
    /// The agent this jail belongs to (for tool runs: the agent whose policy applies, or nil).
    public var agent: String?
    /// Names the cgroup and state rows: the agent name, or "exec-<id>" for tool runs.
    public var name: String
    public var argv: [String]
    public var cwd: String
    public var environment: [EnvironmentVariable]
    public var hostname: String
    public var user: UInt32
    public var rootfs: AgentConfig.Rootfs
    public var mounts: [MountSpec]
    public var limits: Limits
    public var seccompProfile: String
    /// nil: the profile's own on_violation.
    public var seccompOnViolation: String? = nil
    public var network: Network
    public var protect: [String]
    /// Paths relative to /etc that the jail does not see (EtcPolicy), sorted.
    public var etcHidden: [String] = EtcPolicy.hiddenPaths(show: [], hide: [])

    public struct EnvironmentVariable: Sendable, Hashable, Comparable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
        public static func < (a: Self, b: Self) -> Bool { a.name < b.name }
    }

    public var workspace: MountSpec? { mounts.first { $0.role == .workspace } }

    /// Where the jail's processes run: on the host's kernel, or in a guest of their own
    /// whose VMM is itself jailed (design/vm-backend.md).
    public enum Isolation: Sendable, Hashable {
        case namespace
        case vm(VMSpec)
    }

    /// `[vm]` with its defaults applied.
    public struct VMSpec: Sendable, Hashable {
        public var kernel: String
        public var initrd: String
        public var kernelSHA256: String?
        public var initrdSHA256: String?
        public var vcpus: UInt32
        /// Guest RAM, a whole number of MiB.
        public var memory: UInt64
        public var accel: AgentConfig.Accelerator
        public init(kernel: String, initrd: String, kernelSHA256: String? = nil, initrdSHA256: String? = nil,
                    vcpus: UInt32, memory: UInt64, accel: AgentConfig.Accelerator) {
            self.kernel = kernel
            self.initrd = initrd
            self.kernelSHA256 = kernelSHA256
            self.initrdSHA256 = initrdSHA256
            self.vcpus = vcpus
            self.memory = memory
            self.accel = accel
        }
    }

    public var isolation: Isolation = .namespace

    /// The jail inside a VM agent's guest (`inGuest`): nil everywhere else.
    public var guest: GuestSide? = nil

    /// How a jail in a guest differs from one on a host: the guest is the agent's own,
    /// so its network is the VM's (bounded by the host's proxy), its
    /// ids map one to one onto the guest's (the file servers on the host map them onto
    /// the agent's outside range), and the host's executor already prepared every
    /// source (owners, credential modes) in the VMM's jail.
    public struct GuestSide: Sendable, Hashable {
        /// The jail's own network mode (its resolv.conf follows it).
        public var network: AgentConfig.NetworkMode
        /// Whether the jail keeps the guest's network namespace (the VM's NIC, behind the
        /// host's proxy): with egress, and for an agent with [[ingress]] (whose
        /// forwarder reaches it there); otherwise it gets an empty one, as on a host.
        public var sharesNetwork: Bool
        public init(network: AgentConfig.NetworkMode, sharesNetwork: Bool) {
            self.network = network
            self.sharesNetwork = sharesNetwork
        }
    }

    public var vm: VMSpec? {
        if case .vm(let v) = isolation { return v }
        return nil
    }
}

/// Defaults, in one place so that `check` and the docs agree with the code.
public enum Defaults {
    public static let stateDirectory = "/var/lib/clawjail"
    public static let runDirectory = "/run/clawjail"
    public static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    public static let workspacePath = "/workspace"
    public static let toolUser: UInt32 = 1000

    public static let agentLimits = JailSpec.Limits(memory: 1 << 30, pids: 512, cpu: 1.0, ioWeight: nil,
                                                    tmp: 64 << 20, openFiles: 1024, fileSize: nil, wallTimeMs: 0)
    public static let toolLimits = JailSpec.Limits(memory: 256 << 20, pids: 64, cpu: 1.0, ioWeight: nil,
                                                   tmp: 64 << 20, openFiles: 256, fileSize: nil,
                                                   wallTimeMs: 10 * 60_000)
    public static let agentProfile = "agent"
    /// Guest RAM of a VM agent whose config sets neither vm.memory nor limits.memory.
    public static let vmMemory: UInt64 = 512 << 20
    public static let toolProfile = "tool"
}

/// Addresses of the egress wiring. Every jail has its own pair of namespaces, so the
/// same small private addresses serve all of them.
public enum NetworkLayout {
    public static let peerAddress = "10.200.0.1"
    public static let jailAddress = "10.200.0.2"
    public static let prefixLength: UInt8 = 30
    public static let proxyPort: UInt16 = 3128
    public static var proxyURL: String { "http://\(peerAddress):\(proxyPort)" }
    public static let noProxy = "localhost,127.0.0.1,::1"
}

extension JailSpec {
    /// The jail of `clawjail run agent.toml`.
    public static func forAgent(_ c: AgentConfig, hostEnvironment: [String: String]) -> JailSpec {
        let name = c.name ?? "agent"
        var mounts: [MountSpec] = []
        if let w = c.workspace {
            mounts.append(MountSpec(role: .workspace, host: w.host, target: w.path, writable: true, isDirectoryHint: true))
        }
        for m in c.mounts {
            mounts.append(MountSpec(role: .mount, host: m.host, target: m.path, writable: m.writable, isDirectoryHint: false))
        }
        if let cr = c.credentials {
            mounts.append(MountSpec(role: .credentials, host: cr.host, target: cr.path, writable: false, isDirectoryHint: true))
        }
        if let w = c.workspace {
            mounts += protectMounts(c.protect, workspace: w.path)
        }
        let limits = merge(c.limits, over: Defaults.agentLimits)
        let network = Network(mode: c.network.mode, allow: c.network.allow, resolvers: c.network.resolvers, ingress: c.ingress,
                              allowNonTLS443: c.network.allowNonTLS443)
        let cwd = c.cwd ?? c.workspace?.path ?? "/"
        let user = c.user ?? Defaults.toolUser
        let home = c.workspace?.path ?? "/tmp"
        var spec = JailSpec(kind: .agent, agent: name, name: name, argv: c.command, cwd: cwd,
                        environment: buildEnvironment(config: c.env, pass: c.envPass, host: hostEnvironment,
                                                      home: home, network: network.mode),
                        hostname: c.hostname ?? name, user: user, rootfs: c.rootfs, mounts: mounts, limits: limits,
                        seccompProfile: c.seccompProfile ?? Defaults.agentProfile, network: network, protect: c.protect)
        spec.seccompOnViolation = c.seccompOnViolation
        spec.etcHidden = EtcPolicy.hiddenPaths(show: c.etcShow, hide: c.etcHide)
        if c.isolation == .vm, let vm = c.vm {
            spec.isolation = .vm(vmSpec(vm, limits: c.limits, merged: limits))
        }
        return spec
    }

    /// vcpus: limits.cpu rounded up (at least 1); memory: limits.memory as written, or
    /// 512M (the namespace default of 1G is a limit, not RAM to hand a guest).
    static func vmSpec(_ vm: AgentConfig.VM, limits: AgentConfig.Limits, merged: Limits) -> VMSpec {
        let cores = merged.cpu ?? 1
        let vcpus = vm.vcpus ?? UInt32(min(Double(AgentConfig.VM.maxVCPUs), max(1, cores.rounded(.up))))
        var memory = vm.memory ?? limits.memory ?? Defaults.vmMemory
        // limits.memory may be any byte count; qemu takes whole MiB.
        memory = (memory + (1 << 20) - 1) / (1 << 20) * (1 << 20)
        return VMSpec(kernel: vm.kernel, initrd: vm.initrd, kernelSHA256: vm.kernelSHA256, initrdSHA256: vm.initrdSHA256,
                      vcpus: vcpus, memory: max(memory, AgentConfig.VM.minMemory), accel: vm.accel)
    }

    static func protectMounts(_ protect: [String], workspace: String) -> [MountSpec] {
        protect.map { p in
            let rel = p.hasSuffix("/") ? String(p.dropLast()) : p
            return MountSpec(role: .protect, host: rel, target: workspace + "/" + rel, writable: false,
                             isDirectoryHint: p.hasSuffix("/"))
        }
    }

    public static func merge(_ l: AgentConfig.Limits, over d: Limits) -> Limits {
        Limits(memory: l.memory ?? d.memory, pids: l.pids ?? d.pids, cpu: l.cpu ?? d.cpu,
               ioWeight: l.ioWeight ?? d.ioWeight, tmp: l.tmp ?? d.tmp, openFiles: l.openFiles ?? d.openFiles,
               fileSize: l.fileSize ?? d.fileSize, wallTimeMs: l.wallTimeMs ?? d.wallTimeMs)
    }

    /// Only `env` and `env_pass` reach the jail, on top of PATH and HOME defaults (and
    /// the proxy variables in egress mode). Nothing else of the host's environment does.
    public static func buildEnvironment(config: [String: String], pass: [String], host: [String: String],
                                        home: String, network: AgentConfig.NetworkMode) -> [EnvironmentVariable] {
        var env: [String: String] = ["PATH": Defaults.path, "HOME": home]
        if network == .egress {
            for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] { env[k] = NetworkLayout.proxyURL }
            env["NO_PROXY"] = NetworkLayout.noProxy
            env["no_proxy"] = NetworkLayout.noProxy
        }
        for k in pass { if let v = host[k] { env[k] = v } }
        for (k, v) in config { env[k] = v }
        return env.map { EnvironmentVariable(name: $0.key, value: $0.value) }.sorted()
    }
}

/// `clawjail exec` options, after argument parsing.
public struct ToolRunOptions: Sendable {
    public var argv: [String]
    public var workspace: String?
    public var readOnly: [(host: String, target: String?)] = []
    public var readWrite: [(host: String, target: String?)] = []
    public var env: [(String, String)] = []
    public var cwd: String?
    public var timeoutMs: UInt64?
    public var memory: UInt64?
    public var pids: UInt64?
    public var cpu: Double?
    public var profile: String?
    public var network: AgentConfig.NetworkMode?
    public var allow: [AllowRule] = []
    public var resolvers: [String] = []
    public var user: UInt32?

    public init(argv: [String]) { self.argv = argv }
}

extension JailSpec {
    /// The jail of one tool run. Precedence: command-line options, then tool.toml, then
    /// the agent's [tools] section (with `--agent`), then the tool defaults. A tool run
    /// never gets credentials; with `--agent` it gets the agent's workspace and protect
    /// paths.
    public static func forTool(_ o: ToolRunOptions, toolConfig: AgentConfig?, agentConfig: AgentConfig?,
                               runID: String, hostEnvironment: [String: String],
                               stateDirectory: String = Defaults.stateDirectory) throws(ConfigError) -> JailSpec {
        var issues: [ConfigIssue] = []
        func bad(_ msg: String, hint: String? = nil) {
            issues.append(ConfigIssue(file: "command line", location: nil, message: msg, hint: hint))
        }
        if o.argv.isEmpty || o.argv[0].isEmpty { bad("no command given", hint: "write clawjail exec [OPTIONS] -- CMD [ARG...]") }

        var mounts: [MountSpec] = []
        var workspaceTarget: String?
        var protect: [String] = []
        if let w = o.workspace {
            guard let host = Paths.normalizeAbsolute(w) else {
                bad("--workspace '\(w)' must be an absolute path without '..'")
                throw ConfigError(issues)
            }
            if let p = Paths.hostProblem(host, writable: true, stateDirectory: stateDirectory) {
                bad("--workspace: \(p)", hint: "give the tool run its own directory")
            }
            workspaceTarget = Defaults.workspacePath
            mounts.append(MountSpec(role: .workspace, host: host, target: Defaults.workspacePath, writable: true, isDirectoryHint: true))
        } else if let tw = toolConfig?.workspace {
            workspaceTarget = tw.path
            mounts.append(MountSpec(role: .workspace, host: tw.host, target: tw.path, writable: true, isDirectoryHint: true))
        } else if let aw = agentConfig?.workspace {
            workspaceTarget = aw.path
            mounts.append(MountSpec(role: .workspace, host: aw.host, target: aw.path, writable: true, isDirectoryHint: true))
        }
        if workspaceTarget != nil {
            // tool.toml's [protect] counts too: an accepted key must not be a no-op.
            protect = agentConfig?.protect ?? []
            for p in toolConfig?.protect ?? [] where !protect.contains(p) { protect.append(p) }
        }

        for m in toolConfig?.mounts ?? [] {
            mounts.append(MountSpec(role: .mount, host: m.host, target: m.path, writable: m.writable, isDirectoryHint: false))
        }
        for (list, writable) in [(o.readOnly, false), (o.readWrite, true)] {
            for (h, t) in list {
                guard let host = Paths.normalizeAbsolute(h) else {
                    bad("\(writable ? "--rw" : "--ro") host '\(h)' must be an absolute path without '..'")
                    continue
                }
                if let p = Paths.hostProblem(host, writable: writable, stateDirectory: stateDirectory) {
                    bad("\(writable ? "--rw" : "--ro") \(h): \(p)")
                    continue
                }
                let target = t ?? host
                if let p = Paths.targetProblem(target) {
                    bad("\(writable ? "--rw" : "--ro") target: \(p)")
                    continue
                }
                mounts.append(MountSpec(role: .mount, host: host, target: Paths.normalizeAbsolute(target) ?? target,
                                        writable: writable, isDirectoryHint: false))
            }
        }
        var seen: Set<String> = []
        let etc = toolConfig ?? agentConfig
        let etcHidden = EtcPolicy.hiddenPaths(show: etc?.etcShow ?? [], hide: etc?.etcHide ?? [])
        for m in mounts {
            if let (message, hint) = EtcPolicy.mountProblem(m.target, hidden: etcHidden) { bad(message, hint: hint) }
        }
        for m in mounts where !seen.insert(m.target).inserted {
            bad("two mounts want the same path \(m.target)")
        }
        // Tool runs never get credentials, not even through a mount that contains them.
        if let cr = agentConfig?.credentials {
            for m in mounts where Paths.isWithin(cr.host, m.host) || Paths.isWithin(m.host, cr.host) {
                bad("\(m.host) overlaps the agent's credentials directory \(cr.host)", hint: "tool runs never get credentials")
            }
        }
        if let wt = workspaceTarget { mounts += protectMounts(protect, workspace: wt) }

        let agentTools = agentConfig?.tools
        var limits = Defaults.toolLimits
        if let t = agentTools { limits = merge(t.limits, over: limits) }
        if let tc = toolConfig { limits = merge(tc.limits, over: limits) }
        if let v = o.memory { limits.memory = v }
        if let v = o.pids { limits.pids = v }
        if let v = o.cpu { limits.cpu = v }
        if let v = o.timeoutMs { limits.wallTimeMs = v }
        // The same rules as in tool.toml; 0 would mean "no limit" further down.
        if o.timeoutMs == 0 { bad("--timeout must be greater than zero", hint: "a tool run always has a time limit") }
        if o.memory == 0 { bad("--memory must be greater than zero") }
        if o.pids == 0 { bad("--pids must be greater than zero") }
        if let c = o.cpu, !(c > 0 && c <= 1024) { bad("--cpu \(c) must be a number of cores greater than 0 (e.g. 0.5 or 2)") }

        var mode = agentTools?.network ?? .none
        var allow = agentTools?.allow ?? agentConfig?.network.allow ?? []
        var resolvers = agentConfig?.network.resolvers ?? []
        var allowNonTLS443 = agentConfig?.network.allowNonTLS443 ?? false
        if let tc = toolConfig {
            mode = tc.network.mode
            allow = tc.network.allow
            resolvers = tc.network.resolvers
            allowNonTLS443 = tc.network.allowNonTLS443
        }
        if let m = o.network { mode = m }
        if !o.allow.isEmpty { allow = o.allow }
        if !o.resolvers.isEmpty { resolvers = o.resolvers }
        if mode == .egress && allow.isEmpty {
            bad("network egress for this tool run has an empty allowlist", hint: "pass --allow NAME (repeatable), or use --network none")
        }

        var cwd = o.cwd ?? toolConfig?.cwd ?? workspaceTarget ?? "/tmp"
        if let c = o.cwd {
            if let n = Paths.normalizeAbsolute(c) {
                if Paths.isWithin(n, "/proc") || Paths.isWithin(n, "/sys") {
                    bad("--cwd \(c) is inside /proc or /sys", hint: "a tool run starts in the workspace or /tmp (CVE-2024-21626)")
                }
                cwd = n
            } else {
                bad("--cwd '\(c)' must be an absolute path without '..'")
            }
        }
        var config = toolConfig?.env ?? [:]
        for (k, v) in o.env {
            if !AgentConfig.isValidEnvName(k) { bad("--env \(k)=...: '\(k)' is not a valid variable name") }
            if v.utf8.contains(0) { bad("--env \(k): value contains a NUL byte") }
            config[k] = v
        }
        if !issues.isEmpty { throw ConfigError(issues) }
        let name = "exec-" + runID
        let environment = buildEnvironment(config: config, pass: toolConfig?.envPass ?? [], host: hostEnvironment,
                                           home: workspaceTarget ?? "/tmp", network: mode)
        let profile = o.profile ?? toolConfig?.seccompProfile ?? agentTools?.profile ?? Defaults.toolProfile
        let user = o.user ?? toolConfig?.user ?? agentConfig?.user ?? Defaults.toolUser
        var spec = JailSpec(kind: .tool, agent: agentConfig?.name, name: name, argv: o.argv, cwd: cwd,
                        environment: environment, hostname: toolConfig?.hostname ?? agentConfig?.hostname ?? "tool",
                        user: user, rootfs: toolConfig?.rootfs ?? agentConfig?.rootfs ?? .host, mounts: mounts,
                        limits: limits, seccompProfile: profile,
                        network: Network(mode: mode, allow: allow, resolvers: resolvers, ingress: [],
                                         allowNonTLS443: allowNonTLS443), protect: protect)
        spec.seccompOnViolation = toolConfig?.seccompOnViolation
        spec.etcHidden = etcHidden
        return spec
    }
}

/// An upstream DNS server for the egress proxy: "203.0.113.53", "203.0.113.53:5353",
/// "2001:db8::53" or "[2001:db8::53]:5353".
public struct ResolverAddress: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public static func parse(_ text: String) -> ResolverAddress? {
        if let a = IPAddress(text) { return ResolverAddress(address: a, port: 53) }
        var host = Substring(text)
        var portText: Substring?
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            return nil
        }
        guard let a = IPAddress(String(host)), let pt = portText, let p = Units.parseStrictDecimal(String(pt)),
              p >= 1, p <= 65535 else { return nil }
        return ResolverAddress(address: a, port: UInt16(p))
    }

    public var description: String {
        if case .v6 = address { return "[\(address)]:\(port)" }
        return "\(address):\(port)"
    }
}

extension JailSpec.EnvironmentVariable {
    /// Name parts that mark a value as a secret: the output filter redacts such values,
    /// and a printed or recorded plan holds their hash instead.
    public static let secretNameParts = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "PRIVATE_KEY",
                                         "CREDENTIAL", "AUTH"]

    public var looksSecret: Bool {
        let upper = name.uppercased()
        return Self.secretNameParts.contains { upper.contains($0) }
    }
}
