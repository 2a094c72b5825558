/// An error that is, or was caused by, a failed system call. ClawjailSystem's `Errno`
/// conforms, and so do the errors that wrap one (`ClawjailError`, `StoreError`), so a
/// caller can tell ENOSPC from EACCES however deeply the errno is wrapped. Core
/// makes no system calls, so it names the number, not ClawjailSystem's type.
public protocol ErrnoCarrying: Error {
    /// The kernel's error number (ENOSPC is 28); nil when there is none.
    var errnoCode: Int32? { get }
}
