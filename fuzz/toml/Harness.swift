// TOML 1.0 parser (Sources/ClawjailParsers/TOML), as agent.toml and the seccomp profiles
// are read: TOML.parse(utf8:) on the file's bytes.
//
// Properties:
// - no crash, no hang, for any bytes;
// - deterministic: the same bytes give the same table or the same error;
// - an error's line:column lies inside the input (a line that exists, a column at
//   most one past its last character);
// - the UTF-8 check agrees with the standard library: "invalid UTF-8" exactly when
//   String(validating:) refuses the bytes; otherwise bytes and String parse alike;
// - round trip: an accepted document, written back as TOML by `TOMLWriter` below
//   (every key quoted, every table inline), parses to the same values.

import ClawjailParsers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    checkTOML(fuzzInput(data, size))
    return 0
}

/// A parse result in a form that can be compared: the value dump, or the error.
func outcome(_ parse: () throws(TOMLError) -> TOMLTable) -> Result<String, TOMLError> {
    do {
        return .success(TOMLDump.table(try parse()))
    } catch {
        return .failure(error)
    }
}

func checkTOML(_ bytes: [UInt8]) {
    let first = outcome { () throws(TOMLError) in try TOML.parse(utf8: bytes) }
    let again = outcome { () throws(TOMLError) in try TOML.parse(utf8: bytes) }
    require(first == again, "two parses of the same bytes differ")

    let text = String(validating: bytes, as: UTF8.self)
    switch first {
    case .failure(let error):
        requireInside(error.location, bytes, error.description)
        require(!error.message.isEmpty, "an error without a message")
        if error.message.hasPrefix("invalid UTF-8") {
            require(text == nil, "refused as invalid UTF-8, but the standard library reads it: \(error)")
        } else {
            guard let text else { propertyFailed("bytes that are not UTF-8 got a different error: \(error)") }
            let viaString = outcome { () throws(TOMLError) in try TOML.parse(text) }
            require(viaString == first, "String and bytes disagree: \(viaString) vs \(error)")
        }
    case .success(let dump):
        guard let text else { propertyFailed("accepted bytes that are not UTF-8") }
        let viaString = outcome { () throws(TOMLError) in try TOML.parse(text) }
        require(viaString == first, "String and bytes disagree")
        roundTrip(text, dump)
    }
    // What a caller holding a lossy String would pass: must not crash.
    _ = try? TOML.parse(String(decoding: bytes, as: UTF8.self))
}

func roundTrip(_ text: String, _ dump: String) {
    guard let table = try? TOML.parse(text) else { propertyFailed("accepted once, refused the second time") }
    let written = TOMLWriter.document(table)
    do {
        let reread = TOMLDump.table(try TOML.parse(written))
        require(reread == dump, "written back and re-read, the values differ:\n\(written)\n\(reread)\nvs\n\(dump)")
    } catch {
        // An array of tables counts one level deeper written inline ([{...}] is an
        // array and a table), so a document at the nesting limit may not fit inline.
        if error.message.hasPrefix("nesting is too deep") { return }
        propertyFailed("written back, the document does not parse: \(error)\n\(written)")
    }
}

/// The input's bounds for a location: lines are LF-separated; columns count
/// characters (bytes that do not continue a UTF-8 sequence), a leading BOM none.
func requireInside(_ location: SourceLocation, _ bytes: [UInt8], _ what: String) {
    var lines: [ArraySlice<UInt8>] = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
    if lines.isEmpty { lines = [[]] }
    require(location.line >= 1 && location.line <= lines.count, "line outside the input: \(what)")
    var line = lines[location.line - 1]
    if location.line == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
    let characters = line.filter { $0 & 0xC0 != 0x80 }.count
    require(location.column >= 1 && location.column <= characters + 1,
            "column outside line \(location.line) (\(characters) characters): \(what)")
}

/// An exact text form of values: strings as scalar values (Swift's == would equate
/// canonically equivalent strings), floats by bit pattern, no locations.
enum TOMLDump {
    static func table(_ t: TOMLTable) -> String {
        "{" + t.entries.map { string($0.key) + "=" + value($0.node.value) }.joined(separator: ",") + "}"
    }

    static func string(_ s: String) -> String {
        "s(" + s.unicodeScalars.map { String($0.value, radix: 16) }.joined(separator: " ") + ")"
    }

    static func value(_ v: TOMLValue) -> String {
        switch v {
        case .string(let s): string(s)
        case .integer(let i): "i\(i)"
        // All NaNs are alike in TOML except for the sign.
        case .float(let d): d.isNaN ? (d.sign == .minus ? "-nan" : "nan") : "f\(d.bitPattern)"
        case .boolean(let b): "b\(b)"
        case .datetime(let d): "d\(d.kind):\(d.text)"
        case .array(let a): "[" + a.map { value($0.value) }.joined(separator: ",") + "]"
        case .table(let t): table(t)
        }
    }
}

/// Writes a table back as TOML: one `"key" = value` line per top-level entry, every
/// nested table inline. Not the product's (clawjail never writes TOML); here only to
/// state the round-trip property.
enum TOMLWriter {
    static func document(_ t: TOMLTable) -> String {
        t.entries.map { key($0.key) + " = " + value($0.node.value) + "\n" }.joined()
    }

    static func key(_ k: String) -> String { basic(k) }

    static func basic(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let digits = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func value(_ v: TOMLValue) -> String {
        switch v {
        case .string(let s): basic(s)
        case .integer(let i): String(i)
        case .float(let d):
            d.isNaN ? (d.sign == .minus ? "-nan" : "nan") : d.isInfinite ? (d < 0 ? "-inf" : "inf") : "\(d)"
        case .boolean(let b): b ? "true" : "false"
        case .datetime(let d): d.text
        case .array(let a): "[" + a.map { value($0.value) }.joined(separator: ", ") + "]"
        case .table(let t): "{" + t.entries.map { key($0.key) + " = " + value($0.node.value) }.joined(separator: ", ") + "}"
        }
    }
}
