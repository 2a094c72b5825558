import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A state directory on a small tmpfs of its own, which the test fills from the host
/// side while a jail runs: the supervisor meets the kernel's ENOSPC, nothing faked.
final class FillableStateDirectory {
    /// /tmp/cjt-diskfull-<pid>-<hex>, the tmpfs.
    let mountPoint: String
    private var fillers: [String] = []
    private var mounted = false

    init(size: String = "4m") throws {
        mountPoint = "/tmp/cjt-diskfull-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        guard mkdir(mountPoint, 0o700) == 0 else { throw HarnessError("mkdir \(mountPoint): errno \(errno)") }
        guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=\(size),mode=0700") == 0 else {
            let e = errno
            rmdir(mountPoint)
            throw HarnessError("mount tmpfs on \(mountPoint): errno \(e)")
        }
        mounted = true
    }

    var state: String { mountPoint + "/state" }

    var freeBytes: UInt64 {
        var s = statvfs()
        guard statvfs(mountPoint, &s) == 0 else { return 0 }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Writes a new file until the kernel says ENOSPC. Call it again to take back
    /// what clawjail gave back meanwhile (a truncated -wal, a released reserve).
    func fill() throws {
        let file = mountPoint + "/filler-\(fillers.count)"
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw HarnessError("create \(file): errno \(errno)") }
        defer { close(fd) }
        fillers.append(file)
        let chunk = [UInt8](repeating: 0x5a, count: 65536)
        while true {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            guard n < 0 && errno == ENOSPC else { throw HarnessError("fill \(file): errno \(errno)") }
            return
        }
    }

    func free() {
        for f in fillers { unlink(f) }
        fillers = []
    }

    /// Unmounts our own tmpfs (lazily if a process of a failed test still holds it).
    func remove() {
        free()
        if mounted, umount2(mountPoint, 0) != 0 { umount2(mountPoint, Int32(MNT_DETACH)) }
        mounted = false
        rmdir(mountPoint)
    }
}

extension Privileged {
    /// Issue 20 part 6: a full state directory must not make the record lie. The end of
    /// a run that could not be written is said on stderr (with the errno), retried,
    /// kept, and shown as "end not recorded", never as a supervisor that died; what was
    /// recorded before stays intact.
    @Suite("a full state directory: the end is retried, kept, and never called lost")
    struct DiskFullTests {
        static let errnoText = "ENOSPC (errno 28: No space left on device)"

        /// The jail says "up", waits for /workspace/filled, does `middle`, waits for
        /// /workspace/go and exits 7. The host creates both files: the jail writes nothing.
        static func script(_ middle: String) -> String {
            "echo up; until [ -e /workspace/filled ]; do sleep 0.05; done; \(middle); "
                + "until [ -e /workspace/go ]; do sleep 0.05; done; exit 7"
        }

        /// The agent's script is up: fill the disk, let the script see it, then let it end.
        static func fillWhileRunning(_ bg: Background, _ s: Setup, workspace: String) throws {
            #expect(bg.waitFor("up"), "\(bg.stderr)")
            try s.disk.fill()
            touch(workspace + "/filled")
            #expect(bg.waitFor("filled-seen"), "\(bg.stderr)")
            touch(workspace + "/go")
        }

        static func touch(_ path: String) {
            _ = FileManager.default.createFile(atPath: path, contents: Data())
        }

        static func lines(_ text: String, containing needle: String) -> [String] {
            text.split(separator: "\n").map(String.init).filter { $0.contains(needle) }
        }

        struct Setup {
            let ops: OpsSetup
            let disk: FillableStateDirectory
            var env: [String: String] {
                ["CLAWJAIL_STATE_DIR": disk.state, "CLAWJAIL_CACHE_DIR": ops.dir + "/cache",
                 // No reserve: the end can only be written once the test frees space.
                 "CLAWJAIL_RECORD_RESERVE": "0"]
            }

            func cj(_ args: [String]) throws -> Harness.Result {
                try Harness.clawjail(args, environment: env)
            }

