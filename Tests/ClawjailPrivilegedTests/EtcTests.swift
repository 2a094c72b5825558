import ClawjailCore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 20, part 2: a jail sees the host's /etc, read-only, less what is secret, and
/// clawjail's own passwd, group, hosts, hostname, resolv.conf, nsswitch.conf and
/// machine-id. Asserted from inside real jails, against the host's real /etc.
extension Privileged {
    @Suite("the jail's /etc")
    struct EtcTests {
        static func hostHas(_ path: String) -> Bool {
            var st = stat()
            return lstat("/etc/" + path, &st) == 0
        }

        /// `clawjail exec` of a shell line; the result's stdout.
        func shell(_ script: String, options: [String] = []) throws -> Harness.Result {
            try Harness.clawjail(["exec", "--quiet"] + options + ["--", "/bin/sh", "-c", script])
        }

        @Test("every host entry but the hidden ones is there; the hidden ones are absent")
        func entries() throws {
            let host = Set(try FileManager.default.contentsOfDirectory(atPath: "/etc"))
            let r = try shell("ls -A /etc")
            #expect(r.status == 0, "\(r)")
            let jail = Set(r.lines)
            let hiddenTop = Set(EtcPolicy.hidden.map(\.path).filter { !$0.contains("/") })
            let generated = Set(EtcPolicy.generated.map(\.name))
            let expected = host.subtracting(hiddenTop).union(generated)
            #expect(jail == expected, "missing: \(expected.subtracting(jail).sorted()); extra: \(jail.subtracting(expected).sorted())")
            // The allowlist this replaced showed about 30 entries; a Debian host has over 100.
            #expect(jail.count > 60, "\(jail.count) entries")
        }

        @Test("secrets are absent, whatever their permissions")
        func secretsAbsent() throws {
            let present = EtcPolicy.hidden.map(\.path).filter(Self.hostHas)
            // A check that cannot fail is not a check: Debian always has these.
            #expect(present.contains("shadow") && present.contains("gshadow"), "\(present)")
            var script = ""
            for p in present { script += "if [ -e /etc/\(p) ] || [ -L /etc/\(p) ]; then echo \"seen \(p)\"; fi\n" }
            script += "echo done"
            let r = try shell(script)
            #expect(r.status == 0, "\(r)")
            #expect(r.lines == ["done"], "hidden entries visible in the jail: \(r.lines.dropLast())")
        }

        @Test("the host's configuration reads the same inside: Java's security files, fonts, CA certificates, alternatives")
        func configurationIsTheHosts() throws {
            let files = ["ssl/certs/ca-certificates.crt", "fonts/fonts.conf", "ld.so.cache", "java-17-openjdk/security/java.security",
                         "chromium.d/default-flags", "alternatives/java", "gai.conf"].filter(Self.hostHas)
            #expect(files.count >= 4, "\(files)")
            let r = try shell("cd /etc && sha256sum " + files.joined(separator: " "))
            #expect(r.status == 0, "\(r)")
            for f in files {
                let mine = try Harness.sha256("/etc/" + f)
                #expect(r.lines.contains("\(mine)  \(f)"), "/etc/\(f) differs inside the jail\n\(r)")
            }
        }

