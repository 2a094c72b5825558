import ClawjailOperator
import ClawjailRuntime
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Privileged {
    @Suite("operator commands: doctor")
    struct OperatorDoctorTests {
        static func findings(_ r: Harness.Result) throws -> [[String: Any]] {
            try #require(try OpsJSON.parse(r.stdout)["findings"] as? [[String: Any]], "\(r)")
        }

        static func has(_ f: [[String: Any]], _ severity: String, _ text: String) -> Bool {
            f.contains { $0["severity"] as? String == severity && ($0["message"] as? String ?? "").contains(text) }
        }

        @Test("a misconfigured setup: loose state, config, credentials and seccomp cache, a gateway on 0.0.0.0:18789; --fix fixes the permissions")
        func misconfigured() throws {
            let s = try OpsSetup("doctor")
            defer { s.clean() }
            let creds = s.dir + "/creds"
            let a = try s.agent("doctor", script: "true", extra: "[credentials]\nhost = \"\(creds)\"\n")
            try FileManager.default.createDirectory(atPath: creds, withIntermediateDirectories: true)
            try "sk-test-0123456789\n".write(toFile: creds + "/api_key", atomically: false, encoding: .utf8)
            #expect(try Harness.clawjail(["run", a.config], environment: s.env).status == 0)

            // Loosen everything after the run made it right.
            chmod(s.state, 0o755)
            chmod(a.config, 0o666)
            chmod(creds, 0o755)
            chmod(creds + "/api_key", 0o644)
            chmod(s.dir + "/cache/seccomp", 0o777)

            // A gateway bound to every interface, in a network namespace of this test
            // (/proc/net/tcp is per namespace: doctor runs inside it through nsenter,
            // which, unlike `ip netns exec`, leaves /sys/fs/cgroup as it is).
            let ns = "cjt-doc-\(getpid())"
            #expect(try Harness.run(["/usr/sbin/ip", "netns", "add", ns]).status == 0)
            defer { _ = try? Harness.run(["/usr/sbin/ip", "netns", "del", ns]) }
            _ = try Harness.run(["/usr/sbin/ip", "netns", "exec", ns, "/usr/sbin/ip", "link", "set", "lo", "up"])
            let script = """
                import socket, time
                a = socket.socket(); a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); a.bind(("0.0.0.0", 18789)); a.listen()
                b = socket.socket(socket.AF_INET6); b.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); b.bind(("::", 8080)); b.listen()
                c = socket.socket(); c.bind(("127.0.0.1", 3000)); c.listen()
                print("listening", flush=True)
                time.sleep(60)
                """
            let listener = try Background(["/usr/sbin/ip", "netns", "exec", ns, "/usr/bin/python3", "-c", script], environment: [:])
            defer { listener.finish(signal: SIGKILL) }
            #expect(listener.waitFor("listening"), "\(listener.stderr)")
            let nsenter = ["/usr/bin/nsenter", "--net=/run/netns/\(ns)", Harness.binary]
            var env = s.env
            env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"

            let human = try Harness.run(nsenter + ["doctor"], environment: env)
            #expect(human.status == 2, "a critical finding\n\(human)")
            #expect(human.stdout.contains("CRITICAL  network"), "\(human)")
            #expect(human.stdout.contains("python3 (pid "), "the owner is named\n\(human)")
            #expect(human.stdout.contains("0.0.0.0:18789 (the OpenClaw/Clawdbot gateway port, every interface): exposed to the network"), "\(human)")
            #expect(human.stdout.contains("[::]:8080"), "\(human)")
            #expect(!human.stdout.contains(":3000"), "loopback is fine\n\(human)")
            #expect(human.stdout.contains("fix: chmod 700 \(creds)"), "\(human)")

            let before = try Self.findings(try Harness.run(nsenter + ["doctor", "--json"], environment: env))
            #expect(Self.has(before, "warning", "\(s.state) (state directory) is mode 755"), "\(before)")
            #expect(Self.has(before, "critical", "\(a.config) is mode 666: other users can rewrite"), "\(before)")
            #expect(Self.has(before, "critical", "\(creds) is mode 755: other users can read the agent's credentials"))
            #expect(Self.has(before, "critical", "\(creds)/api_key is mode 644"))
            #expect(Self.has(before, "critical", "\(s.dir)/cache/seccomp (compiled seccomp filters) is mode 777"))
            #expect(Self.has(before, "warning", "never been exported"))
            #expect(Self.has(before, "ok", "audit chain intact"))
            #expect(Self.has(before, "critical", "exposed to the network"))
            #expect(before.contains { $0["area"] as? String == "kernel" })
            #expect(before.contains { $0["area"] as? String == "cgroups" })
            #expect(before.contains { ($0["id"] as? String ?? "").hasPrefix("userns") })
            // Nothing changed without --fix.
            #expect(Harness.mode(s.state) == 0o755 && Harness.mode(creds + "/api_key") == 0o644 && Harness.mode(a.config) == 0o666)

            let fixed = try Harness.run(nsenter + ["doctor", "--fix"], environment: env)
            for line in ["fixed     \(s.state): mode 755 -> 700", "fixed     \(a.config): mode 666 -> 644",
                         "fixed     \(creds): mode 755 -> 700", "fixed     \(creds)/api_key: mode 644 -> 600",
                         "fixed     \(s.dir)/cache/seccomp: mode 777 -> 700"] {
                #expect(fixed.stdout.contains(line), "\(line)\n\(fixed)")
            }
            #expect(Harness.mode(s.state) == 0o700 && Harness.mode(creds) == 0o700 && Harness.mode(creds + "/api_key") == 0o600)
            #expect(Harness.mode(a.config) == 0o644 && Harness.mode(s.dir + "/cache/seccomp") == 0o700)
            // What --fix must not touch is still reported: the listener.
            #expect(fixed.status == 2 && fixed.stdout.contains("exposed to the network"), "\(fixed)")

            // Outside the test namespace, with an export recorded: no critical finding of ours is left.
            _ = try s.cj(["audit", "export", "--output", s.dir + "/audit.jsonl"])
            let after = try Self.findings(try s.cj(["doctor", "--json"]))
            let mine = after.filter { f in
                ["state", "seccomp", "agent \(a.name)", "audit"].contains(f["area"] as? String ?? "") && f["severity"] as? String != "ok"
                    && f["severity"] as? String != "info"
            }
            #expect(mine.isEmpty, "\(mine)")
        }

        @Test("a database with a loose mode is not opened without --fix; --fix fixes it and then checks the agents")
        func looseDatabase() throws {
            let s = try OpsSetup("doctordb")
            defer { s.clean() }
            let creds = s.dir + "/creds"
            let a = try s.agent("doctordb", script: "true", extra: "[credentials]\nhost = \"\(creds)\"\n")
            #expect(try Harness.clawjail(["run", a.config], environment: s.env).status == 0)
            chmod(s.state + "/state.db", 0o644)
            chmod(creds, 0o750)
            let wal = s.state + "/state.db-wal"
            let walMode = Harness.mode(wal)
            let plain = try Self.findings(try s.cj(["doctor", "--json"]))
            #expect(Self.has(plain, "warning", "state.db (state database) is mode 644"), "\(plain)")
            #expect(Self.has(plain, "info", "agents and credentials not checked"), "\(plain)")
            #expect(Harness.mode(wal) == walMode, "the -wal file kept its mode")
            let fixed = try s.cj(["doctor", "--fix"])
            #expect(fixed.stdout.contains("\(s.state)/state.db: mode 644 -> 600"), "\(fixed)")
            #expect(fixed.stdout.contains("\(creds): mode 750 -> 700"), "the second round reached the credentials\n\(fixed)")
            #expect(Harness.mode(creds) == 0o700)
        }

        @Test("known-bad kernels by upstream version, and distribution kernels")
        func kernels() {
            func cves(_ v: String) -> [String] {
                guard let version = KernelAdvisories.parse(v) else { return ["unparsable"] }
                return KernelAdvisories.known.filter { KernelAdvisories.affects($0, version) }.map(\.cve)
            }
            #expect(cves("5.10.90").contains("CVE-2022-0847"))
            #expect(!cves("5.10.102").contains("CVE-2022-0847"))
            #expect(cves("5.15.24").contains("CVE-2022-0847") && !cves("5.15.25").contains("CVE-2022-0847"))
            #expect(cves("5.16.10").contains("CVE-2022-0847") && !cves("5.16.11").contains("CVE-2022-0847"))
            #expect(cves("5.12.3").contains("CVE-2022-0847"), "an end-of-life branch inside the range")
            #expect(!cves("5.7.19").contains("CVE-2022-0847") && !cves("5.17.0").contains("CVE-2022-0847"))
            #expect(cves("4.8.2").contains("CVE-2016-5195") && !cves("4.8.3").contains("CVE-2016-5195"))
            #expect(cves("6.1.75").contains("CVE-2024-1086") && !cves("6.1.76").contains("CVE-2024-1086"))
            #expect(cves("5.4.172").contains("CVE-2022-0185") && !cves("5.4.173").contains("CVE-2022-0185"))
            #expect(cves("6.8.0").isEmpty && cves("6.18.44").isEmpty)

            if case .upstream(let v, let source) = KernelAdvisories.identify(
                release: "5.15.0-91-generic", procVersion: "Linux version 5.15.0-91-generic", signature: "Ubuntu 5.15.0-91.101-generic 5.15.131") {
                #expect(v.description == "5.15.131" && source == "/proc/version_signature")
            } else { Issue.record("Ubuntu signature not read") }
            if case .upstream(let v, _) = KernelAdvisories.identify(
                release: "5.10.0-11-amd64", procVersion: "Linux version 5.10.0-11-amd64 (debian-kernel@lists.debian.org) #1 SMP Debian 5.10.92-1 (2022-01-18)", signature: nil) {
                #expect(v.description == "5.10.92")
            } else { Issue.record("Debian version not read") }
            if case .unknown = KernelAdvisories.identify(release: "4.18.0-513.el8.x86_64", procVersion: "Linux version 4.18.0-513.el8.x86_64", signature: nil) {
            } else { Issue.record("a RHEL kernel's patch level is not visible") }
            if case .upstream(let v, _) = KernelAdvisories.identify(release: "6.18.44-fc-v769", procVersion: "", signature: nil) {
                #expect(v.description == "6.18.44")
            } else { Issue.record("uname -r not read") }
        }

        @Test("/proc/net/tcp and tcp6 parsing: LISTEN only, loopback recognised in every form")
        func procNetTCP() {
            let v4 = """
                  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
                   0: 00000000:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0
                   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0
                   2: 0101A8C0:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0 100 0 0 10 0
                   3: 0101A8C0:1F90 0201A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0 100 0 0 10 0
                """
            let s4 = Listeners.parse(v4, ipv6: false)
            #expect(s4.map(\.address) == ["0.0.0.0", "127.0.0.1", "192.168.1.1"])
            #expect(s4.map(\.port) == [18789, 3000, 8080])
            #expect(s4.map(\.isLoopback) == [false, true, false])
            #expect(s4.map(\.inode) == [1001, 1002, 1003])
            let v6 = """
                  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
                   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0
                   1: 00000000000000000000000001000000:4965 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0
                   2: 0000000000000000FFFF00000100007F:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0
                   3: 000080FE00000000FF005002CEEDFE00:4965 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2004 1 0
                """
            let s6 = Listeners.parse(v6, ipv6: true)
            #expect(s6.map(\.address) == ["::", "::1", "::ffff:127.0.0.1", "fe80::250:ff:fe:edce"], "\(s6)")
            #expect(s6.map(\.isLoopback) == [false, true, true, false])
        }
    }
}
