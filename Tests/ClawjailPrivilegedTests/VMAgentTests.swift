import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A VM agent's directory: agent.toml with isolation = "vm" (TCG, allow_tcg: KVM here
/// is PVM and cannot boot a stock guest), the guest image scripts/vm/guest-image built,
/// and a workspace.
struct VMAgentFixture {
    let name: String
    let dir: String
    var workspace: String { dir + "/ws" }
    var config: String { dir + "/agent.toml" }

    init(_ tag: String) throws {
        name = "cjt-vm\(tag)-\(String(UInt32.random(in: 0...0xffffff), radix: 36))"
        dir = try Harness.tempDirectory("vm" + tag)
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
    }

    /// `script` runs as `/bin/sh -c script` in the guest, as uid 1000 in /workspace.
    func write(script: String, extra: String = "", initrd: String = VMGuest.initramfs) throws {
        let escaped = script.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        let text = """
        name = "\(name)"
        command = ["/bin/sh", "-c", "\(escaped)"]
        user = 1000
        isolation = "vm"

        [workspace]
        host = "\(workspace)"

        [network]
        mode = "none"

        [vm]
        kernel = "\(VMGuest.kernel)"
        initrd = "\(initrd)"
        accel = "tcg"
        allow_tcg = true
        memory = "256M"

        \(extra)
        """
        try text.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// A credentials directory holding `api_key` with `key`: its path, for [credentials] host.
    func credentials(key: String) throws -> String {
        let path = dir + "/creds"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try (key + "\n").write(toFile: path + "/api_key", atomically: false, encoding: .utf8)
        return path
    }

    func clean() { Harness.remove(dir) }
}

/// `clawjail run` in the background, its stdout read on demand.
final class BackgroundRun {
    let process = Process()
    let out = Pipe(), err = Pipe()
    var seen = Data()

    init(config: String) throws {
        process.executableURL = URL(fileURLWithPath: Harness.binary)
        process.arguments = ["run", config]
        process.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWJAIL_STATE_DIR": Harness.stateDirectory]
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Reads stdout until it contains `text` (bounded by `timeout`).
    func waitFor(_ text: String, timeout: TimeInterval) -> Bool {
        let fd = out.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        var checked = 0
        while Date() < deadline {
            // Only what arrived since the last look (and enough before it to hold a match).
            let from = max(0, checked - text.utf8.count)
            if String(decoding: seen[from...], as: UTF8.self).contains(text) { return true }
            checked = seen.count
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) == 1 else { continue }
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            seen.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: seen[max(0, checked - text.utf8.count)...], as: UTF8.self).contains(text)
    }

    var stderrText: String {
        String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }

    /// VmRSS of the supervisor, in KiB.
    var supervisorRSS: Int {
        let text = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
}

extension Privileged {
    /// Under TCG (software emulation): KVM on this kind of machine is PVM and cannot
    /// run a stock guest, so these say nothing about KVM's speed, only about behaviour.
    @Suite("clawjail run: VM agents (TCG)", .serialized,
           .enabled(if: VMGuest.available, "needs qemu-system-x86_64 and the guest image in .build/vm/guest (scripts/vm/guest-image)"))
    struct VMAgentTests {
        /// One boot, many checks: the guest's kernel, the agent's uid, stdout and stderr
        /// apart, stdin, the workspace share (files owned by the agent's outside uid on
        /// the host), a protected file the host keeps read-only, and the exit status.
        @Test("a VM agent: its own kernel, stdio, workspace, [protect], exit status; nothing left behind", .timeLimit(.minutes(3)))
        func agentInGuest() throws {
            let a = try VMAgentFixture("run")
            defer { a.clean() }
            try "remember this\n".write(toFile: a.workspace + "/MEMORY.md", atomically: false, encoding: .utf8)
            try a.write(script: """
                echo "kernel=$(uname -r)"
                echo "uid=$(id -u) gid=$(id -g) cwd=$(pwd)"
                echo to-stderr >&2
                echo made-in-guest > /workspace/from-guest.txt && echo "wrote=yes"
                if echo overwritten > /workspace/MEMORY.md 2>/dev/null; then echo protected=writable; else echo protected=refused; fi
                if rm -f /workspace/MEMORY.md 2>/dev/null && [ ! -e /workspace/MEMORY.md ]; then echo protected=removed; fi
                read line; echo "stdin=$line"
                test -e /etc/shadow && echo shadow=visible || echo shadow=hidden
                exit 7
                """, extra: "[protect]\npaths = [\"MEMORY.md\"]\n")
            let r = try Harness.clawjail(["run", a.config], stdin: "hello from the host\n", timeout: 150)
            #expect(r.status == 7, "\(r)")
            #expect(r.stdout.contains("kernel=\(VMGuest.manifest["release"] ?? "?")"), "the agent runs on the guest kernel\n\(r)")
            #expect(r.stdout.contains("uid=1000 gid=1000 cwd=/workspace"), "\(r)")
            #expect(r.stderr.contains("to-stderr") && !r.stdout.contains("to-stderr"), "\(r)")
            #expect(r.stdout.contains("wrote=yes"), "\(r)")
            #expect(r.stdout.contains("protected=refused") && !r.stdout.contains("protected=removed"), "\(r)")
            #expect(r.stdout.contains("stdin=hello from the host"), "\(r)")
            #expect(r.stdout.contains("shadow=hidden"), "the guest's /etc is the jail's filtered one\n\(r)")
            #expect(r.stderr.contains("agent \(a.name) exited 7"), "\(r)")
            #expect(r.stderr.contains("software emulation"), "TCG is announced as such\n\(r)")

            #expect((try? String(contentsOfFile: a.workspace + "/MEMORY.md", encoding: .utf8)) == "remember this\n")
            var st = stat(), ws = stat()
            #expect(stat(a.workspace + "/from-guest.txt", &st) == 0, "the guest's write reached the host")
            #expect(stat(a.workspace, &ws) == 0)
            #expect(st.st_uid == ws.st_uid && st.st_uid != 0, "owned by the agent's outside uid (\(ws.st_uid)), not \(st.st_uid)")
            #expect((try? String(contentsOfFile: a.workspace + "/from-guest.txt", encoding: .utf8)) == "made-in-guest\n")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
            #expect(Harness.processes(inUidRange: ws.st_uid - 1000).isEmpty, "no VMM or file server outlives the run")
        }

