import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Privileged {
    @Suite("operator integration: systemd unit, Node and Python runtimes")
    struct OperatorIntegrationTests {
        static let unit = Harness.repository + "/systemd/clawjail@.service"

        static func unitLines() throws -> [String] {
            try String(contentsOfFile: unit, encoding: .utf8).split(separator: "\n").map(String.init)
        }

        static func value(_ key: String) throws -> String? {
            try unitLines().first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }

        @Test("clawjail@.service: the settings that matter")
        func unitFile() throws {
            #expect(try Self.value("Delegate") == "yes")
            #expect(try Self.value("KillMode") == "mixed")
            #expect(try Self.value("Restart") == "on-failure")
            #expect(try Self.value("StandardOutput") == "journal")
            #expect(try Self.value("ExecStart") == "/usr/local/bin/clawjail run /etc/clawjail/%i.toml")
            let prevent = try #require(try Self.value("RestartPreventExitStatus")).split(separator: " ")
            #expect(prevent.contains("137") && prevent.contains("78"), "an emergency stop is not undone")
            // The export the timer runs is a valid command line.
            let export = try String(contentsOfFile: Harness.repository + "/systemd/clawjail-audit-export.service", encoding: .utf8)
            #expect(export.contains("ExecStart=/usr/local/bin/clawjail audit export --syslog --since-last"))
        }

        @Test("systemd-analyze verify accepts the units",
              .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"),
                       "needs /usr/bin/systemd-analyze (package systemd; scripts/setup installs it)"))
        func unitsVerify() throws {
            // verify checks that ExecStart's binary exists: point it at the one under test.
            let dir = try Harness.tempDirectory("unit")
            defer { Harness.remove(dir) }
            for file in ["clawjail@.service", "clawjail-audit-export.service", "clawjail-audit-export.timer"] {
                let text = try String(contentsOfFile: Harness.repository + "/systemd/" + file, encoding: .utf8)
                    .replacingOccurrences(of: "/usr/local/bin/clawjail", with: Harness.binary)
                try text.write(toFile: dir + "/" + file, atomically: true, encoding: .utf8)
            }
            let r = try Harness.run(["/usr/bin/systemd-analyze", "verify", dir + "/clawjail@cjt-unit.service",
                                     dir + "/clawjail-audit-export.timer", dir + "/clawjail-audit-export.service"])
            #expect(r.status == 0, "\(r)")
            #expect(!r.stderr.contains("clawjail"), "no complaint about the units\n\(r)")
        }

        @Test("its ExecStart, with %i substituted, runs an agent from its config directory")
        func execStart() throws {
            let s = try OpsSetup("execstart")
            defer { s.clean() }
            let name = "cjt-unit-\(String(UInt32.random(in: 0...0xffffff), radix: 36))"
            let etc = s.dir + "/etc-clawjail"
            try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
            try """
            name = "\(name)"
            command = ["/bin/sh", "-c", "echo hello from $HOSTNAME; exit 0"]
            [workspace]
            host = "\(s.dir)/ws"
            """.write(toFile: "\(etc)/\(name).toml", atomically: true, encoding: .utf8)
            let line = try #require(try Self.value("ExecStart"))
            let argv = line.replacingOccurrences(of: "%i", with: name)
                .replacingOccurrences(of: "/etc/clawjail/", with: etc + "/")
                .replacingOccurrences(of: "/usr/local/bin/clawjail", with: Harness.binary)
                .split(separator: " ").map(String.init)
            let r = try Harness.run(argv, environment: s.env)
            #expect(r.status == 0, "\(r)")
            #expect(r.stderr.contains("agent \(name) started"), "\(r)")
            #expect(r.stderr.contains("agent \(name) exited 0"), "\(r)")
            // The instance name is the agent: ps, logs and stop use it.
            #expect(try s.cj(["logs", name]).stdout.contains("exited 0"))
        }

        static func runtimeResult(_ r: Harness.Result) throws -> (status: [String: Any], stdout: String) {
            let line = try #require(r.lines.last, "\(r)")
            let o = try OpsJSON.parse(line)
            return (try #require(o["status"] as? [String: Any], "\(r)"), o["stdout"] as? String ?? "")
        }

        @Test("examples/runtimes: Node and Python call clawjail exec --json-status with a pipe and parse the status",
              arguments: [["/usr/bin/node", "examples/runtimes/node/run-tool.mjs"], ["/usr/bin/python3", "examples/runtimes/python/run_tool.py"]])
        func runtimes(_ interpreter: [String]) throws {
            guard FileManager.default.isExecutableFile(atPath: interpreter[0]) else {
                Issue.record("\(interpreter[0]) is missing: scripts/setup installs it")
                return
            }
            let s = try OpsSetup("runtime")
            defer { s.clean() }
            let ws = s.dir + "/ws"
            try FileManager.default.createDirectory(atPath: ws, withIntermediateDirectories: true)
            var env = s.env
            env["CLAWJAIL"] = Harness.binary
            let script = Harness.repository + "/" + interpreter[1]
            let ok = try Harness.run([interpreter[0], script, "--workspace", ws, "--",
                                      "/bin/sh", "-c", "echo out; echo err >&2; pwd; exit 3"], environment: env)
            #expect(ok.status == 1, "the tool's status was not 0\n\(ok)")
            let (status, stdout) = try Self.runtimeResult(ok)
            #expect(status["end"] as? String == "exited", "\(status)")
            #expect(status["exit_status"] as? Int == 3 && status["exit_code"] as? Int == 3)
            #expect((status["run_id"] as? String)?.hasPrefix("exec-") == true)
            #expect(status["duration_ms"] is Int && status["memory_peak_bytes"] is Int)
            #expect(stdout == "out\n/workspace\n", "\(ok)")

            let slow = try Harness.run([interpreter[0], script, "--timeout", "1s", "--", "/bin/sleep", "10"], environment: env)
            let (timeout, _) = try Self.runtimeResult(slow)
            #expect(timeout["end"] as? String == "timeout" && timeout["exit_status"] as? Int == 124, "\(slow)")
            #expect(slow.stderr.contains("the tool timed out"))

            // A failure before the run (an unknown agent): either no status line, which the
            // example reports, or a setup-failed status.
            let bad = try Harness.run([interpreter[0], script, "--agent", "cjt-nobody", "--", "/bin/true"], environment: env)
            if bad.status == 2 {
                #expect(bad.stderr.contains("without a status") && bad.stderr.contains("cjt-nobody"), "\(bad)")
            } else {
                #expect(try Self.runtimeResult(bad).status["end"] as? String == "setup-failed", "\(bad)")
            }
        }

        @Test("scripts/demo, the README's first command, runs the demo agent and its tool runs (twice: it is re-runnable)")
        func demoScript() throws {
            let dir = try Harness.tempDirectory("demo")
            defer { Harness.remove(dir) }
            var env = ProcessInfo.processInfo.environment
            env["CLAWJAIL_BIN"] = Harness.binary
            env["CLAWJAIL_DEMO_DIR"] = dir
            env["CLAWJAIL_STATE_DIR"] = dir + "/state"
            for round in 1...2 {
                let r = try Harness.run([Harness.repository + "/scripts/demo"], environment: env, timeout: 240)
                #expect(r.status == 0, "round \(round): \(r)")
                #expect(r.stdout.contains("demo agent: uid 1000, pid 2, host demo, cwd /workspace"), "\(r)")
                #expect(r.stdout.contains("rewrite my protected SOUL.md") && r.stdout.contains("Read-only file system"), "\(r)")
                #expect(r.stdout.contains("tool run sees: ['AGENTS.md', 'SOUL.md', 'memory'] as uid 1000 | credentials: False"), "\(r)")
                #expect(r.stdout.contains("hello from a fresh jail: 1000 in /workspace"), "\(r)")
                #expect(r.stderr.contains("agent demo exited 0"), "\(r)")
                // The same agent in a micro-VM (TCG): its own kernel, the same refusals.
                if VMGuest.available {
                    #expect(r.stderr.contains("agent demo-vm started in a VM") && r.stderr.contains("agent demo-vm exited 0"), "\(r)")
                    #expect(r.stdout.components(separatedBy: "rewrite my protected SOUL.md").count == 3, "refused in both\n\(r)")
                }
            }
        }
    }
}
