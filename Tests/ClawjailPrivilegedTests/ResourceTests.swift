import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A `clawjail exec` left running in the background, ended by the test.
final class BackgroundJail {
    let process = Process()
    let out = Pipe()
    let err = Pipe()
    private(set) var text = ""

    init(_ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: Harness.binary)
        process.arguments = args
        process.environment = ["CLAWJAIL_STATE_DIR": Harness.stateDirectory]
        process.standardOutput = out
        process.standardError = err
        try process.run()
    }

    /// Waits (bounded) until the jail printed `marker`.
    func wait(for marker: String, timeout: TimeInterval = 20) -> Bool {
        Harness.eventually(timeout: timeout) {
            text += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
            return text.contains(marker)
        }
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    func finish() -> (status: Int32, stderr: String) {
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus, stderr)
    }
}

extension Privileged {
    @Suite("limits and lifecycle")
    struct ResourceTests {
        @Test("a fork bomb stops at pids.max while another jail and the supervisor stay responsive")
        func forkBomb() throws {
            let probe = try Harness.probe("jailprobe")
            let bomb = try BackgroundJail(["exec", "--quiet", "--pids", "24", "--ro", probe + ":/probe/jailprobe", "--",
                                           "/probe/jailprobe", "forkbomb", "4000", "--", "sleep", "3"])
            defer { _ = bomb.finish() }
            #expect(bomb.wait(for: "forkbomb forked="), "\(bomb.text)")
            let line = bomb.text.split(separator: "\n").first { $0.hasPrefix("forkbomb") }.map(String.init) ?? ""
            let forked = Int(line.split(separator: " ")[1].dropFirst("forked=".count)) ?? -1
            #expect(forked > 0 && forked <= 22, "init + probe + children stay within pids.max = 24: \(line)")
            #expect(line.hasSuffix("EAGAIN"), "fork fails with EAGAIN at the limit: \(line)")
            // While the bomb's jail is full, another jail starts and finishes normally.
            let other = try Harness.probeInJail(["say", "still-responsive"])
            #expect(other.status == 0 && other.stdout.contains("still-responsive"), "\(other)")
        }

        @Test("memory bombs (heap, tmpfs, memfd) are OOM-killed inside the jail and reported as OOM", arguments: ["memhog", "shmhog", "memfdhog"])
        func memoryBomb(kind: String) throws {
            let probe = try Harness.probe("jailprobe")
            let r = try Harness.clawjail(["exec", "--memory", "64M", "--ro", probe + ":/probe/jailprobe", "--", "/probe/jailprobe", kind, "1024"])
            #expect(r.status == 137, "\(r)")
            #expect(r.stderr.contains("OOM-killed (memory limit 64M)"), "\(r)")
            #expect(!r.stdout.contains("\(kind) done"), "the bomb must not complete: \(r)")
            // The supervisor survived to say so, and the host is fine: the next jail runs.
            #expect(try Harness.probeInJail(["say", "ok"]).status == 0)
        }

        @Test("the CPU quota throttles a busy loop")
        func cpuThrottling() throws {
            let probe = try Harness.probe("jailprobe")
            let spin = try BackgroundJail(["exec", "--quiet", "--cpu", "0.2", "--ro", probe + ":/probe/jailprobe", "--",
                                           "/probe/jailprobe", "say", "spinning", "--", "spin", "1500"])
            defer { _ = spin.finish() }
            #expect(spin.wait(for: "spinning"))
            // Find the jail's cgroup from one of its processes and read its cpu statistics.
            var throttled: UInt64 = 0
            Harness.eventually(timeout: 3) {
                for pid in Harness.processes(inUidRange: Harness.anonymousToolBase) {
                    guard let name = Harness.jailName(of: pid) else { continue }
                    for path in ["/sys/fs/cgroup/cpu/clawjail/\(name)/cpu.stat", "/sys/fs/cgroup/clawjail/\(name)/cpu.stat"] {
                        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                        for line in text.split(separator: "\n") where line.hasPrefix("nr_throttled ") {
                            throttled = max(throttled, UInt64(line.split(separator: " ")[1]) ?? 0)
                        }
                    }
                }
                return throttled > 0
            }
            #expect(throttled > 0, "cpu.stat shows throttling")
            #expect(spin.wait(for: "spin wall_ms", timeout: 10), "\(spin.text)")
            let line = spin.text.split(separator: "\n").first { $0.hasPrefix("spin ") }.map(String.init) ?? ""
            let cpu = Int(line.split(separator: "=").last ?? "") ?? 10_000
            #expect(cpu < 750, "0.2 cores for 1.5 s is about 300 ms of CPU: \(line)")
        }

