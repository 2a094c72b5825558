import ClawjailCore
import CSeccomp
import ClawjailSystem
import Synchronization

/// A syscall that a profile in log or kill mode handed to the supervisor.
public struct SeccompViolation: Sendable, CustomStringConvertible {
    public enum Response: String, Sendable {
        /// log mode, a call the profile does not name: it went ahead.
        case continued
        /// It failed with the profile's errno (log mode, restricted call).
        case denied
        /// kill mode: the process got SIGKILL.
        case killed
        /// The process was gone before an answer (killed elsewhere, or exited).
        case gone
    }

    /// "mount", or "syscall 1234" when libseccomp has no name for it.
    public let syscall: String
    public let number: Int32
    /// In the supervisor's pid namespace.
    public let pid: Int32
    /// AUDIT_ARCH_* of the call.
    public let arch: UInt32
    public let instructionPointer: UInt64
    public let args: [UInt64]
    public let response: Response

    /// One line for the supervisor's stderr: "seccomp: pid 42 called mount(0x0, …) → killed".
    public var description: String {
        let a = args.map { "0x" + String($0, radix: 16) }.joined(separator: ", ")
        return "seccomp: pid \(pid) called \(syscall)(\(a)) -> \(response.rawValue)"
    }
}

/// Answers the seccomp notifications of one jail on a dedicated thread.
///
/// It owns the listener fd (the runtime gets it from the jail with pidfd_getfd) and
/// closes it in `stop()`. For each notification it answers first, so the jailed
/// thread waits as little as possible, then calls `handler` (keep it quick: log a
/// line, queue an audit event). The loop ends on `stop()` or when no process uses
/// the filter any more.
public final class SeccompNotifier: Sendable {
    private let loop: Loop
    private let state = Mutex<State>(State())

    private struct State: Sendable {
        var thread: pthread_t?
        var stopped = false
    }

    /// `listener` is the fd from seccomp(..., SECCOMP_FILTER_FLAG_NEW_LISTENER).
    public init(listener: Int32, policy: SeccompViolationPolicy,
                handler: @escaping @Sendable (SeccompViolation) -> Void) throws {
        var sizes = seccomp_notif_sizes()
        do {
            _ = try syscallRetrying { cj_seccomp_get_notif_sizes(&sizes) }
        } catch {
            throw ClawjailError(.seccomp, "seccomp(SECCOMP_GET_NOTIF_SIZES)", cause: error)
        }
        let wake: FD
        do {
            wake = try EventCounter.make()
        } catch {
            throw ClawjailError(.seccomp, "eventfd", cause: error)
        }
        loop = Loop(listener: FD(listener), wake: wake, policy: policy, handler: handler,
                    requestSize: max(Int(sizes.seccomp_notif), MemoryLayout<seccomp_notif>.size),
                    responseSize: max(Int(sizes.seccomp_notif_resp), MemoryLayout<seccomp_notif_resp>.size))
    }

    deinit { stop() }

    public func start() throws {
        try state.withLock { s in
            guard s.thread == nil, !s.stopped else { return }
            let loop = self.loop
            do {
                s.thread = try PosixThread.spawn { loop.run() }
            } catch {
                throw ClawjailError(.seccomp, "starting the seccomp notifier thread: \(error)")
            }
        }
    }

    /// Ends the loop, waits for the thread and closes the listener. Pending calls of
    /// the jail then fail with ENOSYS (the kernel's answer when nobody listens).
    public func stop() {
        let thread: pthread_t? = state.withLock { s in
            if s.stopped { return nil }
            s.stopped = true
            defer { s.thread = nil }
            return s.thread
        } ?? nil
        EventCounter.signal(loop.wake)
        if let thread { PosixThread.join(thread) }
        loop.closeFDs()
    }

    /// The loop's state: immutable after init, so it is safe to share with the thread.
    private final class Loop: Sendable {
        let listener: FD
        let wake: FD
        let policy: SeccompViolationPolicy
        let handler: @Sendable (SeccompViolation) -> Void
        let requestSize: Int
        let responseSize: Int
        private let closed = Mutex(false)

        init(listener: FD, wake: FD, policy: SeccompViolationPolicy,
             handler: @escaping @Sendable (SeccompViolation) -> Void, requestSize: Int, responseSize: Int) {
            self.listener = listener
            self.wake = wake
            self.policy = policy
            self.handler = handler
            self.requestSize = requestSize
            self.responseSize = responseSize
        }

        func closeFDs() {
            closed.withLock { c in
                guard !c else { return }
                c = true
                listener.close()
                wake.close()
            }
        }

