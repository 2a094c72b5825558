// The same builders as in ClawjailEgressTests/TestSupport.swift, whose proxy tests
// send these hellos over sockets (test targets cannot share code).

/// A TLS 1.3-style ClientHello record with an optional SNI.
func makeClientHello(sni: String?, padding: Int = 0) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    var body: [UInt8] = [3, 3] + [UInt8](repeating: 0xAB, count: 32)
    body += [32] + [UInt8](repeating: 0xCD, count: 32)
    body += u16(4) + [0x13, 0x01, 0x13, 0x02]
    body += [1, 0]
    var exts: [UInt8] = []
    if let sni {
        let name = Array(sni.utf8)
        let entry: [UInt8] = [0] + u16(name.count) + name
        let list = u16(entry.count) + entry
        exts += u16(0) + u16(list.count) + list
    }
    exts += u16(43) + u16(3) + [2, 3, 4]  // supported_versions: TLS 1.3
    if padding > 0 { exts += u16(21) + u16(padding) + [UInt8](repeating: 0, count: padding) }
    body += u16(exts.count) + exts
    let hs: [UInt8] = [1, UInt8(body.count >> 16 & 0xFF), UInt8(body.count >> 8 & 0xFF), UInt8(body.count & 0xFF)] + body
    return [22, 3, 1] + u16(hs.count) + hs
}

/// The same handshake message split over several TLS records.
func splitIntoRecords(_ record: [UInt8], pieces: Int) -> [UInt8] {
    let hs = Array(record[5...])
    let size = (hs.count + pieces - 1) / pieces
    var out: [UInt8] = []
    var i = 0
    while i < hs.count {
        let chunk = hs[i..<min(i + size, hs.count)]
        out += [22, 3, 1, UInt8(chunk.count >> 8), UInt8(chunk.count & 0xFF)] + chunk
        i += size
    }
    return out
}
