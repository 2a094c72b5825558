import ClawjailParsers

/// agent.toml (and tool.toml), parsed strictly and validated. Nothing here touches the
/// filesystem: host paths are checked lexically; the runtime opens them later without
/// following symlinks.
public struct AgentConfig: Sendable {
    public enum Kind: String, Sendable { case agent, tool }

    public enum Rootfs: Sendable, Hashable {
        case host
        case directory(String)
    }

    public struct Bind: Sendable, Hashable {
        public var host: String
        public var path: String
        public var writable: Bool
        public var location: SourceLocation?
        public init(host: String, path: String, writable: Bool, location: SourceLocation? = nil) {
            self.host = host
            self.path = path
            self.writable = writable
            self.location = location
        }
    }

    /// Every field optional: nil means "the default for this kind of run".
    public struct Limits: Sendable, Hashable {
        public var memory: UInt64?
        public var pids: UInt64?
        public var cpu: Double?
        public var ioWeight: UInt64?
        public var tmp: UInt64?
        public var openFiles: UInt64?
        public var fileSize: UInt64?
        public var wallTimeMs: UInt64?
        public init() {}
    }

    public enum NetworkMode: String, Sendable, Hashable { case none, egress }

    public struct Network: Sendable, Hashable {
        public var mode: NetworkMode = .none
        public var allow: [AllowRule] = []
        /// Upstream DNS servers the egress proxy uses ("IP" or "IP:PORT"); empty means
        /// the host's /etc/resolv.conf.
        public var resolvers: [String] = []
        /// `allow_non_tls_443`: CONNECT tunnels to port 443 may start with
        /// something other than a TLS ClientHello (one that does start as TLS
        /// is still checked against the CONNECT host).
        public var allowNonTLS443 = false
        public init() {}
    }

    public struct Ingress: Sendable, Hashable {
        public var port: UInt16
        public var socket: String
        public var socketMode: UInt32
        public var socketGroup: UInt32?
        public var location: SourceLocation?
    }

    /// `isolation`: a namespace jail on the host's kernel, or the same jail inside a
    /// guest kernel of its own (the micro-VM backend, design/vm-backend.md).
    public enum Isolation: String, Sendable, Hashable { case namespace, vm }

    /// `[vm] accel`: hardware virtualisation, or qemu's software emulation (TCG), which
    /// is not a security boundary.
    public enum Accelerator: String, Sendable, Hashable { case kvm, tcg }

    /// `[vm]`, only with `isolation = "vm"`. nil fields take their defaults in
    /// JailSpec.forAgent (vcpus, memory) or were filled in by the decoder (paths).
    public struct VM: Sendable, Hashable {
        public var kernel: String
        public var initrd: String
        /// Lower-case hex; nil: not pinned (the probed hash is still recorded).
        public var kernelSHA256: String?
        public var initrdSHA256: String?
        public var vcpus: UInt32?
        public var memory: UInt64?
        public var accel: Accelerator = .kvm
        public var allowTCG = false
        public var location: SourceLocation?
        public init(kernel: String, initrd: String) {
            self.kernel = kernel
            self.initrd = initrd
        }

        /// The guest kernel and initramfs when [vm] names none: where `scripts/setup`
        /// puts them, under the state directory.
        /// qemu's microvm takes more, but a jail's cgroup and cpu quota make more than
        /// this pointless.
        public static let maxVCPUs: UInt32 = 64
        /// Below this a guest kernel and clawjail's init do not come up.
        public static let minMemory: UInt64 = 64 << 20

        public static func defaultKernel(stateDirectory: String) -> String { stateDirectory + "/vm/vmlinuz" }
        public static func defaultInitrd(stateDirectory: String) -> String { stateDirectory + "/vm/initramfs.cpio.gz" }
    }

    public struct Tools: Sendable, Hashable {
        public var profile: String?
        public var network: NetworkMode?
        public var allow: [AllowRule]?
        public var limits = Limits()
        public init() {}
    }

    public var file: String
    public var kind: Kind
    public var name: String?
    public var command: [String] = []
    public var cwd: String?
    public var env: [String: String] = [:]
    public var envPass: [String] = []
    public var hostname: String?
    public var user: UInt32?
    public var allowRootInside = false
    public var rootfs: Rootfs = .host
    /// `[rootfs] etc_show` / `etc_hide`: paths relative to /etc, normalised (EtcPolicy).
    public var etcShow: [String] = []
    public var etcHide: [String] = []
    public var workspace: Bind?
    public var mounts: [Bind] = []
    public var credentials: Bind?
    public var protect: [String] = []
    public var limits = Limits()
    /// `preset = "openclaw"`: defaults for that runtime (see Presets.swift).
    public var preset: String?
    public var seccompProfile: String?
    /// Overrides the profile's own on_violation: "errno", "log" or "kill".
    public var seccompOnViolation: String?
    public var network = Network()
    public var ingress: [Ingress] = []
    public var tools = Tools()
    public var isolation: Isolation = .namespace
    /// Set exactly when isolation is .vm (defaults filled in when [vm] is absent).
    public var vm: VM?
    public var warnings: [ConfigIssue] = []

