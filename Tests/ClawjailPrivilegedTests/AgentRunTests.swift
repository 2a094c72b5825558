import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An agent's directory for one test: agent.toml, workspace, credentials; removed by `clean`.
struct AgentFixture {
    let name: String
    let dir: String
    var workspace: String { dir + "/ws" }
    var credentials: String { dir + "/creds" }
    var config: String { dir + "/agent.toml" }

    init(_ tag: String) throws {
        name = "cjt-\(tag)-\(String(UInt32.random(in: 0...0xffffff), radix: 36))"
        dir = try Harness.tempDirectory(tag)
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
    }

    /// Writes agent.toml: the probe mounted at /probe, the command, and extra TOML.
    func write(command: [String], extra: String = "") throws {
        let probe = try Harness.probe("jailprobe")
        let argv = command.map { arg in
            let escaped = arg.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\"\(escaped)\""
        }
        let text = """
        name = "\(name)"
        command = [\(argv.joined(separator: ", "))]
        user = 1000

        [workspace]
        host = "\(workspace)"

        [[mount]]
        host = "\(probe)"
        path = "/probe/jailprobe"

        \(extra)
        """
        try text.write(toFile: config, atomically: true, encoding: .utf8)
    }

    func run(timeout: TimeInterval = 60) throws -> Harness.Result {
        try Harness.clawjail(["run", config], timeout: timeout)
    }

    func clean() { Harness.remove(dir) }
}

extension Privileged {
    @Suite("clawjail run")
    struct AgentRunTests {
        @Test("the exit status is the agent's, and the run leaves nothing behind")
        func exitStatus() throws {
            let a = try AgentFixture("exit")
            defer { a.clean() }
            try a.write(command: ["/probe/jailprobe", "say", "hello", "--", "exit", "3"])
            let r = try a.run()
            #expect(r.status == 3, "\(r)")
            #expect(r.stdout.contains("hello"))
            #expect(r.stderr.contains("agent \(a.name) exited 3"), "\(r)")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        @Test("check --json prints the plan the run executed: the one its manifest records")
        func checkJSONIsTheRecordedPlan() throws {
            let a = try AgentFixture("plan")
            defer { a.clean() }
            try a.write(command: ["/probe/jailprobe", "say", "ran"], extra: """
                [credentials]
                host = "\(a.credentials)"
                [protect]
                paths = ["SOUL.md", "memory/"]
                [env]
                API_TOKEN = "tok-0123456789"
                [limits]
                cpu = 0.5
                """)
            let r = try a.run()
            #expect(r.status == 0, "\(r)")
            let logs = try Harness.clawjail(["logs", a.name, "--json"])
            #expect(logs.status == 0, "\(logs)")
            let record = try #require(try JSONSerialization.jsonObject(with: Data(logs.stdout.utf8)) as? [String: Any])
            let runs = try #require(record["runs"] as? [[String: Any]])
            let manifest = try #require(runs.first?["manifest"] as? [String: Any])
            let recorded = try #require(manifest["plan"] as? [String: Any], "the manifest records the plan")
            let check = try Harness.clawjail(["check", "--json", a.config])
            #expect(check.status == 0, "\(check)")
            let printed = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
            #expect(NSDictionary(dictionary: recorded).isEqual(to: printed),
                    "check --json differs from the recorded plan:\n\(check.stdout)\nrecorded: \(recorded)")
            // The plan is the executed one: the agent's own range, the profile's hash, the
            // steps; and the secret is not in it.
            let ids = try #require(printed["ids"] as? [String: Any])
            #expect((ids["outside"] as? Int ?? 0) > 0x7000_0000)
            #expect((printed["seccomp"] as? [String: Any])?["content_hash"] is String)
            #expect(!check.stdout.contains("tok-0123456789"))
            let targets = (printed["mounts"] as? [[String: Any]] ?? []).compactMap { $0["target"] as? String }
            #expect(targets.contains("/workspace/SOUL.md") && targets.contains("/run/credentials"), "\(targets)")
        }

