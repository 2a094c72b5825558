import ClawjailCore
import Foundation
import Testing
@testable import ClawjailSeccomp

@Suite("Seccomp profiles")
struct SeccompProfileTests {
    /// A profile in a temp dir next to a small groups.toml.
    func parse(_ text: String, groups: String? = nil, file: String = "p.toml",
               extra: [String: String] = [:]) throws -> SeccompProfile {
        let dir = try SeccompFixtures.tempDir("profile")
        defer { SeccompFixtures.remove(dir) }
        try SeccompFixtures.write(groups ?? """
            [basic]
            description = "basic"
            syscalls = ["read", "write", "exit_group"]

            [more]
            description = "includes basic"
            syscalls = ["@basic", "close"]
            """, to: dir + "/groups.toml")
        for (name, content) in extra { try SeccompFixtures.write(content, to: dir + "/" + name) }
        try SeccompFixtures.write(text, to: dir + "/" + file)
        return try ProfileLocator.load(nameOrPath: dir + "/" + file, searchPaths: [])
    }

    /// The messages of a ConfigError, with the temp dir cut off ("p.toml:3:1: ...").
    func issues(_ text: String, groups: String? = nil, extra: [String: String] = [:]) -> [String] {
        do {
            _ = try parse(text, groups: groups, extra: extra)
            return []
        } catch let error as ConfigError {
            return error.issues.map { issue in
                var s = issue.description
                if let r = s.range(of: "/tmp/") , let slash = s[r.upperBound...].firstIndex(of: "/") {
                    s.removeSubrange(r.lowerBound...slash)
                }
                return s
            }
        } catch {
            return ["\(error)"]
        }
    }

    @Test func shippedProfilesLoad() throws {
        for name in ["agent", "tool", "openclaw", "nanoclaw", "vmm"] {
            let p = try SeccompFixtures.load(name)
            #expect(p.name == name)
            #expect(!p.description.isEmpty)
            #expect(p.onViolation == .errno)
            #expect(p.errno == 1)
            #expect(p.contentHash.count == 64)
        }
    }

    @Test func groupsExpandIntoTheAllowList() throws {
        let agent = try SeccompFixtures.load("agent")
        for name in ["read", "futex", "execve", "epoll_pwait", "inotify_add_watch", "connect"] {
            #expect(agent.allowed.contains(name), "\(name)")
        }
        for name in ["mount", "unshare", "setns", "bpf", "ptrace", "keyctl", "io_uring_setup", "adjtimex"] {
            #expect(!agent.allowed.contains(name), "\(name)")
            #expect(agent.denied.contains(name), "\(name)")
        }
        // Calls with argument policies are rules, not plain allows.
        for name in ["clone", "socket", "personality"] {
            #expect(!agent.allowed.contains(name))
            #expect(agent.rules.contains { $0.syscall == name && $0.action == .allow })
        }
        #expect(agent.allowed.contains("ioctl"))
        #expect(agent.rules.contains { $0.syscall == "clone3" && $0.action == .errno(38) })
    }

