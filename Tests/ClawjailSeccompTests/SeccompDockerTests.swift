import Foundation
import Testing
@testable import ClawjailSeccomp

/// Docker's default profile (moby/profiles seccomp/default.json), read from
/// ../shared/data when present; never copied into the project.
struct SeccompDockerReference {
    /// Allowed without argument conditions for an amd64 container with no extra capabilities.
    var unconditional: Set<String> = []
    /// Allowed only with argument conditions (socket, personality, clone).
    var conditional: [String: [[SyscallCondition]]] = [:]
    /// Fixed-errno rules (clone3 → ENOSYS).
    var errnoRules: [String: Int32] = [:]
    var defaultErrno: Int32 = 1

    init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let entries = root["syscalls"] as? [[String: Any]] else {
            throw SeccompFixtures.ProbeError("unexpected layout of \(path)")
        }
        defaultErrno = Int32((root["defaultErrnoRet"] as? Int) ?? 1)
        for entry in entries {
            guard let names = entry["names"] as? [String], let action = entry["action"] as? String else { continue }
            let includes = entry["includes"] as? [String: Any] ?? [:]
            let excludes = entry["excludes"] as? [String: Any] ?? [:]
            // A container without extra capabilities, on amd64.
            if includes["caps"] != nil { continue }
            if let arches = includes["arches"] as? [String], !arches.contains("amd64") { continue }
            if let arches = excludes["arches"] as? [String], arches.contains("amd64") { continue }
            let args = (entry["args"] as? [[String: Any]] ?? []).compactMap { a -> SyscallCondition? in
                guard let index = a["index"] as? Int, let op = a["op"] as? String else { return nil }
                let value = UInt64((a["value"] as? NSNumber)?.uint64Value ?? 0)
                switch op {
                case "SCMP_CMP_EQ": return SyscallCondition(arg: index, op: .eq, value: value)
                case "SCMP_CMP_NE": return SyscallCondition(arg: index, op: .ne, value: value)
                case "SCMP_CMP_LT": return SyscallCondition(arg: index, op: .lt, value: value)
                case "SCMP_CMP_LE": return SyscallCondition(arg: index, op: .le, value: value)
                case "SCMP_CMP_GT": return SyscallCondition(arg: index, op: .gt, value: value)
                case "SCMP_CMP_GE": return SyscallCondition(arg: index, op: .ge, value: value)
                case "SCMP_CMP_MASKED_EQ":
                    // Docker writes the mask in "value" and the expected value in "valueTwo".
                    let two = UInt64((a["valueTwo"] as? NSNumber)?.uint64Value ?? 0)
                    return SyscallCondition(arg: index, op: .maskedEq, value: two, mask: value)
                default: return nil
                }
            }
            for name in names {
                switch action {
                case "SCMP_ACT_ALLOW":
                    if args.isEmpty { unconditional.insert(name) } else { conditional[name, default: []].append(args) }
                case "SCMP_ACT_ERRNO":
                    errnoRules[name] = Int32((entry["errnoRet"] as? Int) ?? 1)
                default:
                    continue
                }
            }
        }
    }

    /// The same policy as a clawjail profile, compiled the same way (names this
    /// libseccomp does not know are skipped, as runc does).
    func asProfile() -> SeccompProfile {
        let known = { (name: String) in SyscallTable.number(of: name) != nil }
        var rules: [SyscallRule] = []
        for (name, sets) in conditional.sorted(by: { $0.key < $1.key }) where known(name) && !unconditional.contains(name) {
            for conditions in sets { rules.append(SyscallRule(syscall: name, action: .allow, conditions: conditions)) }
        }
        for (name, e) in errnoRules.sorted(by: { $0.key < $1.key }) where known(name) && !unconditional.contains(name) {
            rules.append(SyscallRule(syscall: name, action: .errno(e), conditions: []))
        }
        return SeccompProfile(name: "docker-default", path: "docker-default-seccomp.json", description: "Docker default",
                              files: [], onViolation: .errno, errno: defaultErrno,
                              allowed: unconditional.filter(known).sorted(), denied: [], rules: rules)
    }
}