            func clean() {
                _ = try? cj(["gc"])
                disk.remove()
                ops.clean()
            }
        }

        static func setup(_ tag: String) throws -> Setup {
            let ops = try OpsSetup("diskfull-" + tag)
            do {
                return Setup(ops: ops, disk: try FillableStateDirectory())
            } catch {
                ops.clean()
                throw error
            }
        }

        static func auditEvents(_ s: Setup, agent: String) throws -> [[String: Any]] {
            try OpsJSON.lines(try s.cj(["audit", "export", "--agent", agent]).stdout)
        }

        @Test("exec --agent: an egress denial and the end wait in memory while the disk is full, and are recorded once space is freed")
        func execRecordedAfterSpaceFreed() throws {
            let s = try Self.setup("exec")
            defer { s.clean() }
            let a = try s.ops.agent("df-exec", script: "true")
            let first = try s.cj(["run", a.config])   // makes the agent known, with room to spare
            #expect(first.status == 0, "\(first)")

            // Its own empty network namespace: the proxy refuses denied.example itself,
            // and nothing leaves the box.
            let middle = "curl -sS -o /dev/null -w 'http %{http_code}\\n' http://denied.example/x; echo denied"
            let tool = try Background(["/usr/bin/unshare", "--net", "--", Harness.binary, "exec", "--agent", a.name,
                                       "--record-retry", "60s", "--allow", "allowed.example", "--",
                                       "/bin/sh", "-c", Self.script(middle)], environment: s.env)
            defer { tool.finish() }
            #expect(tool.waitFor("up"), "\(tool.stderr)")
            try s.disk.fill()
            #expect(s.disk.freeBytes == 0)
            Self.touch(a.workspace + "/filled")
            #expect(tool.waitFor("denied"), "\(tool.stdout)\n\(tool.stderr)")
            #expect(tool.stdout.contains("http 403"), "\(tool.stdout)")
            #expect(Harness.eventually(timeout: 10) { tool.stderr.contains("cannot record the audit events") },
                    "\(tool.stderr)")

            // During the outage `ps` still works, and calls nothing lost.
            let during = try s.cj(["ps"])
            #expect(during.status == 0, "\(during)")
            #expect(!during.stdout.contains("died without recording"), "\(during)")

            Self.touch(a.workspace + "/go")
            #expect(Harness.eventually(timeout: 10) { tool.stderr.contains("cannot record the end of") }, "\(tool.stderr)")
            s.disk.free()
            let status = tool.wait(timeout: 60)
            #expect(status == 7, "the exit status stays the command's\n\(tool.stderr)")

            let endLines = Self.lines(tool.stderr, containing: "cannot record the end of")
            #expect(endLines.count == 1, "one line, not one per retry:\n\(tool.stderr)")
            let endLine = try #require(endLines.first)
            #expect(endLine.contains("tool run"), "\(endLine)")
            #expect(endLine.contains("(exited 7)"), "\(endLine)")
            #expect(endLine.contains("in \(s.disk.state):"), "\(endLine)")
            #expect(endLine.contains(Self.errnoText), "\(endLine)")
            let eventLines = Self.lines(tool.stderr, containing: "cannot record the audit events")
            #expect(eventLines.count == 1, "\(tool.stderr)")
            #expect(eventLines.first?.contains(Self.errnoText) == true, "\(tool.stderr)")
            #expect(!Self.lines(tool.stderr, containing: "recorded the end of").isEmpty, "\(tool.stderr)")
            #expect(!tool.stderr.contains("gave up"), "\(tool.stderr)")

