import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Privileged {
    @Suite("operator commands: protect snapshot, diff, restore, list")
    struct OperatorProtectTests {
        static let protect = "[protect]\npaths = [\"SOUL.md\", \"skills/\", \"memory/notes.md\"]\n"

        static func write(_ text: String, _ path: String) throws {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: false, encoding: .utf8)
        }

        @Test("read-only inside; hashes in the run's manifest; snapshot, diff, restore (refused while running), list, prune")
        func lifecycle() throws {
            let s = try OpsSetup("protect")
            defer { s.clean() }
            let a = try s.agent("protect", script: """
                echo evil > SOUL.md; echo soul=$?
                echo x > skills/new.md; echo skills=$?
                echo x > memory/notes.md; echo notes=$?
                echo up; exec sleep 60
                """, extra: Self.protect)
            try Self.write("be good\nbe kind\nbe brief\n", a.workspace + "/SOUL.md")
            try Self.write("skill a\n", a.workspace + "/skills/a.md")
            try Self.write("skill b\n", a.workspace + "/skills/deep/b.md")
            try Self.write("notes\n", a.workspace + "/memory/notes.md")
            let soulHash = try Harness.sha256(a.workspace + "/SOUL.md")

            // Read-only from inside, and the hashes of the run start in the manifest.
            let bg = try s.start(a)
            defer { bg.finish() }
            #expect(bg.waitFor("up"), "\(bg.stderr)")
            for what in ["soul", "skills", "notes"] { #expect(!bg.stdout.contains("\(what)=0"), "\(what) was writable\n\(bg.stdout)") }
            #expect(try String(contentsOfFile: a.workspace + "/SOUL.md", encoding: .utf8) == "be good\nbe kind\nbe brief\n")
            let stats = try OpsJSON.parse(try s.cj(["stats", a.name, "--json"]).stdout)
            let hashes = try #require((stats["manifest"] as? [String: Any])?["protect_hashes"] as? [String: String])
            #expect(hashes["SOUL.md"] == soulHash)
            #expect(hashes["skills/deep/b.md"] == (try Harness.sha256(a.workspace + "/skills/deep/b.md")))
            #expect(hashes.count == 4, "\(hashes)")

            // Snapshot while it runs: fine.
            let snap = try s.cj(["protect", "snapshot", a.name])
            #expect(snap.status == 0, "\(snap)")
            #expect(snap.stdout.hasPrefix("snapshot 1 of \(a.name): 4 files"), "\(snap)")
            let copy = "\(s.state)/snapshots/\(a.name)/1"
            #expect(Harness.mode(s.state + "/snapshots") == 0o700)
            #expect(Harness.mode(copy) == 0o700)
            #expect(Harness.mode(copy + "/files/SOUL.md") == 0o600)
            #expect(try Harness.sha256(copy + "/files/SOUL.md") == soulHash)
            #expect(try s.cj(["protect", "diff", a.name]).status == 0, "no change yet")

            // The operator (or something with host access) changes things.
            let outside = s.dir + "/outside-target"
            try Self.write("host file\n", outside)
            try Self.write("be good\nbe evil\nbe brief\n", a.workspace + "/SOUL.md")
            try Self.write("exfiltrate\n", a.workspace + "/skills/evil.md")
            try FileManager.default.removeItem(atPath: a.workspace + "/skills/a.md")
            try FileManager.default.removeItem(atPath: a.workspace + "/memory/notes.md")
            try FileManager.default.createSymbolicLink(atPath: a.workspace + "/memory/notes.md", withDestinationPath: outside)

            let diff = try s.cj(["protect", "diff", a.name])
            #expect(diff.status == 1, "\(diff)")
            #expect(diff.stdout.contains("  changed  SOUL.md"), "\(diff)")
            #expect(diff.stdout.contains("  added    skills/evil.md"), "\(diff)")
            #expect(diff.stdout.contains("  removed  skills/a.md"), "\(diff)")
            #expect(diff.stdout.contains("  changed  memory/notes.md  (now a symlink"), "\(diff)")
            #expect(diff.stdout.contains("--- snapshot-1/SOUL.md\n+++ workspace/SOUL.md\n@@ -1,3 +1,3 @@\n be good\n-be kind\n+be evil\n be brief\n"), "\(diff)")
            let dj = try OpsJSON.parse(try s.cj(["protect", "diff", a.name, "--json"]).stdout)
            #expect((dj["changes"] as? [[String: Any]])?.count == 4, "\(dj)")

            // Refused while the agent runs.
            let busy = try s.cj(["protect", "restore", a.name])
            #expect(busy.status == 125, "\(busy)")
            #expect(busy.stderr.contains("agent \(a.name) is running"), "\(busy)")
            #expect(busy.stderr.contains("clawjail stop \(a.name)"))
            #expect(try String(contentsOfFile: a.workspace + "/SOUL.md", encoding: .utf8).contains("evil"), "nothing touched")

            #expect(try s.cj(["stop", a.name]).status == 0)
            #expect(bg.wait(timeout: 10) != nil)
            let restore = try s.cj(["protect", "restore", a.name])
            #expect(restore.status == 0, "\(restore)")
            #expect(restore.stdout.hasPrefix("restored snapshot 1 of \(a.name): 3 files put back, 1 removed"), "\(restore)")
            #expect(try String(contentsOfFile: a.workspace + "/SOUL.md", encoding: .utf8) == "be good\nbe kind\nbe brief\n")
            #expect(try String(contentsOfFile: a.workspace + "/skills/a.md", encoding: .utf8) == "skill a\n")
            #expect(!FileManager.default.fileExists(atPath: a.workspace + "/skills/evil.md"))
            // The symlink was replaced, never followed.
            #expect(try String(contentsOfFile: outside, encoding: .utf8) == "host file\n")
            var st = stat()
            #expect(lstat(a.workspace + "/memory/notes.md", &st) == 0 && st.st_mode & S_IFMT == S_IFREG)
            #expect(try String(contentsOfFile: a.workspace + "/memory/notes.md", encoding: .utf8) == "notes\n")
            #expect(try s.cj(["protect", "diff", a.name]).status == 0)
            #expect(try s.cj(["protect", "restore", a.name]).stdout.hasPrefix("nothing to restore"))
            let events = try OpsJSON.lines(try s.cj(["audit", "export", "--agent", a.name]).stdout).compactMap { $0["kind"] as? String }
            #expect(events.contains("protect.snapshot") && events.contains("protect.restore"), "\(events)")

            // Bounded count: with --keep 2 the oldest copies go, rows and files.
            for _ in 0..<3 { #expect(try s.cj(["protect", "snapshot", a.name, "--keep", "2"]).status == 0) }
            let list = try s.cj(["protect", "list", a.name])
            #expect(list.lines.count == 3, "header + 2\n\(list)")
            #expect(list.lines.dropFirst().allSatisfy { $0.hasSuffix("ok") }, "\(list)")
            let ids = try #require((try OpsJSON.parse(try s.cj(["protect", "list", a.name, "--json"]).stdout)["snapshots"] as? [[String: Any]])?
                .compactMap { $0["id"] as? Int })
            #expect(ids == [4, 3])
            for gone in [1, 2] { #expect(!FileManager.default.fileExists(atPath: "\(s.state)/snapshots/\(a.name)/\(gone)")) }
            #expect(try s.cj(["protect", "diff", a.name, "--snapshot", "1"]).status == 125, "pruned")
            #expect(try s.cj(["audit", "verify"]).status == 0)
        }

        @Test("restore refuses a damaged snapshot copy and an agent without [protect]; a tool run of the agent also sees them read-only")
        func damagedAndMisuse() throws {
            let s = try OpsSetup("protect2")
            defer { s.clean() }
            let a = try s.agent("protect2", script: "true", extra: Self.protect)
            try Self.write("soul\n", a.workspace + "/SOUL.md")
            #expect(try Harness.clawjail(["run", a.config], environment: s.env).status == 0)
            #expect(try s.cj(["protect", "snapshot", a.name]).status == 0)
            try Self.write("changed\n", a.workspace + "/SOUL.md")
            try Self.write("tampered copy\n", "\(s.state)/snapshots/\(a.name)/1/files/SOUL.md")
            let r = try s.cj(["protect", "restore", a.name])
            #expect(r.status == 125, "\(r)")
            #expect(r.stderr.contains("snapshot 1 is damaged: the copy of SOUL.md does not match its recorded hash"), "\(r)")
            #expect(try String(contentsOfFile: a.workspace + "/SOUL.md", encoding: .utf8) == "changed\n")

            // The agent's tool runs get the same read-only protect paths.
            let tool = try s.cj(["exec", "--quiet", "--agent", a.name, "--", "/bin/sh", "-c", "echo x > /workspace/SOUL.md; echo rc=$?"])
            #expect(tool.stdout.contains("rc=") && !tool.stdout.contains("rc=0"), "\(tool)")

            let plain = try s.agent("plain", script: "true")
            #expect(try Harness.clawjail(["run", plain.config], environment: s.env).status == 0)
            let none = try s.cj(["protect", "snapshot", plain.name])
            #expect(none.status == 78, "\(none)")
            #expect(none.stderr.contains("protects no paths"), "\(none)")
            #expect(try s.cj(["protect", "list", "cjt-nobody"]).stderr.contains("no agent named cjt-nobody"))
            #expect(try s.cj(["protect", "snapshot", a.name, "--keep", "0"]).status == 64)
        }
    }
}