        @Test("passwd, group, hosts, hostname and machine-id are the jail's own")
        func generatedFiles() throws {
            let r = try shell("cat /etc/passwd; echo --; cat /etc/group; echo --; cat /etc/hosts; echo --; cat /etc/hostname; "
                              + "echo --; cat /etc/machine-id")
            #expect(r.status == 0, "\(r)")
            let parts = r.stdout.components(separatedBy: "--\n")
            try #require(parts.count == 5, "\(r)")
            #expect(parts[0].split(separator: "\n").map { String($0.prefix { $0 != ":" }) } == ["root", "tool", "nobody"], "\(parts[0])")
            #expect(!parts[1].contains("sudo") && parts[1].contains("tool:x:1000:"), "\(parts[1])")
            #expect(parts[2].contains("127.0.1.1\ttool"), "\(parts[2])")
            #expect(parts[3] == "tool\n")
            let id = parts[4].trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit), "\(id)")
            let hostID = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(id != hostID, "the host's machine-id leaked")
            // Each tool run of no agent has its own.
            let again = try shell("cat /etc/machine-id")
            #expect(again.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != id)
        }

        @Test("/etc is read-only, and no file can be created, replaced or removed in it")
        func readOnly() throws {
            let r = try Harness.probeInJail(["write", "/etc/x", "--", "write", "/etc/passwd", "--", "write", "/etc/fonts/x", "--",
                                             "writeback", "/etc/hostname", "--", "remount", "/etc", "--", "umount", "/etc"])
            #expect(r.status == 0, "\(r)")
            #expect(r.line("write /etc/x") == "write /etc/x EROFS", "\(r)")
            #expect(r.line("write /etc/passwd") == "write /etc/passwd EROFS", "\(r)")
            #expect(r.line("write /etc/fonts/x") == "write /etc/fonts/x EROFS", "\(r)")
            #expect(r.line("writeback /etc/hostname")?.hasSuffix("EROFS") == true, "\(r)")
            #expect(r.line("remount /etc") == "remount /etc EPERM", "\(r)")
            #expect(r.line("umount /etc") == "umount /etc EPERM", "\(r)")
            let rm = try shell("rm -f /etc/hosts 2>&1; mv /etc/gai.conf /tmp/ 2>&1; cat /etc/hosts | head -1")
            #expect(rm.stdout.contains("Read-only file system"), "\(rm)")
            #expect(rm.lines.last?.hasPrefix("127.0.0.1") == true, "\(rm)")
        }

        @Test("etc_hide and etc_show in a tool.toml change what the jail sees")
        func configChangesTheList() throws {
            let dir = try Harness.tempDirectory("etc")
            defer { Harness.remove(dir) }
            let shown = try #require(EtcPolicy.hidden.first { $0.showable && !$0.path.contains("/") && Self.hostHas($0.path) },
                                     "no showable entry on this host")
            try """
                [rootfs]
                etc_hide = ["fonts", "ssl/certs/ca-certificates.crt"]
                etc_show = ["\(shown.path)"]
                """.write(toFile: dir + "/tool.toml", atomically: true, encoding: .utf8)
            let r = try shell("ls -d /etc/fonts 2>&1; ls /etc/ssl/certs/ca-certificates.crt 2>&1; ls -d /etc/ssl/certs; "
                              + "ls -d /etc/\(shown.path)", options: ["--config", dir + "/tool.toml"])
            #expect(r.lines.contains { $0.contains("/etc/fonts") && $0.contains("No such file") }, "\(r)")
            #expect(r.lines.contains { $0.contains("ca-certificates.crt") && $0.contains("No such file") }, "\(r)")
            #expect(r.lines.contains("/etc/ssl/certs"), "the rest of the directory stays\n\(r)")
            #expect(r.lines.last == "/etc/\(shown.path)", "\(r)")
            // Without the config, the default again.
            let plain = try shell("ls -d /etc/fonts /etc/\(shown.path) 2>&1")
            #expect(plain.lines.contains("/etc/fonts"), "\(plain)")
            #expect(plain.lines.contains { $0.contains("/etc/\(shown.path)") && $0.contains("No such file") }, "\(plain)")
            // A bad list is refused before anything starts, with its position.
            try "[rootfs]\netc_show = [\"shadow\"]\n".write(toFile: dir + "/bad.toml", atomically: true, encoding: .utf8)
            let bad = try shell("true", options: ["--config", dir + "/bad.toml"])
            #expect(bad.status != 0)
            #expect(bad.stderr.contains("bad.toml:2:13") && bad.stderr.contains("never shown"), "\(bad)")
        }

        @Test("a mount may land on a hidden entry or a new path under /etc")
        func mountsUnderEtc() throws {
            let dir = try Harness.tempDirectory("etcmount")
            defer { Harness.remove(dir) }
            try "registry=https://mirror.example\n".write(toFile: dir + "/npmrc", atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: dir + "/conf", withIntermediateDirectories: true)
            try "x\n".write(toFile: dir + "/conf/a", atomically: true, encoding: .utf8)
            let r = try shell("cat /etc/npmrc /etc/cjt-extra/conf/a", options: ["--ro", dir + "/npmrc:/etc/npmrc",
                                                                                "--ro", dir + "/conf:/etc/cjt-extra/conf"])
            #expect(r.status == 0, "\(r)")
            #expect(r.lines == ["registry=https://mirror.example", "x"], "\(r)")
        }
    }
}
