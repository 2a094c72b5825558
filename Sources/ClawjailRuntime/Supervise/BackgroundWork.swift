import ClawjailCore
import ClawjailSystem

/// A step started on a pthread of its own now and joined later. `exec` uses it to let
/// the kernel-heavy steps of a launch (the cgroup directories, the seccomp index)
/// run on the second core while the main thread builds the mount plan. When no thread
/// can be started, the work runs inline at `join`: slower, never wrong.
final class BackgroundWork<T>: @unchecked Sendable {
    private let body: () -> Result<T, ClawjailError>
    private var thread: PosixThread.OwnedStack?
    private var outcome: Result<T, ClawjailError>?

    private init(_ body: @escaping () -> Result<T, ClawjailError>) {
        self.body = body
    }

    static func start(_ work: @escaping () throws(ClawjailError) -> T) -> BackgroundWork<T> {
        let job = BackgroundWork<T> {
            do throws(ClawjailError) { return .success(try work()) } catch { return .failure(error) }
        }
        job.launch()
        return job
    }

    private func launch() {
        // Its own stack, unmapped at join: the supervisor outlives these threads by the
        // jail's whole life, and glibc would keep their stacks' last pages resident.
        thread = try? PosixThread.spawnOwnedStack { [self] in outcome = body() }
    }

    /// Waits for the work (once) and returns its result or rethrows its error.
    func join() throws(ClawjailError) -> T {
        if let t = thread {
            t.joinRetiringStack()
            thread = nil
        }
        if outcome == nil { outcome = body() }
        switch outcome {
        case .success(let v)?: return v
        case .failure(let e)?: throw e
        case nil: throw ClawjailError(.internalError, "background step produced no result")
        }
    }

    deinit {
        // Never leave a thread running past its owner (the result is dropped). The
        // thread itself may drop the last reference: then it can only detach itself.
        guard let t = thread else { return }
        if PosixThread.isCurrent(t.thread) { t.detachFromItself() } else { t.join() }
    }
}