    public init(file: String, kind: Kind) {
        self.file = file
        self.kind = kind
    }

    public static let namePattern = "[a-z0-9][a-z0-9-]{0,30}"

    /// True for names matching `namePattern`: they name cgroups, state rows and files.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...31).contains(bytes.count) else { return false }
        func ok(_ b: UInt8, first: Bool) -> Bool {
            (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || (!first && b == 0x2d)
        }
        return ok(bytes[0], first: true) && bytes.dropFirst().allSatisfy { ok($0, first: false) }
    }

    static func isValidEnvName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first else { return false }
        func alpha(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x5f }
        return alpha(first) && bytes.allSatisfy { alpha($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    static func isValidHostname(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            let l = Array(label.utf8)
            guard (1...63).contains(l.count), l.first != 0x2d, l.last != 0x2d else { return false }
            guard l.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d })
            else { return false }
        }
        return true
    }
}

// MARK: - Parsing

extension AgentConfig {
    /// Parses and validates a config file's text. `file` is the path as the user gave it
    /// (used in messages, and its directory anchors relative host paths).
    public static func parse(_ text: String, file: String, kind: Kind,
                             stateDirectory: String = "/var/lib/clawjail") throws(ConfigError) -> AgentConfig {
        let root: TOMLTable
        do {
            root = try TOML.parse(text)
        } catch {
            throw ConfigError([ConfigIssue(file: file, location: error.location, message: error.message)])
        }
        return try decode(root, file: file, kind: kind, stateDirectory: stateDirectory)
    }

    /// Parses and validates a config file's bytes as read from disk: bytes that are not
    /// UTF-8 are an error at their line and column, as TOML 1.0 requires.
    public static func parse(utf8 bytes: [UInt8], file: String, kind: Kind,
                             stateDirectory: String = "/var/lib/clawjail") throws(ConfigError) -> AgentConfig {
        let root: TOMLTable
        do {
            root = try TOML.parse(utf8: bytes)
        } catch {
            throw ConfigError([ConfigIssue(file: file, location: error.location, message: error.message)])
        }
        return try decode(root, file: file, kind: kind, stateDirectory: stateDirectory)
    }

    private static func decode(_ root: TOMLTable, file: String, kind: Kind,
                               stateDirectory: String) throws(ConfigError) -> AgentConfig {
        let diagnostics = Diagnostics(file: file)
        var config = AgentConfig(file: file, kind: kind)
        let directory = Paths.dirname(file.hasPrefix("/") ? file : "/" + file)
        var decoder = ConfigDecoder(diagnostics: diagnostics, configDirectory: directory, stateDirectory: stateDirectory)
        decoder.decode(root, into: &config)
        config.warnings = diagnostics.warnings
        if !diagnostics.issues.isEmpty { throw ConfigError(diagnostics.issues) }
        return config
    }
}

struct ConfigDecoder {
    let diagnostics: Diagnostics
    let configDirectory: String
    let stateDirectory: String

    init(diagnostics: Diagnostics, configDirectory: String, stateDirectory: String) {
        self.diagnostics = diagnostics
        self.configDirectory = configDirectory
        self.stateDirectory = stateDirectory
    }

