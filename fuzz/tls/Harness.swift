// TLS ClientHello SNI extraction (Sources/ClawjailParsers/TLSClientHello.swift). The
// transparent TLS handler calls parse on everything received so far, after every
// read, and acts on the first answer that is not needMore.
//
// Properties:
// - no crash for any bytes;
// - segmentation: however the same bytes are split into reads, the answer is the one
//   for the whole: for every prefix, parse says needMore or what it says for the
//   whole input. (All prefixes for short inputs; for longer ones every TLS record
//   boundary and its neighbours, the last bytes, and a sample.)
// - a server name, when there is one, is printable ASCII without spaces.

import ClawjailParsers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    checkClientHello(fuzzInput(data, size))
    return 0
}

func checkClientHello(_ bytes: [UInt8]) {
    let whole = TLSClientHello.parse(bytes)
    if case .serverName(let name) = whole {
        require(!name.isEmpty && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "server name \(name.debugDescription)")
    }
    for cut in cuts(bytes) {
        let part = TLSClientHello.parse(bytes[..<cut])
        if part != .needMore && part != whole {
            propertyFailed("the first \(cut) of \(bytes.count) bytes give \(part), all of them \(whole)")
        }
    }
}

/// Prefix lengths to try, below the whole length.
func cuts(_ bytes: [UInt8]) -> [Int] {
    let n = bytes.count
    guard n > 1 else { return n == 1 ? [0] : [] }
    if n <= 300 { return Array(0..<n) }
    var set: Set<Int> = [0, 1, 4, 5, 6, 9, 10]
    // Record boundaries, as the records' own lengths say, and their neighbours.
    var pos = 0
    while pos + 5 <= n {
        for d in -6...6 { set.insert(pos + d) }
        pos += 5 + (Int(bytes[pos + 3]) << 8 | Int(bytes[pos + 4]))
    }
    for d in -6...6 { set.insert(pos + d) }
    for d in 1...8 { set.insert(n - d) }
    var h = fnv1a(bytes)
    for _ in 0..<48 {
        h = h &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        set.insert(Int(h >> 33) % n)
    }
    return set.filter { $0 >= 0 && $0 < n }.sorted()
}
