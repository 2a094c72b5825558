import CClawjailChild
import ClawjailCgroup
import ClawjailCore
import ClawjailSystem

/// How a run ended.
public enum RunEnd: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)
    case oomKilled
    case timedOut
    case setupFailed(String)
    case execFailed(String, Int32)   // message, errno
    /// A VM agent's VM ended before its agent did: a guest kernel panic, a VMM crash, a
    /// guest that never booted.
    case vmFailed(String)
}

public struct RunResult: Sendable {
    public var end: RunEnd
    /// The exit status `clawjail` itself returns: the command's code, 128+signal,
    /// 124 for a timeout, 137 for an OOM kill, 125 for a setup failure, 126/127 when
    /// the command could not be executed.
    public var exitStatus: Int32
    public var durationMs: UInt64
    public var stats: CgroupStats
    public var events: CgroupEvents
    /// Set when the operator stopped the run (SIGTERM/SIGINT to the supervisor, `stop`).
    public var stoppedBy: String?

    /// One line for stderr and the audit: "exited 0", "OOM-killed (memory limit 256M)".
    public func summary(limits: JailSpec.Limits) -> String {
        switch end {
        case .exited(let c): return "exited \(c)"
        case .signaled(let s): return "killed by \(signalName(s))" + (stoppedBy.map { " (stopped by \($0))" } ?? "")
        case .oomKilled: return "OOM-killed (memory limit \(Units.formatSize(limits.memory)))"
        case .timedOut: return "timed out after \(Units.formatDuration(limits.wallTimeMs))"
        case .setupFailed(let m): return m
        case .execFailed(let m, _): return m
        case .vmFailed(let m): return m
        }
    }

    /// What to do about how the run ended, when clawjail can tell: a refused fork or
    /// thread, a browser that wanted a sandbox of its own. `tool`: the advice names
    /// `clawjail exec`'s flags, else agent.toml's keys.
    public func hints(for spec: JailSpec) -> [String] {
        if case .exited(0) = end { return [] }
        var out: [String] = []
        let tool = spec.kind == .tool
        if events.pidsLimitHits > 0 {
            out.append("the run hit its pids limit (\(spec.limits.pids)) \(events.pidsLimitHits) times: processes and threads "
                       + "could not start; raise it with \(tool ? "--pids N" : "[limits] pids") (a headless browser needs about 512)")
        }
        if Self.isChromium(spec.argv) && !spec.argv.contains("--no-sandbox") {
            out.append("Chromium's own sandbox needs user namespaces, which a jail refuses by design: the jail is the sandbox. "
                       + "Run it with --no-sandbox (and --headless=new)")
        }
        return out
    }

    /// Chromium and the browsers built on it, by the command's name.
    static func isChromium(_ argv: [String]) -> Bool {
        guard let first = argv.first else { return false }
        let base = first.split(separator: "/").last.map(String.init) ?? first
        return ["chromium", "chromium-browser", "chrome", "google-chrome", "google-chrome-stable", "chrome-headless-shell",
                "headless_shell", "brave-browser", "microsoft-edge"].contains(base)
    }

    public var endKind: String {
        switch end {
        case .exited: return "exited"
        case .signaled: return "signaled"
        case .oomKilled: return "oom"
        case .timedOut: return "timeout"
        case .setupFailed: return "setup-failed"
        case .execFailed: return "exec-failed"
        case .vmFailed: return "vm-failed"
        }
    }
}

public struct SuperviseOptions {
    /// Between the forwarded SIGTERM and the SIGKILL.
    public var graceMs: UInt64 = 10_000
    /// Pipes carrying the command's stdout/stderr to be relayed (run mode).
    public var outputs: [OutputRelay] = []
    /// Extra fds to watch, with their handlers (seccomp notifications, stop requests).
    public var watchers: [(fd: FD, handle: () -> Void)] = []
    /// Read the cgroup's usage counters at the end (for a status or a store record;
    /// a plain tool run skips the file reads).
    public var collectStats = true
    /// A VM agent's control channel: its own fds in the poll, and the signals that
    /// stop or reach the agent go to it instead of the jail's init.
    public var channel: (any SupervisedChannel)?
    public init() {}
}