    mutating func decode(_ root: TOMLTable, into c: inout AgentConfig) {
        var top = TableReader(root, context: "the top level", diagnostics: diagnostics)
        let isAgent = c.kind == .agent

        if isAgent {
            if let (name, loc) = top.string("name") {
                if AgentConfig.isValidName(name) { c.name = name } else {
                    diagnostics.error(loc, "name '\(name)' is not valid",
                                      hint: "use 1-31 lower-case letters, digits and '-', starting with a letter or digit (\(AgentConfig.namePattern))")
                }
            } else if root["name"] == nil {
                diagnostics.error(nil, "missing 'name'", hint: "add e.g. name = \"alice\" at the top of the file")
            }
            if let (items, loc) = top.stringArray("command") {
                if items.isEmpty {
                    diagnostics.error(loc, "'command' is empty", hint: "write e.g. command = [\"/usr/bin/node\", \"gateway.js\"]")
                } else if items[0].0.isEmpty {
                    diagnostics.error(items[0].1, "'command' starts with an empty program name")
                } else if let (_, nulAt) = items.first(where: { $0.0.utf8.contains(0) }) {
                    // execve would silently cut the argument at the NUL.
                    diagnostics.error(nulAt, "'command' contains a NUL byte")
                } else {
                    c.command = items.map(\.0)
                }
            } else if root["command"] == nil {
                diagnostics.error(nil, "missing 'command'", hint: "write e.g. command = [\"/usr/bin/python3\", \"agent.py\"]")
            }
        }

        if let (cwd, loc) = top.string("cwd") {
            if let n = Paths.normalizeAbsolute(cwd) {
                if Paths.isWithin(n, "/proc") || Paths.isWithin(n, "/sys") {
                    diagnostics.error(loc, "cwd '\(cwd)' is inside /proc or /sys", hint: "start in the workspace or /tmp (CVE-2024-21626)")
                } else {
                    c.cwd = n
                }
            } else {
                diagnostics.error(loc, "cwd '\(cwd)' must be an absolute path without '..'")
            }
        }

        if let env = top.table("env") {
            for entry in env.entries {
                guard AgentConfig.isValidEnvName(entry.key) else {
                    diagnostics.error(entry.keyLocation, "'\(entry.key)' is not a valid environment variable name")
                    continue
                }
                guard case .string(let v) = entry.node.value else {
                    diagnostics.error(entry.node.location, "env.\(entry.key) must be a string, not \(entry.node.typeName)")
                    continue
                }
                if v.utf8.contains(0) {
                    diagnostics.error(entry.node.location, "env.\(entry.key) contains a NUL byte")
                    continue
                }
                c.env[entry.key] = v
            }
        }
        if let (names, _) = top.stringArray("env_pass") {
            for (n, loc) in names {
                if AgentConfig.isValidEnvName(n) { c.envPass.append(n) } else {
                    diagnostics.error(loc, "'\(n)' in env_pass is not a valid environment variable name")
                }
            }
        }
        if let (h, loc) = top.string("hostname") {
            if AgentConfig.isValidHostname(h) { c.hostname = h } else {
                diagnostics.error(loc, "hostname '\(h)' is not a valid host name (letters, digits, '-' and '.')")
            }
        }
        let allowRoot = top.bool("allow_root_inside")?.value ?? false
        c.allowRootInside = allowRoot
        if let n = top.node("user") { c.user = decodeUser(n, allowRoot: allowRoot) }

        if let t = top.table("rootfs") { decodeRootfs(t, into: &c) }
        if let t = top.table("workspace") { c.workspace = decodeBind(t, context: "[workspace]", defaultPath: "/workspace", writableDefault: true, allowMode: false) }
        for (i, t) in top.tableArray("mount").enumerated() {
            if let b = decodeBind(t, context: "[[mount]] #\(i + 1)", defaultPath: nil, writableDefault: false, allowMode: true) {
                c.mounts.append(b)
            }
        }
        if isAgent, let t = top.table("credentials") {
            // Read-only inside, but the supervisor chowns and chmods it on the host, so
            // it gets the writable checks (no /etc, no /home).
            c.credentials = decodeBind(t, context: "[credentials]", defaultPath: "/run/credentials", writableDefault: false, allowMode: false,
                                       ownedByAgent: true)
        }
        if let t = top.table("protect") { c.protect = decodeProtect(t) }
        if let t = top.table("limits") { c.limits = decodeLimits(t, context: "[limits]", allowZeroWallTime: isAgent) }
        if let t = top.table("seccomp") {
            var r = TableReader(t, context: "[seccomp]", diagnostics: diagnostics)
            if let (p, loc) = r.string("profile") {
                if p.isEmpty { diagnostics.error(loc, "seccomp.profile is empty") } else { c.seccompProfile = p }
            }
            if let (v, loc) = r.string("on_violation") {
                if ["errno", "log", "kill"].contains(v) { c.seccompOnViolation = v } else {
                    diagnostics.error(loc, "seccomp.on_violation '\(v)' must be \"errno\", \"log\" or \"kill\"",
                                      hint: "errno denies silently (as Docker does), log lets the call through and reports it, kill kills the process and reports it")
                }
            }
            r.finish()
        }
        if let t = top.table("network") { c.network = decodeNetwork(t) }
        if isAgent {
            for (i, t) in top.tableArray("ingress").enumerated() {
                if let ing = decodeIngress(t, index: i + 1) { c.ingress.append(ing) }
            }
            if let t = top.table("tools") { c.tools = decodeTools(t) }
            // Agents only: a tool run of a VM agent runs inside that agent's guest.
            decodeIsolation(&top, root: root, into: &c)
        }
        if isAgent, let (p, loc) = top.string("preset") {
            if let preset = Preset.all[p] {
                c.preset = p
                apply(preset, explicit: Set(root.keys), to: &c, location: loc)
            } else {
                diagnostics.error(loc, "preset '\(p)' is not known",
                                  hint: "known presets: " + Preset.all.keys.sorted().joined(separator: ", "))
            }
        }
        top.finish()
        crossCheck(&c)
    }

    private func decodeUser(_ n: TOMLNode, allowRoot: Bool) -> UInt32? {
        let value: UInt64
        switch n.value {
        case .integer(let i):
            guard i >= 0 else {
                diagnostics.error(n.location, "user \(i) is negative", hint: "write a uid between 1 and 65534")
                return nil
            }
            value = UInt64(i)
        case .string(let s):
            guard let v = Units.parseStrictDecimal(s) else {
                diagnostics.error(n.location, "user '\(s)' is not a decimal uid", hint: "write a uid between 1 and 65534, e.g. user = 1000")
                return nil
            }
            value = v
        default:
            diagnostics.error(n.location, "user must be a uid (an integer), not \(n.typeName)")
            return nil
        }
        if value == 0 && !allowRoot {
            diagnostics.error(n.location, "user 0 (root inside the jail) needs allow_root_inside = true",
                              hint: "run as an unprivileged uid such as 1000; root inside is still unprivileged outside, but it is rarely needed")
            return nil
        }
        guard value <= 65534 else {
            diagnostics.error(n.location, "user \(value) is out of range", hint: "the jail maps uids 0-65535; use 1-65534")
            return nil
        }
        return UInt32(value)
    }

