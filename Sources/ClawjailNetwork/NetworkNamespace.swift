import CNetlink
import ClawjailCore
import ClawjailSystem
import Synchronization

/// A network namespace held by an fd. There is no bind mount under /run/netns: when
/// the last fd and the last process in it are gone, the kernel removes it together
/// with its links, so nothing can leak past the supervisor.
public final class NetworkNamespace: Sendable, CustomStringConvertible {
    /// The nsfs fd (O_RDONLY, O_CLOEXEC). Valid until `close()`.
    public let fd: FD
    /// The namespace's inode: what `ls -l /proc/PID/ns/net` shows as net:[inode].
    public let inode: UInt64
    private let closed = Mutex(false)

    /// Takes ownership of `fd`, an open /proc/.../ns/net (closed here if this throws).
    public init(adopting fd: FD) throws(ClawjailError) {
        do {
            self.inode = try fd.stat().inode
        } catch {
            fd.close()
            throw ClawjailError(.network, "reading the network namespace behind \(fd)", cause: error)
        }
        self.fd = fd
    }

    deinit { close() }

    /// "netns net:[4026532281]"
    public var description: String { "netns net:[\(inode)]" }

    /// A new, empty network namespace (only a down `lo`). unshare(CLONE_NEWNET) runs on
    /// a short-lived dedicated thread that opens its own ns file and exits, so no
    /// thread of the process ever stays in the new namespace.
    public static func create() throws(ClawjailError) -> NetworkNamespace {
        let raw = try DedicatedThread.run { () throws(ClawjailError) -> Int32 in
            if cj_nl_unshare_net() != 0 {
                throw ClawjailError(.network, "creating a network namespace (unshare CLONE_NEWNET)",
                                    hint: "needs CAP_SYS_ADMIN", cause: Errno.current)
            }
            do {
                return try FileSystem.open("/proc/thread-self/ns/net", .readOnly).rawValue
            } catch {
                throw ClawjailError(.network, "opening /proc/thread-self/ns/net of a new network namespace", cause: error)
            }
        }
        return try NetworkNamespace(adopting: FD(raw))
    }

    /// The namespace of process `pid` (/proc/PID/ns/net). Prefer `of(_:)` with a pidfd
    /// when the process may exit and its pid be reused.
    public static func of(pid: pid_t) throws(ClawjailError) -> NetworkNamespace {
        let path = "/proc/\(pid)/ns/net"
        let fd: FD
        do {
            fd = try FileSystem.open(path, .readOnly)
        } catch {
            throw ClawjailError(.network, "opening the network namespace of pid \(pid) (\(path))", cause: error)
        }
        return try NetworkNamespace(adopting: fd)
    }

    /// The namespace of the process behind `process`, checked against pid reuse: the
    /// pidfd still refers to a live process after /proc/PID was opened, so the ns is
    /// that process's and not a newcomer's.
    public static func of(_ process: PidFD) throws(ClawjailError) -> NetworkNamespace {
        let ns = try of(pid: process.pid)
        do {
            try process.signal(0)
        } catch {
            ns.close()
            throw ClawjailError(.network, "process \(process.pid) exited while opening its network namespace", cause: error)
        }
        return ns
    }

    /// The namespace of the calling thread (the supervisor's own, unless called from
    /// inside `run`).
    public static func current() throws(ClawjailError) -> NetworkNamespace {
        let fd: FD
        do {
            fd = try FileSystem.open("/proc/thread-self/ns/net", .readOnly)
        } catch {
            throw ClawjailError(.network, "opening /proc/thread-self/ns/net", cause: error)
        }
        return try NetworkNamespace(adopting: fd)
    }

    /// Runs `body` on a dedicated thread that has entered this namespace, waits for it
    /// and returns its result. The thread exits afterwards, so a Swift concurrency or
    /// NIO thread never changes namespace (STYLE rule 6). Sockets that `body` creates
    /// belong to this namespace for good, wherever they are used later.
    public func run<T: Sendable>(_ body: @Sendable () throws(ClawjailError) -> T) throws(ClawjailError) -> T {
        try checkOpen()
        let ns = NamespaceRef(self)
        return try DedicatedThread.run { () throws(ClawjailError) -> T in
            try ns.enter()
            return try body()
        }
    }

    /// Closes the fd. The namespace lives on while a process, a socket or another fd
    /// holds it. Do not close while a `run` or a wiring on this namespace is under way.
    public func close() {
        let wasOpen = closed.withLock { c in
            defer { c = true }
            return !c
        }
        if wasOpen { fd.close() }
    }

    func checkOpen() throws(ClawjailError) {
        if closed.withLock({ $0 }) {
            throw ClawjailError(.internalError, "\(description) used after close()")
        }
    }
}

/// Runs a closure on a fresh pthread and joins it. Used for every namespace switch:
/// the thread is never reused, so the namespace it entered dies with it.
enum DedicatedThread {
    /// Holds one thread's outcome; written by that thread, read after pthread_join.
    private final class Outcome<T>: @unchecked Sendable {
        var value: Result<T, ClawjailError> = .failure(ClawjailError(.internalError, "namespace thread did not run"))
    }

    private static func start(_ work: @escaping () -> Void) throws(ClawjailError) -> pthread_t {
        do { return try PosixThread.spawn(work) } catch {
            throw ClawjailError(.network, "starting a namespace thread (pthread_create)", cause: error)
        }
    }

    static func run<T>(_ body: () throws(ClawjailError) -> T) throws(ClawjailError) -> T {
        let outcome = Outcome<T>()
        let started: Result<Void, ClawjailError> = withoutActuallyEscaping(body) { escapable in
            // The closure escapes to the thread only until pthread_join returns, which
            // is before this block ends (withoutActuallyEscaping checks that).
            Result { () throws(ClawjailError) in
                let thread = try start {
                    do throws(ClawjailError) {
                        outcome.value = .success(try escapable())
                    } catch {
                        outcome.value = .failure(error)
                    }
                }
                PosixThread.join(thread)
            }
        }
        try started.get()
        return try outcome.value.get()
    }
}
