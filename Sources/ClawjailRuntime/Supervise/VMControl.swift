import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// The supervisor's side of a VM agent's control channel (ControlFrame over the
/// VMM's stdin): it sets the guest up, starts the agent in it, relays its stdio and
/// signals, and says how it ended. Everything from the guest is untrusted: a frame the
/// protocol does not allow at that point, or output beyond the credit granted, ends
/// the VM.
///
/// Host memory per VM is bounded whatever the guest sends: one frame in the decoder
/// (`ControlFrame.maxBody`), one line per output stream (`LineWriter.maxLine`), the
/// console and VMM tails, and `maxOutbound` queued towards the guest. Output is written
/// out before more credit is granted, so the guest can never have more than `window`
/// bytes of a stream in flight.
public final class VMControl: SupervisedChannel {
    public enum Phase: Equatable, Sendable {
        case booting, settingUp, starting, running, exited, shuttingDown
    }

    let socket: FD
    let consolePipe: FD
    let vmmErrors: FD
    let plan: VMPlan
    var pendingFiles: [ControlFrame]
    /// Tool runs in the guest (`exec --agent`), when the supervisor listens for them.
    var tools: VMToolRuns?
    var guestMemoryPath: String?
    let killVM: () -> Void
    var decoder = ControlFrameDecoder()
    var outbound: [UInt8] = []
    var writers: [LineWriter]
    let stdinSource: FD?
    var stdinOpen: Bool
    var stdinCredit: UInt32 = 0
    /// What the guest may still send on stdout and stderr (granted, not yet used).
    var outputCredit: [UInt32] = [0, 0]
    public private(set) var phase: Phase = .booting
    public private(set) var kernelRelease: String?
    /// The guest's claim of how the agent ended (code, signal).
    public private(set) var guestExit: (code: Int32, signal: Int32)?
    /// Why the VM was ended by us or failed, in words.
    public private(set) var failure: String?
    public private(set) var bootMs: UInt64?
    var console = TailLines(limit: 40)
    var vmmLog = TailLines(limit: 20)
    var consoleOpen = true
    var vmmLogOpen = true
    var deadline: UInt64
    let started = ProcessInfoLite.monotonicNanoseconds

    static let session: UInt32 = 1
    /// Credit per output stream.
    static let window: UInt32 = 64 << 10
    static let maxOutbound = 256 << 10
    /// TCG boots in about 3-5 s here; a guest that has not said READY by then is stuck.
    static let bootTimeoutNs: UInt64 = 60_000_000_000
    static let setupTimeoutNs: UInt64 = 30_000_000_000
    static let shutdownTimeoutNs: UInt64 = 10_000_000_000

    /// `socket`: the supervisor's end of the control socketpair; `consolePipe` and
    /// `vmmErrors`: the read ends of the VMM's stdout (the guest console) and stderr.
    /// `guestFiles`: the guest jail's files (`file` frames), sent after the shares are
    /// mounted, one at a time, each answered before the next.
    public init(plan: VMPlan, guestFiles: [ControlFrame], socket: FD, consolePipe: FD, vmmErrors: FD, stdout: FD, stderr: FD, stdin: FD?,
                filter: OutputFilter, killVM: @escaping () -> Void) {
        self.plan = plan
        self.pendingFiles = guestFiles
        self.socket = socket
        self.consolePipe = consolePipe
        self.vmmErrors = vmmErrors
        self.killVM = killVM
        self.writers = [LineWriter(destination: stdout, filter: filter), LineWriter(destination: stderr, filter: filter)]
        self.stdinSource = stdin
        self.stdinOpen = stdin != nil
        self.deadline = started + Self.bootTimeoutNs
        try? socket.setNonBlocking(true)
        try? consolePipe.setNonBlocking(true)
        try? vmmErrors.setNonBlocking(true)
    }

    // MARK: SupervisedChannel

    public func pollEntries() -> [Poll.Entry] {
        var e = [Poll.Entry(fd: socket, events: outbound.isEmpty ? .readable : [.readable, .writable])]
        if consoleOpen { e.append(Poll.Entry(fd: consolePipe, events: .readable)) }
        if vmmLogOpen { e.append(Poll.Entry(fd: vmmErrors, events: .readable)) }
        if let s = stdinSource, stdinOpen, phase == .running, stdinCredit > 0 { e.append(Poll.Entry(fd: s, events: .readable)) }
        if let t = tools { e += t.pollEntries }
        return e
    }