    private func decodeRootfs(_ t: TOMLTable, into c: inout AgentConfig) {
        var r = TableReader(t, context: "[rootfs]", diagnostics: diagnostics)
        let base = r.string("base")
        let path = r.string("path")
        let show = decodeEtcList(r.stringArray("etc_show"), key: "etc_show", problem: EtcPolicy.showProblem)
        let hide = decodeEtcList(r.stringArray("etc_hide"), key: "etc_hide", problem: EtcPolicy.hideProblem)
        for (path, location) in hide where show.contains(where: { $0.path == path }) {
            diagnostics.error(location, "'\(path)' is in both etc_show and etc_hide", hint: "keep one of them")
        }
        c.etcShow = show.map(\.path)
        c.etcHide = hide.map(\.path)
        r.finish()
        if let base, base.value != "host" {
            diagnostics.error(base.location, "rootfs.base '\(base.value)' is not known", hint: "use base = \"host\", or path = \"/var/lib/clawjail/rootfs/NAME\"")
        }
        if let (p, loc) = path {
            if base != nil {
                diagnostics.error(loc, "rootfs has both 'base' and 'path'", hint: "keep one of them")
            }
            guard let host = Paths.resolveHost(p, relativeTo: configDirectory) else {
                diagnostics.error(loc, "rootfs.path '\(p)' contains '..' or is not a path")
                return
            }
            if let problem = Paths.hostProblem(host, writable: false, stateDirectory: stateDirectory),
               !Paths.isWithin(host, stateDirectory + "/rootfs") {
                diagnostics.error(loc, "rootfs.path: \(problem)")
                return
            }
            c.rootfs = .directory(host)
        }
    }

    /// One of [rootfs]'s /etc lists: normalised paths, each checked by `problem`.
    private func decodeEtcList(_ list: (value: [(String, SourceLocation)], location: SourceLocation)?, key: String,
                               problem: (String) -> (message: String, hint: String)?) -> [(path: String, location: SourceLocation)] {
        guard let list else { return [] }
        var out: [(path: String, location: SourceLocation)] = []
        for (text, location) in list.value {
            guard let path = EtcPolicy.normalize(text) else {
                diagnostics.error(location, "\(key) entry '\(text)' is not a path inside /etc",
                                  hint: "write a name such as \"fonts\" or \"ssl/certs\": relative to /etc, without '..'")
                continue
            }
            if out.contains(where: { $0.path == path }) {
                diagnostics.error(location, "\(key) names '\(path)' twice")
                continue
            }
            if let (message, hint) = problem(path) {
                diagnostics.error(location, "\(key): \(message)", hint: hint)
                continue
            }
            out.append((path, location))
        }
        return out
    }

    private func decodeBind(_ t: TOMLTable, context: String, defaultPath: String?, writableDefault: Bool,
                            allowMode: Bool, ownedByAgent: Bool = false) -> AgentConfig.Bind? {
        var r = TableReader(t, context: context, diagnostics: diagnostics)
        let host = r.string("host")
        let path = r.string("path")
        var writable = writableDefault
        if allowMode, let (m, loc) = r.string("mode") {
            switch m {
            case "ro": writable = false
            case "rw": writable = true
            default: diagnostics.error(loc, "mode '\(m)' in \(context) must be \"ro\" or \"rw\"")
            }
        }
        r.finish()
        guard let (h, hloc) = host else {
            // A present but bad value has been reported already.
            if t["host"] == nil { diagnostics.error(t.location, "\(context) needs 'host', the directory on the host") }
            return nil
        }
        guard let hostPath = Paths.resolveHost(h, relativeTo: configDirectory) else {
            diagnostics.error(hloc, "host '\(h)' in \(context) contains '..'",
                              hint: "write the real absolute path; '..' is refused so that a path cannot climb out of its parent")
            return nil
        }
        if let problem = Paths.hostProblem(hostPath, writable: writable || ownedByAgent, stateDirectory: stateDirectory) {
            diagnostics.error(hloc, "\(context) host: \(problem)",
                              hint: writable || ownedByAgent ? "give the agent its own directory, e.g. /srv/clawjail/NAME/workspace" : "mount a narrower directory")
            return nil
        }
        let target: String
        let tloc: SourceLocation
        if let (p, loc) = path {
            target = p
            tloc = loc
        } else if t["path"] != nil {
            return nil      // a bad value, reported already
        } else if let d = defaultPath {
            target = d
            tloc = t.location
        } else {
            diagnostics.error(t.location, "\(context) needs 'path', where it appears inside the jail")
            return nil
        }
        if let problem = Paths.targetProblem(target) {
            diagnostics.error(tloc, "\(context) path: \(problem)", hint: "choose a path such as /workspace, /opt/NAME or /data")
            return nil
        }
        guard let normalized = Paths.normalizeAbsolute(target) else { return nil }
        return AgentConfig.Bind(host: hostPath, path: normalized, writable: writable, location: t.location)
    }

