import ClawjailCore
import CSeccomp
import ClawjailSystem

/// A profile compiled to classic BPF for the native arch: what the C child passes to
/// seccomp(SECCOMP_SET_MODE_FILTER) as the last step before execve.
public struct CompiledFilter: Sendable, Hashable {
    /// The raw `struct sock_filter` array (8 bytes per instruction, host byte order).
    public let bpf: [UInt8]
    /// True when violations go to the supervisor (SECCOMP_RET_USER_NOTIF): load with
    /// SECCOMP_FILTER_FLAG_NEW_LISTENER and hand the listener to a `SeccompNotifier`.
    public let needsNotify: Bool
    /// `SeccompProfile.contentHash` of the profile it was compiled from.
    public let profileHash: String

    public var instructionCount: Int { bpf.count / 8 }

    public init(bpf: [UInt8], needsNotify: Bool, profileHash: String) {
        self.bpf = bpf
        self.needsNotify = needsNotify
        self.profileHash = profileHash
    }
}

public enum SeccompCompiler {
    /// Bump when the way profiles become BPF changes, so cached filters are rebuilt.
    public static let formatVersion = 1
    /// The kernel refuses longer programs (BPF_MAXINSNS).
    public static let maxInstructions = 4096

    public static var libseccompVersion: String { SyscallTable.libseccompVersion }
    public static var arch: String { SyscallTable.nativeArchName }

    /// The default action is compiled as an errno no rule uses and patched to the real
    /// default afterwards: libseccomp refuses a rule whose action equals the default
    /// (EACCES), but a denial carved out of an allowed syscall (ioctl TIOCSTI) needs
    /// exactly that. libseccomp accepts errno values up to 4094.
    static func sentinelErrno(for profile: SeccompProfile) -> UInt16 {
        var used: Set<Int32> = [profile.errno]
        for rule in profile.rules { if case .errno(let e) = rule.action { used.insert(e) } }
        return UInt16((Int32(3000)...4094).reversed().first { !used.contains($0) } ?? 2999)
    }