        /// In the guest, the agent runs in the same namespace jail it would get on a host,
        /// built by the guest's own clawjail from the spec the host sent.
        @Test("in the guest the agent is jailed as on a host: pid namespace, seccomp, read-only root, credentials, limits", .timeLimit(.minutes(3)))
        func agentJailInGuest() throws {
            let a = try VMAgentFixture("jail")
            defer { a.clean() }
            let credentials = try a.credentials(key: "sk-guest-credential-42")
            try a.write(script: """
                echo "pid=$$"
                grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t'
                echo "init=$(cat /proc/1/comm)"
                echo "host=$(hostname)"
                touch /rootfs-write 2>/dev/null && echo root=writable || echo root=read-only
                grep -q sk-guest-credential-42 /run/credentials/api_key && echo credential=readable
                echo "etc=$(cat /etc/debian_version >/dev/null && echo readable)"
                ls /sys/fs/cgroup >/dev/null 2>&1 && echo sysfs=visible || echo sysfs=absent
                unshare -U true 2>/dev/null && echo userns=allowed || echo userns=refused
                echo "processes=$(ls -d /proc/[0-9]* | wc -l)"
                """, extra: """
                [credentials]
                host = "\(credentials)"

                [limits]
                memory = "96M"
                pids = 40
                """)
            let r = try Harness.clawjail(["run", a.config], timeout: 150)
            #expect(r.status == 0, "\(r)")
            // Its own pid namespace under the jail's init, as on a host.
            #expect(r.stdout.contains("pid=2\n") && r.stdout.contains("init=clawjail-init"), "\(r)")
            #expect(r.stdout.contains("NoNewPrivs:1") && r.stdout.contains("Seccomp:2"), "\(r)")
            #expect(r.stdout.contains("host=\(a.name)"), "\(r)")
            #expect(r.stdout.contains("root=read-only"), "\(r)")
            #expect(r.stdout.contains("credential=readable"), "the agent's jail has its credentials\n\(r)")
            #expect(r.stdout.contains("etc=readable"), "the overlay /etc reads through the guest's share\n\(r)")
            #expect(r.stdout.contains("userns=refused"), "\(r)")
            // Only the jail's own processes: its init, the shell, the subshell, ls, wc (not
            // the guest's init, guest-jail or the guest kernel's threads).
            let seen = r.stdout.split(separator: "\n").first { $0.hasPrefix("processes=") }.flatMap { Int($0.dropFirst(10)) }
            #expect(seen != nil && seen! <= 5, "\(r)")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        /// limits.memory is the agent's jail's memory.max inside the guest (guest RAM is
        /// [vm] memory): a heap bomb is OOM-killed there and reported, and the VM lives
        /// on to report it.
        @Test("an OOM kill in the guest's jail is reported as such, exit 137", .timeLimit(.minutes(3)))
        func oomInGuest() throws {
            let a = try VMAgentFixture("oom")
            defer { a.clean() }
            try a.write(script: "echo before; exec /usr/bin/python3 -c 'b = bytearray(200 << 20); print(len(b))'",
                        extra: "[limits]\nmemory = \"64M\"\n")
            let r = try Harness.clawjail(["run", a.config], timeout: 150)
            #expect(r.stdout.contains("before"), "\(r)")
            #expect(!r.stdout.contains("209715200"), "the allocation must not succeed\n\(r)")
            // As on a host: the command OOM-killed by its jail's memcg is an OOM end (137).
            #expect(r.status == 137, "\(r)")
            #expect(r.stderr.contains("in the guest: agent \(a.name) OOM-killed (memory limit 64M)"), "\(r)")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        /// `exec --agent A` of a running VM agent: the tool runs in A's guest, in a jail of
        /// its own (tool profile, no credentials), with stdio, signals and exit status
        /// passed through, and the run in A's audit chain.
        @Test("exec --agent runs a tool in the VM agent's guest: its kernel, no credentials, stdio, signals, status, audit", .timeLimit(.minutes(4)))
        func execInGuest() throws {
            let a = try VMAgentFixture("exec")
            defer { a.clean() }
            let credentials = try a.credentials(key: "sk-not-for-tools-77")
            try a.write(script: "echo ready; while :; do sleep 0.2; done", extra: "[credentials]\nhost = \"\(credentials)\"\n")
            let run = try BackgroundRun(config: a.config)
            defer { run.stop() }
            #expect(run.waitFor("ready", timeout: 120), "\(String(decoding: run.seen, as: UTF8.self))")
            let r = try Harness.clawjail(["exec", "--agent", a.name, "--", "/bin/sh", "-c", """
                echo "kernel=$(uname -r)"
                echo "uid=$(id -u)"
                test -e /run/credentials/api_key && echo credentials=visible || echo credentials=absent
                { env; ls -R /run /tmp 2>/dev/null; } | grep -q sk-not-for-tools && echo secret=found || echo secret=not-found
                echo "$(grep '^Seccomp:' /proc/self/status | tr -d '\t')"
                echo "pid=$$"
                echo from-tool > /workspace/from-tool.txt && echo wrote=yes
                read line; echo "stdin=$line"
                echo to-stderr >&2
                exit 5
                """], stdin: "hello tool\n", timeout: 90)
            #expect(r.status == 5, "\(r)")
            #expect(r.stdout.contains("kernel=\(VMGuest.manifest["release"] ?? "?")"), "the tool runs on the guest's kernel\n\(r)")
            #expect(r.stdout.contains("credentials=absent") && r.stdout.contains("secret=not-found"), "\(r)")
            #expect(r.stdout.contains("Seccomp:2") && r.stdout.contains("pid=2\n"), "\(r)")
            #expect(r.stdout.contains("stdin=hello tool") && r.stdout.contains("wrote=yes"), "\(r)")
            #expect(r.stderr.contains("to-stderr") && !r.stdout.contains("to-stderr"), "\(r)")
            var ws = stat(), st = stat()
            #expect(stat(a.workspace, &ws) == 0 && stat(a.workspace + "/from-tool.txt", &st) == 0)
            #expect(st.st_uid == ws.st_uid, "the tool's file is the agent's outside uid's on the host")
            // A signal to exec reaches the tool in the guest.
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Harness.binary)
            p.arguments = ["exec", "--agent", a.name, "--", "/bin/sh", "-c", "trap 'echo tool-got-term; exit 9' TERM; echo up; while :; do sleep 0.1; done"]
            p.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWJAIL_STATE_DIR": Harness.stateDirectory]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            p.standardInput = FileHandle.nullDevice
            try p.run()
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
            var seen = ""
            #expect(Harness.eventually(timeout: 60) {
                seen += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
                return seen.contains("up")
            }, "\(seen)")
            kill(p.processIdentifier, SIGTERM)
            #expect(Harness.eventually(timeout: 30) { !p.isRunning })
            p.waitUntilExit()
            seen += String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(p.terminationStatus == 9 && seen.contains("tool-got-term"), "\(p.terminationStatus) \(seen)")
            // A host path the agent does not share is refused, naming it.
            let other = try Harness.clawjail(["exec", "--agent", a.name, "--ro", "/srv", "--", "/bin/true"], timeout: 60)
            #expect(other.status != 0 && other.stderr.contains("/srv is not shared with \(a.name)'s guest"), "\(other)")
            // In the agent's audit chain.
            let audit = try Harness.clawjail(["audit", "export", "--agent", a.name], timeout: 30)
            let ends = audit.stdout.split(separator: "\n").filter { $0.contains("\"run.end\"") }
            #expect(ends.contains { $0.contains("\"exit_code\":5") }, "\(audit.stdout.suffix(2000))")
            kill(run.process.processIdentifier, SIGTERM)
            #expect(Harness.eventually(timeout: 30) { !run.process.isRunning })
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
            #expect(!FileManager.default.fileExists(atPath: "/run/clawjail/vm/\(a.name).sock"), "the tool socket goes with the agent")
            // Once it is stopped: a clear error, and nothing is run on the host instead.
            let late = try Harness.clawjail(["exec", "--agent", a.name, "--", "/bin/sh", "-c", "echo ran-anyway"], timeout: 60)
            #expect(late.status != 0 && late.stderr.contains("\(a.name) is a VM agent and is not running"), "\(late)")
            #expect(!late.stdout.contains("ran-anyway"))
        }

