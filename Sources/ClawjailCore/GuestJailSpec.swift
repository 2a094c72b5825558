import ClawjailParsers

extension JailSpec {
    /// The jail a VM agent's guest builds around the agent: the same command, limits,
    /// seccomp profile and mount view, with the guest's paths for sources (each share is
    /// mounted in the guest where the jail sees it) and `guest` set. The wall-time limit
    /// stays the host's, which can end the VM.
    public func inGuest(profile: String) -> JailSpec {
        var s = self
        s.isolation = .namespace
        s.guest = GuestSide(network: network.mode, sharesNetwork: network.mode == .egress || !network.ingress.isEmpty)
        s.network = Network(mode: .none, allow: [], resolvers: [], ingress: [])
        s.rootfs = .host
        s.seccompProfile = profile
        s.limits.wallTimeMs = 0
        s.mounts = mounts.map { m in
            var g = m
            if m.role != .protect { g.host = m.target }
            return g
        }
        return s
    }

    /// The guest jail's spec as the host sends it (a file the guest's init writes
    /// before it starts `clawjail guest-jail FILE`).
    public var guestJSON: JSONValue {
        var o: [String: JSONValue] = [
            "kind": .string(kind.rawValue), "name": .string(name), "argv": .array(argv.map { .string($0) }),
            "cwd": .string(cwd), "hostname": .string(hostname), "user": .int(Int64(user)),
            "environment": .array(environment.map { .array([.string($0.name), .string($0.value)]) }),
            "mounts": .array(mounts.map { m in
                ["role": .string(m.role.rawValue), "host": .string(m.host), "target": .string(m.target),
                 "writable": .bool(m.writable), "directory": .bool(m.isDirectoryHint)]
            }),
            "limits": [
                "memory": .int(Int64(clamping: limits.memory)), "pids": .int(Int64(clamping: limits.pids)),
                "cpu": limits.cpu.map { .double($0) } ?? .null,
                "io_weight": limits.ioWeight.map { .int(Int64(clamping: $0)) } ?? .null,
                "tmp": .int(Int64(clamping: limits.tmp)), "open_files": .int(Int64(clamping: limits.openFiles)),
                "file_size": limits.fileSize.map { .int(Int64(clamping: $0)) } ?? .null,
            ],
            "seccomp_profile": .string(seccompProfile),
            "seccomp_on_violation": seccompOnViolation.map { .string($0) } ?? .null,
            "protect": .array(protect.map { .string($0) }),
            "etc_hidden": .array(etcHidden.map { .string($0) }),
            "network": .string((guest?.network ?? network.mode).rawValue),
            "shares_network": .bool(guest?.sharesNetwork ?? false),
        ]
        o["agent"] = agent.map { .string($0) } ?? .null
        return .object(o)
    }

