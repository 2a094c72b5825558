// The four TOML string forms. Each function starts at the opening delimiter and leaves
// `pos` after the closing one. The input is valid UTF-8 (a Swift String, or file bytes
// that `checkUTF8` has passed), so slices cut at ASCII delimiters decode without loss.

extension TOMLParser {
    /// `"..."`: escapes allowed, no newlines.
    mutating func parseBasicString() throws(TOMLError) -> String {
        let open = pos
        pos += 1
        var runStart = pos
        // Only filled once an escape appears, so a plain string is a single slice.
        var buffer: [UInt8] = []
        var hasEscapes = false
        while true {
            guard let byte = peek() else { throw error("unterminated string", at: open) }
            switch byte {
            case Byte.quote:
                let run = bytes[runStart..<pos]
                pos += 1
                guard hasEscapes else { return String(decoding: run, as: UTF8.self) }
                buffer.append(contentsOf: run)
                return String(decoding: buffer, as: UTF8.self)
            case Byte.backslash:
                hasEscapes = true
                buffer.append(contentsOf: bytes[runStart..<pos])
                try parseEscape(into: &buffer, stringStart: open)
                runStart = pos
            case Byte.lf, Byte.cr:
                throw error("unterminated string", at: open)
            case _ where Self.isForbiddenControl(byte):
                throw error("\(Self.scalarName(UInt32(byte))) must be escaped in a string", at: pos)
            default:
                pos += 1
            }
        }
    }

    /// `'...'`: taken as written, no newlines.
    mutating func parseLiteralString() throws(TOMLError) -> String {
        let open = pos
        pos += 1
        let start = pos
        while true {
            guard let byte = peek() else { throw error("unterminated string", at: open) }
            switch byte {
            case Byte.apostrophe:
                pos += 1
                return String(decoding: bytes[start..<(pos - 1)], as: UTF8.self)
            case Byte.lf, Byte.cr:
                throw error("unterminated string", at: open)
            case _ where Self.isForbiddenControl(byte):
                throw error("\(Self.scalarName(UInt32(byte))) is not allowed in a literal string", at: pos)
            default:
                pos += 1
            }
        }
    }

    /// `"""..."""`: escapes, newlines, and a backslash at the end of a line that
    /// swallows the newline and the whitespace after it.
    mutating func parseMultilineBasicString() throws(TOMLError) -> String {
        let open = pos
        pos += 3
        // A newline right after the opening delimiter is not part of the string.
        _ = try consumeNewline()
        var buffer: [UInt8] = []
        while true {
            guard let byte = peek() else { throw error("unterminated multi-line string", at: open) }
            switch byte {
            case Byte.quote:
                if try closeMultiline(quote: Byte.quote, into: &buffer) {
                    return String(decoding: buffer, as: UTF8.self)
                }
            case Byte.backslash:
                if isLineEndingBackslash() {
                    pos += 1
                    while true {
                        skipWhitespace()
                        guard try consumeNewline() else { break }
                    }
                } else {
                    try parseEscape(into: &buffer, stringStart: open)
                }
            case Byte.lf, Byte.cr:
                _ = try consumeNewline()
                buffer.append(Byte.lf)
            case _ where Self.isForbiddenControl(byte):
                throw error("\(Self.scalarName(UInt32(byte))) must be escaped in a string", at: pos)
            default:
                buffer.append(byte)
                pos += 1
            }
        }
    }

    /// `'''...'''`: newlines allowed, no escapes.
    mutating func parseMultilineLiteralString() throws(TOMLError) -> String {
        let open = pos
        pos += 3
        _ = try consumeNewline()
        var buffer: [UInt8] = []
        while true {
            guard let byte = peek() else { throw error("unterminated multi-line string", at: open) }
            switch byte {
            case Byte.apostrophe:
                if try closeMultiline(quote: Byte.apostrophe, into: &buffer) {
                    return String(decoding: buffer, as: UTF8.self)
                }
            case Byte.lf, Byte.cr:
                _ = try consumeNewline()
                buffer.append(Byte.lf)
            case _ where Self.isForbiddenControl(byte):
                throw error("\(Self.scalarName(UInt32(byte))) is not allowed in a literal string", at: pos)
            default:
                buffer.append(byte)
                pos += 1
            }
        }
    }

    /// At a run of quotes inside a multi-line string. Fewer than three are content;
    /// three or more close the string, and up to two before the closing three are
    /// content (`""""` ends a string with one `"`). Returns whether the string ended.
    private mutating func closeMultiline(quote: UInt8, into buffer: inout [UInt8]) throws(TOMLError) -> Bool {
        var count = 0
        while peek(count) == quote {
            count += 1
        }
        if count < 3 {
            buffer.append(contentsOf: repeatElement(quote, count: count))
            pos += count
            return false
        }
        if count > 5 {
            throw error("too many quotes (\(count)) in a row in a multi-line string", at: pos)
        }
        buffer.append(contentsOf: repeatElement(quote, count: count - 3))
        pos += count
        return true
    }

    /// A backslash followed by optional whitespace and a newline.
    private func isLineEndingBackslash() -> Bool {
        var ahead = 1
        while let byte = peek(ahead), byte == Byte.space || byte == Byte.tab {
            ahead += 1
        }
        return peek(ahead) == Byte.lf || peek(ahead) == Byte.cr
    }

    /// At a backslash: appends the escaped character's UTF-8 to `buffer`.
    private mutating func parseEscape(into buffer: inout [UInt8], stringStart: Int) throws(TOMLError) {
        let start = pos
        guard let letter = peek(1) else { throw error("unterminated string", at: stringStart) }
        let simple: UInt8?
        switch letter {
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "t"): simple = Byte.tab
        case UInt8(ascii: "n"): simple = Byte.lf
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "r"): simple = Byte.cr
        case Byte.quote: simple = Byte.quote
        case Byte.backslash: simple = Byte.backslash
        case UInt8(ascii: "u"), UInt8(ascii: "U"): simple = nil
        case Byte.lf, Byte.cr:
            throw error("unterminated string", at: stringStart)
        default:
            let found = describe(at: pos + 1)
            throw error(found.hasPrefix("'")
                        ? "invalid escape sequence '\\\(found.dropFirst().dropLast())'"
                        : "invalid escape sequence: backslash followed by \(found)", at: start)
        }
        if let simple {
            buffer.append(simple)
            pos += 2
            return
        }

        let digitCount = letter == UInt8(ascii: "u") ? 4 : 8
        let name = letter == UInt8(ascii: "u") ? "\\u" : "\\U"
        var value: UInt32 = 0
        for index in 0..<digitCount {
            guard let byte = peek(2 + index), let digit = Self.digitValue(byte, radix: 16) else {
                throw error("\(name) escape needs exactly \(digitCount) hex digits", at: start)
            }
            value = value << 4 | UInt32(digit)
        }
        // Unicode.Scalar rejects surrogates and values above U+10FFFF.
        guard let scalar = Unicode.Scalar(value) else {
            let written = String(decoding: bytes[(start + 2)..<(start + 2 + digitCount)], as: UTF8.self)
            throw error("\(name)\(written) is not a Unicode scalar value "
                        + "(surrogates and values above 10FFFF are not allowed)", at: start)
        }
        UTF8.encode(scalar) { buffer.append($0) }
        pos += 2 + digitCount
    }
}
