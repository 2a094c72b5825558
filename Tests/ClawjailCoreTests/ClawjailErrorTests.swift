import Testing
import ClawjailCore

/// A stand-in for ClawjailSystem's Errno, which Core cannot see.
private struct FakeErrno: Error, ErrnoCarrying, CustomStringConvertible {
    var code: Int32
    var errnoCode: Int32? { code }
    var description: String { "No space left on device (ENOSPC)" }
}

private struct OtherError: Error, CustomStringConvertible {
    var description: String { "something else" }
}

@Suite("ClawjailError: the cause")
struct ClawjailErrorCauseTests {
    @Test("a text cause prints as before and carries no errno")
    func textCause() {
        let e = ClawjailError(.network, "allocating a socket", hint: "retry", cause: "out of memory")
        #expect(e.description == "allocating a socket: out of memory\n  hint: retry")
        #expect(e.cause is ClawjailError.TextCause)
        #expect(e.errnoCode == nil)
        #expect(e.underlying(ClawjailError.TextCause.self)?.text == "out of memory")
    }

    @Test("no cause, and an explicit nil cause, print only the message")
    func noCause() {
        #expect(ClawjailError(.usage, "bad flag").description == "bad flag")
        #expect(ClawjailError(.usage, "bad flag", cause: nil).description == "bad flag")
        #expect(ClawjailError(.usage, "bad flag").cause == nil)
    }

    @Test("an error cause is kept as the value and printed with its description")
    func errorCause() throws {
        let e = ClawjailError(.state, "writing the run", cause: FakeErrno(code: 28))
        #expect(e.description == "writing the run: No space left on device (ENOSPC)")
        #expect(try #require(e.cause as? FakeErrno).code == 28)
        #expect(e.errnoCode == 28)
    }

    @Test("the errno survives being wrapped twice")
    func wrapped() {
        let inner = ClawjailError(.cgroup, "cannot create cgroup /x", cause: FakeErrno(code: 28))
        let outer = ClawjailError(.setup, "starting the jail", hint: "free space", cause: inner)
        #expect(outer.errnoCode == 28)
        #expect(outer.underlying(FakeErrno.self)?.code == 28)
        #expect(outer.underlying(ClawjailError.self)?.code == .cgroup)
        #expect(outer.description == "starting the jail: cannot create cgroup /x: No space left on device (ENOSPC)\n  hint: free space")
    }

    @Test("a cause that is not a system call's has no errno")
    func otherCause() {
        let e = ClawjailError(.internalError, "x", cause: ClawjailError(.config, "y", cause: OtherError()))
        #expect(e.errnoCode == nil)
        #expect(e.underlying(FakeErrno.self) == nil)
        #expect(e.description == "x: y: something else")
    }

    @Test("an `any Error` argument still picks the error initializer")
    func existentialArgument() {
        let some: any Error = FakeErrno(code: 13)
        let e = ClawjailError(.permission, "open /etc/x", cause: some)
        #expect(e.errnoCode == 13)
    }
}
