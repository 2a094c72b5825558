// DNS wire format (Sources/ClawjailParsers/DNSMessage.swift): what the jail's responder
// reads from the agent and the resolver reads from upstream.
//
// Properties:
// - no crash, no hang, for any bytes (compression loops, huge counts);
// - decode/encode round trip: a decoded message encodes (uncompressed) to bytes that
//   decode to the same message, and encoding that again gives the same bytes;
// - decodeHeader agrees with decode on the ID and flags;
// - a name with a text form parses back from that text to the same name;
// - following CNAME chains (addresses(for:type:)) ends.

import ClawjailParsers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    checkDNS(fuzzInput(data, size))
    return 0
}

func checkDNS(_ bytes: [UInt8]) {
    let header = DNSMessage.decodeHeader(bytes)
    guard let message = try? DNSMessage.decode(bytes) else { return }
    require(header?.id == message.id && header?.flags == message.flags, "decodeHeader disagrees with decode")

    let encoded = message.encode()
    let again: DNSMessage
    do {
        again = try DNSMessage.decode(encoded)
    } catch {
        propertyFailed("a decoded message encodes to bytes that do not decode (\(error)): \(hex(encoded))")
    }
    require(again == message, "decode(encode(m)) differs from m: \(hex(encoded))")
    require(again.encode() == encoded, "encoding is not a fixed point")

    let names = message.questions.map(\.name) + (message.answers + message.authorities + message.additionals)
        .flatMap { [$0.name] + ($0.cnameTarget.map { [$0] } ?? []) }
    for name in names {
        require(name.wireLength <= 255, "a decoded name of \(name.wireLength) bytes")
        if let text = name.text {
            require(DNSName(text) == name, "\(text.debugDescription) does not parse back to its name")
        }
    }
    for q in message.questions {
        _ = message.addresses(for: q.name, type: q.type)
        _ = message.addresses(for: q.name, type: DNSType.a)
    }
}
