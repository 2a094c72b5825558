// Request targets and Host headers (Sources/ClawjailParsers/RequestTarget.swift): the
// names the HTTP proxy decides on.
//
// Properties:
// - no crash for any text;
// - an accepted authority is a screened, normalised name (never an IP literal, never
//   with user info) and a port in 1...65535, and "host:port" written from it parses
//   to the same target;
// - text the IP detector reads as an address is refused;
// - an accepted absolute URI is http://, its path starts with "/" and has no
//   fragment, and the URI rebuilt from the target and path parses to the same.

import ClawjailParsers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    checkTarget(String(decoding: fuzzInput(data, size), as: UTF8.self))
    return 0
}

func checkTarget(_ text: String) {
    for defaultPort in [nil, 80, 443] as [UInt16?] {
        guard case .success(let target) = RequestTarget.authority(Substring(text), defaultPort: defaultPort) else { continue }
        require(!text.contains("@"), "accepted user info in \(text.debugDescription)")
        require(target.port >= 1, "port 0 from \(text.debugDescription)")
        require(Allowlist.screen(target.host) == .success(target.host), "\(target.host.debugDescription) is not screened")
        require(!IPAddress.looksLikeIPLiteral(target.host), "an IP literal host \(target.host.debugDescription)")
        let written = RequestTarget.authority(Substring("\(target.host):\(target.port)"), defaultPort: nil)
        require(written == .success(target), "\(target.host):\(target.port) parses as \(written)")
    }
    if IPAddress.parseAnyEncoding(text) != nil {
        if case .success(let target) = RequestTarget.authority(Substring(text), defaultPort: 80) {
            propertyFailed("\(text.debugDescription) reads as an address, accepted as \(target)")
        }
    }
    if case .success(let (target, path)) = RequestTarget.absolute(text) {
        require(text.prefix(7).lowercased() == "http://", "accepted \(text.debugDescription) without http://")
        require(path.hasPrefix("/") && !path.contains("#"), "path \(path.debugDescription)")
        let rebuilt = RequestTarget.absolute("http://\(target.host):\(target.port)\(path)")
        guard case .success(let (t2, p2)) = rebuilt, t2 == target, p2 == path else {
            propertyFailed("the URI rebuilt from \(target) and \(path.debugDescription) parses as \(rebuilt)")
        }
    }
    _ = RequestTarget.auditParts(text, defaultPort: 80)
}
