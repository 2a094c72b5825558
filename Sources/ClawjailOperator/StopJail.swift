import ClawjailCgroup
import ClawjailCore
import ClawjailStore
import ClawjailSystem
import ClawjailRuntime

/// `clawjail stop NAME`: the orderly stop. SIGTERM goes to the jail's supervisor (which
/// forwards it to the agent and, after the run's own grace, kills the jail and records
/// the end). When the supervisor does not finish in time, a second SIGTERM tells it to
/// kill at once; when even that does not work (a stopped or wedged supervisor), the
/// jail's cgroup is killed directly, as `clawjail kill NAME` does.
public enum StopJail {
    public enum How: String, Sendable {
        /// The run ended after the first SIGTERM.
        case sigterm
        /// It outlasted the grace; the second SIGTERM made the supervisor kill it.
        case sigtermTwice = "sigterm-twice"
        /// The supervisor did not respond; the jail was killed through its cgroup.
        case emergencyKill = "emergency-kill"
    }

    public struct Result: Sendable {
        public var name: String
        public var supervisorPid: Int32
        public var how: How
        public var elapsedMs: Int64
        public var supervisorExited: Bool
        public var run: RunRecord?
        /// The jail's processes are gone (its cgroup is empty or removed).
        public var jailGone: Bool
    }

    /// Extra time, after each step, for the supervisor to tear down and record the end.
    public static let marginMs: UInt64 = 3000

    public static func stop(_ name: String, graceMs: UInt64, layout: HostLayout) throws(ClawjailError) -> Result {
        guard let entry = JailRegistry.running(layout: layout).first(where: { $0.name == name }) else {
            let leftover = FileSystem.exists(JailRegistry.path(name, layout: layout))
            throw ClawjailError(.notFound, "no running jail named \(OperatorText.safeLine(name))",
                                hint: leftover ? "its supervisor is gone; `clawjail gc` removes what it left" : "`clawjail ps` lists the running jails")
        }
        if entry.kind == "restore" {
            throw ClawjailError(.conflict, "\(name) is not running: `clawjail protect restore` holds its lock (pid \(entry.supervisorPid)) for a moment")
        }
        // The pidfd first, then the check that this very process holds the lock: once
        // verified, a signal through the pidfd can only reach the lock holder (or fail
        // with ESRCH if it has exited), never a process that reused the number.
        let pidfd: PidFD
        do { pidfd = try PidFD.open(entry.supervisorPid) } catch {
            throw ClawjailError(.notFound, "\(name) ended before it could be stopped (supervisor pid \(entry.supervisorPid): \(error))")
        }
        defer { pidfd.close() }
        let holders = LockHolders.pids(holding: JailRegistry.path(name, layout: layout))
        guard holders.contains(entry.supervisorPid) else {
            if holders.isEmpty {
                throw ClawjailError(.notFound, "\(name) ended before it could be stopped")
            }
            throw ClawjailError(.conflict, "the lock of \(name) names supervisor pid \(entry.supervisorPid), but pid "
                                + holders.map(String.init).joined(separator: ", ") + " holds it; not signalling anything",
                                hint: "run `clawjail ps` again; `clawjail kill \(name)` stops the jail through its cgroup")
        }
        let store = try? JailStatus.existingStore(layout)
        let run = ((try? store?.runningRuns()) ?? []).first { $0.supervisorPid == entry.supervisorPid && $0.supervisorIsAlive }

        let start = ProcessInfoLite.monotonicNanoseconds
        do { try pidfd.signal(.terminate) } catch where error == .ESRCH {
            // Exited between the check and the signal: it is stopped.
        } catch {
            throw ClawjailError(.permission, "cannot signal the supervisor of \(name) (pid \(entry.supervisorPid))", cause: error)
        }
        var how = How.sigterm
        var exited = wait(pidfd, ms: graceMs + marginMs / 3)
        if !exited {
            how = .sigtermTwice
            try? pidfd.signal(.terminate)
            exited = wait(pidfd, ms: marginMs)
        }
        if !exited {
            how = .emergencyKill
            _ = try? EmergencyStop.kill(name, layout: layout)
            exited = wait(pidfd, ms: marginMs)
        }
        let elapsed = Int64((ProcessInfoLite.monotonicNanoseconds - start) / 1_000_000)
        let finalRun = run.flatMap { r in (try? store?.run(id: r.id)) ?? nil } ?? run
        let gone = exited || (try? Cgroups.detect())?.open(name: name)?.processes().isEmpty ?? true
        let result = Result(name: name, supervisorPid: entry.supervisorPid, how: how, elapsedMs: elapsed,
                            supervisorExited: exited, run: finalRun, jailGone: gone)
        audit(result, store: store, graceMs: graceMs)
        return result
    }