    public func handle(_ entries: [Poll.Entry]) {
        for e in entries where !e.returned.isEmpty {
            switch e.fd.rawValue {
            case socket.rawValue:
                if e.returned.contains(.writable) { flush() }
                if !e.returned.intersection([.readable, .hangUp, .error]).isEmpty { receive() }
            case consolePipe.rawValue:
                consoleOpen = console.pump(consolePipe)
                for line in console.takeNew() { Log.debug("vm \(plan.guest.argv.first ?? "guest") console: " + line) }
            case vmmErrors.rawValue:
                vmmLogOpen = vmmLog.pump(vmmErrors)
                for line in vmmLog.takeNew() { Log.debug("vmm: " + line) }
            default:
                if let s = stdinSource, e.fd.rawValue == s.rawValue {
                    relayStdin(s)
                } else if let t = tools {
                    _ = t.handle(e)
                }
            }
        }
    }

    public func timeoutMs() -> Int32? {
        let now = ProcessInfoLite.monotonicNanoseconds
        var ms: UInt64 = deadline > now ? (deadline - now) / 1_000_000 + 1 : 0
        if writers.contains(where: { $0.hasPendingPartialLine }) { ms = min(ms, 100) }
        return Int32(min(ms, 60_000))
    }

    public func tick() {
        let now = ProcessInfoLite.monotonicNanoseconds
        if now >= deadline && failure == nil {
            switch phase {
            case .booting: fail("the guest did not boot within \(Self.bootTimeoutNs / 1_000_000_000) s")
            case .settingUp, .starting: fail("the guest did not start the agent within \(Self.setupTimeoutNs / 1_000_000_000) s")
            case .exited, .shuttingDown:
                if guestExit != nil {
                    // The agent's end is known; only the power-off is missing.
                    Log.warning("vm: the guest did not power off within \(Self.shutdownTimeoutNs / 1_000_000_000) s of the agent's exit; ending the VM")
                    deadline = .max
                    killVM()
                } else {
                    fail("the guest did not power off within \(Self.shutdownTimeoutNs / 1_000_000_000) s")
                }
            case .running: break
            }
        }
        if phase == .running { deadline = now + 3_600_000_000_000 }
        for i in writers.indices { writers[i].flushPartial() }
    }

    public func forward(_ signal: Signal) {
        if phase == .running {
            send(.signal(session: Self.session, signal: signal.rawValue))
        } else if phase != .exited && phase != .shuttingDown {
            // Nothing in the guest to signal yet: stopping a booting VM is ending it.
            killVM()
        }
    }

    // MARK: the protocol

