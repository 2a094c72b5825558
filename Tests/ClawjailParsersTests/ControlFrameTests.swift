import Testing
@testable import ClawjailParsers

@Suite("VM control frames")
struct ControlFrameTests {
    static let samples: [ControlFrame] = [
        .ready(kernelRelease: "6.1.0-57-cloud-amd64"),
        .run(argv: ["/bin/sh", "-c", "exit 7"]),
        .run(argv: ["/init", "--help", "ünïcode", ""]),
        .exit(status: 7, output: Array("hello\n".utf8)),
        .exit(status: -1, output: []),
        .shutdown,
        .error(message: "cannot run /nope: ENOENT"),
        .setup(mounts: [.init(tag: "base-usr", path: "/usr", readOnly: true), .init(tag: "workspace", path: "/workspace", readOnly: false)],
               links: [.init(path: "/bin", target: "usr/bin")], network: nil),
        .setup(mounts: [], links: [], network: .init(mac: "52:54:00:c1:a0:02", address: "10.200.0.2", prefixLength: 30, gateway: "10.200.0.1")),
        .setupDone,
        .spawn(.init(session: 1, uid: 1000, gid: 1000, cwd: "/workspace", argv: ["/bin/sh", "-c", "echo hi"],
                     environment: ["PATH=/usr/bin", "HOME=/tmp"])),
        .started(session: 1, pid: 42),
        .data(session: 1, stream: ControlFrame.stdout, bytes: Array("out\n".utf8)),
        .data(session: 1, stream: ControlFrame.stdin, bytes: []),
        .credit(session: 1, stream: ControlFrame.stderr, bytes: 65536),
        .signal(session: 1, signal: 15),
        .exited(session: 1, code: 3, signal: 0),
        .exited(session: 2, code: 0, signal: 9),
        .file(name: "jail.json", mode: 0o600, content: Array("{}".utf8)),
        .file(name: "agent.toml", mode: 0o644, content: []),
        .file(name: "t-0a1b2c/jail.json", mode: 0o600, content: Array("{}".utf8)),
        .memory(totalKB: 251_000, availableKB: 180_000, jailsBytes: 5_000_000_000),
    ]

    @Test("every frame round trips, one at a time and in one stream")
    func roundTrip() throws {
        var stream: [UInt8] = []
        for frame in Self.samples {
            let bytes = try frame.encoded()
            var d = ControlFrameDecoder()
            d.append(bytes)
            #expect(try d.next() == frame)
            #expect(try d.next() == nil)
            #expect(d.pending == 0)
            stream += bytes
        }
        var d = ControlFrameDecoder()
        d.append(stream)
        var back: [ControlFrame] = []
        while let f = try d.next() { back.append(f) }
        #expect(back == Self.samples)
    }

    @Test("the wire format is the documented one")
    func wireBytes() throws {
        #expect(try ControlFrame.shutdown.encoded() == [0, 0, 0, 1, 4])
        #expect(try ControlFrame.ready(kernelRelease: "6.1").encoded() == [0, 0, 0, 8, 1, 0, 0, 0, 3, 0x36, 0x2e, 0x31])
        #expect(try ControlFrame.exit(status: 7, output: [0x41]).encoded() == [0, 0, 0, 10, 3, 0, 0, 0, 7, 0, 0, 0, 1, 0x41])
    }

    @Test("a stream fed one byte at a time yields the same frames")
    func byteAtATime() throws {
        var d = ControlFrameDecoder()
        var back: [ControlFrame] = []
        for frame in Self.samples {
            for b in try frame.encoded() {
                d.append([b])
                if let f = try d.next() { back.append(f) }
            }
        }
        #expect(back == Self.samples)
    }

    @Test("a length beyond the bound is refused from the header alone")
    func bound() throws {
        var d = ControlFrameDecoder()
        d.append([0x00, 0x01, 0x00, 0x01])   // 65537: one past maxBody
        #expect(throws: ControlFrameError.tooLarge(ControlFrame.maxBody + 1)) { try d.next() }
        var huge = ControlFrameDecoder()
        huge.append([0xff, 0xff, 0xff, 0xff])
        #expect(throws: ControlFrameError.tooLarge(Int(UInt32.max))) { try huge.next() }

        // The largest output that fits encodes; one more byte does not.
        let fits = ControlFrame.exit(status: 0, output: [UInt8](repeating: 0x61, count: ControlFrame.maxExitOutput))
        #expect(try fits.encoded().count == ControlFrame.headerSize + ControlFrame.maxBody)
        let over = ControlFrame.exit(status: 0, output: [UInt8](repeating: 0x61, count: ControlFrame.maxExitOutput + 1))
        #expect(throws: ControlFrameError.tooLarge(ControlFrame.maxBody + 1)) { try over.encoded() }
    }

    @Test("malformed bodies are errors, not crashes")
    func malformed() throws {
        func decode(_ bytes: [UInt8]) throws -> ControlFrame? {
            var d = ControlFrameDecoder()
            d.append(bytes)
            return try d.next()
        }
        #expect(throws: ControlFrameError.empty) { try decode([0, 0, 0, 0]) }
        #expect(throws: ControlFrameError.unknownType(99)) { try decode([0, 0, 0, 1, 99]) }
        // A string length past the body's end.
        #expect(throws: ControlFrameError.self) { try decode([0, 0, 0, 5, 1, 0, 0, 0, 9]) }
        // An argument count that cannot fit in the body.
        #expect(throws: ControlFrameError.self) { try decode([0, 0, 0, 5, 2, 0xff, 0xff, 0xff, 0xff]) }
        // An empty argv.
        #expect(throws: ControlFrameError.self) { try decode([0, 0, 0, 5, 2, 0, 0, 0, 0]) }
        // Trailing bytes after a complete shutdown.
        #expect(throws: ControlFrameError.self) { try decode([0, 0, 0, 2, 4, 0]) }
        // Invalid UTF-8 in a string.
        #expect(throws: ControlFrameError.self) { try decode([0, 0, 0, 6, 5, 0, 0, 0, 1, 0xff]) }
        // A stream that is not stdin, stdout or stderr.
        #expect(throws: ControlFrameError.malformed("stream 3")) { try decode([0, 0, 0, 10, 11, 0, 0, 0, 1, 3, 0, 0, 0, 1]) }
        // A mount count that cannot fit, and a read-only flag that is not 0 or 1.
        #expect(throws: ControlFrameError.self) { try decode([0, 0, 0, 5, 6, 0, 0, 1, 0]) }
        #expect(throws: ControlFrameError.malformed("setup: read-only flag 2")) {
            try decode([0, 0, 0, 19, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0])
        }
        // A spawn with an empty argv.
        #expect(throws: ControlFrameError.self) {
            try decode([0, 0, 0, 25, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        }
        // A file name that is a path, or a mode with more than permission bits.
        for bad in ["../x", "a/../b", "a/b/c", "/abs", "a/", ".", "..", ""] {
            #expect(throws: ControlFrameError.self) { try decode(try ControlFrame.file(name: bad, mode: 0o600, content: []).encoded()) }
        }
        #expect(throws: ControlFrameError.self) { try decode(try ControlFrame.file(name: "x", mode: 0o4755, content: []).encoded()) }
        // A partial frame is not an error: it waits for more.
        #expect(try decode([0, 0, 0, 9, 1, 0]) == nil)
    }
}
