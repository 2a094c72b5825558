// JSON (Sources/ClawjailParsers/JSONValue.swift): plan manifests and snapshot metadata
// read back from disk, and the canonical text that audit rows are hashed over.
//
// Properties:
// - no crash for any text;
// - an accepted value has a canonical text (parsing never yields NaN or infinity);
// - round trip: the canonical text parses, and its canonical text is itself (so the
//   hash of an exported row is stable), with the same value up to integral doubles
//   written as integers;
// - parsing is deterministic.

import ClawjailParsers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    checkJSON(String(decoding: fuzzInput(data, size), as: UTF8.self))
    return 0
}

func checkJSON(_ text: String) {
    guard let value = try? JSONValue.parse(text) else { return }
    require((try? JSONValue.parse(text)) == value, "two parses differ")
    let canonical: String
    do {
        canonical = try value.canonicalText()
    } catch {
        propertyFailed("an accepted value has no canonical text: \(error)")
    }
    let reread: JSONValue
    do {
        reread = try JSONValue.parse(canonical)
    } catch {
        propertyFailed("the canonical text does not parse (\(error)): \(canonical)")
    }
    require((try? reread.canonicalText()) == canonical, "canonical text is not a fixed point: \(canonical)")
    require(sameValue(value, reread), "the canonical text means another value: \(canonical)")
}

/// Equal, except that a double and an integer of the same value are alike (the
/// canonical form writes integral doubles as integers).
func sameValue(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.double(let x), .int(let y)), (.int(let y), .double(let x)):
        return x == Double(y) && Double(y) <= 9_007_199_254_740_992 && Double(y) >= -9_007_199_254_740_992
    case (.array(let x), .array(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { sameValue($0, $1) }
    case (.object(let x), .object(let y)):
        return x.count == y.count && x.allSatisfy { key, v in y[key].map { sameValue(v, $0) } ?? false }
    default:
        return a == b
    }
}
