#if canImport(Glibc)
import Glibc
#endif

/// Plain pthreads, for the work that must not run on a Swift concurrency or NIO thread
/// (entering a namespace, blocking on a seccomp listener) or that runs beside the main
/// thread during a launch.
public enum PosixThread {
    private final class Job: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts `run` on a new thread, joinable unless `detached`.
    public static func spawn(detached: Bool = false, _ run: @escaping () -> Void) throws(Errno) -> pthread_t {
        let context = Unmanaged.passRetained(Job(run)).toOpaque()
        var thread = pthread_t()
        let r = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Job>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        if r != 0 {
            Unmanaged<Job>.fromOpaque(context).release()
            throw Errno(rawValue: r)
        }
        if detached { pthread_detach(thread) }
        return thread
    }

    /// Waits for a joinable thread to end.
    public static func join(_ thread: pthread_t) {
        pthread_join(thread, nil)
    }

    /// Lets go of a joinable thread: joins it, or detaches it when the caller is that
    /// thread itself (an owner whose last reference the thread dropped).
    public static func release(_ thread: pthread_t) {
        if pthread_equal(thread, pthread_self()) != 0 { pthread_detach(thread) } else { pthread_join(thread, nil) }
    }
}