        @Test("credentials: fixed to 0700/0600, owned by the agent's outside uid, read-only inside, absent in tool runs")
        func credentials() throws {
            let a = try AgentFixture("creds")
            defer { a.clean() }
            try FileManager.default.createDirectory(atPath: a.credentials + "/sub", withIntermediateDirectories: true)
            try "token-1234567890\n".write(toFile: a.credentials + "/api_key", atomically: false, encoding: .utf8)
            try "x".write(toFile: a.credentials + "/sub/other", atomically: false, encoding: .utf8)
            chmod(a.credentials + "/api_key", 0o644)
            chmod(a.credentials, 0o755)
            try a.write(command: ["/probe/jailprobe", "read", "/run/credentials/api_key", "--", "write", "/run/credentials/new", "--",
                                  "stat", "/run/credentials", "--", "stat", "/run/credentials/api_key", "--", "stat", "/run/credentials/sub"],
                        extra: "[credentials]\nhost = \"\(a.credentials)\"\n")
            let r = try a.run()
            #expect(r.status == 0, "\(r)")
            #expect(r.line("read /run/credentials/api_key") == "read /run/credentials/api_key bytes=17", "\(r)")
            #expect(r.line("write /run/credentials/new") == "write /run/credentials/new EROFS")
            #expect(r.line("stat /run/credentials") == "stat /run/credentials uid=1000 gid=1000 mode=700")
            #expect(r.line("stat /run/credentials/api_key") == "stat /run/credentials/api_key uid=1000 gid=1000 mode=600")
            #expect(r.line("stat /run/credentials/sub") == "stat /run/credentials/sub uid=1000 gid=1000 mode=700")
            #expect(r.stderr.contains("fixed credentials permissions"), "\(r)")
            var st = stat()
            #expect(stat(a.credentials + "/api_key", &st) == 0)
            #expect(st.st_mode & 0o777 == 0o600)
            #expect(st.st_uid >= 0x7000_0000 && st.st_uid != 0, "owned by the agent's outside uid, not root: \(st.st_uid)")
            let dirUid = st.st_uid
            #expect(stat(a.credentials, &st) == 0)
            #expect(st.st_mode & 0o777 == 0o700 && st.st_uid == dirUid)
        }

        @Test("credentials that cannot be made private stop the start, naming the file")
        func unfixableCredentials() throws {
            let a = try AgentFixture("badcreds")
            defer { a.clean() }
            try FileManager.default.createDirectory(atPath: a.credentials, withIntermediateDirectories: true)
            try "secret".write(toFile: a.dir + "/elsewhere", atomically: false, encoding: .utf8)
            try FileManager.default.createSymbolicLink(atPath: a.credentials + "/link", withDestinationPath: a.dir + "/elsewhere")
            try "two names".write(toFile: a.credentials + "/hard", atomically: false, encoding: .utf8)
            #expect(link(a.credentials + "/hard", a.dir + "/hard-elsewhere") == 0)
            try a.write(command: ["/bin/true"], extra: "[credentials]\nhost = \"\(a.credentials)\"\n")
            let r = try a.run()
            #expect(r.status != 0)
            #expect(r.stderr.contains(a.credentials + "/link is a symlink"), "\(r)")
            #expect(r.stderr.contains(a.credentials + "/hard has 2 hard links"), "\(r)")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        @Test("protected memory files are read-only inside, created when missing, and cannot be renamed away")
        func protect() throws {
            let a = try AgentFixture("protect")
            defer { a.clean() }
            try "be good\n".write(toFile: a.workspace + "/SOUL.md", atomically: false, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: a.workspace + "/skills", withIntermediateDirectories: true)
            try a.write(command: ["/bin/sh", "-c", """
                echo evil > SOUL.md; echo soul=$?
                echo x > skills/new.md; echo skills=$?
                mv memory memory2; echo rename=$?
                echo x > memory/other.md; echo other=$?
                echo x > memory/notes.md; echo notes=$?
                cat SOUL.md
                """], extra: "[protect]\npaths = [\"SOUL.md\", \"skills/\", \"memory/notes.md\"]\n")
            let r = try a.run()
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("soul=2") || r.stdout.contains("soul=1"), "\(r)")
            #expect(r.stderr.contains("Read-only file system"), "\(r)")
            #expect(!r.stdout.contains("skills=0"))
            #expect(!r.stdout.contains("rename=0"), "the parent of a protected file is pinned\n\(r)")
            #expect(r.stdout.contains("other=0"), "the rest of memory/ stays writable\n\(r)")
            #expect(!r.stdout.contains("notes=0"))
            #expect(r.stdout.contains("be good"))
            #expect(try String(contentsOfFile: a.workspace + "/SOUL.md", encoding: .utf8) == "be good\n")
            #expect(FileManager.default.fileExists(atPath: a.workspace + "/memory/notes.md"), "created when missing")
        }

        @Test("a protected path replaced by a symlink is refused")
        func protectSymlink() throws {
            let a = try AgentFixture("protlink")
            defer { a.clean() }
            try FileManager.default.createSymbolicLink(atPath: a.workspace + "/SOUL.md", withDestinationPath: "/etc/shadow")
            try a.write(command: ["/bin/true"], extra: "[protect]\npaths = [\"SOUL.md\"]\n")
            let r = try a.run()
            #expect(r.status != 0)
            #expect(r.stderr.contains("symlink"), "\(r)")
        }