        @Test("wall_time kills the jail and reports a timeout")
        func wallTime() throws {
            let r = try Harness.probeInJail(["say", "started", "--", "sleep", "30"], options: ["--timeout", "700ms"])
            #expect(r.status == 124, "\(r)")
            #expect(r.stdout.contains("started"))
            let probe = try Harness.probe("jailprobe")
            let loud = try Harness.clawjail(["exec", "--timeout", "700ms", "--ro", probe + ":/probe/jailprobe", "--", "/probe/jailprobe", "sleep", "30"])
            #expect(loud.stderr.contains("timed out after 700ms"), "\(loud)")
        }

        @Test("kill --all stops 24 running jails at once; their supervisors report it and clean up")
        func killAll() throws {
            let probe = try Harness.probe("jailprobe")
            // Leftovers of earlier SIGKILLed supervisors would be counted too.
            _ = try Harness.clawjail(["gc"])
            var jails: [BackgroundJail] = []
            defer { for j in jails { j.signal(SIGKILL); _ = j.finish() } }
            for _ in 0..<24 {
                jails.append(try BackgroundJail(["exec", "--ro", probe + ":/probe/jailprobe", "--", "/probe/jailprobe",
                                                 "say", "up", "--", "sleep", "60"]))
            }
            for j in jails { #expect(j.wait(for: "up")) }
            #expect(Harness.processes(inUidRange: Harness.anonymousToolBase).count >= 48)
            let r = try Harness.clawjail(["kill", "--all"])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("killed 24 jails"), "\(r)")
            for j in jails {
                let (status, stderr) = j.finish()
                #expect(status == 137, "\(stderr)")
                #expect(stderr.contains("stopped by clawjail kill"), "\(stderr)")
            }
            jails.removeAll()
            #expect(Harness.eventually { Harness.processes(inUidRange: Harness.anonymousToolBase).isEmpty })
            #expect(Harness.leftoverCgroups(named: "exec-").isEmpty, "\(Harness.leftoverCgroups())")
        }

        @Test("kill NAME stops one jail and leaves the others running")
        func killOne() throws {
            let probe = try Harness.probe("jailprobe")
            let a = try BackgroundJail(["exec", "--ro", probe + ":/probe/jailprobe", "--", "/probe/jailprobe", "say", "up", "--", "sleep", "60"])
            let b = try BackgroundJail(["exec", "--quiet", "--ro", probe + ":/probe/jailprobe", "--", "/probe/jailprobe", "say", "up", "--", "sleep", "2"])
            defer { a.signal(SIGKILL); b.signal(SIGKILL); _ = a.finish(); _ = b.finish() }
            #expect(a.wait(for: "up") && b.wait(for: "up"))
            let aPids = Harness.processes(inUidRange: Harness.anonymousToolBase)
            let names = Set(aPids.compactMap { Harness.jailName(of: $0) })
            #expect(names.count == 2)
            // Which one is a? The one whose supervisor is a's process.
            let aName = names.first { n in
                (try? String(contentsOfFile: "/run/clawjail/jails/\(n).lock", encoding: .utf8))?
                    .hasPrefix("\(a.process.processIdentifier) ") == true
            } ?? ""
            let r = try Harness.clawjail(["kill", aName])
            #expect(r.status == 0 && r.stdout.contains("killed 1 jail"), "\(r)")
            let (status, stderr) = a.finish()
            #expect(status == 137 && stderr.contains("stopped by clawjail kill"), "\(stderr)")
            let (bStatus, _) = b.finish()
            #expect(bStatus == 0, "the other jail ran to its end")
            let missing = try Harness.clawjail(["kill", "exec-doesnotexist"])
            #expect(missing.status != 0 && missing.stderr.contains("no running jail named exec-doesnotexist"))
        }
    }
}
