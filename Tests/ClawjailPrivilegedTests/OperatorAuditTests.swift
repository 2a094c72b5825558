import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Privileged {
    @Suite("operator commands: audit verify and export")
    struct OperatorAuditTests {
        /// A state directory with a few real events (two runs of one agent): 5 rows.
        static func populated(_ tag: String) throws -> (OpsSetup, OpsAgent) {
            let s = try OpsSetup(tag)
            let a = try s.agent(tag, script: "echo hi")
            for _ in 0..<2 {
                let r = try Harness.clawjail(["run", a.config], environment: s.env, timeout: 30)
                #expect(r.status == 0, "\(r)")
            }
            return (s, a)
        }

        /// A copy of the state directory to tamper with.
        static func copy(_ s: OpsSetup, _ name: String) throws -> OpsSetup {
            let c = try OpsSetup(name)
            let r = try Harness.run(["/bin/cp", "-a", s.state, c.state])
            #expect(r.status == 0, "\(r)")
            return c
        }

        @Test("audit verify: ok on a real chain; each tampering kind is found through the CLI, with the first bad row")
        func tampering() throws {
            let (s, _) = try Self.populated("verify")
            defer { s.clean() }
            let ok = try s.cj(["audit", "verify"])
            #expect(ok.status == 0, "\(ok)")
            #expect(ok.stdout.hasPrefix("audit chain ok: 5 events, last row #5"), "\(ok)")
            let okJSON = try OpsJSON.parse(try s.cj(["audit", "verify", "--json"]).stdout)
            #expect(okJSON["ok"] as? Bool == true && okJSON["count"] as? Int == 5)
            #expect((okJSON["last_hash"] as? String)?.count == 64)

            let cases: [(String, String, Int, String)] = [
                ("edited", "DROP TRIGGER event_append_only_update; UPDATE event SET payload = '{\"plan_hash\":\"0\"}' WHERE seq = 2;", 2, "edited"),
                ("edited-kind", "DROP TRIGGER event_append_only_update; UPDATE event SET kind = 'run.nothing' WHERE seq = 3;", 3, "edited"),
                ("deleted", "DROP TRIGGER event_append_only_delete; DELETE FROM event WHERE seq = 3;", 3, "deleted"),
                ("truncated", "DROP TRIGGER event_append_only_delete; DELETE FROM event WHERE seq = 5;", 5, "deleted"),
                ("reordered", "DROP TRIGGER event_append_only_update; UPDATE event SET seq = -1 WHERE seq = 3; "
                    + "UPDATE event SET seq = 3 WHERE seq = 4; UPDATE event SET seq = 4 WHERE seq = -1;", 3, "reordered"),
                ("inserted", "INSERT INTO event (seq, ts, agent, kind, run_id, payload, prev_hash, hash) "
                    + "SELECT 6, ts, agent, kind, run_id, payload, hash, hash FROM event WHERE seq = 5;", 6, "inserted"),
            ]
            for (tag, sql, seq, reason) in cases {
                let c = try Self.copy(s, "tamper-" + tag)
                defer { Harness.remove(c.dir) }
                let edit = try Harness.sqlite(c.state + "/state.db", sql)
                #expect(edit.status == 0, "\(tag): \(edit)")
                let r = try c.cj(["audit", "verify"])
                #expect(r.status == 1, "\(tag)\n\(r)")
                #expect(r.stdout.hasPrefix("audit chain BROKEN at row #\(seq) (\(reason))"), "\(tag)\n\(r)")
                let j = try OpsJSON.parse(try c.cj(["audit", "verify", "--json"]).stdout)
                #expect(j["ok"] as? Bool == false)
                #expect(j["seq"] as? Int == seq && j["reason"] as? String == reason, "\(tag): \(j)")
                if tag == "edited" {
                    #expect(r.stdout.contains("row #2 as stored now: "), "the bad row is shown\n\(r)")
                    #expect(r.stdout.contains("\"plan_hash\":\"0\""))
                }
                // doctor reports it too.
                let d = try c.cj(["doctor"])
                #expect(d.stdout.contains("audit chain broken at row #\(seq)"), "\(tag)\n\(d)")
            }
            // The original is untouched.
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }

        @Test("audit export to stdout: every row, oldest first, chained; --agent and --since filter; bad times are usage errors")
        func exportStdout() throws {
            let (s, a) = try Self.populated("export")
            defer { s.clean() }
            let r = try s.cj(["audit", "export"])
            #expect(r.status == 0, "\(r)")
            let rows = try OpsJSON.lines(r.stdout)
            #expect(rows.map { $0["seq"] as? Int } == [1, 2, 3, 4, 5])
            for (prev, row) in zip(rows, rows.dropFirst()) {
                #expect(row["prev_hash"] as? String == prev["hash"] as? String)
            }
            #expect(rows.map { $0["kind"] as? String } == ["uid.allocate", "run.start", "run.end", "run.start", "run.end"])
            #expect((rows[0]["ts"] as? String)?.hasSuffix("Z") == true)
            #expect(rows[0]["ts_ms"] is Int)
            #expect(((rows[1]["payload"] as? [String: Any])?["plan"] as? [String: Any])?["protect_hashes"] != nil,
                    "the run start carries the plan with its protect hashes")

            #expect(try s.cj(["audit", "export", "--agent", a.name]).lines.count == 5)
            #expect(try s.cj(["audit", "export", "--agent", "cjt-nobody"]).stdout.isEmpty)
            #expect(try s.cj(["audit", "export", "--since", "1h"]).lines.count == 5)
            #expect(try s.cj(["audit", "export", "--since", "2999-01-01T00:00:00Z"]).stdout.isEmpty)
            #expect(try s.cj(["audit", "export", "--since", "2000-01-01"]).lines.count == 5)
            #expect(try s.cj(["audit", "export", "--since", "2000-01-01T00:00:00.5+02:00"]).lines.count == 5)
            let bad = try s.cj(["audit", "export", "--since", "last tuesday"])
            #expect(bad.status == 64, "\(bad)")
            #expect(bad.stderr.contains("is not a time"))
            #expect(try s.cj(["audit", "export", "--format", "csv"]).status == 64)
            #expect(try s.cj(["audit", "export", "--output", s.dir + "/x", "--syslog"]).status == 64)
            // A reader that goes away does not make an error.
            let head = try Harness.run(["/bin/sh", "-c", "'\(Harness.binary)' audit export | head -1"], environment: s.env.merging(["PATH": "/usr/bin:/bin"]) { a, _ in a })
            #expect(head.status == 0 && head.lines.count == 1, "\(head)")
        }

        @Test("audit export --output: 0600, appends only new rows, refuses when the database was rewritten since")
        func exportFile() throws {
            let (s, a) = try Self.populated("expfile")
            defer { s.clean() }
            let file = s.dir + "/audit.jsonl"
            let first = try s.cj(["audit", "export", "--output", file])
            #expect(first.status == 0, "\(first)")
            #expect(first.stderr.contains("exported 5 events, up to row #5"), "\(first)")
            #expect(Harness.mode(file) == 0o600)
            #expect(try OpsJSON.lines(try String(contentsOfFile: file, encoding: .utf8)).count == 5)

            let again = try s.cj(["audit", "export", "--output", file])
            #expect(again.stderr.contains("exported 0 events (after row #5, already there)"), "\(again)")
            #expect(try Harness.clawjail(["run", a.config], environment: s.env).status == 0)
            let more = try s.cj(["audit", "export", "--output", file])
            #expect(more.stderr.contains("exported 2 events, up to row #7 (after row #5"), "\(more)")
            let rows = try OpsJSON.lines(try String(contentsOfFile: file, encoding: .utf8))
            #expect(rows.map { $0["seq"] as? Int } == Array(1...7).map { $0 })
            // doctor sees the export.
            #expect(try s.cj(["doctor"]).stdout.contains("last export to file:\(file)"))

            // Someone rewrites row 7 (and the head) to hide what it said: the next export notices.
            let c = try Self.copy(s, "expfile-rewritten")
            defer { Harness.remove(c.dir) }
            let before = try String(contentsOfFile: file, encoding: .utf8)
            _ = try Harness.sqlite(c.state + "/state.db", "DROP TRIGGER event_append_only_update; "
                                   + "UPDATE event SET hash = '\(String(repeating: "0123456789abcdef", count: 4))' WHERE seq = 7; "
                                   + "UPDATE audit_head SET hash = (SELECT hash FROM event WHERE seq = 7);")
            let refused = try c.cj(["audit", "export", "--output", file])
            #expect(refused.status == 1, "\(refused)")
            #expect(refused.stderr.contains("row #7 has hash 0123456789abcdef0123"), "\(refused)")
            #expect(refused.stderr.contains("the chain was rewritten after the earlier export"), "\(refused)")
            #expect(try String(contentsOfFile: file, encoding: .utf8) == before, "nothing appended")
            // A file that is not an export is not appended to.
            try "hello\n".write(toFile: s.dir + "/other", atomically: true, encoding: .utf8)
            #expect(try s.cj(["audit", "export", "--output", s.dir + "/other"]).status == 64)
            // Nor through a symlink.
            try FileManager.default.createSymbolicLink(atPath: s.dir + "/link", withDestinationPath: file)
            #expect(try s.cj(["audit", "export", "--output", s.dir + "/link"]).status != 0)
        }

        @Test("audit export --syslog: one RFC 5424 datagram per event; --since-last sends only new ones")
        func exportSyslog() throws {
            let (s, a) = try Self.populated("syslog")
            defer { s.clean() }
            let path = s.dir + "/log.sock"
            let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            #expect(fd >= 0)
            defer { close(fd) }
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sa.sun_path) { b in for (i, c) in path.utf8.enumerated() { b[i] = c } }
            let bound = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            #expect(bound == 0)
            func receive() -> [String] {
                var out: [String] = []
                var buf = [UInt8](repeating: 0, count: 1 << 17)
                while true {
                    let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
                    if n <= 0 { break }
                    out.append(String(decoding: buf[0..<n], as: UTF8.self))
                }
                return out
            }
            let r = try s.cj(["audit", "export", "--syslog-socket", path])
            #expect(r.status == 0, "\(r)")
            let msgs = receive()
            #expect(msgs.count == 5, "\(msgs)")
            for m in msgs {
                #expect(m.hasPrefix("<8"), "authpriv facility: \(m)")
                #expect(m.contains(">1 "), "RFC 5424 version")
                #expect(m.contains(" clawjail "), "app name")
                #expect(m.contains("[clawjail@32473 seq=\""), "structured data")
            }
            #expect(msgs[1].contains(" run.start [clawjail@32473 seq=\"2\" agent=\"\(a.name)\" run=\"1\"] {"), "\(msgs[1])")
            let json = try OpsJSON.parse(String(msgs[1][try #require(msgs[1].firstIndex(of: "{"))...]))
            #expect(json["seq"] as? Int == 2)

            #expect(try Harness.clawjail(["run", a.config], environment: s.env).status == 0)
            let newer = try s.cj(["audit", "export", "--syslog-socket", path, "--since-last"])
            #expect(newer.status == 0, "\(newer)")
            let second = receive()
            #expect(second.count == 2, "only the two new events\n\(second)")
            #expect(second.first?.contains("seq=\"6\"") == true)
            #expect(try s.cj(["audit", "export", "--syslog-socket", s.dir + "/nobody.sock"]).status == 125)
            #expect(try s.cj(["audit", "export", "--since-last"]).status == 64)
        }

        @Test("TIME parsing: RFC 3339 forms and ages")
        func timeForms() throws {
            let s = try OpsSetup("time")
            defer { s.clean() }
            _ = try s.agent("time", script: "true")
            for t in ["24h", "90m", "7d", "1d12h", "30s", "2w", "2026-03-01", "2026-03-01T12:00:00Z", "2026-03-01t12:00:00z",
                      "2026-03-01 12:00:00.123+05:30", "2024-02-29T00:00:00-00:00"] {
                let r = try s.cj(["audit", "export", "--since", t])
                #expect(r.status != 64, "\(t)\n\(r)")
            }
            for t in ["", "h", "24", "24x", "2026-02-30", "2026-13-01", "2026-03-01T25:00:00Z", "2026-03-01T12:00:00", "-1h"] {
                #expect(try s.cj(["audit", "export", "--since", t]).status == 64, "\(t)")
            }
        }
    }
}