    public struct GuestSpecError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The spec `guestJSON` wrote; every field is required and checked.
    public init(guestJSON v: JSONValue) throws(GuestSpecError) {
        func fail(_ what: String) -> GuestSpecError { GuestSpecError(description: "guest jail spec: \(what)") }
        guard case .object(let o) = v else { throw fail("not an object") }
        func field(_ o: [String: JSONValue], _ k: String) throws(GuestSpecError) -> JSONValue {
            guard let x = o[k] else { throw fail("no \(k)") }
            return x
        }
        func string(_ x: JSONValue, _ k: String) throws(GuestSpecError) -> String {
            guard case .string(let s) = x else { throw fail("\(k) is not a string") }
            return s
        }
        func strings(_ x: JSONValue, _ k: String) throws(GuestSpecError) -> [String] {
            guard case .array(let a) = x else { throw fail("\(k) is not an array") }
            var out: [String] = []
            for e in a { out.append(try string(e, k)) }
            return out
        }
        func number(_ x: JSONValue, _ k: String) throws(GuestSpecError) -> UInt64 {
            guard case .int(let n) = x, n >= 0 else { throw fail("\(k) is not a count") }
            return UInt64(n)
        }
        func optionalNumber(_ x: JSONValue, _ k: String) throws(GuestSpecError) -> UInt64? {
            if x == .null { return nil }
            return try number(x, k)
        }
        func bool(_ x: JSONValue, _ k: String) throws(GuestSpecError) -> Bool {
            guard case .bool(let b) = x else { throw fail("\(k) is not a boolean") }
            return b
        }
        guard let kind = Kind(rawValue: try string(field(o, "kind"), "kind")) else { throw fail("unknown kind") }
        guard let mode = AgentConfig.NetworkMode(rawValue: try string(field(o, "network"), "network")) else {
            throw fail("unknown network mode")
        }
        guard case .array(let envs) = try field(o, "environment") else { throw fail("environment is not an array") }
        var environment: [EnvironmentVariable] = []
        for e in envs {
            let pair = try strings(e, "environment")
            guard pair.count == 2 else { throw fail("an environment entry is not [name, value]") }
            environment.append(EnvironmentVariable(name: pair[0], value: pair[1]))
        }
        guard case .array(let ms) = try field(o, "mounts") else { throw fail("mounts is not an array") }
        var mounts: [MountSpec] = []
        for m in ms {
            guard case .object(let mo) = m else { throw fail("a mount is not an object") }
            guard let role = MountRole(rawValue: try string(field(mo, "role"), "role")) else { throw fail("unknown mount role") }
            mounts.append(MountSpec(role: role, host: try string(field(mo, "host"), "host"),
                                    target: try string(field(mo, "target"), "target"),
                                    writable: try bool(field(mo, "writable"), "writable"),
                                    isDirectoryHint: try bool(field(mo, "directory"), "directory")))
        }
        guard case .object(let l) = try field(o, "limits") else { throw fail("limits is not an object") }
        var cpu: Double?
        switch try field(l, "cpu") {
        case .null: cpu = nil
        case .double(let d): cpu = d
        case .int(let n): cpu = Double(n)
        default: throw fail("cpu is not a number")
        }
        let limits = Limits(memory: try number(field(l, "memory"), "memory"), pids: try number(field(l, "pids"), "pids"),
                            cpu: cpu, ioWeight: try optionalNumber(field(l, "io_weight"), "io_weight"),
                            tmp: try number(field(l, "tmp"), "tmp"), openFiles: try number(field(l, "open_files"), "open_files"),
                            fileSize: try optionalNumber(field(l, "file_size"), "file_size"), wallTimeMs: 0)
        let user = try number(field(o, "user"), "user")
        guard user <= UInt64(UInt32.max) else { throw fail("user is out of range") }
        let agent: String?
        switch try field(o, "agent") {
        case .null: agent = nil
        case let x: agent = try string(x, "agent")
        }
        let onViolation: String?
        switch try field(o, "seccomp_on_violation") {
        case .null: onViolation = nil
        case let x: onViolation = try string(x, "seccomp_on_violation")
        }
        self.init(kind: kind, agent: agent, name: try string(field(o, "name"), "name"), argv: try strings(field(o, "argv"), "argv"),
                  cwd: try string(field(o, "cwd"), "cwd"), environment: environment,
                  hostname: try string(field(o, "hostname"), "hostname"), user: UInt32(user), rootfs: .host,
                  mounts: mounts, limits: limits, seccompProfile: try string(field(o, "seccomp_profile"), "seccomp_profile"),
                  seccompOnViolation: onViolation, network: Network(mode: .none, allow: [], resolvers: [], ingress: []),
                  protect: try strings(field(o, "protect"), "protect"), etcHidden: try strings(field(o, "etc_hidden"), "etc_hidden"))
        guard !argv.isEmpty else { throw fail("argv is empty") }
        guest = GuestSide(network: mode, sharesNetwork: try bool(field(o, "shares_network"), "shares_network"))
    }
}
