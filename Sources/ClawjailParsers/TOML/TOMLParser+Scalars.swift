// Unquoted values: booleans, integers, floats, dates and times. The parser first takes
// the whole token (so `1979-05-27T07:32:00Z` or `0xdead_beef` is seen at once and a
// bad one is quoted in full in the error), then decides what it is.

extension TOMLParser {
    /// Bytes an unquoted value can be made of.
    static func isBareValueByte(_ byte: UInt8) -> Bool {
        isBareKeyByte(byte) || byte == Byte.plus || byte == Byte.dot || byte == Byte.colon
    }

    mutating func parseBareValue() throws(TOMLError) -> TOMLValue {
        let start = pos
        scanBareValue()
        // A space may stand for the 'T' between a date and a time: `1979-05-27 07:32:00`.
        if pos - start == 10, Self.startsLikeDate(bytes[start..<pos]), peek() == Byte.space,
           let hour1 = peek(1), let hour2 = peek(2), Self.isDigit(hour1), Self.isDigit(hour2), peek(3) == Byte.colon {
            pos += 1
            scanBareValue()
        }
        let token = bytes[start..<pos]
        if token.elementsEqual("true".utf8) { return .boolean(true) }
        if token.elementsEqual("false".utf8) { return .boolean(false) }
        if Self.startsLikeDate(token) || Self.startsLikeTime(token) {
            return .datetime(try parseDateTime(token, at: start))
        }
        return try parseNumber(token, at: start)
    }

    private mutating func scanBareValue() {
        while let byte = peek(), Self.isBareValueByte(byte) {
            pos += 1
        }
    }

    // MARK: - Numbers

    private mutating func parseNumber(_ token: ArraySlice<UInt8>, at start: Int) throws(TOMLError) -> TOMLValue {
        var text: String { Self.excerpt(token) }  // only built for errors
        let end = token.endIndex
        var index = token.startIndex
        let sign = token[index] == Byte.plus || token[index] == Byte.minus ? token[index] : nil
        if sign != nil { index += 1 }
        let negative = sign == Byte.minus

        let unsigned = token[index...]
        if unsigned.elementsEqual("inf".utf8) { return .float(negative ? -.infinity : .infinity) }
        if unsigned.elementsEqual("nan".utf8) { return .float(negative ? -.nan : .nan) }
        guard index < end, Self.isDigit(token[index]) else {
            throw error(Self.notANumberMessage(text), at: start)
        }

        if token[index] == Byte.zero, index + 1 < end, let radix = Self.radix(prefix: token[index + 1]) {
            guard sign == nil else {
                throw error("invalid integer '\(text)': only decimal integers may have a sign", at: start)
            }
            return .integer(try parseRadixInteger(token, digitsFrom: index + 2, radix: radix, at: start))
        }

        let integerStart = index
        try scanDigits(token, &index, radix: 10, at: start)
        let integerEnd = index
        if token[integerStart] == Byte.zero && integerEnd - integerStart > 1 {
            throw error("leading zeros are not allowed in '\(text)'", at: start)
        }
        var isFloat = false
        if index < end && token[index] == Byte.dot {
            isFloat = true
            index += 1
            guard index < end, Self.isDigit(token[index]) else {
                throw error("invalid float '\(text)': a digit must follow the decimal point", at: start)
            }
            try scanDigits(token, &index, radix: 10, at: start)
        }
        if index < end && (token[index] == UInt8(ascii: "e") || token[index] == UInt8(ascii: "E")) {
            isFloat = true
            index += 1
            if index < end && (token[index] == Byte.plus || token[index] == Byte.minus) {
                index += 1
            }
            guard index < end, Self.isDigit(token[index]) else {
                throw error("invalid float '\(text)': the exponent needs digits", at: start)
            }
            try scanDigits(token, &index, radix: 10, at: start)
        }
        guard index == end else {
            throw error(Self.notANumberMessage(text), at: start)
        }

        if isFloat {
            var digits = ""
            digits.reserveCapacity(token.count)
            for byte in token where byte != Byte.underscore {
                digits.unicodeScalars.append(Unicode.Scalar(byte))
            }
            // The grammar is checked above, so only range can fail here.
            guard let value = Double(digits), value.isFinite else {
                throw error("float \(text) is out of range for a 64-bit float", at: start)
            }
            return .float(value)
        }

        // Accumulate toward the sign so that -9223372036854775808 fits.
        var value: Int64 = 0
        for byte in token[integerStart..<integerEnd] where byte != Byte.underscore {
            let digit = Int64(byte - Byte.zero)
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = negative ? shifted.subtractingReportingOverflow(digit)
                                             : shifted.addingReportingOverflow(digit)
            if overflow1 || overflow2 {
                throw error("integer \(text) does not fit in 64 bits", at: start)
            }
            value = next
        }
        return .integer(value)
    }