        func run() {
            let request = UnsafeMutableRawPointer.allocate(byteCount: requestSize, alignment: 8)
            let response = UnsafeMutableRawPointer.allocate(byteCount: responseSize, alignment: 8)
            defer {
                request.deallocate()
                response.deallocate()
            }
            var fds = [Poll.Entry(fd: listener, events: .readable), Poll.Entry(fd: wake, events: .readable)]
            while true {
                guard (try? Poll.wait(&fds, timeoutMs: -1)) != nil else { return }
                if !fds[1].returned.isEmpty { return }
                let revents = fds[0].returned
                if revents.contains(.readable) {
                    if !receive(request: request, response: response) { return }
                } else if !revents.isDisjoint(with: [.hangUp, .error, .invalid]) {
                    return // every process using the filter has exited
                }
            }
        }

        /// One notification; false when the listener is unusable.
        private func receive(request: UnsafeMutableRawPointer, response: UnsafeMutableRawPointer) -> Bool {
            // The kernel insists on a zeroed request.
            request.initializeMemory(as: UInt8.self, repeating: 0, count: requestSize)
            if cj_seccomp_ioctl_ptr(listener.rawValue, cj_seccomp_ioctl_notif_recv(), request) < 0 {
                // ENOENT: the caller died before we read it. EINTR: try again.
                let e = Errno.current
                return e == .ENOENT || e == .EINTR
            }
            let notif = request.load(as: seccomp_notif.self)
            let data = notif.data
            let args = [data.args.0, data.args.1, data.args.2, data.args.3, data.args.4, data.args.5]
            let pid = Int32(bitPattern: notif.pid)

            var outcome: SeccompViolation.Response
            switch policy.mode {
            case .log where !policy.restricted.contains(data.nr) && data.arch == Self.nativeArch:
                outcome = respond(response, id: notif.id, errorCode: 0, continueCall: true) ? .continued : .gone
            case .kill:
                outcome = killProcess(of: pid, id: notif.id)
                _ = respond(response, id: notif.id, errorCode: policy.errno == 0 ? Errno.EPERM.rawValue : policy.errno, continueCall: false)
            default:
                outcome = respond(response, id: notif.id, errorCode: policy.errno, continueCall: false) ? .denied : .gone
            }

            let name = SyscallTable.name(of: data.nr, arch: data.arch) ?? "syscall \(data.nr)"
            handler(SeccompViolation(syscall: name, number: data.nr, pid: pid, arch: data.arch,
                                     instructionPointer: data.instruction_pointer, args: args, response: outcome))
            return true
        }

        private func respond(_ response: UnsafeMutableRawPointer, id: UInt64, errorCode: Int32, continueCall: Bool) -> Bool {
            response.initializeMemory(as: UInt8.self, repeating: 0, count: responseSize)
            var r = seccomp_notif_resp()
            r.id = id
            r.val = 0
            r.error = continueCall ? 0 : -errorCode
            r.flags = continueCall ? cj_seccomp_user_notif_flag_continue() : 0
            response.storeBytes(of: r, as: seccomp_notif_resp.self)
            return cj_seccomp_ioctl_ptr(listener.rawValue, cj_seccomp_ioctl_notif_send(), response) == 0
        }

        /// SIGKILL through a pidfd, and only after the kernel confirms the notification
        /// is still pending: then `pid` is still the caller, not a recycled number.
        private func killProcess(of pid: Int32, id: UInt64) -> SeccompViolation.Response {
            let pidfd: PidFD
            do {
                pidfd = try PidFD.open(pid)
            } catch {
                // A thread's tid before Linux 6.9.
                guard error == .EINVAL, let tgid = Self.threadGroup(of: pid), let group = try? PidFD.open(tgid) else {
                    return .gone
                }
                pidfd = group
            }
            defer { pidfd.close() }
            var notificationID = id
            guard cj_seccomp_ioctl_ptr(listener.rawValue, cj_seccomp_ioctl_notif_id_valid(), &notificationID) == 0 else {
                return .gone
            }
            return (try? pidfd.signal(.kill)) != nil ? .killed : .gone
        }

        /// The AUDIT_ARCH value of native calls (SCMP_ARCH_NATIVE itself is only a token, 0).
        static let nativeArch = seccomp_arch_native()

        static func threadGroup(of tid: Int32) -> Int32? {
            guard let text = try? SeccompFiles.readText("/proc/\(tid)/status") else { return nil }
            for line in text.split(separator: "\n") where line.hasPrefix("Tgid:") {
                return Int32(line.dropFirst(5).trimming(" \t"))
            }
            return nil
        }
    }
}
