#if canImport(Glibc)
import Glibc
#endif

/// A POSIX semaphore between threads of this process, for a synchronous thread that
/// waits for async work to finish.
public final class PosixSemaphore: @unchecked Sendable {
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    public init(value: UInt32 = 0) { sem_init(semaphore, 0, value) }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    public func signal() { sem_post(semaphore) }

    /// Waits for a `signal`; a signal handler's interruption is waited through.
    public func wait() {
        while sem_wait(semaphore) != 0 && Errno.current == .EINTR {}
    }
}