/// What the supervisor's loop drives besides the jail: a VM's control channel.
public protocol SupervisedChannel: AnyObject {
    /// The fds to watch this time round (recomputed every iteration).
    func pollEntries() -> [Poll.Entry]
    /// The same entries, with what poll returned.
    func handle(_ entries: [Poll.Entry])
    /// The longest the loop may sleep before `tick` (nil: no deadline).
    func timeoutMs() -> Int32?
    /// Called every time round: deadlines, pending partial lines.
    func tick()
    /// A signal for the agent (SIGTERM, SIGINT, ... as they arrive at the supervisor).
    func forward(_ signal: Signal)
}

/// The signals the supervisor handles itself; they are blocked in every thread from
/// the first line of main and read from a signalfd.
public enum SupervisorSignals {
    /// The ones that stop a jail (the rest are forwarded as they are).
    static let stopping = SignalSet().inserting(.terminate).inserting(.interrupt).inserting(.hangUp).inserting(.quit)
    public static let handled = stopping.inserting(.user1).inserting(.user2).inserting(.windowChange)

    /// Call before any thread exists. Threads created later inherit the mask.
    public static func blockInAllThreads() {
        SignalHandling.block(handled)
        SignalHandling.ignore(.pipe)
        // A supervisor lives as long as its jail: no per-thread malloc arenas kept alive.
        ProcessMemory.useSingleArena()
    }

    static func makeSignalFD() -> FD? {
        try? SignalFD.make(handled)
    }
}

