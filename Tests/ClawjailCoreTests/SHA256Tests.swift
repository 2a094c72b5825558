import ClawjailCore
import Foundation
import Testing

@Suite struct SHA256Tests {
    // FIPS 180-4 / NIST CSRC examples.
    @Test func knownAnswers() {
        #expect(SHA256.hexDigest(of: "") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hexDigest(of: "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hexDigest(of: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hexDigest(of: "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
                == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256.lowercaseHex(SHA256.hash(data: million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Every length across the padding edges (55, 56, 63, 64 bytes and their next
    /// blocks), hashed whole and fed in uneven pieces, against coreutils' sha256sum.
    @Test func matchesSha256sumAcrossBlockEdges() throws {
        var rng = SystemRandomNumberGenerator()
        let lengths = Array(0...130) + [183, 184, 191, 192, 1000, 4096, 65_537]
        var expected: [String] = []
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cjt-sha-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var paths: [String] = []
        for n in lengths {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let path = dir.appendingPathComponent("\(n)").path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            paths.append(path)
            expected.append(SHA256.lowercaseHex(SHA256.hash(data: bytes)))
            // The same bytes in pieces of 1, 7, 64 and 65 bytes.
            for piece in [1, 7, 64, 65] {
                var h = SHA256()
                var i = 0
                while i < bytes.count {
                    let j = min(bytes.count, i + piece)
                    Array(bytes[i..<j]).withUnsafeBytes { h.update(bufferPointer: $0) }
                    i = j
                }
                #expect(SHA256.lowercaseHex(h.finalize()) == expected.last, "length \(n), pieces of \(piece)")
            }
            #expect(SHA256.hash(data: ArraySlice(bytes)) == SHA256.hash(data: bytes))
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = paths
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let sums = text.split(separator: "\n").map { String($0.prefix(64)) }
        #expect(sums == expected)
    }
}