            // The real outcome is recorded, and the event from during the outage too.
            let logs = try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)
            let runs = try #require(logs["runs"] as? [[String: Any]])
            let run = try #require(runs.first { $0["kind"] as? String == "tool" }, "\(runs)")
            #expect(run["state"] as? String == "finished", "\(run)")
            #expect(run["exit_code"] as? Int == 7)
            #expect(run["outcome"] as? String == "exited 7")
            let runID = try #require(run["run_id"] as? Int)
            let events = try Self.auditEvents(s, agent: a.name).filter { $0["run_id"] as? Int == runID }
            let kinds = events.compactMap { $0["kind"] as? String }
            #expect(kinds == ["run.start", "record.delayed", "egress.deny", "run.end"], "\(kinds)")
            let delayed = try #require(events.first { $0["kind"] as? String == "record.delayed" })
            #expect((delayed["payload"] as? [String: Any])?["errno"] as? Int == 28, "\(delayed)")
            let denial = try #require(events.first { $0["kind"] as? String == "egress.deny" })
            #expect((denial["payload"] as? [String: Any])?["host"] as? String == "denied.example", "\(denial)")
            let end = try #require(events.last?["payload"] as? [String: Any])
            #expect(end["exit_code"] as? Int == 7)
            #expect((end["recorded_late"] as? [String: Any])?["errno"] as? Int == 28, "\(end)")