    /// Waits up to `ms` for the process behind the pidfd to exit.
    static func wait(_ pidfd: PidFD, ms: UInt64) -> Bool {
        let deadline = ProcessInfoLite.monotonicNanoseconds + ms * 1_000_000
        while true {
            let now = ProcessInfoLite.monotonicNanoseconds
            if now >= deadline { return false }
            var p = [Poll.Entry(fd: pidfd.fd, events: .readable)]
            do {
                if try Poll.waitOnce(&p, timeoutMs: Int32(min((deadline - now) / 1_000_000 + 1, 1000))) > 0 { return true }
            } catch where error == .EINTR {
                // The deadline is checked again before the next wait.
            } catch {
                return false
            }
        }
    }

    private static func audit(_ r: Result, store: Store?, graceMs: UInt64) {
        guard let store else { return }
        var payload: [String: JSONValue] = [
            "jail": .string(r.name), "supervisor_pid": .int(Int64(r.supervisorPid)), "how": .string(r.how.rawValue),
            "grace_ms": .int(Int64(graceMs)), "elapsed_ms": .int(r.elapsedMs), "by_uid": .int(Int64(ProcessInfoLite.userID)),
            "supervisor_exited": .bool(r.supervisorExited),
        ]
        if let run = r.run { payload["run_id"] = .int(run.id.rawValue) }
        let agent = r.run?.agent ?? (r.name.hasPrefix("exec-") ? "" : r.name)
        _ = try? store.append(AuditEventInput(agent: agent, kind: "operator.stop", runID: r.run?.id, payload: payload))
    }

    public static func render(_ r: Result, graceMs: UInt64) -> String {
        var out = "\(r.supervisorExited ? "stopped" : "killed") \(r.name) in \(OperatorText.duration(ms: r.elapsedMs)): "
        switch r.how {
        case .sigterm: out += "it ended after SIGTERM"
        case .sigtermTwice: out += "it outlasted the \(Units.formatDuration(graceMs)) grace; its supervisor killed it on the second SIGTERM"
        case .emergencyKill: out += "its supervisor did not respond; the jail was killed through its cgroup (emergency stop)"
        }
        if let run = r.run, let o = run.outcome {
            out += "; run \(run.id) " + JailStatus.outcomeText(o) + " (exit status \(o.exitCode))"
        }
        out += "\n"
        if !r.supervisorExited {
            let state = JailStatus.processState(r.supervisorPid).map { " (state \($0))" } ?? ""
            out += "the supervisor, pid \(r.supervisorPid)\(state), has not exited and still holds the jail's lock"
            out += r.jailGone ? "; the jail's processes are gone. It records the end when it runs again (`kill -CONT \(r.supervisorPid)` if it was stopped).\n"
                : "; the jail still has processes: run `clawjail kill \(r.name)`.\n"
        }
        return out
    }

    public static func json(_ r: Result) -> JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(r.name), "supervisor_pid": .int(Int64(r.supervisorPid)), "how": .string(r.how.rawValue),
            "elapsed_ms": .int(r.elapsedMs), "supervisor_exited": .bool(r.supervisorExited), "jail_gone": .bool(r.jailGone),
            "run_id": r.run.map { .int($0.id.rawValue) } ?? .null,
        ]
        if let o2 = r.run?.outcome {
            o["outcome"] = .string(JailStatus.outcomeText(o2))
            o["exit_code"] = .int(Int64(o2.exitCode))
        }
        return .object(o)
    }
}

/// Who holds a flock, from /proc/locks (the kernel's own table; the pid is the one that
/// took the lock, in our pid namespace).
enum LockHolders {
    static func pids(holding path: String) -> [Int32] {
        guard let st = try? FileSystem.stat(path) else { return [] }
        let text = (try? FileSystem.readText("/proc/locks", limit: 4 << 20)) ?? ""
        return parse(text, inode: st.inode, device: st.device)
    }

    /// "1: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF" (waiters, "1: -> FLOCK ...", skipped).
    static func parse(_ text: String, inode: UInt64, device: UInt64) -> [Int32] {
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
        var out: [Int32] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 6, f[1] == "FLOCK", let pid = Int32(f[4]) else { continue }
            let id = f[5].split(separator: ":")
            guard id.count == 3, UInt64(id[2]) == inode, UInt64(id[0], radix: 16) == major,
                  UInt64(id[1], radix: 16) == minor else { continue }
            out.append(pid)
        }
        return out
    }
}