    func receive() {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n: Int
            do throws(Errno) { n = try socket.read(into: &chunk) } catch where error == .EAGAIN { return } catch {
                return
            }
            if n == 0 { return }
            decoder.append(chunk[0..<n])
            while true {
                let frame: ControlFrame?
                do throws(ControlFrameError) { frame = try decoder.next() } catch {
                    fail("the guest broke the control protocol: \(error)")
                    return
                }
                guard let frame else { break }
                handle(frame)
                if failure != nil { return }
            }
        }
    }

    /// Listens for tool runs on `listener` (at `path`) once the agent runs in the guest.
    public func acceptToolRuns(listener: FD, path: String, agent: String) {
        tools = VMToolRuns(listener: listener, path: path, agent: agent) { [unowned self] f in self.send(f) }
    }

    /// Writes the guest's memory reports to `path` (JSON, 0600, replaced atomically):
    /// what `clawjail stats` shows of the guest's own view.
    public func publishGuestMemory(to path: String) {
        guestMemoryPath = path
    }

    func recordGuestMemory(totalKB: UInt64, availableKB: UInt64, jailsBytes: UInt64) {
        guard let path = guestMemoryPath else { return }
        let o: JSONValue = ["total_bytes": .int(Int64(clamping: totalKB * 1024)), "available_bytes": .int(Int64(clamping: availableKB * 1024)),
                            "jails_bytes": .int(Int64(clamping: jailsBytes)), "at_ms": .int(ProcessInfoLite.wallClockMilliseconds)]
        guard let text = try? o.canonicalText() else { return }
        let tmp = path + ".tmp"
        do throws(Errno) {
            let fd = try FileSystem.open(tmp, [.writeOnly, .create, .truncate, .noFollow, .closeOnExec], mode: 0o600)
            defer { fd.close() }
            try fd.writeAll(text + "\n")
            try FileSystem.rename(tmp, path)
        } catch {
            Log.debug("vm: cannot write \(path): \(error)")
        }
    }

    func handle(_ frame: ControlFrame) {
        if case .memory(let total, let available, let jails) = frame, phase != .booting {
            recordGuestMemory(totalKB: total, availableKB: available, jailsBytes: jails)
            return
        }
        if phase == .running || phase == .exited || phase == .shuttingDown, let t = tools, t.fromGuest(frame) { return }
        switch (phase, frame) {
        case (.booting, .ready(let release)):
            kernelRelease = release
            bootMs = (ProcessInfoLite.monotonicNanoseconds - started) / 1_000_000
            Log.debug("vm: guest kernel \(release) ready after \(bootMs ?? 0) ms")
            phase = .settingUp
            deadline = ProcessInfoLite.monotonicNanoseconds + Self.setupTimeoutNs
            send(.setup(mounts: plan.guestMounts, links: plan.guestLinks, network: plan.guestNetwork))
        case (.settingUp, .setupDone):
            if !pendingFiles.isEmpty {
                send(pendingFiles.removeFirst())
                return
            }
            phase = .starting
            let g = plan.guestJailCommand
            send(.spawn(.init(session: Self.session, uid: g.uid, gid: g.gid, cwd: g.cwd, argv: g.argv,
                              environment: g.environment.map { "\($0.name)=\($0.value)" })))
        case (.starting, .started(Self.session, let pid)):
            Log.debug("vm: the agent is pid \(pid) in the guest")
            phase = .running
            tools?.accepting = true
            grant(ControlFrame.stdout, Self.window)
            grant(ControlFrame.stderr, Self.window)
        case (.settingUp, .error(let message)):
            // The guest could not mount a share: the agent never starts.
            failure = "the guest: " + DisplayText.safeLine(String(message.prefix(512)))
            shutDown()
        case (.starting, .error(let message)):
            // The guest could not start the agent; its `exited` (126/127) follows.
            Log.error("vm: the guest: " + DisplayText.safeLine(String(message.prefix(512))))
        case (.starting, .exited(Self.session, let code, let signal)):
            guestExit = (code, signal)
            shutDown()
        case (.running, .data(Self.session, let stream, let bytes)) where stream != ControlFrame.stdin:
            let i = Int(stream) - 1
            if bytes.isEmpty { writers[i].flushPartial(); return }
            guard bytes.count <= Int(outputCredit[i]) else {
                fail("the guest sent \(bytes.count) bytes of output with \(outputCredit[i]) bytes of credit")
                return
            }
            outputCredit[i] -= UInt32(bytes.count)
            writers[i].feed(bytes)
            // Written out: the guest may send as much again.
            grant(stream, UInt32(bytes.count))
        case (.running, .credit(Self.session, ControlFrame.stdin, let bytes)):
            stdinCredit = stdinCredit &+ bytes
        case (.running, .exited(Self.session, let code, let signal)):
            guestExit = (code, signal)
            for i in writers.indices { writers[i].flushPartial() }
            shutDown()
        case (.starting, .credit(Self.session, ControlFrame.stdin, let bytes)):
            stdinCredit = stdinCredit &+ bytes
        case (.exited, _), (.shuttingDown, _):
            break
        default:
            fail("the guest sent \(frame.name) while \(phase)")
        }
    }

    func grant(_ stream: UInt8, _ bytes: UInt32) {
        outputCredit[Int(stream) - 1] += bytes
        send(.credit(session: Self.session, stream: stream, bytes: bytes))
    }

    func relayStdin(_ source: FD) {
        var chunk = [UInt8](repeating: 0, count: Int(min(stdinCredit, UInt32(16 << 10))))
        let n: Int
        do throws(Errno) { n = try source.read(into: &chunk) } catch where error == .EAGAIN || error == .EINTR { return } catch {
            n = 0
        }
        if n == 0 {
            stdinOpen = false
            send(.data(session: Self.session, stream: ControlFrame.stdin, bytes: []))
            return
        }
        stdinCredit -= UInt32(n)
        send(.data(session: Self.session, stream: ControlFrame.stdin, bytes: Array(chunk[0..<n])))
    }

    func shutDown() {
        tools?.closeAll("the agent ended; its VM is shutting down")
        phase = .shuttingDown
        deadline = ProcessInfoLite.monotonicNanoseconds + Self.shutdownTimeoutNs
        send(.shutdown)
    }

    func fail(_ why: String) {
        guard failure == nil else { return }
        failure = why
        tools?.closeAll("the agent's VM failed: \(why)")
        Log.warning("vm: \(why); ending the VM")
        phase = .shuttingDown
        killVM()
    }

    func send(_ frame: ControlFrame) {
        guard let bytes = try? frame.encoded() else { return }
        guard outbound.count + bytes.count <= Self.maxOutbound else {
            fail("the guest stopped reading its control port (\(outbound.count) bytes queued)")
            return
        }
        outbound += bytes
        flush()
    }

    func flush() {
        while !outbound.isEmpty {
            let result: Result<Int, Errno> = outbound.withUnsafeBytes { b in
                do throws(Errno) { return .success(try socket.write(b)) } catch { return .failure(error) }
            }
            switch result {
            case .success(let n): outbound.removeFirst(n)
            case .failure(.EAGAIN): return
            case .failure:
                // The VMM is gone; its exit is what the supervisor reports.
                outbound.removeAll()
                return
            }
        }
    }

    // MARK: the end

    /// Reads what is left of the console and the VMM's messages (bounded).
    func drainLogs() {
        let until = ProcessInfoLite.monotonicNanoseconds + 1_000_000_000
        while (consoleOpen || vmmLogOpen) && ProcessInfoLite.monotonicNanoseconds < until {
            var e: [Poll.Entry] = []
            if consoleOpen { e.append(Poll.Entry(fd: consolePipe, events: .readable)) }
            if vmmLogOpen { e.append(Poll.Entry(fd: vmmErrors, events: .readable)) }
            _ = try? Poll.wait(&e, timeoutMs: 200)
            if consoleOpen { consoleOpen = console.pump(consolePipe) }
            if vmmLogOpen { vmmLogOpen = vmmLog.pump(vmmErrors) }
        }
        receive()
        for i in writers.indices { writers[i].flushPartial() }
    }

    /// The run's end as the guest and the host saw it: the guest's exit status when it
    /// sent one (its claim), else what the host observed (a timeout, the VM's OOM kill,
    /// a stop, a kernel panic, the VMM's own failure).
    public func finish(_ result: RunResult) -> RunResult {
        drainLogs()
        tools?.tearDown()
        tools = nil
        if let p = guestMemoryPath { try? FileSystem.unlink(p) }
        var r = result
        switch result.end {
        case .timedOut, .oomKilled, .setupFailed, .execFailed:
            return r
        default:
            break
        }
        if let exit = guestExit, failure == nil {
            if exit.signal != 0 {
                r.end = .signaled(exit.signal)
                r.exitStatus = 128 + exit.signal
            } else {
                r.end = .exited(exit.code)
                r.exitStatus = exit.code
            }
            return r
        }
        if result.stoppedBy != nil && failure == nil { return r }
        r.end = .vmFailed(endCause(result))
        r.exitStatus = 125
        return r
    }

    func endCause(_ result: RunResult) -> String {
        if let panic = console.all.first(where: { $0.contains("Kernel panic") }) {
            return "the guest kernel panicked: " + DisplayText.safeLine(panic)
        }
        var why = failure ?? {
            switch result.end {
            case .exited(let c): return "the VMM exited with status \(c) before the agent ended"
            case .signaled(let s): return "the VMM was killed by \(signalName(s)) before the agent ended"
            default: return "the VM ended before the agent did"
            }
        }()
        // The VMM's own words first (the file servers log every hang-up after it).
        let own = vmmLog.all.filter { $0.hasPrefix("qemu-system") || $0.hasPrefix("clawjail-vmm") || $0.hasPrefix("setpriv") }
        let tail = (own.isEmpty ? vmmLog.all : own).suffix(3).map(DisplayText.safeLine).joined(separator: " / ")
        if !tail.isEmpty { why += " (vmm: \(tail))" }
        let guestLines = console.all.filter { $0.hasPrefix("guest:") }.suffix(2).map(DisplayText.safeLine)
        if !guestLines.isEmpty { why += " (console: \(guestLines.joined(separator: " / ")))" }
        return why
    }
}

