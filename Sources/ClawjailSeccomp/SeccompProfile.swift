import ClawjailCore
import ClawjailSystem

/// What happens to a syscall the profile does not allow.
public enum ViolationMode: String, Sendable, Hashable, CaseIterable {
    /// The call fails with the profile's errno, silently (as in Docker).
    case errno
    /// The supervisor logs the call. Calls the profile does not name at all then
    /// proceed (an audit mode for developing a profile); calls it denies or allows
    /// only under conditions still fail with the profile's errno.
    case log
    /// The supervisor logs the call and kills the process that made it.
    case kill
}

/// One argument comparison of a rule, as libseccomp evaluates it (64-bit values).
public struct SyscallCondition: Sendable, Hashable, CustomStringConvertible {
    public enum Operator: String, Sendable, Hashable, CaseIterable {
        case eq, ne, lt, le, gt, ge
        case maskedEq = "masked_eq"
    }

    public let arg: Int
    public let op: Operator
    public let value: UInt64
    /// Only for `masked_eq`: the call matches when `(arg & mask) == value`.
    public let mask: UInt64?

    public init(arg: Int, op: Operator, value: UInt64, mask: UInt64? = nil) {
        self.arg = arg
        self.op = op
        self.value = value
        self.mask = mask
    }

    public var description: String {
        let v = "0x" + String(value, radix: 16)
        if let mask { return "arg\(arg) & 0x\(String(mask, radix: 16)) == \(v)" }
        let sym: String
        switch op {
        case .eq: sym = "=="
        case .ne: sym = "!="
        case .lt: sym = "<"
        case .le: sym = "<="
        case .gt: sym = ">"
        case .ge: sym = ">="
        case .maskedEq: sym = "=="
        }
        return "arg\(arg) \(sym) \(v)"
    }

    /// The same test on a call's arguments (for the notifier and for tests).
    public func matches(_ args: [UInt64]) -> Bool {
        guard arg < args.count else { return false }
        let a = args[arg]
        switch op {
        case .eq: return a == value
        case .ne: return a != value
        case .lt: return a < value
        case .le: return a <= value
        case .gt: return a > value
        case .ge: return a >= value
        case .maskedEq: return a & (mask ?? 0) == value
        }
    }
}

/// A rule with arguments or an action of its own. Unconditional allows and denies
/// are folded into `SeccompProfile.allowed` / `.denied`.
public struct SyscallRule: Sendable, Hashable, CustomStringConvertible {
    public enum Action: Sendable, Hashable {
        case allow
        /// Always this errno, whatever the profile's violation mode (clone3 → ENOSYS).
        case errno(Int32)
        /// A violation: handled like any call the profile does not allow.
        case deny
    }

    public let syscall: String
    public let action: Action
    /// All must match (libseccomp ANDs the comparisons of one rule).
    public let conditions: [SyscallCondition]

    public init(syscall: String, action: Action, conditions: [SyscallCondition]) {
        self.syscall = syscall
        self.action = action
        self.conditions = conditions
    }

    public var description: String {
        let a: String
        switch action {
        case .allow: a = "allow"
        case .errno(let e): a = e == 0 ? "errno 0" : "errno \(Errno(rawValue: e).name)"
        case .deny: a = "deny"
        }
        if conditions.isEmpty { return "\(syscall) \(a)" }
        return "\(syscall) \(a) when " + conditions.map(\.description).joined(separator: " && ")
    }
}

/// A parsed and resolved profile: parents merged in, groups expanded, every name
/// checked against libseccomp. Immutable and cheap to pass around.
public struct SeccompProfile: Sendable {
    /// The profile's name (file name without `.toml`).
    public let name: String
    /// The file it was read from.
    public let path: String
    public let description: String
    /// The profile file and the files of its parents, child first.
    public let files: [String]
    public let onViolation: ViolationMode
    /// errno returned for violations in `.errno` mode (and for denied calls in `.log` mode).
    public let errno: Int32
    /// Allowed without conditions, sorted.
    public let allowed: [String]
    /// Never allowed, sorted. They are already denied by being absent from `allowed`;
    /// listing them keeps them denied in log mode and makes the policy readable.
    public let denied: [String]
    /// Conditional allows, errno rules and conditional denies, parents' first.
    public let rules: [SyscallRule]
    /// The profile's `[reasons]`, by syscall: why it refuses a call (in whole or in
    /// part) that Docker's default allows. Documentation only: not part of the filter.
    public let reasons: [String: String]