    @Test func toolIsStricterThanAgentOnlyWhereItSaysWhy() throws {
        let agent = try SeccompFixtures.load("agent")
        let tool = try SeccompFixtures.load("tool")
        #expect(Set(tool.allowed).isSubset(of: Set(agent.allowed)))
        // The one family tool refuses and agent allows, and its reason.
        let onlyAgent = Set(agent.allowed).subtracting(tool.allowed).sorted()
        #expect(onlyAgent == ["io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit"], "\(onlyAgent)")
        for name in onlyAgent { #expect(tool.reasons[name]?.contains("aio-max-nr") == true, "\(name)") }
        #expect(Set(tool.rules) == Set(agent.rules))
    }

    /// The calls issue 20 found denied under the tool profile (make's setresuid,
    /// fs.watch's inotify, Chromium's capset, sched_* and Landlock, the personality
    /// query in any width): every shipped profile allows them.
    @Test(arguments: ["agent", "tool", "openclaw", "nanoclaw", "vmm"])
    func everydayCallsAreAllowed(name: String) throws {
        let p = try SeccompFixtures.load(name)
        for call in ["setresuid", "setresgid", "setuid", "setgid", "setgroups", "capset", "inotify_init1", "inotify_add_watch",
                     "inotify_rm_watch", "sched_setaffinity", "sched_setattr", "sched_setscheduler", "ioprio_set",
                     "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "seccomp", "shmget", "semget",
                     "map_shadow_stack", "cachestat", "process_mrelease"] {
            #expect(p.decision(call) == .allow, "\(name): \(call)")
        }
        for persona: UInt64 in [0xffff_ffff, 0xffff_ffff_ffff_ffff, 0, 8, 0x1_0000_0000] {
            #expect(p.decision("personality", args: [persona]) == .allow, "\(name): personality(0x\(String(persona, radix: 16)))")
        }
        for persona: UInt64 in [0x0002_0000, 0x0004_0000, 0x0040_0000, 0xffff_fffe] {
            #expect(p.decision("personality", args: [persona]) == .deny, "\(name): personality(0x\(String(persona, radix: 16)))")
        }
        // AF_NETLINK: route queries only.
        #expect(p.decision("socket", args: [16, 3, 0]) == .allow)
        #expect(p.decision("socket", args: [16, 3, 15]) == .deny, "NETLINK_KOBJECT_UEVENT shows the host's devices")
        #expect(p.decision("ptrace") == .deny)
        #expect(p.decision("clone3") == .errno(38))
        #expect(p.decision("ioctl", args: [0, 0x5412]) == .deny)
        #expect(p.decision("ioctl", args: [0, 0x1_0000_5412]) == .deny)
        #expect(p.decision("ioctl", args: [0, 0x541b]) == .allow)
    }

    @Test func reasonsExpandGroupsAndFollowExtends() throws {
        let groups = """
            [basic]
            description = "basic"
            syscalls = ["read", "exit_group"]
            [more]
            description = "more"
            syscalls = ["close", "dup"]
            """
        let base = """
            allow = ["@basic"]
            deny = ["mount"]
            [reasons]
            mount = "no mounts"
            """
        let child = try parse("""
            extends = "base"
            [reasons]
            "@more" = "more is refused"
            mount = "the child's reason"
            """, groups: groups, extra: ["base.toml": base])
        #expect(child.reasons == ["close": "more is refused", "dup": "more is refused", "mount": "the child's reason"])
        // Reasons are documentation: they do not change the filter.
        let plain = try parse("extends = \"base\"\n", groups: groups, extra: ["base.toml": base])
        #expect(child.contentHash == plain.contentHash)
    }

    @Test func reasonsAreChecked() {
        #expect(issues("allow = [\"read\"]\n[reasons]\nraed = \"typo\"\n").first?.hasPrefix("p.toml:3:1: unknown syscall 'raed'") == true)
        #expect(issues("allow = [\"read\"]\n[reasons]\nwrite = 1\n").first?.hasPrefix("p.toml:3:9: the reason for 'write' must be a non-empty string") == true)
        #expect(issues("allow = [\"read\"]\n[reasons]\nread = \"but it is allowed\"\n").first?
            .contains("[reasons] explains why 'read' is refused, but it is allowed at") == true)
        // A call allowed with a denial carved out may say why it is carved out.
        #expect(issues("""
            allow = ["ioctl"]
            [[rule]]
            syscall = "ioctl"
            action = "deny"
            when = [{ arg = 1, op = "masked_eq", mask = 0xffffffff, value = "TIOCSTI" }]
            [reasons]
            ioctl = "TIOCSTI"
            """) == [])
    }

    @Test func presetsExtendAgent() throws {
        let agent = try SeccompFixtures.load("agent")
        for name in ["openclaw", "nanoclaw"] {
            let preset = try SeccompFixtures.load(name)
            #expect(preset.files.count == 2)
            #expect(preset.files.last?.hasSuffix("/agent.toml") == true)
            #expect(preset.allowed == agent.allowed)
            #expect(preset.rules == agent.rules)
            #expect(preset.contentHash == agent.contentHash)
        }
    }

    @Test func extendsMergesAndOverrides() throws {
        let base = """
            on_violation = "errno"
            errno = "EACCES"
            allow = ["@basic"]
            deny = ["mount"]
            """
        let child = try parse("""
            description = "child"
            extends = "base"
            on_violation = "kill"
            allow = ["close"]
            [[rule]]
            syscall = "clone3"
            action = "errno"
            errno = "ENOSYS"
            """, extra: ["base.toml": base])
        #expect(child.allowed == ["close", "exit_group", "read", "write"])
        #expect(child.denied == ["mount"])
        #expect(child.onViolation == .kill)
        #expect(child.errno == 13)
        #expect(child.rules == [SyscallRule(syscall: "clone3", action: .errno(38), conditions: [])])
        #expect(child.needsNotify)
    }

    @Test func nestedGroupsAndSymbolicConditions() throws {
        let p = try parse("""
            allow = ["@more"]
            [[rule]]
            syscall = "clone"
            action = "allow"
            when = [{ arg = 0, op = "masked_eq", mask = "CLONE_NEWUSER|CLONE_NEWNS", value = 0 }]
            [[rule]]
            syscall = "socket"
            action = "allow"
            when = [{ arg = 0, op = "eq", value = "AF_NETLINK" }, { arg = 2, op = "eq", value = "NETLINK_ROUTE" }]
            """)
        #expect(p.allowed == ["close", "exit_group", "read", "write"])
        #expect(p.rules[0].conditions == [SyscallCondition(arg: 0, op: .maskedEq, value: 0, mask: 0x1002_0000)])
        #expect(p.rules[1].conditions == [SyscallCondition(arg: 0, op: .eq, value: 16), SyscallCondition(arg: 2, op: .eq, value: 0)])
    }

    @Test func cloneMaskCoversEveryNamespaceFlag() throws {
        let agent = try SeccompFixtures.load("agent")
        let clone = try #require(agent.rules.first { $0.syscall == "clone" })
        let mask = try #require(clone.conditions.first?.mask)
        for flag: UInt64 in [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000, 0x80] {
            #expect(mask & flag == flag)
        }
    }

    @Test func unknownKeysAreErrorsWithPositions() {
        #expect(issues("allow = [\"read\"]\nalow = [\"write\"]\n") == [
            "p.toml:2:1: unknown key 'alow' in seccomp profile\n  hint: known keys: description, extends, on_violation, errno, allow, deny, [[rule]], [reasons], [group.NAME]",
        ])
        let ruleIssues = issues("""
            [[rule]]
            syscall = "read"
            action = "allow"
            whne = []
            """)
        #expect(ruleIssues.first?.hasPrefix("p.toml:4:1: unknown key 'whne' in [[rule]]") == true)
    }

    @Test func unknownSyscallsAndGroupsAreErrorsWithPositions() {
        let found = issues("allow = [\"read\", \"raed\", \"@nope\"]\n")
        #expect(found.count == 2)
        #expect(found[0].hasPrefix("p.toml:1:18: unknown syscall 'raed'"))
        #expect(found[1].hasPrefix("p.toml:1:26: unknown group '@nope'"))
        let inGroup = issues("allow = [\"@bad\"]\n", groups: """
            [bad]
            description = "typo inside a group"
            syscalls = ["read", "wirte"]
            """)
        #expect(inGroup.count == 1)
        #expect(inGroup[0].contains("unknown syscall 'wirte'"))
        #expect(inGroup[0].contains("groups.toml:3:21"))
        // Not a syscall on x86_64 (libseccomp's pseudo number).
        #expect(issues("allow = [\"umount\"]\n").first?.contains("unknown syscall 'umount'") == true)
    }

    @Test func badValuesAreErrors() {
        let found = issues("""
            on_violation = "warn"
            errno = "EWHAT"
            [[rule]]
            syscall = "ioctl"
            action = "allow"
            when = [{ arg = 7, op = "eq", value = 1 }, { arg = 1, op = "masked_eq", value = "TIOCSTI" }, { arg = 2, op = "around", value = 1 }, { arg = 3, op = "eq", value = "NO_SUCH_FLAG" }]
            """)
        #expect(found.contains { $0.hasPrefix("p.toml:1:16: on_violation must be") })
        #expect(found.contains { $0.hasPrefix("p.toml:2:9: errno must be") })
        #expect(found.contains { $0.contains("arg must be an argument index 0...5") })
        #expect(found.contains { $0.contains("masked_eq\" needs a mask") })
        #expect(found.contains { $0.contains("op must be one of") })
        #expect(found.contains { $0.contains("unknown constant in \"NO_SUCH_FLAG\"") })
    }

    @Test func tomlSyntaxErrorsCarryTheirPosition() {
        let found = issues("allow = [\"read\"\ndeny = \n")
        #expect(found.count == 1)
        #expect(found[0].hasPrefix("p.toml:"))
    }

    @Test func contradictionsAreErrors() {
        #expect(issues("allow = [\"read\"]\ndeny = [\"@basic\"]\n").contains {
            $0.contains("'read' is denied here and allowed at")
        })
        #expect(issues("""
            allow = ["socket"]
            [[rule]]
            syscall = "socket"
            action = "allow"
            when = [{ arg = 0, op = "eq", value = "AF_UNIX" }]
            """).contains { $0.contains("this rule has no effect") })
        #expect(issues("""
            [[rule]]
            syscall = "socket"
            action = "allow"
            when = [{ arg = 0, op = "eq", value = 1 }, { arg = 0, op = "eq", value = 2 }]
            """).contains { $0.contains("two conditions on arg 0") })
        // A carve-out libseccomp cannot order reliably is refused.
        #expect(issues("""
            allow = ["ioctl"]
            [[rule]]
            syscall = "ioctl"
            action = "deny"
            when = [{ arg = 1, op = "eq", value = "TIOCSTI" }]
            """).contains { $0.contains("can only be carved out") })
        #expect(issues("extends = \"p\"\n").contains { $0.contains("extends cycle") })
        #expect(issues("extends = \"missing\"\n").contains { $0.contains("no profile 'missing'") })
    }

    @Test func groupCyclesAreErrors() {
        let found = issues("allow = [\"@a\"]\n", groups: """
            [a]
            description = "a"
            syscalls = ["@b"]
            [b]
            description = "b"
            syscalls = ["@a"]
            """)
        #expect(found.contains { $0.contains("group cycle: @a -> @b -> @a") })
    }

    @Test func hashFollowsPolicyNotFormatting() throws {
        let a = try parse("allow = [\"read\", \"write\"]\n")
        let b = try parse("# a comment\nallow = [\n  \"write\",\n  \"read\", \"read\",\n]\n")
        let c = try parse("allow = [\"read\", \"write\", \"close\"]\n")
        #expect(a.contentHash == b.contentHash)
        #expect(a.contentHash != c.contentHash)
        #expect(a.withViolationMode(.log).contentHash != a.contentHash)
    }

    @Test func locatorResolvesNamesAndPaths() throws {
        let dir = try SeccompFixtures.tempDir("locate")
        defer { SeccompFixtures.remove(dir) }
        try SeccompFixtures.write("extends = \"agent\"\ndescription = \"mine\"\n", to: dir + "/mine.toml")
        // A custom profile outside the repo still finds agent and groups.toml on the search path.
        let mine = try ProfileLocator.load(nameOrPath: dir + "/mine.toml", searchPaths: [SeccompFixtures.profilesDir])
        #expect(mine.description == "mine")
        #expect(mine.contentHash == (try SeccompFixtures.load("agent")).contentHash)
        // Earlier search paths win.
        let byName = try ProfileLocator.load(nameOrPath: "mine", searchPaths: ["/nonexistent", dir, SeccompFixtures.profilesDir])
        #expect(byName.path == dir + "/mine.toml")
        #expect(throws: ClawjailError.self) { try ProfileLocator.load(nameOrPath: "nope", searchPaths: [dir]) }
        #expect(throws: ClawjailError.self) { try ProfileLocator.load(nameOrPath: "../etc", searchPaths: [dir]) }
        #expect(throws: ClawjailError.self) { try ProfileLocator.load(nameOrPath: "groups", searchPaths: [SeccompFixtures.profilesDir]) }
    }

    @Test func logModeRestrictsWhatTheProfileNames() throws {
        let agent = try SeccompFixtures.load("agent").withViolationMode(.log)
        let policy = agent.violationPolicy
        #expect(policy.mode == .log)
        for name in ["mount", "unshare", "clone", "socket", "ioctl", "personality"] {
            let nr = try #require(SyscallTable.number(of: name))
            #expect(policy.restricted.contains(nr), "\(name)")
        }
        #expect(!policy.restricted.contains(try #require(SyscallTable.number(of: "read"))))
    }
}
