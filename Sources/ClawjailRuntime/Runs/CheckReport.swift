import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailStore
import ClawjailSystem

/// The text `clawjail check` prints: the effective plan, after defaults.
public enum CheckReport {
    public static func loadAgentConfig(_ given: String, layout: HostLayout) throws(ClawjailError) -> AgentConfig {
        // Relative host paths in the file are relative to the file's directory, so the
        // file's own path must be absolute first.
        let path = Paths.normalizeAbsolute(AgentRun.absolutePath(given)) ?? given
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path, limit: 1 << 20) } catch {
            throw ClawjailError(.notFound, "cannot read \(path)", hint: error == .ENOENT ? "check the path" : nil, cause: error)
        }
        do {
            return try AgentConfig.parse(utf8: bytes, file: path, kind: .agent, stateDirectory: layout.stateDirectory)
        } catch {
            throw ClawjailError(.config, "invalid configuration:\n" + error.description)
        }
    }

    /// The plan `clawjail run` of this config would take on this host now: the agent's
    /// uid range when it has one, this host's cgroup layout and /proc, the profile's hash.
    /// Nothing is created.
    public static func plan(configPath: String, layout: HostLayout) throws(ClawjailError) -> (AgentConfig, JailSpec, LaunchPlan) {
        let config = try loadAgentConfig(configPath, layout: layout)
        let spec = JailSpec.forAgent(config, hostEnvironment: ProcessInfoLite.environment())
        let cgroup = (try? Cgroups.detect())?.facts
            ?? CgroupFacts(mode: .v2, location: "no usable cgroup hierarchy (clawjail doctor says why)")
        let facts = HostProbe.facts(for: spec, layout: layout, cgroup: cgroup)
        try checkBootFiles(spec, facts: facts, configPath: configPath)
        var ids: (base: UInt32, count: UInt32)?
        if FileSystem.exists(layout.stateDirectory + "/" + Store.databaseFileName),
           let store = try? Store.openReadOnly(directory: layout.stateDirectory),
           let range = try? store.uidRanges()[spec.name] {
            ids = (UInt32(range.base), UInt32(range.count))
        }
        let plan = LaunchPlan.make(spec, facts: facts, ids: ids, seccompContentHash: SeccompSetup.contentHash(spec, layout: layout))
        return (config, spec, plan)
    }

    /// A VM agent whose guest kernel or initramfs is missing or not the pinned file is
    /// refused here, before any plan is used: `check` reports it, and `run` never boots it.
    static func checkBootFiles(_ spec: JailSpec, facts: HostFacts, configPath: String) throws(ClawjailError) {
        guard let vm = spec.vm, let vmFacts = facts.vm else { return }
        let problems = vmFacts.bootProblems(vm) + vmShareProblems(spec)
        if !problems.isEmpty {
            throw ClawjailError(.config, "\(configPath): the VM of \(spec.name) cannot boot:\n  " + problems.joined(separator: "\n  "))
        }
    }

    /// A VM agent's credentials reach the guest as a virtiofs share, which serves a
    /// directory. (A [[mount]] of a single file gets a directory of its own: VMPlan.)
    static func vmShareProblems(_ spec: JailSpec) -> [String] {
        spec.mounts.filter { $0.role == .credentials }.compactMap { m in
            guard let st = try? FileSystem.stat(m.host, followSymlinks: true), !st.isDirectory else { return nil }
            return "[credentials] host = \"\(m.host)\" is a file; a VM guest gets the credentials as a virtiofs share, which serves a directory: "
                + "name the directory that holds it"
        }
    }

    /// `clawjail check --json`: the plan, one line of canonical JSON.
    public static func json(configPath: String, layout: HostLayout) throws(ClawjailError) -> String {
        try plan(configPath: configPath, layout: layout).2.jsonText + "\n"
    }

    public static func make(configPath: String, layout: HostLayout) throws(ClawjailError) -> String {
        let (config, spec, plan) = try plan(configPath: configPath, layout: layout)
        var out = render(spec, plan: plan, file: configPath)
        if let p = config.preset, let preset = Preset.all[p] {
            out += "  preset       \(p): \(preset.summary) (keys written in the file win)\n"
        }
        if !config.tools.limits.isEmpty || config.tools.profile != nil || config.tools.network != nil {
            let t = config.tools
            var parts: [String] = ["profile \(t.profile ?? Defaults.toolProfile)", "network \(t.network?.rawValue ?? "none")"]
            let l = JailSpec.merge(t.limits, over: Defaults.toolLimits)
            parts.append("memory \(Units.formatSize(l.memory))")
            parts.append("pids \(l.pids)")
            parts.append("wall time \(Units.formatDuration(l.wallTimeMs))")
            out += "  tools        " + parts.joined(separator: ", ") + "\n"
        }
        out += plan.stepsText
        for w in config.warnings { out += "warning: \(w)\n" }
        return out
    }

    public static func render(_ spec: JailSpec, plan: LaunchPlan, file: String) -> String {
        var out = "\(spec.kind.rawValue) \(spec.name)  (\(file))\n"
        func line(_ key: String, _ value: String) { out += "  " + key.padding(12) + " " + value + "\n" }
        line("command", spec.argv.map(shellQuote).joined(separator: " "))
        if let ids = plan.ids {
            line("user", "\(spec.user) inside -> \(ids.userOutside) outside (uids \(ids.base)-\(ids.base + ids.count - 1))")
        } else {
            line("user", "\(spec.user) inside -> its agent's own unprivileged range (allocated at the first run)")
        }
        line("cwd", spec.cwd)
        line("hostname", spec.hostname)
        switch spec.rootfs {
        case .host:
            line("rootfs", "host: /usr, /bin, /lib*, /sbin read-only; new /proc, minimal /dev, tmpfs /tmp")
            line("etc", "the host's /etc read-only, with clawjail's own " + EtcPolicy.generated.map(\.name).joined(separator: ", "))
        case .directory(let p):
            line("rootfs", "\(p) read-only; new /proc, minimal /dev, tmpfs /tmp")
            line("etc", "\(p)/etc read-only, with clawjail's own hosts, hostname, resolv.conf")
        }
        let defaults = Set(EtcPolicy.hidden.map(\.path))
        var hidden = "\(spec.etcHidden.count) entries (secrets, the host's users and administration; rootfs/README.md lists them)"
        let added = spec.etcHidden.filter { !defaults.contains($0) }
        let shown = defaults.subtracting(spec.etcHidden).sorted()
        if !added.isEmpty { hidden += "; etc_hide: " + added.joined(separator: ", ") }
        if !shown.isEmpty { hidden += "; shown by etc_show: " + shown.joined(separator: ", ") }
        line("etc hidden", hidden)
        // The configured mounts as the plan attaches them, with the flags it uses.
        let attached = plan.mounts.compactMap { step -> (MountStep, AttachSource, MountOptions)? in
            guard case .attach(let source, let options) = step.action else { return nil }
            if case .rootfsEntry = source { return nil }
            return (step, source, options)
        }
        if attached.isEmpty {
            line("mounts", "none")
        } else {
            out += "  mounts\n"
            for (step, source, options) in attached {
                let from: String
                let role: String
                switch source {
                case .hostPath(let p, let r, _, let give, _):
                    from = p
                    role = r.rawValue + (give != nil ? ", given to the jail's uid" : "")
                case .credentials(let p):
                    from = p
                    role = "credentials: 0700 dir, 0600 files"
                case .protected(let ws, let rel, _, let pin):
                    from = ws + "/" + rel
                    role = pin ? "pinned" : "protected"
                case .rootfsEntry(let root, let name):
                    from = root + "/" + name
                    role = "rootfs"
                }
                out += "    " + ("/" + step.target).padding(24) + " <- " + from + "  " + options.names.joined(separator: ",")
                    + " (" + role + ")\n"
            }
        }
        let l = spec.limits
        var limits = ["memory \(Units.formatSize(l.memory)) (no swap)", "pids \(l.pids)"]
        limits.append(l.cpu.map { "cpu \(formatCores($0)) cores" } ?? "cpu unlimited")
        if let w = l.ioWeight { limits.append("io weight \(w)") }
        limits.append("tmp \(Units.formatSize(l.tmp))")
        limits.append("open files \(l.openFiles)")
        if let f = l.fileSize { limits.append("file size \(Units.formatSize(f))") }
        limits.append("wall time " + (l.wallTimeMs == 0 ? "none" : Units.formatDuration(l.wallTimeMs)))
        line("limits", limits.joined(separator: ", "))
        line("seccomp", spec.seccompProfile + (plan.seccomp.contentHash.map { " (sha256 \($0.prefix(16))…)" } ?? ""))
        line("cgroup", plan.cgroup.location)
        line("sandboxes", "no user namespaces inside: the jail is the sandbox; run Chromium with --no-sandbox")
        switch spec.network.mode {
        case .none: line("network", "none (loopback only)")
        case .egress:
            line("network", "egress through the clawjail proxy to: " + spec.network.allow.map(\.description).joined(separator: ", "))
            if !spec.network.resolvers.isEmpty { line("resolvers", spec.network.resolvers.joined(separator: ", ")) }
            if spec.network.allowNonTLS443 {
                line("non-TLS 443", "CONNECT tunnels to port 443 may carry protocols other than TLS (allow_non_tls_443)")
            }
        }
        for i in spec.network.ingress {
            line("ingress", "\(i.socket) (mode \(String(i.socketMode, radix: 8))) -> port \(i.port) in the jail")
        }
        line("environment", spec.environment.map { "\($0.name)=\($0.value)" }.joined(separator: " "))
        return out
    }

    public static func formatCores(_ c: Double) -> String {
        c == c.rounded() ? String(Int(c)) : String(c)
    }

    static func shellQuote(_ s: String) -> String {
        if !s.isEmpty && s.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || "/._-=:,+@".utf8.contains($0) }) {
            return s
        }
        return "'" + s.replacingAll("'", with: "'\\''") + "'"
    }
}

extension AgentConfig.Limits {
    var isEmpty: Bool { self == AgentConfig.Limits() }
}
