#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// Signal masks and dispositions of the supervisor's own process.
public enum SignalHandling {
    /// pthread_sigmask(SIG_BLOCK) in the calling thread. Threads created later inherit
    /// the mask, so called before any thread exists it blocks them everywhere.
    public static func block(_ signals: [Signal]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s.rawValue) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// signal(SIG_IGN): the signal is dropped (a write to a closed pipe fails with EPIPE
    /// instead of killing the process, for SIGPIPE).
    public static func ignore(_ signal: Signal) {
        _ = Glibc.signal(signal.rawValue, SIG_IGN)
    }
}

/// A signalfd: blocked signals read as data, so a poll loop handles them like any fd.
public enum SignalFD {
    /// A non-blocking, CLOEXEC signalfd for `signals`, which must be blocked in every
    /// thread (`SignalHandling.block`) to arrive here.
    public static func make(_ signals: [Signal]) throws(Errno) -> FD {
        let numbers = signals.map(\.rawValue)
        return FD(try syscallOnce { numbers.withUnsafeBufferPointer { cj_sys_signalfd($0.baseAddress, Int32($0.count)) } })
    }

    /// The signals pending on `fd`, at most `limit`; empty when none is (or on an error).
    public static func pending(_ fd: FD, limit: Int = 64) -> [Signal] {
        var out: [Signal] = []
        while out.count < limit {
            let s = cj_sys_read_signal(fd.rawValue)
            if s <= 0 { break }
            out.append(Signal(rawValue: s))
        }
        return out
    }
}