    init(name: String, path: String, description: String, files: [String], onViolation: ViolationMode,
         errno: Int32, allowed: [String], denied: [String], rules: [SyscallRule], reasons: [String: String] = [:]) {
        self.name = name
        self.path = path
        self.description = description
        self.files = files
        self.onViolation = onViolation
        self.errno = errno
        self.allowed = allowed
        self.denied = denied
        self.rules = rules
        self.reasons = reasons
        self.canonicalText = Self.canonical(onViolation: onViolation, errno: errno, allowed: allowed,
                                            denied: denied, rules: rules)
        self.contentHash = SHA256.hash(data: Array(canonicalText.utf8)).hexString
    }

    /// Everything that decides the filter, in one stable text: comments, order of
    /// names and group structure do not change it; any change of policy does.
    public let canonicalText: String
    /// sha256 of `canonicalText`, hex.
    public let contentHash: String

    /// The same policy with another violation mode (agent.toml's
    /// `seccomp.on_violation` overrides the profile's).
    public func withViolationMode(_ mode: ViolationMode) -> SeccompProfile {
        SeccompProfile(name: name, path: path, description: description, files: files, onViolation: mode,
                       errno: errno, allowed: allowed, denied: denied, rules: rules, reasons: reasons)
    }

    /// What the filter does with one call: the same decision the compiled BPF makes,
    /// for tests and for explaining a denial. `args` are the raw 64-bit registers.
    public func decision(_ syscall: String, args: [UInt64] = []) -> SyscallRule.Action {
        let own = rules.filter { $0.syscall == syscall }
        // Fixed-errno and deny rules win over allows, as in the compiled filter.
        for rule in own where rule.action != .allow && rule.conditions.allSatisfy({ $0.matches(args) }) {
            return rule.action
        }
        if denied.contains(syscall) { return .deny }
        if allowed.contains(syscall) { return .allow }
        if own.contains(where: { $0.action == .allow && $0.conditions.allSatisfy { $0.matches(args) } }) { return .allow }
        return .deny
    }

    /// True when the compiled filter hands violations to the supervisor
    /// (SECCOMP_RET_USER_NOTIF): load it with SECCOMP_FILTER_FLAG_NEW_LISTENER and
    /// run a `SeccompNotifier` on the listener.
    public var needsNotify: Bool { onViolation != .errno }

    /// Syscalls the profile mentions with conditions or denies: in log mode these are
    /// refused, never continued.
    public var restrictedSyscalls: [String] {
        Array(Set(denied).union(rules.filter { !$0.conditions.isEmpty || $0.action != .allow }.map(\.syscall))).sorted()
    }

    /// What the notifier needs to answer a notification of this profile's filter.
    public var violationPolicy: SeccompViolationPolicy {
        SeccompViolationPolicy(mode: onViolation, errno: errno,
                               restricted: Set(restrictedSyscalls.compactMap { SyscallTable.number(of: $0) }))
    }

    static func canonical(onViolation: ViolationMode, errno: Int32, allowed: [String], denied: [String],
                          rules: [SyscallRule]) -> String {
        var lines = ["clawjail-seccomp-profile 1", "on_violation \(onViolation.rawValue)", "errno \(errno)"]
        lines.append("allow " + allowed.joined(separator: " "))
        lines.append("deny " + denied.joined(separator: " "))
        for rule in rules {
            var line = "rule \(rule.syscall) "
            switch rule.action {
            case .allow: line += "allow"
            case .errno(let e): line += "errno \(e)"
            case .deny: line += "deny"
            }
            for c in rule.conditions {
                line += " \(c.arg):\(c.op.rawValue):\(c.value):\(c.mask.map(String.init) ?? "-")"
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// How the supervisor answers a seccomp notification for one profile.
public struct SeccompViolationPolicy: Sendable, Hashable {
    public let mode: ViolationMode
    public let errno: Int32
    /// Syscall numbers (native arch) refused even in log mode.
    public let restricted: Set<Int32>

    public init(mode: ViolationMode, errno: Int32, restricted: Set<Int32>) {
        self.mode = mode
        self.errno = errno
        self.restricted = restricted
    }
}

extension Array where Element == UInt8 {
    var hexString: String { SHA256.lowercaseHex(self) }
}
