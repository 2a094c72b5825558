import ClawjailStore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 4, asserted from inside real jails: the seccomp profiles hold their deny list,
/// and /proc, /sys and /dev expose nothing useful.
extension Privileged {
    @Suite("seccomp and kernel surface")
    struct KernelSurfaceTests {
        /// sysprobe's checks that reach the kernel in every profile; everything else it
        /// checks is on the deny list.
        static let allowed: Set<String> = ["read", "write", "openat", "fstat", "getpid", "ioctl_fionread", "ioctl_tcgets",
                                           "socket_unix", "socket_inet_stream", "socket_inet6_dgram", "clone_plain",
                                           "syncfs_noop", "socket_netlink_route", "personality_query", "personality_query_raw64",
                                           "personality_linux",
                                           // make, file watchers and Chromium (issue 20)
                                           "setresuid_same", "setresgid_same", "capset", "inotify_init1", "inotify_add_watch",
                                           "sched_setaffinity", "sched_setattr", "landlock_create_ruleset", "seccomp_action_avail",
                                           "semctl"]
        /// Differ between agent (allowed) and tool (denied).
        static let agentOnly: Set<String> = ["io_setup"]

        func sysprobe(_ options: [String]) throws -> [String: String] {
            let probe = try Harness.probe("sysprobe")
            let r = try Harness.clawjail(["exec", "--quiet", "--ro", probe + ":/probe/sysprobe"] + options + ["--", "/probe/sysprobe"])
            #expect(r.status == 0, "\(r)")
            var lines: [String: String] = [:]
            for l in r.lines {
                let f = l.split(separator: " ", maxSplits: 1)
                if f.count == 2 { lines[String(f[0])] = String(f[1]) }
            }
            return lines
        }

        @Test("a real jail holds the whole deny list", arguments: ["tool", "agent"])
        func denyList(profile: String) throws {
            let lines = try sysprobe(["--profile", profile])
            #expect(lines["status"] != nil || lines.count > 60, "sysprobe ran: \(lines.count) lines")
            var denied = 0
            for (name, verdict) in lines where !name.hasPrefix("status") {
                if Self.allowed.contains(name) {
                    #expect(verdict.hasPrefix("allowed"), "\(profile): \(name) -> \(verdict)")
                } else if Self.agentOnly.contains(name) {
                    #expect(verdict.hasPrefix(profile == "agent" ? "allowed" : "denied"), "\(profile): \(name) -> \(verdict)")
                } else if name == "clone3" {
                    #expect(verdict == "denied ENOSYS", "clone3 gets ENOSYS so libc falls back to clone")
                } else if name == "i386_int80_getpid" || name == "x32_getpid" {
                    #expect(verdict == "killed SIGSYS", "\(profile): \(name) -> \(verdict)")
                } else {
                    #expect(verdict == "denied EPERM", "\(profile): \(name) -> \(verdict)")
                    denied += 1
                }
            }
            #expect(denied >= 70, "the probe checked the deny list (\(denied) denials)")
        }

        @Test("the filter cannot be undone: Seccomp 2 and NoNewPrivs 1 after exec, in every process")
        func filterInherited() throws {
            let r = try Harness.clawjail(["exec", "--quiet", "--", "/bin/sh", "-c",
                                          "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; grep -E '^(Seccomp|NoNewPrivs):' /proc/1/status 2>&1 | head -2; sh -c \"grep -E '^Seccomp:' /proc/self/status\""])
            #expect(r.status == 0, "\(r)")
            #expect(r.lines.filter { $0.hasPrefix("Seccomp:") && $0.hasSuffix("2") }.count >= 2, "\(r)")
            #expect(r.lines.contains { $0.hasPrefix("NoNewPrivs:") && $0.hasSuffix("1") }, "\(r)")
        }

        @Test("/proc/self/cgroup shows the jail's cgroup as /, max_user_namespaces is 0, /proc/sys is read-only")
        func procSurface() throws {
            let r = try Harness.probeInJail(["read", "/proc/self/cgroup", "--", "writeback", "/proc/sys/kernel/hostname", "--",
                                             "writeback", "/proc/sys/vm/overcommit_memory", "--", "writeback", "/proc/sys/user/max_user_namespaces", "--",
                                             "writeback", "/proc/sysrq-trigger"])
            #expect(r.status == 0, "\(r)")
            for p in ["/proc/sys/kernel/hostname", "/proc/sys/vm/overcommit_memory", "/proc/sys/user/max_user_namespaces"] {
                let line = r.line("writeback \(p)") ?? ""
                #expect(line.hasSuffix("EROFS") || line.hasSuffix("EACCES"), "\(p) must be read-only: \(line)")
            }
            let cg = try Harness.clawjail(["exec", "--quiet", "--", "/bin/cat", "/proc/self/cgroup", "/proc/sys/user/max_user_namespaces"])
            let cgroupLines = cg.lines.filter { $0.contains(":") }
            #expect(!cgroupLines.isEmpty)
            for l in cgroupLines {
                #expect(l.hasSuffix(":/"), "the jail's own cgroup is its root: \(l)")
            }
            #expect(cg.lines.last == "0", "max_user_namespaces inside: \(cg.lines)")
        }

