#if canImport(Glibc)
import Glibc
#endif
import Synchronization

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
    ///
    /// Unmapping right after the join was on a launch's critical path: joining the
    /// cgroup thread took 0.24 ms with the unmap and 0.05 ms without (CLAWJAIL_TRACE
    /// medians of 30 execs, 2-core VM, 2026-12-04), most likely a TLB shootdown on
    /// the core the thread had just left. `joinRetiringStack()` joins now and leaves
    /// the unmap to `unmapRetiredStacks()`, which the supervisor calls once the jail
    /// is running and it has nothing left to hurry for.
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

        /// Waits for the thread to end; its stack is unmapped by the next
        /// `PosixThread.unmapRetiredStacks()`.
        public func joinRetiringStack() {
            pthread_join(thread, nil)
            PosixThread.retired.withLock { $0.append(self) }
        }

        /// Called on the thread itself (an owner whose last reference it dropped): it
        /// cannot unmap the stack it runs on, so it detaches and the mapping stays.
        public func detachFromItself() {
            pthread_detach(thread)
        }
    }

    /// Joined threads whose stacks wait for `unmapRetiredStacks()`.
    static let retired = Mutex<[OwnedStack]>([])

    /// Unmaps the stacks that `joinRetiringStack()` kept.
    public static func unmapRetiredStacks() {
        let stacks = retired.withLock { r in
            defer { r = [] }
            return r
        }
        for r in stacks { munmap(r.stack, r.size) }
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
        if isCurrent(thread) { pthread_detach(thread) } else { pthread_join(thread, nil) }
    }

    /// Whether `thread` is the calling thread.
    public static func isCurrent(_ thread: pthread_t) -> Bool {
        pthread_equal(thread, pthread_self()) != 0
    }
}
