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
        #expect(throws: ControlFrameError.unknownType(9)) { try decode([0, 0, 0, 1, 9]) }
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
        // A partial frame is not an error: it waits for more.
        #expect(try decode([0, 0, 0, 9, 1, 0]) == nil)
    }
}