        @Test("node, python, git, curl and npm work under the agent profile")
        func agentWorkloads() throws {
            let ws = try Harness.tempDirectory("wl")
            defer { Harness.remove(ws) }
            let script = """
            set -e
            python3 -c 'import json, sqlite3, ssl, subprocess, threading; print("python", subprocess.run(["true"]).returncode)'
            node -e 'const w = new (require("worker_threads").Worker)("process.exit(0)", {eval: true}); w.on("exit", c => console.log("node", c))'
            git init -q repo && cd repo && git config user.email a@b && git config user.name a
            echo hi > f && git add f && git commit -qm one && git log --oneline | wc -l | sed 's/^/git /'
            curl -sS file:///etc/hostname | sed 's/^/curl /'
            npm --version >/dev/null && echo npm ok
            """
            let r = try Harness.clawjail(["exec", "--quiet", "--profile", "agent", "--pids", "256", "--memory", "1G",
                                          "--workspace", ws, "--", "/bin/sh", "-c", script], timeout: 120)
            #expect(r.status == 0, "\(r)")
            for want in ["python 0", "node 0", "git 1", "curl tool", "npm ok"] {
                #expect(r.stdout.contains(want), "missing '\(want)'\n\(r)")
            }
        }

        @Test("the compiled filter is cached: a second start does not parse, an edited profile recompiles")
        func cache() throws {
            let dir = try Harness.tempDirectory("secc")
            defer { Harness.remove(dir) }
            let profiles = Harness.repository + "/profiles"
            let text = try String(contentsOfFile: profiles + "/tool.toml", encoding: .utf8)
            try text.write(toFile: dir + "/mytool.toml", atomically: true, encoding: .utf8)
            let env = ["CLAWJAIL_CACHE_DIR": dir + "/cache", "CLAWJAIL_PROFILE_PATH": profiles]
            func run() throws -> Harness.Result {
                try Harness.clawjail(["exec", "--verbose", "--profile", dir + "/mytool.toml", "--", "/bin/true"], environment: env)
            }
            func bpfFiles() -> Int {
                ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/cache/seccomp")) ?? []).filter { $0.hasSuffix(".bpf") }.count
            }
            let first = try run()
            #expect(first.status == 0 && first.stderr.contains("parsed"), "\(first)")
            #expect(bpfFiles() == 1)
            let second = try run()
            #expect(second.stderr.contains("from the index"), "\(second)")
            #expect(bpfFiles() == 1)
            // Another errno for violations: a different filter, compiled and cached beside the first.
            let edited = text.replacingOccurrences(of: "\nerrno = \"EPERM\"", with: "\nerrno = \"EACCES\"")
            #expect(edited != text, "the profile names its errno")
            try edited.write(toFile: dir + "/mytool.toml", atomically: true, encoding: .utf8)
            let third = try run()
            #expect(third.status == 0 && third.stderr.contains("parsed"), "\(third)")
            #expect(bpfFiles() == 2)
        }

        @Test("log mode reports a violation on stderr and in the audit log; kill mode kills the process")
        func violations() throws {
            // Syscall 1000 exists in no profile: log mode lets it through (ENOSYS) and says so.
            let call = "import ctypes; r = ctypes.CDLL(None).syscall(1000); print('after', r)"
            let a = try AgentFixture("violate")
            defer { a.clean() }
            try a.write(command: ["/usr/bin/python3", "-c", call], extra: "[seccomp]\nprofile = \"agent\"\non_violation = \"log\"\n")
            let r = try a.run()
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("after -1"), "\(r)")
            #expect(r.stderr.contains("called syscall 1000("), "\(r)")
            let store = try Store.open(directory: Harness.stateDirectory)
            var events: [String] = []
            try store.exportAudit(agent: a.name) { events.append($0) }
            #expect(events.contains { $0.contains("\"seccomp.violation\"") }, "\(events)")

            let k = try AgentFixture("violkill")
            defer { k.clean() }
            try k.write(command: ["/usr/bin/python3", "-c", call], extra: "[seccomp]\nprofile = \"agent\"\non_violation = \"kill\"\n")
            let kr = try k.run()
            #expect(!kr.stdout.contains("after"), "\(kr)")
            #expect(kr.status == 137 || kr.status == 159, "killed: \(kr)")
        }
    }
}
