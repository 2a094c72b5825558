// Shared by every harness: compiled into each one's module (scripts/fuzz).

#if canImport(Glibc)
import Glibc
#endif

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`.
func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// A property does not hold: say which and abort, so that libFuzzer saves the input
/// as a crash artifact (scripts/fuzz prints it as hex).
func propertyFailed(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    let text = "PROPERTY FAILED at \(file):\(line): \(message)\n"
    _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    abort()
}

func require(_ condition: Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    if !condition { propertyFailed(message(), file: file, line: line) }
}

/// Bytes as hex, for messages.
func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { ($0 < 0x10 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// A cheap deterministic hash of the input, to pick samples without randomness.
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01b3
    }
    return h
}