        @Test("agent output: control sequences escaped, credentials redacted")
        func outputFilter() throws {
            let a = try AgentFixture("output")
            defer { a.clean() }
            try FileManager.default.createDirectory(atPath: a.credentials, withIntermediateDirectories: true)
            try "OPENAI_API_KEY=sk-live-0123456789abcdef\n".write(toFile: a.credentials + "/env", atomically: false, encoding: .utf8)
            try a.write(command: ["/bin/sh", "-c", "cat /run/credentials/env; printf 'title:\\033]0;pwned\\007 red:\\033[31m done\\n'; echo err >&2"],
                        extra: "[credentials]\nhost = \"\(a.credentials)\"\n")
            let r = try a.run()
            #expect(r.status == 0, "\(r)")
            #expect(!r.stdout.contains("sk-live-0123456789abcdef"), "\(r)")
            #expect(r.stdout.contains("[redacted]"))
            #expect(!r.stdout.contains("\u{1b}"), "no raw ESC reaches the terminal")
            #expect(r.stdout.contains("\\x1b]0;pwned\\x07"), "\(r)")
            #expect(r.stderr.contains("err"))
        }

        @Test("two runs of one agent: the second fails clearly; two agents get distinct, stable uid ranges")
        func concurrencyAndRanges() throws {
            let a = try AgentFixture("twice")
            defer { a.clean() }
            try a.write(command: ["/probe/jailprobe", "say", "up", "--", "sleep", "5"])
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Harness.binary)
            p.arguments = ["run", a.config]
            p.environment = ["CLAWJAIL_STATE_DIR": Harness.stateDirectory]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            defer {
                kill(p.processIdentifier, SIGTERM)
                p.waitUntilExit()
            }
            var text = ""
            #expect(Harness.eventually(timeout: 10) {
                text += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
                return text.contains("up")
            })
            let second = try a.run()
            #expect(second.status != 0)
            #expect(second.stderr.contains("agent \(a.name) is already running"), "\(second)")

            // Another agent, at the same time: its own range.
            let b = try AgentFixture("other")
            defer { b.clean() }
            try b.write(command: ["/probe/jailprobe", "write", "/workspace/f"])
            #expect(try b.run().status == 0)
            try a.write(command: ["/probe/jailprobe", "write", "/workspace/f"])
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            #expect(try a.run().status == 0)
            var sa = stat(), sb = stat()
            #expect(stat(a.workspace + "/f", &sa) == 0 && stat(b.workspace + "/f", &sb) == 0)
            #expect(sa.st_uid != sb.st_uid, "two agents share an outside uid")
            #expect(sa.st_uid / 65536 != sb.st_uid / 65536, "ranges overlap")
            // Stable across restarts: a second run writes with the same uid.
            try a.write(command: ["/probe/jailprobe", "write", "/workspace/g"])
            #expect(try a.run().status == 0)
            var sa2 = stat()
            #expect(stat(a.workspace + "/g", &sa2) == 0 && sa2.st_uid == sa.st_uid)
        }

        @Test("a bad config fails before anything is created")
        func badConfig() throws {
            let dir = try Harness.tempDirectory("badcfg")
            defer { Harness.remove(dir) }
            let text = """
            name = "cjt-bad"
            command = ["/bin/true"]
            user = "0"
            [workspace]
            host = "/"
            [limits]
            memroy = "1G"
            """
            try text.write(toFile: dir + "/agent.toml", atomically: true, encoding: .utf8)
            let r = try Harness.clawjail(["run", dir + "/agent.toml"])
            #expect(r.status == 78, "\(r)")
            #expect(r.stderr.contains("agent.toml:3:8"), "user error with its position\n\(r)")
            #expect(r.stderr.contains("agent.toml:5:8"), "workspace '/' with its position\n\(r)")
            #expect(r.stderr.contains("agent.toml:7:1: unknown key 'memroy' in [limits]"), "\(r)")
            #expect(r.stderr.contains("did you mean 'memory'"))
            #expect(Harness.leftoverCgroups(named: "cjt-bad").isEmpty)
            let check = try Harness.clawjail(["check", dir + "/agent.toml"])
            #expect(check.status == 78)
        }

        @Test("a config that is not UTF-8 fails check and run at the bad byte, before anything is created")
        func notUTF8() throws {
            let dir = try Harness.tempDirectory("badutf8")
            defer { Harness.remove(dir) }
            // "café" in a comment, as a Latin-1 editor writes it.
            let bytes = Array("name = \"cjt-utf8\"\ncommand = [\"/bin/true\"]\n# caf".utf8) + [0xE9, 0x0A]
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/agent.toml"))
            for verb in ["check", "run"] {
                let r = try Harness.clawjail([verb, dir + "/agent.toml"])
                #expect(r.status == 78, "\(r)")
                #expect(r.stderr.contains("agent.toml:3:6: invalid UTF-8: the sequence 0xE9 is cut short"), "\(r)")
                #expect(r.stderr.contains("save the file as UTF-8"), "\(r)")
            }
            #expect(Harness.leftoverCgroups(named: "cjt-utf8").isEmpty)
        }
    }
}
