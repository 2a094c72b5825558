import ClawjailCore
import ClawjailSystem

/// One process the host asked the guest to start (`spawn`), with its stdio on three
/// pipes that the init relays as `data` frames. Output is read only while the host's
/// credit for that stream lasts, so a process that floods stdout waits on a full pipe
/// inside the guest instead of growing anything on the host.
final class GuestSession {
    let id: UInt32
    let pid: pid_t
    let pidfd: PidFD?
    var stdinPipe: FD?
    /// stdout (index 0) and stderr (index 1).
    var outputs: [FD?]
    var credit: [UInt32] = [0, 0]
    /// Bytes from the host for stdin, not yet written to the pipe (at most the credit
    /// the guest granted).
    var stdinPending: [UInt8] = []
    var stdinEnded = false
    var status: WaitStatus?
    /// When the process exited: its output may still be draining, up to `drainNs`.
    var exitedAt: UInt64?

    /// What the guest grants the host for stdin at a time.
    static let stdinWindow: UInt32 = 64 << 10
    /// After the process exits, how long its output pipes may stay open (a background
    /// child holding them) before the session's process group is killed.
    static let drainNs: UInt64 = 2_000_000_000
    /// The largest data frame the guest sends.
    static let chunk = 16 << 10

    init(id: UInt32, pid: pid_t, stdin: FD, stdout: FD, stderr: FD) {
        self.id = id
        self.pid = pid
        self.pidfd = try? PidFD.open(pid)
        self.stdinPipe = stdin
        self.outputs = [stdout, stderr]
        try? stdin.setNonBlocking(true)
        try? stdout.setNonBlocking(true)
        try? stderr.setNonBlocking(true)
    }

    /// Starts `s`: fails with the errno of the step that failed (ENOENT: no such program).
    static func start(_ s: ControlFrame.GuestSpawn) throws(Errno) -> GuestSession {
        let stdin = try pipe(cloexec: true)
        let stdout: (read: FD, write: FD)
        let stderr: (read: FD, write: FD)
        do throws(Errno) {
            stdout = try pipe(cloexec: true)
        } catch {
            stdin.read.close(); stdin.write.close()
            throw error
        }
        do throws(Errno) {
            stderr = try pipe(cloexec: true)
        } catch {
            stdin.read.close(); stdin.write.close(); stdout.read.close(); stdout.write.close()
            throw error
        }
        defer {
            stdin.read.close()
            stdout.write.close()
            stderr.write.close()
        }
        let pid: pid_t
        do throws(Errno) {
            pid = try ChildProcess.start(s.argv, environment: s.environment, cwd: s.cwd, uid: s.uid, gid: s.gid,
                                      stdio: (stdin.read, stdout.write, stderr.write))
        } catch {
            stdin.write.close(); stdout.read.close(); stderr.read.close()
            throw error
        }
        return GuestSession(id: s.session, pid: pid, stdin: stdin.write, stdout: stdout.read, stderr: stderr.read)
    }

    var outputOpen: Bool { outputs.contains { $0 != nil } }
    /// Exited, and its output has all been sent (or given up on).
    var finished: Bool { status != nil && !outputOpen }

    func closeOutput(_ i: Int) {
        outputs[i]?.close()
        outputs[i] = nil
    }

    func closeStdin() {
        stdinPipe?.close()
        stdinPipe = nil
        stdinPending = []
    }

    /// Reads what the credit allows from output `i` (0 stdout, 1 stderr): the frames
    /// to send. An empty data frame says the stream ended.
    func readOutput(_ i: Int) -> [ControlFrame] {
        guard let fd = outputs[i] else { return [] }
        var frames: [ControlFrame] = []
        while credit[i] > 0 {
            var buffer = [UInt8](repeating: 0, count: min(Int(credit[i]), Self.chunk))
            let n: Int
            do throws(Errno) {
                n = try fd.read(into: &buffer)
            } catch where error == .EAGAIN {
                return frames
            } catch {
                n = 0
            }
            if n == 0 {
                closeOutput(i)
                frames.append(.data(session: id, stream: UInt8(i + 1), bytes: []))
                return frames
            }
            credit[i] -= UInt32(n)
            frames.append(.data(session: id, stream: UInt8(i + 1), bytes: Array(buffer[0..<n])))
        }
        return frames
    }

    /// Writes what it can of the pending stdin; the credit to give back to the host.
    func writeStdin() -> UInt32 {
        guard let fd = stdinPipe, !stdinPending.isEmpty else { return 0 }
        let result: Result<Int, Errno> = stdinPending.withUnsafeBytes { b in
            do throws(Errno) { return .success(try fd.write(b)) } catch { return .failure(error) }
        }
        let n: Int
        switch result {
        case .success(let written): n = written
        case .failure(.EAGAIN): return 0
        case .failure:
            // The process closed its stdin (EPIPE): the rest is dropped, and credited
            // back so that the host is not left waiting.
            let dropped = UInt32(stdinPending.count)
            closeStdin()
            return dropped
        }
        stdinPending.removeFirst(n)
        if stdinPending.isEmpty && stdinEnded { closeStdin() }
        return UInt32(n)
    }

    /// Once the process is gone: output still open after the drain time is cut off
    /// (its process group killed, the pipes closed), with the end-of-stream frames.
    func cutOffIfDrained(now: UInt64) -> [ControlFrame] {
        guard let at = exitedAt, now >= at + Self.drainNs, outputOpen else { return [] }
        GuestInit.signalGroup(pid, Signal.kill.rawValue)
        var frames: [ControlFrame] = []
        for i in 0..<2 where outputs[i] != nil {
            closeOutput(i)
            frames.append(.data(session: id, stream: UInt8(i + 1), bytes: []))
        }
        return frames
    }

    var exitFrame: ControlFrame {
        let s = status ?? WaitStatus(rawValue: 0)
        return .exited(session: id, code: s.signaled ? 0 : s.exitCode, signal: s.signaled ? s.signal : 0)
    }

    func close() {
        closeStdin()
        closeOutput(0)
        closeOutput(1)
        pidfd?.close()
    }
}