            let verify = try s.cj(["audit", "verify"])
            #expect(verify.status == 0, "\(verify)")
            #expect(verify.stdout.contains("audit chain ok"), "\(verify)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: s.disk.state + "/run-ends").isEmpty)
        }

        @Test("run: past --record-retry with the disk still full, ps and logs say 'end not recorded (disk full', and the next ps records it")
        func runKeptPastRetryWindow() throws {
            let s = try Self.setup("run")
            defer { s.clean() }
            let a = try s.ops.agent("df-run", script: Self.script("echo filled-seen"))
            let bg = try Background([Harness.binary, "run", "--record-retry", "1s", a.config], environment: s.env)
            defer { bg.finish() }
            try Self.fillWhileRunning(bg, s, workspace: a.workspace)
            #expect(bg.wait(timeout: 30) == 7, "the exit status stays the agent's\n\(bg.stderr)")

            let endLines = Self.lines(bg.stderr, containing: "cannot record the end of")
            #expect(endLines.count == 1, "\(bg.stderr)")
            let endLine = try #require(endLines.first)
            #expect(endLine.contains("of agent \(a.name) (exited 7) in \(s.disk.state):"), "\(endLine)")
            #expect(endLine.contains(Self.errnoText), "\(endLine)")
            #expect(endLine.contains("retrying for up to 1s"), "\(endLine)")
            #expect(Self.lines(bg.stderr, containing: "gave up recording the end of").count == 1, "\(bg.stderr)")

            // Still full: whatever the supervisor's exit gave back (its -wal) is taken again.
            try s.disk.fill()
            let ps = try s.cj(["ps"])
            #expect(ps.status == 0, "ps works on a full disk\n\(ps)")
            #expect(ps.stdout.contains("end not recorded (disk full: \(Self.errnoText)"), "\(ps)")
            #expect(ps.stdout.contains("exited 7"), "\(ps)")
            #expect(!ps.stdout.contains("died without recording"), "\(ps)")
            #expect(!ps.stdout.contains("lost runs"), "\(ps)")
            let logs = try s.cj(["logs", a.name])
            #expect(logs.status == 0, "\(logs)")
            #expect(logs.stdout.contains("end not recorded (disk full"), "\(logs)")
            #expect(!logs.stdout.contains("died without recording"), "\(logs)")
            let psJSON = try OpsJSON.parse(try s.cj(["ps", "--json"]).stdout)
            #expect((psJSON["end_not_recorded_runs"] as? [Any])?.count == 1, "\(psJSON)")
            #expect((psJSON["lost_runs"] as? [Any])?.isEmpty == true, "\(psJSON)")
            #expect(try s.cj(["audit", "verify"]).status == 0, "what was recorded is intact")

            s.disk.free()
            let settled = try s.cj(["ps"])
            #expect(settled.status == 0, "\(settled)")
            #expect(!settled.stdout.contains("end not recorded"), "\(settled)")
            let after = try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)
            let run = try #require((after["runs"] as? [[String: Any]])?.first)
            #expect(run["state"] as? String == "finished", "\(run)")
            #expect(run["exit_code"] as? Int == 7)
            let end = try #require(try Self.auditEvents(s, agent: a.name).last)
            #expect(end["kind"] as? String == "run.end")
            let payload = try #require(end["payload"] as? [String: Any])
            #expect(payload["exit_code"] as? Int == 7)
            let late = try #require(payload["recorded_late"] as? [String: Any], "\(payload)")
            #expect(late["from_end_marker"] as? Bool == true)
            #expect(late["errno"] as? Int == 28)
            #expect(late["supervisor_gave_up_ms"] is Int, "\(late)")
            let verify = try s.cj(["audit", "verify"])
            #expect(verify.status == 0, "\(verify)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: s.disk.state + "/run-ends").isEmpty)
        }

        @Test("a supervisor SIGKILLed while it retries has kept the outcome: the run reads 'end not recorded', not lost")
        func killedWhileRetrying() throws {
            let s = try Self.setup("kill")
            defer { s.clean() }
            let a = try s.ops.agent("df-kill", script: Self.script("echo filled-seen"))
            let bg = try Background([Harness.binary, "run", "--record-retry", "60s", a.config], environment: s.env)
            defer { bg.finish() }
            try Self.fillWhileRunning(bg, s, workspace: a.workspace)
            #expect(Harness.eventually(timeout: 10) { bg.stderr.contains("cannot record the end of") }, "\(bg.stderr)")
            kill(bg.pid, SIGKILL)   // our own child
            #expect(bg.wait(timeout: 10) == 128 + SIGKILL)

            try s.disk.fill()
            let ps = try s.cj(["ps"])
            #expect(ps.stdout.contains("end not recorded (disk full"), "\(ps)")
            #expect(!ps.stdout.contains("died without recording"), "\(ps)")
            s.disk.free()
            _ = try s.cj(["ps"])
            let run = try #require((try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)["runs"] as? [[String: Any]])?.first)
            #expect(run["state"] as? String == "finished", "\(run)")
            #expect(run["exit_code"] as? Int == 7)
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }

        @Test("with the default reserve, the end of a run fits on a disk that stays full")
        func reserveTakesTheEnd() throws {
            let s = try Self.setup("reserve")
            defer { s.clean() }
            var env = s.env
            env["CLAWJAIL_RECORD_RESERVE"] = nil
            let a = try s.ops.agent("df-reserve", script: Self.script("echo filled-seen"))
            let bg = try Background([Harness.binary, "run", "--record-retry", "1s", a.config], environment: env)
            defer { bg.finish() }
            try Self.fillWhileRunning(bg, s, workspace: a.workspace)
            #expect(bg.wait(timeout: 30) == 7, "\(bg.stderr)")
            #expect(Self.lines(bg.stderr, containing: "cannot record the end of").count == 1, "\(bg.stderr)")
            #expect(bg.stderr.contains("(in the space reserved for it at the start)"), "\(bg.stderr)")
            #expect(!bg.stderr.contains("gave up"), "\(bg.stderr)")

            try s.disk.fill()
            let run = try #require((try OpsJSON.parse(try s.cj(["logs", a.name, "--json"]).stdout)["runs"] as? [[String: Any]])?.first)
            #expect(run["state"] as? String == "finished", "recorded while the disk is still full: \(run)")
            #expect(run["exit_code"] as? Int == 7)
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }

        @Test("a run whose start cannot be recorded does not start, and says why")
        func fullBeforeStart() throws {
            let s = try Self.setup("start")
            defer { s.clean() }
            let a = try s.ops.agent("df-start", script: "echo ran")
            #expect(try s.cj(["run", a.config]).status == 0)
            try s.disk.fill()
            let r = try s.cj(["run", a.config])
            #expect(r.status != 0, "\(r)")
            #expect(!r.stdout.contains("ran"), "\(r)")
            #expect(r.stderr.contains("the jail does not start without its record"), "\(r)")
            #expect(r.stderr.contains(Self.errnoText), "\(r)")
            s.disk.free()
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }
    }
}
