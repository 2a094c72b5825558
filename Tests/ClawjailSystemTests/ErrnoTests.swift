import ClawjailCore
import ClawjailStore
import ClawjailSystem
import Testing

@Suite("Errno: one table, and the errno after wrapping")
struct ErrnoTests {
    @Test("names and texts")
    func names() {
        #expect(Errno.ENOSPC.name == "ENOSPC")
        #expect(Errno.ENOSPC.description == "No space left on device (ENOSPC)")
        #expect(Errno(rawValue: 95).name == "EOPNOTSUPP")
        #expect(Errno(rawValue: 62).name == "ETIME")
        #expect(Errno(rawValue: 4000).name == "errno 4000")
    }

    @Test("names resolve, ENOTSUP included; unknown names do not")
    func byName() {
        #expect(Errno(name: "EACCES") == .EACCES)
        #expect(Errno(name: "ENOTSUP")?.rawValue == 95)
        #expect(Errno(name: "EOPNOTSUPP")?.rawValue == 95)
        #expect(Errno(name: "ENOKEY")?.rawValue == 126)
        #expect(Errno(name: "EWHAT") == nil)
        #expect(Errno(name: "errno 5") == nil)
    }

    @Test("error.errno after ClawjailErrors wrap an Errno")
    func wrappedErrno() {
        let inner = ClawjailError(.cgroup, "cannot create cgroup /sys/fs/cgroup/x", cause: Errno.ENOSPC)
        let outer = ClawjailError(.setup, "starting the jail", cause: inner)
        #expect(outer.errno == .ENOSPC)
        #expect(outer.description == "starting the jail: cannot create cgroup /sys/fs/cgroup/x: No space left on device (ENOSPC)")
        #expect(ClawjailError(.setup, "x", cause: "text").errno == nil)
    }

    @Test("error.errno finds the errno of a wrapped StoreError")
    func wrappedStoreError() {
        let store = StoreError(.full, "cannot write /var/lib/clawjail/state.db", errno: Errno.EDQUOT.rawValue)
        let e = ClawjailError(.state, "recording the run", cause: store)
        #expect(e.errno == .EDQUOT)
    }

    @Test("a failed call throws the Errno itself")
    func failedCall() {
        let e = #expect(throws: Errno.self) { try FileSystem.open("/nonexistent-clawjail-\(ProcessInfoLite.pid)", .readOnly) }
        #expect(e == .ENOENT)
        let wrapped = e.map { ClawjailError(.notFound, "open", cause: $0) }
        #expect(wrapped?.errno == .ENOENT)
    }
}