    private mutating func decodeIsolation(_ top: inout TableReader, root: TOMLTable, into c: inout AgentConfig) {
        var isolationValid = true
        if let (v, loc) = top.string("isolation") {
            if let i = AgentConfig.Isolation(rawValue: v) { c.isolation = i } else {
                isolationValid = false
                diagnostics.error(loc, "isolation '\(v)' must be \"namespace\" or \"vm\"",
                                  hint: "namespace (the default) shares the host's kernel; vm runs the agent under a guest kernel of its own")
            }
        }
        let table = top.table("vm")
        if let t = table, c.isolation != .vm {
            // Reading it anyway reports its own mistakes too, in the same check.
            _ = decodeVM(t)
            if isolationValid && root["isolation"].map({ if case .string = $0.value { true } else { false } }) ?? true {
                diagnostics.error(t.location, "[vm] is set but isolation is not \"vm\"",
                                  hint: "add isolation = \"vm\" at the top level to run this agent in a micro-VM, or remove [vm]")
            }
            return
        }
        guard c.isolation == .vm else { return }
        if let t = table {
            c.vm = decodeVM(t)
        } else {
            c.vm = AgentConfig.VM(kernel: AgentConfig.VM.defaultKernel(stateDirectory: stateDirectory),
                                  initrd: AgentConfig.VM.defaultInitrd(stateDirectory: stateDirectory))
        }
    }

    private mutating func decodeVM(_ t: TOMLTable) -> AgentConfig.VM {
        var r = TableReader(t, context: "[vm]", diagnostics: diagnostics)
        var vm = AgentConfig.VM(kernel: AgentConfig.VM.defaultKernel(stateDirectory: stateDirectory),
                                initrd: AgentConfig.VM.defaultInitrd(stateDirectory: stateDirectory))
        vm.location = t.location
        if let p = bootFile(&r, "kernel") { vm.kernel = p }
        if let p = bootFile(&r, "initrd") { vm.initrd = p }
        vm.kernelSHA256 = sha256Pin(&r, "kernel_sha256")
        vm.initrdSHA256 = sha256Pin(&r, "initrd_sha256")
        if let (n, loc) = r.integer("vcpus") {
            if (1...Int64(AgentConfig.VM.maxVCPUs)).contains(n) { vm.vcpus = UInt32(n) } else {
                diagnostics.error(loc, "vcpus = \(n) is out of range (1-\(AgentConfig.VM.maxVCPUs))",
                                  hint: "leave it out to take limits.cpu, rounded up")
            }
        }
        if let memory = size(&r, "memory") {
            if memory < AgentConfig.VM.minMemory {
                diagnostics.error(r.table["memory"]?.location, "vm.memory = \(Units.formatSize(memory)) is too small for a guest",
                                  hint: "give the guest at least \(Units.formatSize(AgentConfig.VM.minMemory))")
            } else if memory % (1 << 20) != 0 {
                diagnostics.error(r.table["memory"]?.location, "vm.memory = \(memory) is not a whole number of MiB",
                                  hint: "write e.g. \"512M\" or \"2G\": qemu sizes guest RAM in MiB")
            } else {
                vm.memory = memory
            }
        }
        var accelLocation: SourceLocation?
        if let (a, loc) = r.string("accel") {
            accelLocation = loc
            if let accel = AgentConfig.Accelerator(rawValue: a) { vm.accel = accel } else {
                diagnostics.error(loc, "vm.accel '\(a)' must be \"kvm\" or \"tcg\"")
            }
        }
        if let (b, _) = r.bool("allow_tcg") { vm.allowTCG = b }
        r.finish()
        if vm.accel == .tcg && !vm.allowTCG {
            diagnostics.error(accelLocation, "accel = \"tcg\" is software emulation, not a security boundary",
                              hint: "qemu's TCG is not meant to contain a hostile guest (qemu's security notes say so); use accel = \"kvm\", or write allow_tcg = true in [vm] to accept a VM that is for testing only")
        }
        return vm
    }

    /// A guest kernel or initramfs path: absolute after resolution, read by the VMM's
    /// jail only (under the state directory's vm/ is allowed, like rootfs/).
    private func bootFile(_ r: inout TableReader, _ key: String) -> String? {
        guard let (p, loc) = r.string(key) else { return nil }
        guard let host = Paths.resolveHost(p, relativeTo: configDirectory), host != "/" else {
            diagnostics.error(loc, "vm.\(key) '\(p)' contains '..' or is not a file path",
                              hint: "write the absolute path of the file, e.g. \(stateDirectory)/vm/\(key == "kernel" ? "vmlinuz" : "initramfs.cpio.gz")")
            return nil
        }
        if let problem = Paths.hostProblem(host, writable: false, stateDirectory: stateDirectory),
           !Paths.isWithin(host, stateDirectory + "/vm") {
            diagnostics.error(loc, "vm.\(key): \(problem)")
            return nil
        }
        return host
    }