public enum Supervisor {
    /// Watches the jail until its init exits, forwarding signals, enforcing the wall
    /// clock and relaying output; then tears everything down and says how it ended.
    public static func supervise(_ jail: RunningJail, options: SuperviseOptions) -> RunResult {
        let start = jail.startedAt
        let wallNs: UInt64? = jail.spec.limits.wallTimeMs > 0 ? jail.spec.limits.wallTimeMs * 1_000_000 : nil
        let signals = SupervisorSignals.makeSignalFD()
        defer { signals?.close() }
        var commandStatus: WaitStatus?
        var failure: RunEnd?
        var timedOut = false
        var stoppedBy: String?
        var killDeadline: UInt64?
        var reportOpen = true
        var initExited = false
        var outputs = options.outputs

        func killJail() {
            try? jail.initProcess.signal(.kill)
            try? jail.cgroup.killAll()
        }

        func handleReport() {
            guard let r = try? Launcher.readReport(jail.reportFD) else {
                reportOpen = false
                return
            }
            switch Int(r.type) {
            case Int(CJ_REPORT_EXITED.rawValue):
                commandStatus = WaitStatus(rawValue: r.value)
            case Int(CJ_REPORT_EXEC_FAILED.rawValue):
                failure = .execFailed(jail.message(for: r), r.err)
            case Int(CJ_REPORT_SETUP_FAILED.rawValue):
                failure = .setupFailed(jail.message(for: r))
            default:
                break
            }
        }

        while !initExited {
            var fds: [Poll.Entry] = [Poll.Entry(fd: jail.initProcess.fd, events: .readable)]
            if reportOpen { fds.append(Poll.Entry(fd: jail.reportFD, events: .readable)) }
            if let s = signals { fds.append(Poll.Entry(fd: s, events: .readable)) }
            let outputBase = fds.count
            for o in outputs where o.isOpen { fds.append(Poll.Entry(fd: o.source, events: .readable)) }
            let watcherBase = fds.count
            for w in options.watchers { fds.append(Poll.Entry(fd: w.fd, events: .readable)) }
            let channelBase = fds.count
            if let c = options.channel { fds += c.pollEntries() }

            let now = ProcessInfoLite.monotonicNanoseconds
            var timeoutMs: Int32 = -1
            if let w = wallNs, !timedOut {
                let deadline = start + w
                if now >= deadline {
                    timedOut = true
                    killJail()
                    continue
                }
                timeoutMs = Int32(min((deadline - now) / 1_000_000 + 1, 60_000))
            }
            if let k = killDeadline {
                if now >= k {
                    killJail()
                    killDeadline = nil
                    continue
                }
                let ms = Int32(min((k - now) / 1_000_000 + 1, 60_000))
                timeoutMs = timeoutMs < 0 ? ms : min(timeoutMs, ms)
            }
            for o in outputs where o.hasPendingPartialLine {
                timeoutMs = timeoutMs < 0 ? 100 : min(timeoutMs, 100)
            }
            if let ms = options.channel?.timeoutMs() {
                timeoutMs = timeoutMs < 0 ? ms : min(timeoutMs, ms)
            }
            // Not retried on EINTR: the timeout is worked out from the deadlines again.
            guard let n = try? Poll.waitOnce(&fds, timeoutMs: timeoutMs) else { continue }
            options.channel?.tick()
            if n == 0 {
                for i in outputs.indices { outputs[i].flushPartial() }
                continue
            }
            var index = 1
            if reportOpen {
                if !fds[index].returned.isEmpty { handleReport() }
                index += 1
            }
            if let s = signals {
                if !fds[index].returned.isEmpty {
                    for sig in SignalFD.pending(s) {
                        switch sig {
                        case .terminate, .interrupt, .hangUp, .quit:
                            if stoppedBy != nil && (sig == .interrupt || sig == .terminate) {
                                // Asked twice: do not wait for the grace period.
                                killJail()
                            } else {
                                stoppedBy = sig.description
                                if let c = options.channel { c.forward(sig) } else { try? jail.initProcess.signal(sig) }
                                killDeadline = ProcessInfoLite.monotonicNanoseconds + options.graceMs * 1_000_000
                            }
                        default:
                            if let c = options.channel { c.forward(sig) } else { try? jail.initProcess.signal(sig) }
                        }
                    }
                }
            }
            var outIndex = outputBase
            for i in outputs.indices where outputs[i].isOpen {
                if outIndex < fds.count && !fds[outIndex].returned.isEmpty { outputs[i].pump() }
                outIndex += 1
            }
            for (i, w) in options.watchers.enumerated() where !fds[watcherBase + i].returned.isEmpty {
                w.handle()
            }
            if let c = options.channel { c.handle(Array(fds[channelBase...])) }
            if !fds[0].returned.isEmpty { initExited = true }
        }

        let initStatus = try? jail.initProcess.wait()
        if EmergencyStop.consumeMarker(jail.spec.name, layout: jail.layout) { stoppedBy = "clawjail kill" }
        while reportOpen { handleReport() }
        // The pid namespace is gone with its init; the write ends of the output pipes
        // close as its processes finish dying. Bounded drain.
        let drainUntil = ProcessInfoLite.monotonicNanoseconds + 2_000_000_000
        for i in outputs.indices { outputs[i].drain(until: drainUntil) }

        let events = jail.cgroup.events()
        let stats = options.collectStats ? jail.cgroup.stats() : CgroupStats()
        let durationMs = (ProcessInfoLite.monotonicNanoseconds - start) / 1_000_000
        var end: RunEnd
        if let failure {
            end = failure
        } else if timedOut {
            end = .timedOut
        } else if let s = commandStatus ?? initStatus {
            if s.signaled && s.signal == Signal.kill.rawValue && events.oomKills > 0 {
                end = .oomKilled
            } else if s.signaled {
                end = .signaled(s.signal)
            } else {
                end = .exited(s.exitCode)
            }
        } else {
            end = .setupFailed("the jail's init vanished without a status")
        }
        if commandStatus == nil, failure == nil, !timedOut, let s = initStatus, s.signaled, s.signal == Signal.kill.rawValue,
           events.oomKills > 0 {
            end = .oomKilled
        }
        let exitStatus: Int32
        switch end {
        case .exited(let c): exitStatus = c
        case .signaled(let s): exitStatus = 128 + s
        case .oomKilled: exitStatus = 137
        case .timedOut: exitStatus = 124
        case .setupFailed: exitStatus = 125
        case .execFailed(_, let e): exitStatus = e == Errno.ENOENT.rawValue ? 127 : 126
        case .vmFailed: exitStatus = 125
        }
        return RunResult(end: end, exitStatus: exitStatus, durationMs: durationMs, stats: stats, events: events,
                         stoppedBy: stoppedBy)
    }
}