        @Test("SIGTERM reaches the agent in the guest; its own exit status is the run's", .timeLimit(.minutes(3)))
        func sigtermForwarded() throws {
            let a = try VMAgentFixture("term")
            defer { a.clean() }
            try a.write(script: "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.2; done")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Harness.binary)
            p.arguments = ["run", a.config]
            p.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWJAIL_STATE_DIR": Harness.stateDirectory]
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = FileHandle.nullDevice
            try p.run()
            nonisolated(unsafe) var seen = Data()
            let reader = DispatchQueue(label: "vm-term")
            let ready = DispatchSemaphore(value: 0)
            reader.async {
                while true {
                    let d = out.fileHandleForReading.availableData
                    if d.isEmpty { break }
                    seen.append(d)
                    if String(decoding: seen, as: UTF8.self).contains("ready") { ready.signal() }
                }
            }
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
            let booted = ready.wait(timeout: .now() + 90) == .success
            #expect(booted, "the agent never said ready: \(String(decoding: err.fileHandleForReading.availableData, as: UTF8.self))")
            guard booted else { return }
            // While it runs: the VMM is the agent's outside uid with no capability at all,
            // under no_new_privs and seccomp; the file servers keep only theirs.
            var ws = stat()
            #expect(stat(a.workspace, &ws) == 0)
            let base = ws.st_uid - 1000
            let jailed = Harness.processes(inUidRange: base)
            func status(_ pid: Int32) -> [String: String] {
                let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                var out: [String: String] = [:]
                for line in text.split(separator: "\n") {
                    let kv = line.split(separator: ":", maxSplits: 1)
                    if kv.count == 2 { out[String(kv[0])] = kv[1].trimmingCharacters(in: .whitespaces) }
                }
                return out
            }
            let qemu = jailed.filter { (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8))?.hasPrefix("qemu-system") == true }
            #expect(qemu.count == 1, "one VMM among the jail's processes \(jailed)")
            for pid in qemu {
                let s = status(pid)
                #expect(s["Uid"]?.split(separator: "\t").first == Substring(String(base + 1000)), "\(s)")
                for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                    #expect(s[set] == "0000000000000000", "qemu's \(set): \(s[set] ?? "?")")
                }
                #expect(s["NoNewPrivs"] == "1" && s["Seccomp"] == "2", "\(s)")
            }
            let servers = jailed.filter { (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8))?.hasPrefix("virtiofsd") == true }
            #expect(!servers.isEmpty, "the file servers run in the same jail")
            // CAP_CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID, SETUID, SETPCAP, SYS_CHROOT at most.
            let allowed: UInt64 = 0x1 | 0x2 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100 | 0x40000
            for pid in servers {
                let eff = UInt64(status(pid)["CapEff"] ?? "", radix: 16) ?? .max
                #expect(eff & ~allowed == 0, "virtiofsd \(pid) has CapEff \(String(eff, radix: 16))")
            }
            kill(p.processIdentifier, SIGTERM)
            #expect(Harness.eventually(timeout: 30) { !p.isRunning }, "clawjail still runs 30 s after SIGTERM")
            p.waitUntilExit()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            reader.sync {}
            #expect(p.terminationStatus == 42, "\(stderr)")
            #expect(String(decoding: seen, as: UTF8.self).contains("got-term"), "\(stderr)")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        @Test("SIGKILL of the supervisor leaves no VMM, file server or process; gc removes the cgroup", .timeLimit(.minutes(3)))
        func supervisorKilled() throws {
            let a = try VMAgentFixture("kill")
            defer { a.clean() }
            try a.write(script: "echo ready; while :; do sleep 0.2; done")
            let run = try BackgroundRun(config: a.config)
            defer { run.stop() }
            #expect(run.waitFor("ready", timeout: 90), "\(String(decoding: run.seen, as: UTF8.self))")
            var ws = stat()
            #expect(stat(a.workspace, &ws) == 0)
            let base = ws.st_uid - 1000
            #expect(Harness.processes(inUidRange: base).count >= 3, "qemu and the file servers run")
            // The supervisor's tool-run socket and the guest's memory report (every 2 s).
            let socket = "/run/clawjail/vm/\(a.name).sock", memory = "/run/clawjail/vm/\(a.name).memory"
            #expect(Harness.eventually(timeout: 10) { access(socket, F_OK) == 0 && access(memory, F_OK) == 0 })
            kill(run.process.processIdentifier, SIGKILL)
            run.process.waitUntilExit()
            #expect(Harness.eventually(timeout: 10) { Harness.processes(inUidRange: base).isEmpty },
                    "still alive: \(Harness.processes(inUidRange: base))")
            let gone = try Harness.clawjail(["exec", "--agent", a.name, "--", "/bin/true"], timeout: 30)
            #expect(gone.status != 0 && gone.stderr.contains("not running"), "a dead supervisor's socket: \(gone)")
            let gc = try Harness.clawjail(["gc"])
            #expect(gc.status == 0, "\(gc)")
            #expect(gc.stdout.contains("removed cgroup of \(a.name)"), "\(gc)")
            #expect(gc.stdout.contains("memory report of VM agent \(a.name)"), "\(gc)")
            #expect(access(socket, F_OK) != 0 && access(memory, F_OK) != 0, "gc leaves the dead supervisor's files")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        @Test("ps and stats show a VM agent's isolation and the VMM jail's limits; stop ends it; kill --all ends another", .timeLimit(.minutes(4)))
        func operatorCommands() throws {
            let a = try VMAgentFixture("ops")
            let b = try VMAgentFixture("opsb")
            defer { a.clean(); b.clean() }
            try a.write(script: "echo ready; while :; do sleep 0.2; done")
            try b.write(script: "echo ready; while :; do sleep 0.2; done")
            let runA = try BackgroundRun(config: a.config)
            let runB = try BackgroundRun(config: b.config)
            defer { runA.stop(); runB.stop() }
            #expect(runA.waitFor("ready", timeout: 120) && runB.waitFor("ready", timeout: 120))
            let ps = try Harness.clawjail(["ps"])
            #expect(ps.status == 0, "\(ps)")
            let row = ps.stdout.split(separator: "\n").first { $0.hasPrefix(a.name) }.map(String.init) ?? ""
            #expect(row.contains("vm/tcg") && row.contains("none"), "\(ps.stdout)")
            let stats = try Harness.clawjail(["stats", a.name])
            #expect(stats.status == 0, "\(stats)")
            #expect(stats.stdout.contains("vm/tcg: guest RAM 256M"), "\(stats.stdout)")
            // Guest RAM 256M + the VMM overhead: 64M, 16M for each of the 3 shares (usr, etc,
            // workspace), 128M of TCG translation cache, and the boot files (read into qemu).
            let bootBytes = ((try? FileManager.default.attributesOfItem(atPath: VMGuest.kernel)[.size] as? Int) ?? 0)
                + ((try? FileManager.default.attributesOfItem(atPath: VMGuest.initramfs)[.size] as? Int) ?? 0)
            let limit = 256 + 64 + 3 * 16 + 128 + (bootBytes + (1 << 20) - 1) / (1 << 20)
            #expect(stats.stdout.contains("limit \(limit)M"), "guest + the VMM overhead for 3 shares under TCG: \(stats.stdout)")
            #expect(stats.stdout.contains("seccomp    vmm"), "the jail runs the VMM: \(stats.stdout)")
            // The guest's own view, reported every 2 s: its kernel's memory and its jails'
            // (the first report can come before the agent's jail exists).
            var guestLine = ""
            #expect(Harness.eventually(timeout: 20) {
                let s = (try? Harness.clawjail(["stats", a.name]))?.stdout ?? ""
                guestLine = s.split(separator: "\n").first { $0.hasPrefix("  guest ") }.map(String.init) ?? ""
                return !guestLine.isEmpty && !guestLine.contains(" 0B in its jails")
            }, "no guest line in stats, or the agent's jail is not charged: \(guestLine)")
            #expect(guestLine.contains("seen by its kernel") && guestLine.contains("available") && guestLine.contains("in its jails"), "\(guestLine)")
            print("VM agents: stats: \(guestLine.trimmingCharacters(in: .whitespaces))")
            let stop = try Harness.clawjail(["stop", a.name], timeout: 60)
            #expect(stop.status == 0, "\(stop)")
            #expect(Harness.eventually(timeout: 30) { !runA.process.isRunning })
            runA.process.waitUntilExit()
            #expect(runA.process.terminationStatus == 143, "SIGTERM reached sh in the guest: \(runA.stderrText)")
            let kill = try Harness.clawjail(["kill", "--all"], timeout: 30)
            #expect(kill.status == 0, "\(kill)")
            #expect(Harness.eventually(timeout: 10) { !runB.process.isRunning }, "kill --all ends the VM agent")
            runB.process.waitUntilExit()
            #expect(runB.process.terminationStatus != 0)
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty && Harness.leftoverCgroups(named: b.name).isEmpty)
        }

        /// The guest's NIC is a tap tied to the jail's veth: the proxy, its DNS responder
        /// and the transparent listeners see the guest as they see a namespace jail.
        @Test("egress: the guest reaches an allowed name through the proxy and transparently; a denied one gets 403", .timeLimit(.minutes(4)))
        func egressThroughTheProxy() throws {
            let net = try FakeInternet.start()
            defer { net.stop() }
            let a = try VMAgentFixture("net")
            defer { a.clean() }
            let steps: [ClientStep] = [
                .http("allowed", ClientStep.request("http://allowed.example/vm", host: "allowed.example")),
                .http("denied", ClientStep.request("http://denied.example/vm", host: "denied.example")),
                .http("transparent", ClientStep.request("/vm-direct", host: "allowed.example"), host: FakeInternet.allowedSite, port: 80),
                .resolve("dns", "allowed.example"),
            ]
            try JSONSerialization.data(withJSONObject: steps.map(\.dict)).write(to: URL(fileURLWithPath: net.jailDir + "/vm-plan.json"))
            try a.write(script: "exec /usr/bin/python3 /fake/client.py /fake/vm-plan.json", extra: """
                [[mount]]
                host = "\(net.jailDir)"
                path = "/fake"
                """)
            var text = try String(contentsOfFile: a.config, encoding: .utf8)
            text = text.replacingOccurrences(of: "[network]\nmode = \"none\"",
                                             with: "[network]\nmode = \"egress\"\nallow = [\"allowed.example\"]\nresolvers = [\"\(FakeInternet.dnsServer)\"]")
            try text.write(toFile: a.config, atomically: true, encoding: .utf8)
            let r = try net.clawjail(["run", a.config], timeout: 150)
            #expect(r.status == 0, "\(r)")
            var results: [String: ClientStepResult] = [:]
            for line in r.lines {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let id = obj["id"] as? String else { continue }
                results[id] = ClientStepResult(obj)
            }
            #expect(results["allowed"]?.status == 200 && results["allowed"]?.siteAddress == FakeInternet.allowedSite, "\(r)")
            #expect(results["denied"]?.status == 403 && results["denied"]?.deny != nil, "\(r)")
            #expect(results["transparent"]?.status == 200, "\(r)")
            #expect(results["dns"]?.result == "OK", "\(r)")
            #expect(net.forbiddenContacts().isEmpty, "\(net.forbiddenContacts())")
            #expect(r.stderr.contains("egress denied") && r.stderr.contains("denied.example"), "\(r)")
        }

        /// [[ingress]] reaches the agent's server in the guest: the host's Unix socket, the
        /// forwarder in the peer namespace, the veth, the tap. With mode = "none" the
        /// guest's NIC has no default route.
        @Test("ingress: the host reaches a server in the guest through its Unix socket; mode none gives it no way out", .timeLimit(.minutes(3)))
        func ingressIntoTheGuest() throws {
            let a = try VMAgentFixture("ingress")
            defer { a.clean() }
            try "hello from the guest\n".write(toFile: a.workspace + "/index.txt", atomically: false, encoding: .utf8)
            let socket = a.dir + "/gateway.sock"
            try a.write(script: """
                /usr/sbin/ip route | grep -q default && echo route=default || echo route=none
                echo ready
                exec /usr/bin/python3 -m http.server 8080 --bind 0.0.0.0 --directory /workspace
                """, extra: "[[ingress]]\nport = 8080\nsocket = \"\(socket)\"\nsocket_mode = \"0600\"\n")
            let run = try BackgroundRun(config: a.config)
            defer { run.stop() }
            #expect(run.waitFor("ready", timeout: 120), "\(String(decoding: run.seen, as: UTF8.self))")
            #expect(String(decoding: run.seen, as: UTF8.self).contains("route=none"), "mode none: no default route")
            var got: Harness.Result?
            // The server starts a moment after "ready" (python under TCG): bounded retries.
            for _ in 0..<30 {
                let r = try Harness.run(["/usr/bin/curl", "-sS", "--max-time", "10", "--unix-socket", socket, "http://agent/index.txt"], timeout: 20)
                got = r
                if r.status == 0 { break }
                usleep(500_000)
            }
            #expect(got?.status == 0 && got?.stdout == "hello from the guest\n", "\(String(describing: got))")
            kill(run.process.processIdentifier, SIGTERM)
            #expect(Harness.eventually(timeout: 30) { !run.process.isRunning })
            #expect(!FileManager.default.fileExists(atPath: socket), "the ingress socket is removed at exit")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        /// The guest writes 32 MB while nobody reads the supervisor's stdout: the guest
        /// waits (credit), the supervisor does not buffer it; then every byte arrives.
        @Test("a guest flooding stdout cannot grow the supervisor's memory; every byte arrives once read", .timeLimit(.minutes(3)))
        func floodIsBounded() throws {
            let a = try VMAgentFixture("flood")
            defer { a.clean() }
            try a.write(script: "echo ready; sleep 1; head -c 32000000 /dev/zero | tr '\\0' x; echo; echo flood-done")
            let run = try BackgroundRun(config: a.config)
            defer { run.stop() }
            #expect(run.waitFor("ready", timeout: 90), "\(String(decoding: run.seen, as: UTF8.self))")
            let before = run.supervisorRSS
            var peak = before
            // Nobody reads for 8 s: the pipe fills, the supervisor's write waits, the
            // guest runs out of credit.
            for _ in 0..<40 {
                usleep(200_000)
                peak = max(peak, run.supervisorRSS)
            }
            #expect(run.waitFor("flood-done", timeout: 120), "the flood never completed")
            run.process.waitUntilExit()
            #expect(run.process.terminationStatus == 0, "\(run.stderrText)")
            let xs = run.seen.reduce(0) { $0 + ($1 == UInt8(ascii: "x") ? 1 : 0) }
            #expect(xs == 32_000_000, "every byte of the flood arrived once")
            print("VM flood: supervisor VmRSS \(before) KiB at ready, peak \(peak) KiB while stalled")
            #expect(peak - before < 8 * 1024, "the supervisor grew by \(peak - before) KiB while its stdout was stalled")
        }

        /// accel = "kvm" boots only when a real boot under KVM reached READY. Here /dev/kvm
        /// is PVM and the probe fails, so the run must stop before anything exists; on a
        /// host whose KVM works, the same config runs.
        @Test("accel = kvm: refused with the probe's reason when this host's KVM cannot boot the guest", .timeLimit(.minutes(2)))
        func kvmRefusedWithTheProbesReason() throws {
            let a = try VMAgentFixture("kvm")
            defer { a.clean() }
            try a.write(script: "echo under-kvm")
            let text = try String(contentsOfFile: a.config, encoding: .utf8)
                .replacingOccurrences(of: "accel = \"tcg\"\nallow_tcg = true\n", with: "accel = \"kvm\"\n")
            try text.write(toFile: a.config, atomically: true, encoding: .utf8)
            let r = try Harness.clawjail(["run", a.config], timeout: 90)
            if r.status == 0 {
                print("VM agents: KVM boots the guest on this host")
                #expect(r.stdout.contains("under-kvm"), "\(r)")
            } else {
                #expect(r.stderr.contains("vm.accel = \"kvm\", and this host's KVM cannot run its guest"), "\(r)")
                #expect(r.stderr.contains("vm.allow_tcg = true"), "the hint names the way out: \(r)")
                #expect(!r.stderr.contains("started in a VM"), "nothing was started: \(r)")
                print("VM agents: accel = kvm refused here: \(r.stderr.split(separator: "\n").first ?? "")")
            }
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        /// virtiofsd serves directories: the VMM jail binds each single file into a
        /// directory of its own, and the agent's jail in the guest binds it at its path.
        @Test("a [[mount]] of a single file reaches the agent in the guest, read-only or read-write, with nothing beside it", .timeLimit(.minutes(4)))
        func fileMounts() throws {
            let a = try VMAgentFixture("filemount")
            defer { a.clean() }
            let files = a.dir + "/files"
            try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
            try "tool settings\n".write(toFile: files + "/tool.conf", atomically: false, encoding: .utf8)
            try "0\n".write(toFile: files + "/state.json", atomically: false, encoding: .utf8)
            try "not for the guest\n".write(toFile: files + "/sibling.secret", atomically: false, encoding: .utf8)
            try a.write(script: """
                echo "conf=$(cat /opt/tool.conf)"
                echo 1 > /etc/agent/state.json && echo rw-written
                if (echo x > /opt/tool.conf) 2>/dev/null; then echo ro-written; else echo ro-refused; fi
                if (rm -f /opt/tool.conf) 2>/dev/null && [ ! -e /opt/tool.conf ]; then echo ro-removed; fi
                echo "opt=$(ls -a /opt | tr '\\n' ' ')"
                ls /opt/sibling.secret /etc/agent/sibling.secret /run/clawjail/shares 2>/dev/null && echo sibling-seen
                echo ready; while :; do sleep 0.2; done
                """, extra: """
                [[mount]]
                host = "\(files)/tool.conf"
                path = "/opt/tool.conf"

                [[mount]]
                host = "\(files)/state.json"
                path = "/etc/agent/state.json"
                mode = "rw"
                """)
            let check = try Harness.clawjail(["check", a.config], timeout: 60)
            #expect(check.status == 0, "\(check)")
            #expect(check.stdout.contains("holds only \(files)/tool.conf as tool.conf"), "\(check.stdout)")
            let run = try BackgroundRun(config: a.config)
            defer { run.stop() }
            #expect(run.waitFor("ready", timeout: 120), "\(String(decoding: run.seen, as: UTF8.self))")
            let out = String(decoding: run.seen, as: UTF8.self)
            #expect(out.contains("conf=tool settings"), "\(out)")
            #expect(out.contains("rw-written") && out.contains("ro-refused"), "\(out)")
            #expect(!out.contains("ro-written") && !out.contains("ro-removed") && !out.contains("sibling-seen"), "\(out)")
            #expect(out.contains("opt=. .. tool.conf "), "only the file is in /opt: \(out)")
            #expect(try String(contentsOfFile: files + "/state.json", encoding: .utf8) == "1\n", "the write reached the host file")
            #expect(try String(contentsOfFile: files + "/tool.conf", encoding: .utf8) == "tool settings\n")
            // A tool run in the guest gets the agent's file by its host path.
            let tool = try Harness.clawjail(["exec", "--agent", a.name, "--ro", files + "/tool.conf:/cfg/tool.conf", "--",
                                             "/bin/sh", "-c", "cat /cfg/tool.conf; ls -a /cfg | tr '\\n' ' '"], timeout: 90)
            #expect(tool.status == 0 && tool.stdout.contains("tool settings") && tool.stdout.contains(". .. tool.conf "), "\(tool)")
            let sibling = try Harness.clawjail(["exec", "--agent", a.name, "--ro", files + "/sibling.secret", "--", "/bin/true"], timeout: 60)
            #expect(sibling.status != 0 && sibling.stderr.contains("is not shared with"), "\(sibling)")
            let stop = try Harness.clawjail(["stop", a.name], timeout: 60)
            #expect(stop.status == 0, "\(stop)")
            #expect(Harness.eventually(timeout: 30) { !run.process.isRunning })
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        @Test("a command the guest cannot start is exit 127 with its cause", .timeLimit(.minutes(3)))
        func failuresNameTheirCause() throws {
            let a = try VMAgentFixture("fail")
            defer { a.clean() }
            try a.write(script: "true")
            // Rewrite the command to a program that does not exist in the guest.
            let text = try String(contentsOfFile: a.config, encoding: .utf8)
                .replacingOccurrences(of: "command = [\"/bin/sh\", \"-c\", \"true\"]", with: "command = [\"/no/such/program\"]")
            try text.write(toFile: a.config, atomically: true, encoding: .utf8)
            let r = try Harness.clawjail(["run", a.config], timeout: 150)
            #expect(r.status == 127, "\(r)")
            #expect(r.stderr.contains("/no/such/program") && r.stderr.contains("ENOENT"), "\(r)")
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
        }

        /// The host enforces the file boundary, not the guest: a hostile guest (its own
        /// /init, busybox as PID 1, in place of clawjail's) mounts the shares itself, with
        /// whatever options it likes, and every write the jail's view forbids still fails
        /// in the file server on the host. What it sees goes to a report in the workspace.
        @Test("a hostile guest init mounting the shares itself cannot write [protect] paths or credentials, nor reach them from the workspace share", .timeLimit(.minutes(3)))
        func hostileGuest() throws {
            let a = try VMAgentFixture("hostile")
            defer { a.clean() }
            let credentials = try a.credentials(key: "sk-real-credential-0123456789")
            try FileManager.default.createDirectory(atPath: a.workspace + "/skills", withIntermediateDirectories: true)
            try "remember this\n".write(toFile: a.workspace + "/MEMORY.md", atomically: false, encoding: .utf8)
            try "safe skill\n".write(toFile: a.workspace + "/skills/s.md", atomically: false, encoding: .utf8)
            try "decoy\n".write(toFile: a.workspace + "/decoy", atomically: false, encoding: .utf8)
            let initrd = try Self.hostileInitramfs(in: a.dir)
            try a.write(script: "true", extra: """
                [protect]
                paths = ["MEMORY.md", "skills/"]

                [credentials]
                host = "\(credentials)"
                """, initrd: initrd)
            // The guest never says READY: the run ends when its /init powers the VM off.
            let r = try Harness.clawjail(["run", a.config], timeout: 150)
            #expect(r.status == 125, "a VM that never served its host is a failed run\n\(r)")
            let report = (try? String(contentsOfFile: a.workspace + "/report", encoding: .utf8)) ?? ""
            var seen: [String: String] = [:]
            for line in report.split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { seen[String(kv[0])] = String(kv[1]) }
            }
            print("hostile guest: " + report.split(separator: "\n").joined(separator: " "))
            #expect(seen["done"] == "yes", "the hostile init ran to its end\n\(report)\n\(r)")
            // It had its mounts: the attack was real.
            #expect(seen["mount.workspace"] == "ok" && seen["mount.credentials"] == "ok" && seen["mount.etc"] == "ok", "\(report)")
            #expect(seen["read.credentials"] == "sk-real-credential-0123456789", "the guest may read its credentials share\n\(report)")
            #expect(seen["write.plain"] == "ok", "an unprotected workspace file is writable\n\(report)")
            // Every write the jail's view forbids failed, whatever the guest kernel asked.
            for key in ["write.memory", "append.memory", "truncate.memory", "rm.memory", "rename-over.memory", "rename.memory",
                        "chmod.memory", "link.memory", "write.skill", "create.skill", "rm.skill",
                        "write.credential", "create.credential", "rm.credential",
                        "mknod.workspace", "read.shadow", "find.credential-in-workspace"] {
                #expect(seen[key] == "refused", "\(key): \(seen[key] ?? "missing")\n\(report)")
            }
            #expect((try? String(contentsOfFile: a.workspace + "/MEMORY.md", encoding: .utf8)) == "remember this\n")
            #expect((try? String(contentsOfFile: a.workspace + "/skills/s.md", encoding: .utf8)) == "safe skill\n")
            #expect(!FileManager.default.fileExists(atPath: a.workspace + "/skills/new.md"))
            #expect((try? String(contentsOfFile: credentials + "/api_key", encoding: .utf8)) == "sk-real-credential-0123456789\n")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: credentials)) == ["api_key"])
            // Guest root's files are the agent's outside root on the host, never host root,
            // and no device node reached the host.
            var ws = stat(), made = stat()
            #expect(stat(a.workspace, &ws) == 0)
            #expect(stat(a.workspace + "/rootfile", &made) == 0, "\(report)")
            #expect(made.st_uid == ws.st_uid - 1000 && made.st_uid != 0, "guest root's file is uid \(made.st_uid) on the host")
            #expect(made.st_mode & S_ISUID == 0 || made.st_uid != 0, "no setuid-root file on the host")
            var node = stat()
            #expect(lstat(a.workspace + "/blk", &node) != 0 || (node.st_mode & S_IFMT) != S_IFBLK)
            #expect(Harness.leftoverCgroups(named: a.name).isEmpty)
            #expect(Harness.processes(inUidRange: ws.st_uid - 1000).isEmpty, "no VMM or file server outlives the run")
        }

        /// The guest image with its /init replaced by a busybox script (the virtio modules
        /// kept): what a guest kernel owned by the agent could do with the shares.
        static func hostileInitramfs(in dir: String) throws -> String {
            let root = dir + "/hostile-root"
            let out = dir + "/hostile.cpio.gz"
            let initScript = #"""
                #!/bin/busybox sh
                /bin/busybox --install -s /bin
                export PATH=/bin
                mount -t devtmpfs dev /dev; mount -t proc proc /proc; mount -t sysfs sys /sys
                for m in virtio_ring virtio virtio_mmio virtio_console failover net_failover virtio_net fuse virtiofs; do
                    [ -e /usr/lib/clawjail/modules/$m.ko ] && insmod /usr/lib/clawjail/modules/$m.ko
                done
                mkdir -p /ws /cred /e
                R=/tmp/report
                say() { echo "$1=$2" >>$R; echo "hostile: $1=$2"; }
                try() { k=$1; shift; if "$@" >/dev/null 2>&1; then say "$k" ok; else say "$k" refused; fi; }
                # Read-write, with no nosuid or nodev: the guest chooses its own options.
                try mount.workspace mount -t virtiofs workspace /ws
                try mount.credentials mount -t virtiofs credentials /cred
                try mount.etc mount -t virtiofs etc /e
                say read.credentials "$(cat /cred/api_key)"
                try write.plain sh -c 'echo changed > /ws/decoy'
                try write.memory sh -c 'echo pwned > /ws/MEMORY.md'
                try append.memory sh -c 'echo pwned >> /ws/MEMORY.md'
                try truncate.memory truncate -s 0 /ws/MEMORY.md
                try rm.memory rm -f /ws/MEMORY.md
                echo evil > /ws/evil
                try rename-over.memory mv -f /ws/evil /ws/MEMORY.md
                try rename.memory mv /ws/MEMORY.md /ws/moved
                try chmod.memory chmod 666 /ws/MEMORY.md
                try link.memory ln /ws/MEMORY.md /ws/hard
                try write.skill sh -c 'echo pwned > /ws/skills/s.md'
                try create.skill sh -c 'echo pwned > /ws/skills/new.md'
                try rm.skill rm -f /ws/skills/s.md
                try write.credential sh -c 'echo pwned > /cred/api_key'
                try create.credential sh -c 'echo pwned > /cred/new'
                try rm.credential rm -f /cred/api_key
                try mknod.workspace mknod /ws/blk b 8 0
                try read.shadow cat /e/shadow
                # The credentials are on a share of their own: nothing under the workspace's.
                try find.credential-in-workspace grep -rqs sk-real-credential /ws/
                echo root > /ws/rootfile; chown 0:0 /ws/rootfile; chmod 4755 /ws/rootfile
                say done yes
                cp $R /ws/report
                sync
                umount /ws
                poweroff -f
                """#
            let script = """
                set -e
                rm -rf '\(root)'; mkdir -p '\(root)/bin' '\(root)/dev' '\(root)/proc' '\(root)/sys' '\(root)/tmp'
                cd '\(root)'
                gzip -dc '\(VMGuest.initramfs)' | cpio -idm --quiet 'usr/lib/clawjail/modules/*'
                cp /bin/busybox bin/busybox
                cat > init <<'CJEOF'
                \(initScript)
                CJEOF
                chmod 0755 init
                find . | cpio -o -H newc --quiet | gzip -1 > '\(out)'
                """
            let r = try Harness.run(["/bin/sh", "-c", script])
            guard r.status == 0 else { throw HarnessError("building the hostile initramfs: \(r)") }
            return out
        }
    }
}