    private func sha256Pin(_ r: inout TableReader, _ key: String) -> String? {
        guard let (v, loc) = r.string(key) else { return nil }
        let lower = v.lowercased()
        guard lower.utf8.count == 64, lower.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            diagnostics.error(loc, "vm.\(key) must be a SHA-256 as 64 hex digits",
                              hint: "write the output of sha256sum FILE, e.g. \(key) = \"\(String(repeating: "0", count: 8))…\" (all 64 digits)")
            return nil
        }
        return lower
    }

    private func decodeProtect(_ t: TOMLTable) -> [String] {
        var r = TableReader(t, context: "[protect]", diagnostics: diagnostics)
        var out: [String] = []
        if let (items, _) = r.stringArray("paths") {
            for (p, loc) in items {
                guard let n = Paths.normalizeRelative(p) else {
                    diagnostics.error(loc, "protect path '\(p)' must be relative to the workspace, without '..'",
                                      hint: "write e.g. \"SOUL.md\" or \"skills/\"")
                    continue
                }
                // A trailing slash marks a directory that is created when missing.
                out.append(p.hasSuffix("/") ? n + "/" : n)
            }
        }
        r.finish()
        return out
    }

    mutating func decodeLimits(_ t: TOMLTable, context: String, allowZeroWallTime: Bool) -> AgentConfig.Limits {
        var r = TableReader(t, context: context, diagnostics: diagnostics)
        var l = AgentConfig.Limits()
        l.memory = size(&r, "memory")
        l.tmp = size(&r, "tmp")
        l.fileSize = size(&r, "file_size")
        l.pids = count(&r, "pids", range: 1...4_194_304)
        l.openFiles = count(&r, "open_files", range: 16...1_048_576)
        l.ioWeight = count(&r, "io_weight", range: 1...10_000)
        if let (cpu, loc) = r.number("cpu") {
            if cpu.isNaN || cpu <= 0 || cpu > 1024 {
                diagnostics.error(loc, "cpu = \(cpu) must be a number of cores greater than 0 (e.g. 0.5 or 2)")
            } else {
                l.cpu = cpu
            }
        }
        if let n = r.node("wall_time") {
            l.wallTimeMs = duration(n, key: "wall_time", allowZero: allowZeroWallTime)
        }
        r.finish()
        return l
    }

    private func size(_ r: inout TableReader, _ key: String) -> UInt64? {
        guard let n = r.node(key) else { return nil }
        let text: String
        switch n.value {
        case .string(let s): text = s
        case .integer(let i): text = i < 0 ? "-\(i.magnitude)" : String(i)
        default:
            diagnostics.error(n.location, "\(key) must be a size such as \"512M\" or a number of bytes, not \(n.typeName)")
            return nil
        }
        do {
            return try Units.parseSize(text)
        } catch {
            diagnostics.error(n.location, "\(key) = \(text): \(error)", hint: "write e.g. \"256M\", \"2G\" or a number of bytes")
            return nil
        }
    }

    private func count(_ r: inout TableReader, _ key: String, range: ClosedRange<UInt64>) -> UInt64? {
        guard let (v, loc) = r.integer(key) else { return nil }
        guard v > 0 else {
            diagnostics.error(loc, "\(key) = \(v) must be greater than zero")
            return nil
        }
        guard range.contains(UInt64(v)) else {
            diagnostics.error(loc, "\(key) = \(v) is out of range (\(range.lowerBound)-\(range.upperBound))")
            return nil
        }
        return UInt64(v)
    }

    private func duration(_ n: TOMLNode, key: String, allowZero: Bool) -> UInt64? {
        let text: String
        switch n.value {
        case .string(let s): text = s
        case .integer(let i) where i == 0: text = "0"
        case .integer(let i):
            diagnostics.error(n.location, "\(key) = \(i) has no unit", hint: "write e.g. \"\(i)s\" or \"\(i)m\"")
            return nil
        default:
            diagnostics.error(n.location, "\(key) must be a duration such as \"10m\", not \(n.typeName)")
            return nil
        }
        do {
            return try Units.parseDuration(text, allowZero: allowZero)
        } catch {
            diagnostics.error(n.location, "\(key) = \"\(text)\": \(error)", hint: "write e.g. \"30s\", \"10m\" or \"1h30m\"\(allowZero ? "; \"0\" means no limit" : "")")
            return nil
        }
    }

    private func decodeNetwork(_ t: TOMLTable) -> AgentConfig.Network {
        var r = TableReader(t, context: "[network]", diagnostics: diagnostics)
        var n = AgentConfig.Network()
        if let (m, loc) = r.string("mode") {
            if let mode = AgentConfig.NetworkMode(rawValue: m) { n.mode = mode } else {
                diagnostics.error(loc, "network.mode '\(m)' must be \"none\" or \"egress\"")
            }
        }
        if let (items, loc) = r.stringArray("allow") {
            n.allow = allowRules(items)
            if n.mode == .none && !items.isEmpty {
                diagnostics.warn(loc, "network.allow is ignored while mode = \"none\"", hint: "set mode = \"egress\" to use it")
            }
        }
        if let (items, _) = r.stringArray("resolvers") {
            for (s, loc) in items {
                if ResolverAddress.parse(s) == nil {
                    diagnostics.error(loc, "resolver '\(s)' must be an IP address, optionally with :PORT")
                } else {
                    n.resolvers.append(s)
                }
            }
        }
        if let (b, loc) = r.bool("allow_non_tls_443") {
            n.allowNonTLS443 = b
            if n.mode == .none && b {
                diagnostics.warn(loc, "network.allow_non_tls_443 is ignored while mode = \"none\"",
                                 hint: "set mode = \"egress\" to use it")
            }
        }
        r.finish()
        if n.mode == .egress && n.allow.isEmpty {
            diagnostics.warn(t.location, "network.mode = \"egress\" with an empty allowlist reaches nothing",
                             hint: "list the names the agent needs, e.g. allow = [\"api.anthropic.com\"]")
        }
        return n
    }

    private func allowRules(_ items: [(String, SourceLocation)]) -> [AllowRule] {
        var rules: [AllowRule] = []
        for (s, loc) in items {
            switch AllowRule.parse(s) {
            case .success(let rule):
                if rules.contains(rule) {
                    diagnostics.warn(loc, "'\(s)' is listed twice in the allowlist")
                } else {
                    rules.append(rule)
                }
            case .failure(let e):
                diagnostics.error(loc, e.description)
            }
        }
        return rules
    }

    private func decodeIngress(_ t: TOMLTable, index: Int) -> AgentConfig.Ingress? {
        let context = "[[ingress]] #\(index)"
        var r = TableReader(t, context: context, diagnostics: diagnostics)
        let port = r.integer("port")
        let socket = r.string("socket")
        let mode = r.string("socket_mode")
        let group = r.integer("socket_group")
        r.finish()
        guard let (p, ploc) = port else {
            if t["port"] == nil { diagnostics.error(t.location, "\(context) needs 'port', the port the agent's server listens on inside the jail") }
            return nil
        }
        guard (1...65535).contains(p) else {
            diagnostics.error(ploc, "port \(p) is out of range (1-65535)")
            return nil
        }
        guard let (s, sloc) = socket else {
            if t["socket"] == nil { diagnostics.error(t.location, "\(context) needs 'socket', the Unix socket path on the host") }
            return nil
        }
        guard let sock = Paths.resolveHost(s, relativeTo: configDirectory), sock != "/" else {
            diagnostics.error(sloc, "socket '\(s)' must be an absolute path without '..'")
            return nil
        }
        if sock.utf8.count > 107 {
            diagnostics.error(sloc, "socket path is \(sock.utf8.count) bytes; Unix socket paths are limited to 107")
            return nil
        }
        var modeBits: UInt32 = 0o600
        if let (m, mloc) = mode {
            // Digits only: UInt32(_:radix:) would also take a sign ("+660").
            guard m.count >= 3, m.count <= 4, m.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x37 }),
                  let v = UInt32(m, radix: 8), v <= 0o777 else {
                diagnostics.error(mloc, "socket_mode '\(m)' must be octal permissions such as \"0660\"")
                return nil
            }
            if v & 0o007 != 0 {
                diagnostics.error(mloc, "socket_mode '\(m)' lets every local user connect",
                                  hint: "use \"0600\" or \"0660\" with socket_group")
                return nil
            }
            modeBits = v
        }
        var gid: UInt32?
        if let (g, gloc) = group {
            guard (0...Int64(UInt32.max - 1)).contains(g) else {
                diagnostics.error(gloc, "socket_group \(g) is not a gid")
                return nil
            }
            gid = UInt32(g)
        }
        return AgentConfig.Ingress(port: UInt16(p), socket: sock, socketMode: modeBits, socketGroup: gid, location: t.location)
    }

    private mutating func decodeTools(_ t: TOMLTable) -> AgentConfig.Tools {
        var r = TableReader(t, context: "[tools]", diagnostics: diagnostics)
        var tools = AgentConfig.Tools()
        if let (p, loc) = r.string("profile") {
            if p.isEmpty { diagnostics.error(loc, "tools.profile is empty") } else { tools.profile = p }
        }
        if let (n, loc) = r.string("network") {
            if let m = AgentConfig.NetworkMode(rawValue: n) { tools.network = m } else {
                diagnostics.error(loc, "tools.network '\(n)' must be \"none\" or \"egress\"")
            }
        }
        if let (items, _) = r.stringArray("allow") { tools.allow = allowRules(items) }
        var limits = AgentConfig.Limits()
        limits.memory = size(&r, "memory")
        limits.tmp = size(&r, "tmp")
        limits.pids = count(&r, "pids", range: 1...4_194_304)
        limits.openFiles = count(&r, "open_files", range: 16...1_048_576)
        if let (cpu, loc) = r.number("cpu") {
            if cpu.isNaN || cpu <= 0 || cpu > 1024 {
                diagnostics.error(loc, "tools.cpu = \(cpu) must be a number of cores greater than 0")
            } else {
                limits.cpu = cpu
            }
        }
        if let n = r.node("wall_time") { limits.wallTimeMs = duration(n, key: "wall_time", allowZero: false) }
        tools.limits = limits
        r.finish()
        return tools
    }

    /// Rules that span several keys.
    private func crossCheck(_ c: inout AgentConfig) {
        // An agent that can write its own config could loosen its policy for the next
        // start: the config may not live in anything the jail can write.
        if let configPath = Paths.normalizeAbsolute(c.file) {
            var writable: [AgentConfig.Bind] = c.workspace.map { [$0] } ?? []
            writable += c.mounts.filter(\.writable)
            for w in writable where Paths.isWithin(configPath, w.host) {
                diagnostics.error(w.location, "the config file \(configPath) is inside \(w.host), which the jail can write",
                                  hint: "keep agent.toml outside the workspace and rw mounts, e.g. in /etc/clawjail/NAME.toml")
            }
        }
        var targets: [String: SourceLocation?] = [:]
        func claim(_ path: String, _ loc: SourceLocation?, _ what: String) {
            if let previous = targets[path] {
                let at = previous.map { " (first used at \($0))" } ?? ""
                diagnostics.error(loc, "\(what) path '\(path)' is already used by another mount\(at)")
            } else {
                targets[path] = loc
            }
        }
        if let w = c.workspace { claim(w.path, w.location, "workspace") }
        for m in c.mounts { claim(m.path, m.location, "mount") }
        let etcHidden = EtcPolicy.hiddenPaths(show: c.etcShow, hide: c.etcHide)
        for m in c.mounts {
            if let (message, hint) = EtcPolicy.mountProblem(m.path, hidden: etcHidden) {
                diagnostics.error(m.location, message, hint: hint)
            }
        }
        if let cr = c.credentials {
            claim(cr.path, cr.location, "credentials")
            if let w = c.workspace {
                if Paths.isWithin(cr.host, w.host) || Paths.isWithin(w.host, cr.host) {
                    diagnostics.error(cr.location, "the credentials directory \(cr.host) overlaps the workspace \(w.host)",
                                      hint: "keep credentials outside the workspace: the workspace is writable and tool runs see it")
                }
                if Paths.isWithin(cr.path, w.path) {
                    diagnostics.error(cr.location, "credentials path \(cr.path) is inside the workspace path \(w.path)")
                }
            }
            for m in c.mounts where Paths.isWithin(cr.host, m.host) {
                diagnostics.error(m.location, "mount \(m.host) contains the credentials directory \(cr.host)")
            }
        }
        for m in c.mounts where m.writable {
            if let w = c.workspace, Paths.isWithin(m.host, w.host) || Paths.isWithin(w.host, m.host), m.host != w.host {
                diagnostics.warn(m.location, "rw mount \(m.host) overlaps the workspace \(w.host)")
            }
        }
        if !c.protect.isEmpty && c.workspace == nil {
            diagnostics.error(nil, "[protect] needs a [workspace]: protected paths are relative to it")
        }
        if let cwd = c.cwd, c.workspace == nil, cwd != "/", cwd != "/tmp",
           !c.mounts.contains(where: { Paths.isWithin(cwd, $0.path) }) {
            diagnostics.warn(nil, "cwd \(cwd) is not inside the workspace or a mount; it must exist in the read-only base")
        }
        // Reported at the repeat, like mount targets, so the position points at what to remove.
        var ports: [UInt16: SourceLocation?] = [:]
        // Ingress connections come from the veth peer (10.200.0.1), never from loopback:
        // a server told to listen on 127.0.0.1 (the Clawdbot default that made proxied
        // requests look local) cannot be reached, and should not be.
        if !c.ingress.isEmpty {
            let values = c.command + Array(c.env.values)
            if values.contains(where: { $0.contains("127.0.0.1") || $0.contains("localhost") || $0.contains("[::1]") }) {
                diagnostics.warn(c.ingress.first?.location, "the command or env mentions 127.0.0.1/localhost, but ingress reaches the agent from \(NetworkLayout.peerAddress), not from loopback",
                                 hint: "make the agent's server listen on 0.0.0.0 (safe inside the jail) or on \(NetworkLayout.jailAddress)")
            }
        }
        for ing in c.ingress {
            if let first = ports[ing.port] {
                let at = first.map { " (first used at \($0))" } ?? ""
                diagnostics.error(ing.location, "port \(ing.port) has more than one [[ingress]]\(at)")
            } else {
                ports[ing.port] = ing.location
            }
        }
    }
}
