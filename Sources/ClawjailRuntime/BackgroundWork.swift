#if canImport(Glibc)
import Glibc
#endif
import ClawjailCore

/// A step started on a pthread of its own now and joined later. `exec` uses it to let
/// the kernel-heavy steps of a launch (the cgroup directories, the seccomp index)
/// run on the second core while the main thread builds the mount plan. When no thread
/// can be started, the work runs inline at `join`: slower, never wrong.
final class BackgroundWork<T>: @unchecked Sendable {
    private let body: () -> Result<T, ClawjailError>
    private var thread: pthread_t?
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
        thread = ThreadStart.spawn { [self] in outcome = body() }
    }

    /// Waits for the work (once) and returns its result or rethrows its error.
    func join() throws(ClawjailError) -> T {
        if let t = thread {
            pthread_join(t, nil)
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
        if pthread_equal(t, pthread_self()) != 0 { pthread_detach(t) } else { pthread_join(t, nil) }
    }
}

/// The pthread entry point, outside any generic context.
private enum ThreadStart {
    final class Job: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// A started thread, or nil when none could be started.
    static func spawn(_ run: @escaping () -> Void) -> pthread_t? {
        let context = Unmanaged.passRetained(Job(run)).toOpaque()
        var t = pthread_t()
        let r = pthread_create(&t, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Job>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        if r != 0 {
            Unmanaged<Job>.fromOpaque(context).release()
            return nil
        }
        return t
    }
}
