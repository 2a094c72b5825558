import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Privileged {
    @Suite("operator commands: ps, stats, logs, stop, concurrency, lost runs")
    struct OperatorCommandTests {
        @Test("ps, stats and logs of a running agent, human and --json; a bad name is a clear error")
        func psStatsLogs() throws {
            let s = try OpsSetup("ps")
            defer { s.clean() }
            let a = try s.agent("ps", script: "echo up; exec sleep 60", extra: "[limits]\nmemory = \"96M\"\npids = 32\n")
            let bg = try s.start(a)
            defer { bg.finish() }
            #expect(bg.waitFor("up"), "\(bg.stderr)")

            let ps = try s.cj(["ps"])
            #expect(ps.status == 0, "\(ps)")
            #expect(ps.stdout.hasPrefix("NAME"), "\(ps)")
            let row = try #require(ps.lines.first { $0.hasPrefix(a.name + " ") }, "\(ps)")
            #expect(row.contains(" agent "))
            #expect(row.contains(" \(bg.pid) "), "the supervisor's pid\n\(ps)")
            #expect(row.contains("/ 96M"), "memory against the run's limit\n\(ps)")
            #expect(row.contains("/ 32"), "pids against the limit\n\(ps)")
            #expect(row.contains(" none "), "network mode\n\(ps)")
            #expect(row.hasSuffix("running"))

            let psj = try OpsJSON.parse(try s.cj(["ps", "--json"]).stdout)
            let jails = try #require(psj["jails"] as? [[String: Any]])
            let j = try #require(jails.first { $0["name"] as? String == a.name })
            #expect(j["supervisor_pid"] as? Int == Int(bg.pid))
            #expect(j["kind"] as? String == "agent")
            #expect(j["memory_limit_bytes"] as? Int == 96 << 20)
            #expect((j["memory_current_bytes"] as? Int ?? 0) > 0)
            #expect((j["pids_current"] as? Int ?? 0) >= 2, "init and sleep")
            #expect(j["network"] as? String == "none")
            #expect((j["uptime_ms"] as? Int ?? -1) >= 0)
            let runID = try #require(j["run_id"] as? Int)

            let st = try s.cj(["stats", a.name])
            #expect(st.status == 0, "\(st)")
            #expect(st.stdout.contains("supervisor pid \(bg.pid)"))
            #expect(st.stdout.contains("run \(runID)"))
            #expect(st.stdout.contains("limit 96M (no swap)"), "\(st)")
            #expect(st.stdout.contains("limit 32"))
            #expect(st.stdout.contains("oom kills  0"), "\(st)")
            #expect(st.stdout.contains("workspace  \(a.workspace)"))
            let stj = try OpsJSON.parse(try s.cj(["stats", a.name, "--json"]).stdout)
            #expect(stj["oom_kills"] as? Int == 0)
            #expect(stj["memory_peak_bytes"] is Int)
            #expect(stj["cpu_usage_usec"] is Int)
            #expect((stj["cgroup_paths"] as? [String])?.isEmpty == false)
            let manifest = try #require(stj["manifest"] as? [String: Any])
            #expect((manifest["limits"] as? [String: Any])?["pids"] as? Int == 32)

            let logs = try s.cj(["logs", a.name])
            #expect(logs.status == 0, "\(logs)")
            #expect(logs.stdout.contains("agent \(a.name): config \(a.config)"), "\(logs)")
            #expect(logs.stdout.contains("running  supervisor pid \(bg.pid)"), "\(logs)")
            #expect(logs.stdout.contains("run.start"), "\(logs)")
            #expect(logs.stdout.contains("uid.allocate"))

            let missing = try s.cj(["stats", "cjt-no-such"])
            #expect(missing.status == 125)
            #expect(missing.stderr.contains("no running jail named cjt-no-such"), "\(missing)")
            #expect(try s.cj(["logs", "cjt-no-such"]).stderr.contains("no agent named cjt-no-such"))
            #expect(try s.cj(["logs", a.name, "--limit", "0"]).status == 64)

            bg.finish()
            let after = try s.cj(["ps"])
            #expect(!after.stdout.contains(a.name), "\(after)")
            #expect(after.stdout.contains("no jails running"))
            let ended = try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)
            let run = try #require((ended["runs"] as? [[String: Any]])?.first)
            #expect(run["state"] as? String == "finished")
            #expect(run["outcome"] as? String == "killed by operator (SIGTERM)", "\(run)")
            #expect(run["exit_code"] as? Int == 143)
            #expect(run["manifest"] is [String: Any])
        }

        @Test("stop: SIGTERM ends a cooperative agent; the run records the operator's stop")
        func stopCooperative() throws {
            let s = try OpsSetup("stop")
            defer { s.clean() }
            let a = try s.agent("stop", script: "echo up; exec sleep 60")
            let bg = try s.start(a)
            defer { bg.finish() }
            #expect(bg.waitFor("up"), "\(bg.stderr)")
            let r = try s.cj(["stop", a.name])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.hasPrefix("stopped \(a.name) in "), "\(r)")
            #expect(r.stdout.contains("it ended after SIGTERM"), "\(r)")
            #expect(r.stdout.contains("killed by operator (SIGTERM) (exit status 143)"), "\(r)")
            #expect(bg.wait(timeout: 5) == 143)
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
            let ev = try s.cj(["audit", "export", "--agent", a.name])
            let stop = try #require(try OpsJSON.lines(ev.stdout).first { $0["kind"] as? String == "operator.stop" })
            #expect((stop["payload"] as? [String: Any])?["how"] as? String == "sigterm")
            let again = try s.cj(["stop", a.name])
            #expect(again.status == 125)
            #expect(again.stderr.contains("no running jail named \(a.name)"), "\(again)")
        }

        @Test("stop: an agent that ignores SIGTERM is killed on the second SIGTERM after --grace")
        func stopStubborn() throws {
            let s = try OpsSetup("stubborn")
            defer { s.clean() }
            let a = try s.agent("stubborn", script: "trap '' TERM; echo up; while :; do sleep 1; done")
            let bg = try s.start(a, args: ["--grace", "30s"])
            defer { bg.finish() }
            #expect(bg.waitFor("up"), "\(bg.stderr)")
            let t0 = Date()
            let r = try s.cj(["stop", a.name, "--grace", "1s", "--json"])
            #expect(r.status == 0, "\(r)")
            let j = try OpsJSON.parse(r.stdout)
            #expect(j["how"] as? String == "sigterm-twice", "\(r)")
            #expect(j["supervisor_exited"] as? Bool == true)
            #expect(j["exit_code"] as? Int == 137, "\(r)")
            #expect(Date().timeIntervalSince(t0) < 10, "well before the run's own 30s grace")
            #expect(bg.wait(timeout: 5) == 137)
        }

        @Test("stop: a stopped supervisor is bypassed through the jail's cgroup (emergency kill), and says so")
        func stopWedged() throws {
            let s = try OpsSetup("wedged")
            defer { s.clean() }
            let a = try s.agent("wedged", script: "echo up; exec sleep 60")
            let bg = try s.start(a)
            defer { bg.finish() }
            #expect(bg.waitFor("up"), "\(bg.stderr)")
            #expect(kill(bg.pid, SIGSTOP) == 0)
            #expect(Harness.eventually { (try? String(contentsOfFile: "/proc/\(bg.pid)/stat", encoding: .utf8))?.contains(") T ") == true })
            let ps = try s.cj(["ps"])
            #expect(ps.lines.first { $0.hasPrefix(a.name + " ") }?.hasSuffix("supervisor stopped") == true, "\(ps)")
            let r = try s.cj(["stop", a.name, "--grace", "1s"])
            #expect(r.status == 1, "the supervisor did not exit\n\(r)")
            #expect(r.stdout.contains("its supervisor did not respond; the jail was killed through its cgroup"), "\(r)")
            #expect(r.stdout.contains("has not exited and still holds the jail's lock"), "\(r)")
            #expect(r.stdout.contains("the jail's processes are gone"), "\(r)")
            // Continued, it sees the SIGTERMs and its dead jail, and records the end.
            kill(bg.pid, SIGCONT)
            #expect(bg.wait(timeout: 15) != nil)
            #expect(bg.stderr.contains("clawjail kill"), "\(bg.stderr)")
            let logs = try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)
            let run = try #require((logs["runs"] as? [[String: Any]])?.first)
            #expect(run["state"] as? String == "finished", "\(run)")
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }

        @Test("two `clawjail run` of one agent at once: exactly one runs, the other fails clearly")
        func sameAgentTwice() throws {
            let s = try OpsSetup("twice")
            defer { s.clean() }
            let a = try s.agent("twice", script: "echo up; sleep 2")
            let first = try s.start(a)
            let second = try s.start(a)
            defer { first.finish(); second.finish() }
            let statuses = [first.wait(timeout: 30), second.wait(timeout: 30)]
            #expect(statuses.contains(0), "\(first.stderr)\n\(second.stderr)")
            let loser = statuses[0] == 0 ? second : first
            #expect(statuses.filter { $0 == 0 }.count == 1, "\(first.stderr)\n\(second.stderr)")
            #expect(loser.stderr.contains("agent \(a.name) is already running") || loser.stderr.contains("'\(a.name)' is already running"),
                    "\(loser.stderr)")
            let logs = try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)
            let runs = try #require(logs["runs"] as? [[String: Any]])
            #expect(runs.count == 1, "the loser left no run row\n\(runs)")
            #expect(runs.first?["exit_code"] as? Int == 0)
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }

        @Test("two agents at once: both run, with distinct uid ranges, and ps lists both")
        func twoAgents() throws {
            let s = try OpsSetup("pair")
            defer { s.clean() }
            let a = try s.agent("paira", script: "echo up; sleep 3; touch /workspace/f")
            let b = try s.agent("pairb", script: "echo up; sleep 3; touch /workspace/f")
            let ba = try s.start(a), bb = try s.start(b)
            defer { ba.finish(); bb.finish() }
            #expect(ba.waitFor("up") && bb.waitFor("up"), "\(ba.stderr)\n\(bb.stderr)")
            let psj = try OpsJSON.parse(try s.cj(["ps", "--json"]).stdout)
            let names = Set((psj["jails"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String })
            #expect(names.isSuperset(of: [a.name, b.name]), "\(psj)")
            #expect(ba.wait() == 0 && bb.wait() == 0, "\(ba.stderr)\n\(bb.stderr)")
            func outside(_ n: String) throws -> Int {
                let l = try OpsJSON.parse(try s.cj(["logs", n, "--json"]).stdout)
                let m = try #require((l["runs"] as? [[String: Any]])?.first?["manifest"] as? [String: Any])
                return try #require((m["uid_map"] as? [String: Any])?["outside"] as? Int)
            }
            let ua = try outside(a.name), ub = try outside(b.name)
            #expect(ua != ub && abs(ua - ub) >= 65536, "ranges overlap: \(ua) \(ub)")
            var sa = stat(), sb = stat()
            #expect(stat(a.workspace + "/f", &sa) == 0 && stat(b.workspace + "/f", &sb) == 0)
            #expect(Int(sa.st_uid) - ua == 1000 && Int(sb.st_uid) - ub == 1000, "uid 1000 inside each range")
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }

        @Test("a supervisor SIGKILLed mid-run: ps and logs show the run lost, the database verifies, gc cleans up")
        func sigkillLost() throws {
            let s = try OpsSetup("lost")
            defer { s.clean() }
            let a = try s.agent("lost", script: "echo up; exec sleep 60")
            let bg = try s.start(a)
            defer { bg.finish() }
            #expect(bg.waitFor("up"), "\(bg.stderr)")
            let supervisor = bg.pid
            #expect(kill(supervisor, SIGKILL) == 0)
            #expect(bg.wait(timeout: 10) == 137)

            let ps = try s.cj(["ps"])
            #expect(ps.status == 0, "\(ps)")
            #expect(!ps.lines.contains { $0.hasPrefix(a.name + " ") }, "no longer running\n\(ps)")
            #expect(ps.stdout.contains("lost runs"), "\(ps)")
            let lostRow = try #require(ps.lines.first { $0.contains(" \(a.name) ") && $0.hasSuffix("lost") }, "\(ps)")
            #expect(lostRow.contains(" \(supervisor) "))
            let psj = try OpsJSON.parse(try s.cj(["ps", "--json", "--all"]).stdout)
            let lost = try #require((psj["lost_runs"] as? [[String: Any]])?.first { $0["agent"] as? String == a.name })
            #expect(lost["state"] as? String == "lost")

            let logs = try s.cj(["logs", a.name])
            #expect(logs.stdout.contains("lost"), "\(logs)")
            #expect(logs.stdout.contains("supervisor pid \(supervisor) died without recording the end"), "\(logs)")
            #expect(logs.stdout.contains("run.lost"), "\(logs)")
            let verify = try s.cj(["audit", "verify"])
            #expect(verify.status == 0, "\(verify)")
            #expect(verify.stdout.hasPrefix("audit chain ok"))

            // The jail died with its supervisor; its cgroup is a leftover until gc.
            #expect(Harness.eventually(timeout: 5) { Harness.processes(inUidRange: UInt32(0x7000_0000)).allSatisfy { Harness.jailName(of: $0) != a.name } })
            _ = try s.cj(["gc"])
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
            // And the agent starts again, its lost run left as it was.
            let text = try String(contentsOfFile: a.config, encoding: .utf8).replacingOccurrences(of: "exec sleep 60", with: "true")
            try text.write(toFile: a.config, atomically: true, encoding: .utf8)
            let again = try Harness.clawjail(["run", a.config], environment: s.env, timeout: 30)
            #expect(again.status == 0, "\(again)")
            let runs = try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)["runs"] as? [[String: Any]] ?? []
            #expect(runs.map { $0["state"] as? String } == ["finished", "lost"], "\(runs)")
        }

        @Test("every operator command teaches with --help")
        func help() throws {
            for cmd in [["ps"], ["stats"], ["logs"], ["stop"], ["audit"], ["audit", "verify"], ["audit", "export"],
                        ["protect"], ["protect", "snapshot"], ["protect", "diff"], ["protect", "restore"], ["protect", "list"], ["doctor"]] {
                let r = try Harness.clawjail(cmd + ["--help"])
                #expect(r.status == 0, "\(cmd)\n\(r)")
                #expect(r.stdout.contains("USAGE: clawjail " + cmd.joined(separator: " ")), "\(cmd)\n\(r)")
                #expect(r.stdout.count > 400, "\(cmd) has a real explanation\n\(r)")
            }
            let top = try Harness.clawjail(["--help"])
            for sub in ["ps", "stats", "logs", "stop", "audit", "protect", "doctor"] {
                #expect(top.stdout.contains("  \(sub)"), "\(sub) listed\n\(top)")
            }
        }
    }
}