    public static func compile(_ profile: SeccompProfile) throws -> CompiledFilter {
        let defaultAction: UInt32 = profile.needsNotify
            ? cj_scmp_act_notify() : cj_scmp_act_errno(UInt16(truncatingIfNeeded: profile.errno))
        let sentinel = cj_scmp_act_errno(sentinelErrno(for: profile))

        guard let ctx = seccomp_init(sentinel) else {
            throw ClawjailError(.seccomp, "seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        try attr(ctx, SCMP_FLTATR_ACT_BADARCH, cj_scmp_act_kill_process(), "bad-arch action")
        try attr(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2, "binary-tree optimisation")

        var rulesBySyscall: [String: [SyscallRule]] = [:]
        for rule in profile.rules { rulesBySyscall[rule.syscall, default: []].append(rule) }

        for name in profile.allowed {
            let nr = try number(name)
            let carved = (rulesBySyscall[name] ?? []).filter { $0.action != .allow }
            if let arg = carved.first?.conditions.first?.arg {
                // "allow except ..." as two allows that together match every value; libseccomp
                // orders the exact-value denials (mask 0xffffffff, value >= 2) before them.
                // The real-kernel test checks TIOCSTI stays denied.
                for bit: UInt64 in [0, 1] {
                    try add(ctx, cj_scmp_act_allow(), nr, name, [SyscallCondition(arg: arg, op: .maskedEq, value: bit, mask: 1)])
                }
            } else {
                try add(ctx, cj_scmp_act_allow(), nr, name, [])
            }
        }
        for rule in profile.rules {
            let nr = try number(rule.syscall)
            let action: UInt32
            switch rule.action {
            case .allow: action = cj_scmp_act_allow()
            case .errno(let e): action = cj_scmp_act_errno(UInt16(truncatingIfNeeded: e))
            case .deny: action = defaultAction
            }
            try add(ctx, action, nr, rule.syscall, rule.conditions)
        }
        // The deny list needs no rules: what is not allowed gets the default action.

        var bpf = try export(ctx)
        guard bpf.count % 8 == 0, bpf.count > 0 else {
            throw ClawjailError(.seccomp, "libseccomp exported \(bpf.count) bytes, not whole BPF instructions")
        }
        let patched = patchReturns(&bpf, from: sentinel, to: defaultAction)
        guard patched > 0 else {
            throw ClawjailError(.seccomp, "compiled filter has no default return; refusing it")
        }
        guard bpf.count / 8 <= maxInstructions else {
            throw ClawjailError(.seccomp, "profile \(profile.name) compiles to \(bpf.count / 8) instructions; the kernel allows \(maxInstructions)")
        }
        return CompiledFilter(bpf: bpf, needsNotify: profile.needsNotify, profileHash: profile.contentHash)
    }

    /// Whether a denial can be carved out of an unconditionally allowed syscall (see compile).
    static func canCarveOut(_ rule: SyscallRule) -> Bool {
        guard rule.conditions.count == 1, let c = rule.conditions.first else { return false }
        return c.op == .maskedEq && c.mask == 0xFFFF_FFFF && c.value >= 2
    }

    // MARK: libseccomp plumbing

    private static func number(_ name: String) throws -> Int32 {
        guard let nr = SyscallTable.number(of: name) else {
            throw ClawjailError(.seccomp, ProfileLoader.unknownSyscall(name))
        }
        return nr
    }

    private static func attr(_ ctx: scmp_filter_ctx, _ a: scmp_filter_attr, _ value: UInt32, _ what: String) throws {
        let r = seccomp_attr_set(ctx, a, value)
        if r < 0 { throw ClawjailError(.seccomp, "libseccomp: setting the \(what)", cause: Errno(rawValue: -r)) }
    }

    private static func add(_ ctx: scmp_filter_ctx, _ action: UInt32, _ nr: Int32, _ name: String,
                            _ conditions: [SyscallCondition]) throws {
        let cmps = conditions.map { c -> scmp_arg_cmp in
            let op: scmp_compare
            switch c.op {
            case .eq: op = SCMP_CMP_EQ
            case .ne: op = SCMP_CMP_NE
            case .lt: op = SCMP_CMP_LT
            case .le: op = SCMP_CMP_LE
            case .gt: op = SCMP_CMP_GT
            case .ge: op = SCMP_CMP_GE
            case .maskedEq: op = SCMP_CMP_MASKED_EQ
            }
            // For masked_eq libseccomp takes (mask, value); for the others (value, unused).
            if let mask = c.mask {
                return cj_scmp_arg_cmp(UInt32(c.arg), Int32(op.rawValue), mask, c.value)
            }
            return cj_scmp_arg_cmp(UInt32(c.arg), Int32(op.rawValue), c.value, 0)
        }
        let r = cmps.withUnsafeBufferPointer { p in
            seccomp_rule_add_exact_array(ctx, action, nr, UInt32(p.count), p.baseAddress)
        }
        if r < 0 {
            let what = conditions.isEmpty ? name : "\(name) when " + conditions.map(\.description).joined(separator: " && ")
            throw ClawjailError(.seccomp, "libseccomp refused the rule for \(what)", cause: Errno(rawValue: -r))
        }
    }

    /// libseccomp 2.5 has no export to memory: export to a memfd and read it back.
    private static func export(_ ctx: scmp_filter_ctx) throws -> [UInt8] {
        // memfd_create is behind _GNU_SOURCE in glibc: CSeccomp's shim makes the syscall,
        // and syscallRetrying reads its errno.
        let fd: FD
        do {
            fd = FD(try syscallRetrying { cj_seccomp_memfd_create("clawjail-seccomp", 1 /* MFD_CLOEXEC */) })
        } catch {
            throw ClawjailError(.seccomp, "memfd_create", cause: error)
        }
        defer { fd.close() }
        let r = seccomp_export_bpf(ctx, fd.rawValue)
        if r < 0 { throw ClawjailError(.seccomp, "seccomp_export_bpf", cause: Errno(rawValue: -r)) }
        do {
            try fd.seek(to: 0)
        } catch {
            throw ClawjailError(.seccomp, "lseek on the BPF memfd", cause: error)
        }
        return try SeccompFiles.readAll(fd, what: "reading the exported BPF", limit: (maxInstructions + 1024) * 8)
    }

    /// Rewrites `ret #from` to `ret #to`; returns how many it changed.
    static func patchReturns(_ bpf: inout [UInt8], from: UInt32, to: UInt32) -> Int {
        let retK: UInt16 = 0x06 // BPF_RET | BPF_K
        var count = 0
        var i = 0
        while i + 8 <= bpf.count {
            let code = UInt16(bpf[i]) | UInt16(bpf[i + 1]) << 8
            let k = UInt32(bpf[i + 4]) | UInt32(bpf[i + 5]) << 8 | UInt32(bpf[i + 6]) << 16 | UInt32(bpf[i + 7]) << 24
            if code == retK && k == from {
                bpf[i + 4] = UInt8(truncatingIfNeeded: to)
                bpf[i + 5] = UInt8(truncatingIfNeeded: to >> 8)
                bpf[i + 6] = UInt8(truncatingIfNeeded: to >> 16)
                bpf[i + 7] = UInt8(truncatingIfNeeded: to >> 24)
                count += 1
            }
            i += 8
        }
        return count
    }
}