    private mutating func parseRadixInteger(_ token: ArraySlice<UInt8>, digitsFrom first: Int, radix: Int,
                                            at start: Int) throws(TOMLError) -> Int64 {
        var text: String { Self.excerpt(token) }  // only built for errors
        let name = radix == 16 ? "hexadecimal" : radix == 8 ? "octal" : "binary"
        guard first < token.endIndex, Self.digitValue(token[first], radix: radix) != nil else {
            throw error("invalid \(name) integer '\(text)'", at: start)
        }
        var index = first
        try scanDigits(token, &index, radix: radix, at: start)
        guard index == token.endIndex else {
            throw error("invalid \(name) integer '\(text)'", at: start)
        }
        var value: Int64 = 0
        for byte in token[first...] {
            guard let digit = Self.digitValue(byte, radix: radix) else { continue }  // underscore
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: Int64(radix))
            let (next, overflow2) = shifted.addingReportingOverflow(Int64(digit))
            if overflow1 || overflow2 {
                throw error("integer \(text) does not fit in 64 bits", at: start)
            }
            value = next
        }
        return value
    }

    /// At a digit: consumes digits with single underscores between them.
    private mutating func scanDigits(_ token: ArraySlice<UInt8>, _ index: inout Int, radix: Int,
                                     at start: Int) throws(TOMLError) {
        var text: String { Self.excerpt(token) }  // only built for errors
        index += 1
        while index < token.endIndex {
            let byte = token[index]
            if Self.digitValue(byte, radix: radix) != nil {
                index += 1
            } else if byte == Byte.underscore {
                guard index + 1 < token.endIndex, Self.digitValue(token[index + 1], radix: radix) != nil else {
                    throw error("invalid number '\(text)': an underscore must be between two digits", at: start)
                }
                index += 2
            } else {
                return
            }
        }
    }

    private static func notANumberMessage(_ text: String) -> String {
        switch text {
        case "True", "TRUE", "False", "FALSE":
            "invalid value '\(text)': booleans are lower-case 'true' or 'false'"
        case _ where text.utf8.first.map { isLetter($0) } ?? false:
            "invalid value '\(text)': strings must be in quotes"
        default:
            "invalid number '\(text)'"
        }
    }

    /// The token as error messages quote it: whole unless it is absurdly long.
    /// Bare-value tokens are ASCII, so cutting at any byte is safe.
    static func excerpt(_ token: ArraySlice<UInt8>) -> String {
        let limit = 128  // room for a 64-digit binary literal with underscores
        guard token.count > limit else { return String(decoding: token, as: UTF8.self) }
        return String(decoding: token.prefix(limit), as: UTF8.self) + "..."
    }

    private static func radix(prefix: UInt8) -> Int? {
        switch prefix {
        case UInt8(ascii: "x"): 16
        case UInt8(ascii: "o"): 8
        case UInt8(ascii: "b"): 2
        default: nil
        }
    }

    static func digitValue(_ byte: UInt8, radix: Int) -> Int? {
        let value: Int
        switch byte {
        case Byte.zero...Byte.nine: value = Int(byte - Byte.zero)
        case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
        default: return nil
        }
        return value < radix ? value : nil
    }

    static func isDigit(_ byte: UInt8) -> Bool {
        byte >= Byte.zero && byte <= Byte.nine
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
    }

    // MARK: - Dates and times

    /// `dddd-`: the start of a full date.
    static func startsLikeDate(_ token: ArraySlice<UInt8>) -> Bool {
        token.count >= 5 && token.prefix(4).allSatisfy(isDigit) && token[token.startIndex + 4] == Byte.minus
    }

    /// `dd:`: the start of a local time.
    private static func startsLikeTime(_ token: ArraySlice<UInt8>) -> Bool {
        token.count >= 3 && token.prefix(2).allSatisfy(isDigit) && token[token.startIndex + 2] == Byte.colon
    }

    private mutating func parseDateTime(_ token: ArraySlice<UInt8>, at start: Int) throws(TOMLError) -> TOMLDateTime {
        var reader = DateTimeReader(bytes: Array(token))
        do {
            return TOMLDateTime(text: String(decoding: token, as: UTF8.self), kind: try reader.read())
        } catch {
            throw self.error("invalid date-time '\(Self.excerpt(token))': \(error.reason)", at: start)
        }
    }
}