/// The last lines of a log pipe (the guest console, the VMM's stderr), bounded.
struct TailLines {
    let limit: Int
    var all: [String] = []
    var fresh: [String] = []
    var partial: [UInt8] = []

    init(limit: Int) { self.limit = limit }

    /// Reads what is there; false at EOF.
    mutating func pump(_ fd: FD) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n: Int
            do throws(Errno) { n = try fd.read(into: &chunk) } catch where error == .EAGAIN { return true } catch {
                return false
            }
            if n == 0 {
                if !partial.isEmpty { add(partial) }
                partial = []
                return false
            }
            for b in chunk[0..<n] {
                if b == 0x0a {
                    add(partial)
                    partial = []
                } else if partial.count < 1024 {
                    partial.append(b)
                }
            }
        }
    }

    mutating func add(_ bytes: [UInt8]) {
        let line = String(String(decoding: bytes, as: UTF8.self).trimming("\r"))
        all.append(line)
        fresh.append(line)
        if all.count > limit { all.removeFirst(all.count - limit) }
        if fresh.count > limit { fresh.removeFirst(fresh.count - limit) }
    }

    mutating func takeNew() -> [String] {
        defer { fresh = [] }
        return fresh
    }
}

extension ControlFrame {
    /// The frame's kind, for messages (never its payload: a hostile guest's bytes).
    var name: String {
        switch self {
        case .ready: return "ready"
        case .run: return "run"
        case .exit: return "exit"
        case .shutdown: return "shutdown"
        case .error: return "error"
        case .setup: return "setup"
        case .setupDone: return "setup-done"
        case .spawn: return "spawn"
        case .started: return "started"
        case .data: return "data"
        case .credit: return "credit"
        case .signal: return "signal"
        case .exited: return "exited"
        case .file: return "file"
        case .memory: return "memory"
        }
    }
}
