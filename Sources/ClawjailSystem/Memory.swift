import CClawjailShims

/// Handing the supervisor's memory back to the kernel. A supervisor lives as long as
/// its jail, so what it keeps counts per jail.
public enum ProcessMemory {
    /// malloc_trim(0): the heap's free pages go back to the kernel.
    public static func trimHeap() {
        _ = cj_malloc_trim()
    }

    /// After a launch (main thread, while no signal handler can run): the heap's free
    /// pages and the main thread's stack pages below the caller's frame, which the
    /// launch's deep call chains dirtied and nothing reads again.
    public static func releaseLaunchMemory() {
        cj_release_launch_memory()
    }

    /// mallopt(M_ARENA_MAX, 1): helper threads share the main heap instead of each
    /// keeping an arena for the supervisor's whole life.
    public static func useSingleArena() {
        cj_malloc_single_arena()
    }
}
