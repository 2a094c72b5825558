#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex, for a lock held across a body that may throw any error (the
/// store's one SQLite connection), or taken and dropped around a condition wait (the
/// run recorder's writer thread). Not reentrant.
public final class PosixMutex: @unchecked Sendable {
    fileprivate let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
}

/// A pthread condition variable whose timed waits run on the monotonic clock: a clock
/// step must not stretch a backoff.
public final class PosixCondition: @unchecked Sendable {
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
    }

    /// Waits for a signal with `mutex` held (it is released while waiting).
    public func wait(_ mutex: PosixMutex) {
        pthread_cond_wait(condition, mutex.mutex)
    }

    /// Waits with `mutex` held for a signal until `deadline` (ns on
    /// `ProcessInfoLite.monotonicNanoseconds`'s clock): false when the deadline passed.
    public func wait(_ mutex: PosixMutex, until deadline: UInt64) -> Bool {
        var ts = timespec()
        ts.tv_sec = Int(deadline / 1_000_000_000)
        ts.tv_nsec = Int(deadline % 1_000_000_000)
        return pthread_cond_timedwait(condition, mutex.mutex, &ts) != ETIMEDOUT
    }

    public func signal() { pthread_cond_signal(condition) }
    public func broadcast() { pthread_cond_broadcast(condition) }
}