/// Validates the RFC 3339 subset TOML 1.0 allows and says which form it is.
private struct DateTimeReader {
    struct Problem: Error {
        var reason: String
    }

    let bytes: [UInt8]
    var index = 0

    mutating func read() throws(Problem) -> TOMLDateTime.Kind {
        if bytes.count >= 3 && bytes[2] == TOMLParser.Byte.colon {
            try readTime()
            try expectEnd()
            return .localTime
        }
        try readDate()
        if index == bytes.count { return .localDate }
        switch bytes[index] {
        case UInt8(ascii: "T"), UInt8(ascii: "t"), TOMLParser.Byte.space: index += 1
        default: throw Problem(reason: "expected 'T' between date and time")
        }
        try readTime()
        if index == bytes.count { return .localDateTime }
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case TOMLParser.Byte.plus, TOMLParser.Byte.minus:
            index += 1
            let hour = try number(digits: 2, what: "offset hour")
            try expect(TOMLParser.Byte.colon, "':' in the offset")
            let minute = try number(digits: 2, what: "offset minute")
            guard hour <= 23 else { throw Problem(reason: "offset hour must be 00-23") }
            guard minute <= 59 else { throw Problem(reason: "offset minute must be 00-59") }
        default:
            throw Problem(reason: "expected 'Z' or a +hh:mm offset after the time")
        }
        try expectEnd()
        return .offsetDateTime
    }

    private mutating func readDate() throws(Problem) {
        let year = try number(digits: 4, what: "year")
        try expect(TOMLParser.Byte.minus, "'-' after the year")
        let month = try number(digits: 2, what: "month")
        try expect(TOMLParser.Byte.minus, "'-' after the month")
        let day = try number(digits: 2, what: "day")
        guard (1...12).contains(month) else { throw Problem(reason: "month must be 01-12") }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = switch month {
        case 2: leap ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
        guard day >= 1 && day <= days else {
            let which = month == 2 ? "February \(year)" : "month \(month)"
            throw Problem(reason: "day must be 01-\(days) for \(which)")
        }
    }

    /// `hh:mm:ss[.fraction]`; TOML 1.0 requires the seconds.
    private mutating func readTime() throws(Problem) {
        let hour = try number(digits: 2, what: "hour")
        try expect(TOMLParser.Byte.colon, "':' after the hour")
        let minute = try number(digits: 2, what: "minute")
        try expect(TOMLParser.Byte.colon, "':' after the minute (seconds are required)")
        let second = try number(digits: 2, what: "second")
        guard hour <= 23 else { throw Problem(reason: "hour must be 00-23") }
        guard minute <= 59 else { throw Problem(reason: "minute must be 00-59") }
        guard second <= 60 else { throw Problem(reason: "second must be 00-60") }
        if index < bytes.count && bytes[index] == TOMLParser.Byte.dot {
            index += 1
            guard index < bytes.count && TOMLParser.isDigit(bytes[index]) else {
                throw Problem(reason: "expected digits after the decimal point")
            }
            while index < bytes.count && TOMLParser.isDigit(bytes[index]) {
                index += 1
            }
        }
    }

    private mutating func number(digits: Int, what: String) throws(Problem) -> Int {
        var value = 0
        for _ in 0..<digits {
            guard index < bytes.count && TOMLParser.isDigit(bytes[index]) else {
                throw Problem(reason: "the \(what) must be \(digits) digits")
            }
            value = value * 10 + Int(bytes[index] - TOMLParser.Byte.zero)
            index += 1
        }
        return value
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Problem) {
        guard index < bytes.count && bytes[index] == byte else { throw Problem(reason: "expected \(what)") }
        index += 1
    }

    private func expectEnd() throws(Problem) {
        guard index == bytes.count else { throw Problem(reason: "unexpected text after the time") }
    }
}