@Suite("Seccomp: Docker's default profile as the floor")
struct SeccompDockerTests {
    @Test(.enabled(if: SeccompFixtures.dockerProfileAvailable,
                   "needs ../shared/data/docker-default-seccomp.json (not shipped with the project)"))
    func agentIsAtLeastAsStrictAsDocker() throws {
        let docker = try SeccompDockerReference(path: SeccompFixtures.dockerProfile)
        #expect(docker.unconditional.count > 300, "the reference profile looks truncated")
        for name in ["agent", "tool"] {
            let profile = try SeccompFixtures.load(name)
            let extra = Set(profile.allowed).subtracting(docker.unconditional)
            #expect(extra.isEmpty, "\(name) allows without conditions what Docker does not: \(extra.sorted())")
            // What we allow with conditions, Docker allows too, at least with conditions.
            for rule in profile.rules where rule.action == .allow {
                #expect(docker.unconditional.contains(rule.syscall) || docker.conditional[rule.syscall] != nil,
                        "\(name): \(rule.syscall) is not allowed by Docker in any form")
            }
        }
    }

    @Test(.enabled(if: SeccompFixtures.dockerProfileAvailable,
                   "needs ../shared/data/docker-default-seccomp.json (not shipped with the project)"))
    func agentDeniesWhatDockerAllowsButAgentsDoNotNeed() throws {
        let docker = try SeccompDockerReference(path: SeccompFixtures.dockerProfile)
        let agent = try SeccompFixtures.load("agent")
        // Tightened on purpose (see profiles/agent.toml).
        for name in ["ptrace", "process_vm_readv", "adjtimex", "clock_adjtime", "name_to_handle_at", "sync"] {
            #expect(docker.unconditional.contains(name))
            #expect(!agent.allowed.contains(name), "\(name)")
        }
    }

    /// Arguments that satisfy one of Docker's condition sets (the value it compares with).
    static func sample(_ conditions: [SyscallCondition]) -> [UInt64] {
        var args = [UInt64](repeating: 0, count: 6)
        for c in conditions {
            switch c.op {
            case .eq, .le, .ge, .maskedEq: args[c.arg] = c.value
            case .lt: args[c.arg] = c.value &- 1
            case .gt, .ne: args[c.arg] = c.value &+ 1
            }
        }
        return args
    }

    /// Every call Docker's default allows (for a container with no extra capabilities)
    /// that a shipped profile refuses, whole or for some arguments, says why in the
    /// profile's [reasons]: stricter than Docker only on purpose.
    @Test(.enabled(if: SeccompFixtures.dockerProfileAvailable,
                   "needs ../shared/data/docker-default-seccomp.json (not shipped with the project)"))
    func everyDenialStricterThanDockerHasAReason() throws {
        let docker = try SeccompDockerReference(path: SeccompFixtures.dockerProfile)
        for name in ["agent", "tool", "openclaw", "nanoclaw"] {
            let profile = try SeccompFixtures.load(name)
            var unexplained: [String] = []
            for syscall in docker.unconditional.sorted() where SyscallTable.number(of: syscall) != nil {
                let carved = profile.rules.contains { $0.syscall == syscall && $0.action != .allow }
                let whole = profile.allowed.contains(syscall) && !carved
                if !whole && profile.reasons[syscall] == nil { unexplained.append(syscall) }
            }
            for (syscall, sets) in docker.conditional.sorted(by: { $0.key < $1.key })
            where SyscallTable.number(of: syscall) != nil && !docker.unconditional.contains(syscall) {
                for conditions in sets {
                    let args = Self.sample(conditions)
                    if profile.decision(syscall, args: args) != .allow && profile.reasons[syscall] == nil {
                        unexplained.append("\(syscall)(0x\(String(args[0], radix: 16)), ...)")
                    }
                }
            }
            #expect(unexplained.isEmpty, "\(name) refuses what Docker allows, with no [reasons] entry: \(unexplained)")
        }
    }
}
