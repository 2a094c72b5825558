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
        let thread = try create(nil, run)
        if detached { pthread_detach(thread) }
        return thread
    }

    /// pthread_create with `run` as the body; `attr` nil for the defaults.
    private static func create(_ attr: UnsafePointer<pthread_attr_t>?, _ run: @escaping () -> Void) throws(Errno) -> pthread_t {
        let context = Unmanaged.passRetained(Job(run)).toOpaque()
        var thread = pthread_t()
        let r = pthread_create(&thread, attr, { raw in
            guard let raw else { return nil }
            Unmanaged<Job>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        if r != 0 {
            Unmanaged<Job>.fromOpaque(context).release()
            throw Errno(rawValue: r)
        }
        return thread
    }

    /// A joinable thread on a stack this process maps and unmaps itself.
    ///
    /// glibc keeps the stacks of finished threads in a cache (up to 40 MiB) with the
    /// pages they last used still resident: a supervisor that lives as long as its
    /// jail would carry those of its launch threads (20 KiB each, measured) for good.
    /// `join()` unmaps the stack instead.
    public struct OwnedStack: @unchecked Sendable {
        public let thread: pthread_t
        let stack: UnsafeMutableRawPointer
        let size: Int

        /// The lowest 64 KiB are a guard: an overflow faults instead of writing below.
        static let guardSize = 64 << 10

        /// Waits for the thread to end, then unmaps its stack.
        public func join() {
            pthread_join(thread, nil)
            munmap(stack, size)
        }

        /// Called on the thread itself (an owner whose last reference it dropped): it
        /// cannot unmap the stack it runs on, so it detaches and the mapping stays.
        public func detachFromItself() {
            pthread_detach(thread)
        }
    }

    /// Starts `run` on a new joinable thread with its own `stackSize` stack.
    public static func spawnOwnedStack(stackSize: Int = 8 << 20, _ run: @escaping () -> Void) throws(Errno) -> OwnedStack {
        guard let stack = mmap(nil, stackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0),
              stack != MAP_FAILED else { throw Errno.current }
        guard mprotect(stack, OwnedStack.guardSize, PROT_NONE) == 0 else {
            let e = Errno.current
            munmap(stack, stackSize)
            throw e
        }
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstack(&attr, stack + OwnedStack.guardSize, stackSize - OwnedStack.guardSize)
        do {
            return OwnedStack(thread: try create(&attr, run), stack: stack, size: stackSize)
        } catch {
            munmap(stack, stackSize)
            throw error
        }
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
