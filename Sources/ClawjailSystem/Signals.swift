#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// A set of signals (1...64) as mask bits. Not an `[Signal]`: a static array of a
/// struct from this module has its storage type instantiated by mangled name on first
/// use, which in this binary cost every `clawjail exec` 0.1-0.4 ms before main's first
/// step (the supervisor's handled signals are built at start-up).
public struct SignalSet: Sendable, Hashable {
    public private(set) var bits: UInt64 = 0
    public init() {}

    public func inserting(_ signal: Signal) -> SignalSet {
        var copy = self
        if signal.rawValue >= 1 && signal.rawValue <= 64 { copy.bits |= 1 << UInt64(signal.rawValue - 1) }
        return copy
    }

    public func contains(_ signal: Signal) -> Bool {
        signal.rawValue >= 1 && signal.rawValue <= 64 && bits & (1 << UInt64(signal.rawValue - 1)) != 0
    }

    /// The signal numbers, ascending.
    public var numbers: [Int32] {
        (1...64).compactMap { n in bits & (1 << UInt64(n - 1)) != 0 ? Int32(n) : nil }
    }
}

/// Signal masks and dispositions of the supervisor's own process.
public enum SignalHandling {
    /// pthread_sigmask(SIG_BLOCK) in the calling thread. Threads created later inherit
    /// the mask, so called before any thread exists it blocks them everywhere.
    public static func block(_ signals: SignalSet) {
        var set = sigset_t()
        sigemptyset(&set)
        for n in signals.numbers { sigaddset(&set, n) }
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
    public static func make(_ signals: SignalSet) throws(Errno) -> FD {
        let numbers = signals.numbers
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
