// A recursive-descent TOML 1.0.0 parser over UTF-8 bytes. Strings and scalars are in
// TOMLParser+Strings.swift and TOMLParser+Scalars.swift; this file holds the document
// structure: lines, keys, headers, arrays, inline tables and the redefinition rules.

struct TOMLParser {
    /// The ASCII bytes the grammar is written in.
    enum Byte {
        static let tab: UInt8 = 0x09
        static let lf: UInt8 = 0x0A
        static let cr: UInt8 = 0x0D
        static let space: UInt8 = 0x20
        static let quote: UInt8 = 0x22
        static let hash: UInt8 = 0x23
        static let apostrophe: UInt8 = 0x27
        static let plus: UInt8 = 0x2B
        static let comma: UInt8 = 0x2C
        static let minus: UInt8 = 0x2D
        static let dot: UInt8 = 0x2E
        static let zero: UInt8 = 0x30
        static let nine: UInt8 = 0x39
        static let colon: UInt8 = 0x3A
        static let equals: UInt8 = 0x3D
        static let leftBracket: UInt8 = 0x5B
        static let backslash: UInt8 = 0x5C
        static let rightBracket: UInt8 = 0x5D
        static let underscore: UInt8 = 0x5F
        static let leftBrace: UInt8 = 0x7B
        static let rightBrace: UInt8 = 0x7D
        static let delete: UInt8 = 0x7F
    }

    /// One segment of a dotted key, with the byte offset it starts at.
    struct KeyPart {
        var name: String
        var offset: Int
    }

    let bytes: [UInt8]
    var pos: Int
    /// Byte offset of the first byte of each line, for turning offsets into locations.
    private let lineStarts: [Int]
    /// Last location computed: values are located in increasing order, so counting
    /// columns from here keeps long single-line documents linear.
    private var locationCache: (offset: Int, line: Int, column: Int)

    init(_ text: String) {
        self.init(bytes: Array(text.utf8))
    }

    init(bytes: [UInt8]) {
        self.bytes = bytes
        let start = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        pos = start
        var starts = [start]
        for index in start..<bytes.count where bytes[index] == Byte.lf {
            starts.append(index + 1)
        }
        lineStarts = starts
        locationCache = (start, 1, 1)
    }

    // MARK: - Encoding

    /// TOML 1.0 requires the document to be valid UTF-8. Checked over the whole input
    /// before parsing, so a file with a stray Latin-1 byte in a comment is refused at
    /// that byte rather than read with U+FFFD in its place.
    mutating func checkUTF8() throws(TOMLError) {
        if let problem = Self.firstInvalidUTF8(bytes, from: pos) {
            throw error("invalid UTF-8: \(problem.reason); TOML files must be UTF-8, so save the file "
                        + "as UTF-8 (an editor may have written it as Latin-1 or Windows-1252)", at: problem.offset)
        }
    }

    /// The first ill-formed sequence at or after `start` (Unicode 15, table 3-7), with
    /// the offset of its first byte.
    static func firstInvalidUTF8(_ bytes: [UInt8], from start: Int) -> (offset: Int, reason: String)? {
        func hex(_ slice: ArraySlice<UInt8>) -> String {
            slice.map { "0x" + String($0, radix: 16, uppercase: true) }.joined(separator: " ")
        }
        var index = start
        while index < bytes.count {
            let lead = bytes[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            // The sequence length, and the range the second byte must fall in: the
            // narrow ranges are what exclude overlong forms, surrogates and values
            // above U+10FFFF.
            let length: Int
            var second: ClosedRange<UInt8> = 0x80...0xBF
            var secondProblem = ""
            switch lead {
            case 0x80...0xBF:
                return (index, "byte \(hex(bytes[index...index])) is a continuation byte with no character to continue")
            case 0xC0, 0xC1:
                return (index, "byte \(hex(bytes[index...index])) only starts overlong encodings")
            case 0xC2...0xDF:
                length = 2
            case 0xE0:
                length = 3
                second = 0xA0...0xBF
                secondProblem = "are an overlong encoding"
            case 0xED:
                length = 3
                second = 0x80...0x9F
                secondProblem = "encode a surrogate (U+D800 to U+DFFF), which is not a character"
            case 0xE1...0xEF:
                length = 3
            case 0xF0:
                length = 4
                second = 0x90...0xBF
                secondProblem = "are an overlong encoding"
            case 0xF4:
                length = 4
                second = 0x80...0x8F
                secondProblem = "encode a value above U+10FFFF"
            case 0xF1...0xF3:
                length = 4
            default:
                return (index, "byte \(hex(bytes[index...index])) never appears in UTF-8")
            }
            for offset in 1..<length {
                guard index + offset < bytes.count else {
                    return (index, "the file ends inside the sequence \(hex(bytes[index...]))")
                }
                let byte = bytes[index + offset]
                if offset == 1 && byte >= 0x80 && byte <= 0xBF && !second.contains(byte) {
                    return (index, "bytes \(hex(bytes[index...(index + 1)])) \(secondProblem)")
                }
                guard byte >= 0x80 && byte <= 0xBF else {
                    return (index, "the sequence \(hex(bytes[index..<(index + offset)])) is cut short "
                                   + "(\(length) bytes expected)")
                }
            }
            index += length
        }
        return nil
    }

    // MARK: - Document

    mutating func parseDocument() throws(TOMLError) -> TOMLTable {
        let root = TOMLTableBuilder(origin: .root, location: SourceLocation(line: 1, column: 1), depth: 0)
        var current = root
        while pos < bytes.count {
            skipWhitespace()
            guard let byte = peek() else { break }
            switch byte {
            case Byte.leftBracket:
                current = try parseTableHeader(root: root)
                try finishLine(after: "table header")
            case Byte.hash, Byte.lf, Byte.cr:
                try finishLine(after: "comment")
            default:
                try parseKeyValue(into: current)
                try finishLine(after: "value")
            }
        }
        return root.build()
    }

    /// Consumes optional whitespace and comment, then a newline or the end of input.
    private mutating func finishLine(after what: String) throws(TOMLError) {
        skipWhitespace()
        if peek() == Byte.hash {
            try skipComment()
        }
        if pos >= bytes.count {
            return
        }
        if try consumeNewline() {
            return
        }
        throw error("expected end of line after \(what), found \(describe(at: pos))", at: pos)
    }

    // MARK: - Keys and values

    /// `key = value`, into `table` (the current section, or an inline table).
    mutating func parseKeyValue(into table: TOMLTableBuilder) throws(TOMLError) {
        let key = try parseKey()
        skipWhitespace()
        guard peek() == Byte.equals else {
            let found = atEndOfLine ? "" : ", found \(describe(at: pos))"
            throw error("expected '=' after key '\(Self.display(key))'\(found)", at: pos)
        }
        pos += 1
        skipWhitespace()

        let target = try resolveDottedKey(key, in: table)
        let last = key[key.count - 1]
        if let existing = target.entry(last.name) {
            throw error("duplicate key '\(Self.display(key))' (first defined at \(existing.keyLocation))", at: last.offset)
        }
        let keyLocation = location(last.offset)
        let node = try parseValue(depth: target.depth + 1)
        target.append(last.name, at: keyLocation, .value(node))
    }

    /// Walks or creates the tables named by all but the last segment of a dotted key.
    private mutating func resolveDottedKey(_ key: [KeyPart], in table: TOMLTableBuilder) throws(TOMLError) -> TOMLTableBuilder {
        var current = table
        for index in 0..<(key.count - 1) {
            let part = key[index]
            guard let existing = current.entry(part.name) else {
                let child = try makeTable(in: current, origin: .dotted, at: part.offset)
                current.append(part.name, at: child.location, .table(child))
                current = child
                continue
            }
            var path: String { Self.display(key[...index]) }  // only built for errors
            switch existing.item {
            case .table(let child):
                switch child.origin {
                case .dotted:
                    break
                case .implicit:
                    // From now on the table is defined (by these dotted keys), so a later
                    // `[header]` for it is a redefinition.
                    child.origin = .dotted
                case .header, .root, .inline:
                    throw error("cannot add keys to table '\(path)' with dotted keys: "
                                + "it was defined by a [table] header at \(child.location)", at: part.offset)
                }
                current = child
            case .arrayOfTables(let array):
                throw error("cannot add keys to '\(path)' with dotted keys: "
                            + "it is an array of tables (defined at \(array.location))", at: part.offset)
            case .value(let node):
                throw notATable(path, node, definedAt: existing.keyLocation, at: part.offset)
            }
        }
        return current
    }

    private mutating func notATable(_ path: String, _ node: TOMLNode, definedAt: SourceLocation, at offset: Int) -> TOMLError {
        switch node.value {
        case .table:
            error("inline table '\(path)' (defined at \(definedAt)) cannot be extended", at: offset)
        case .array:
            error("'\(path)' is already an array (defined at \(definedAt)), not a table", at: offset)
        default:
            error("'\(path)' is already \(Self.withArticle(node.typeName)) (defined at \(definedAt)), not a table", at: offset)
        }
    }

    private mutating func makeTable(in parent: TOMLTableBuilder, origin: TOMLTableBuilder.Origin,
                                    at offset: Int) throws(TOMLError) -> TOMLTableBuilder {
        let depth = parent.depth + 1
        guard depth <= TOML.maximumNestingDepth else { throw tooDeep(at: offset) }
        return TOMLTableBuilder(origin: origin, location: location(offset), depth: depth)
    }

    private mutating func tooDeep(at offset: Int) -> TOMLError {
        error("nesting is too deep (limit \(TOML.maximumNestingDepth) levels)", at: offset)
    }

    /// A simple or dotted key. Leaves `pos` after the last segment.
    mutating func parseKey() throws(TOMLError) -> [KeyPart] {
        var parts = [try parseSimpleKey()]
        while true {
            let save = pos
            skipWhitespace()
            guard peek() == Byte.dot else {
                pos = save
                return parts
            }
            pos += 1
            skipWhitespace()
            parts.append(try parseSimpleKey())
        }
    }

    private mutating func parseSimpleKey() throws(TOMLError) -> KeyPart {
        let start = pos
        guard let byte = peek() else { throw error("expected a key", at: pos) }
        switch byte {
        case Byte.quote:
            if peek(1) == Byte.quote && peek(2) == Byte.quote {
                throw error("a multi-line string cannot be a key", at: pos)
            }
            return KeyPart(name: try parseBasicString(), offset: start)
        case Byte.apostrophe:
            if peek(1) == Byte.apostrophe && peek(2) == Byte.apostrophe {
                throw error("a multi-line string cannot be a key", at: pos)
            }
            return KeyPart(name: try parseLiteralString(), offset: start)
        case _ where Self.isBareKeyByte(byte):
            while let next = peek(), Self.isBareKeyByte(next) {
                pos += 1
            }
            return KeyPart(name: String(decoding: bytes[start..<pos], as: UTF8.self), offset: start)
        case Byte.lf, Byte.cr, Byte.hash, Byte.rightBracket:
            throw error("expected a key", at: pos)
        case Byte.equals:
            throw error("missing key before '='", at: pos)
        default:
            let hint = byte >= 0x80 ? " (bare keys allow only A-Z a-z 0-9 _ -; quote this key)" : ""
            throw error("expected a key, found \(describe(at: pos))\(hint)", at: pos)
        }
    }

    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x41...0x5A, 0x61...0x7A, Byte.zero...Byte.nine, Byte.minus, Byte.underscore: true
        default: false
        }
    }

    /// `[a.b]` or `[[a.b]]`; returns the table that following key/values go into.
    private mutating func parseTableHeader(root: TOMLTableBuilder) throws(TOMLError) -> TOMLTableBuilder {
        let start = pos
        let isArray = peek(1) == Byte.leftBracket
        pos += isArray ? 2 : 1
        skipWhitespace()
        let key = try parseKey()
        skipWhitespace()
        if isArray {
            guard peek() == Byte.rightBracket && peek(1) == Byte.rightBracket else {
                let missing = peek() == Byte.rightBracket ? pos + 1 : pos
                throw error("expected ']]' to close array-of-tables header, found \(describe(at: missing))", at: missing)
            }
            pos += 2
        } else {
            guard peek() == Byte.rightBracket else {
                throw error("expected ']' to close table header, found \(describe(at: pos))", at: pos)
            }
            pos += 1
        }
        let headerLocation = location(start)
        var name: String { Self.display(key) }  // only built for errors

        // Every prefix may be any kind of table; an array of tables means its last element.
        var parent = root
        for index in 0..<(key.count - 1) {
            let part = key[index]
            guard let existing = parent.entry(part.name) else {
                let child = try makeTable(in: parent, origin: .implicit, at: part.offset)
                parent.append(part.name, at: child.location, .table(child))
                parent = child
                continue
            }
            switch existing.item {
            case .table(let child):
                parent = child
            case .arrayOfTables(let array):
                parent = array.last
            case .value(let node):
                throw notATable(Self.display(key[...index]), node, definedAt: existing.keyLocation, at: part.offset)
            }
        }

        let last = key[key.count - 1]
        guard let existing = parent.entry(last.name) else {
            let table = try makeTable(in: parent, origin: .header, at: start)
            let keyLocation = location(last.offset)
            if isArray {
                parent.append(last.name, at: keyLocation, .arrayOfTables(TOMLArrayOfTablesBuilder(first: table)))
            } else {
                parent.append(last.name, at: keyLocation, .table(table))
            }
            return table
        }
        switch existing.item {
        case .table(let table) where !isArray:
            switch table.origin {
            case .implicit:
                table.origin = .header
                table.location = headerLocation
                return table
            case .dotted:
                throw error("table [\(name)] is already defined by dotted keys at \(existing.keyLocation)", at: start)
            case .header, .root, .inline:
                throw error("table [\(name)] is already defined at \(table.location)", at: start)
            }
        case .table(let table):
            throw error("[[\(name)]] conflicts with table '\(name)' defined at \(table.location)", at: start)
        case .arrayOfTables(let array) where isArray:
            let table = try makeTable(in: parent, origin: .header, at: start)
            array.append(table)
            return table
        case .arrayOfTables(let array):
            throw error("[\(name)] conflicts with array of tables [[\(name)]] defined at \(array.location)", at: start)
        case .value(let node):
            switch (node.value, isArray) {
            case (.array, true):
                throw error("cannot append to static array '\(name)' (defined at \(existing.keyLocation)) with [[\(name)]]", at: start)
            case (.table, true):
                throw error("[[\(name)]] conflicts with inline table '\(name)' defined at \(existing.keyLocation)", at: start)
            case (.table, false):
                throw error("table [\(name)] is already defined as an inline table at \(existing.keyLocation)", at: start)
            default:
                throw notATable(name, node, definedAt: existing.keyLocation, at: start)
            }
        }
    }

    // MARK: - Values

    /// `depth` is the nesting depth the value would have; containers check it.
    mutating func parseValue(depth: Int) throws(TOMLError) -> TOMLNode {
        let start = pos
        guard let byte = peek() else { throw error("expected a value", at: pos) }
        let valueLocation = location(start)
        let value: TOMLValue
        switch byte {
        case Byte.quote:
            let isMultiline = peek(1) == Byte.quote && peek(2) == Byte.quote
            value = .string(isMultiline ? try parseMultilineBasicString() : try parseBasicString())
        case Byte.apostrophe:
            let isMultiline = peek(1) == Byte.apostrophe && peek(2) == Byte.apostrophe
            value = .string(isMultiline ? try parseMultilineLiteralString() : try parseLiteralString())
        case Byte.leftBracket:
            value = try parseArray(depth: depth)
        case Byte.leftBrace:
            value = try parseInlineTable(depth: depth, at: valueLocation)
        case _ where Self.isBareValueByte(byte):
            value = try parseBareValue()
        case Byte.lf, Byte.cr, Byte.hash:
            throw error("expected a value", at: pos)
        default:
            throw error("expected a value, found \(describe(at: pos))", at: pos)
        }
        return TOMLNode(value: value, location: valueLocation)
    }

    private mutating func parseArray(depth: Int) throws(TOMLError) -> TOMLValue {
        let open = pos
        guard depth <= TOML.maximumNestingDepth else { throw tooDeep(at: open) }
        pos += 1
        var elements: [TOMLNode] = []
        while true {
            try skipWhitespaceCommentsAndNewlines()
            guard let byte = peek() else { throw error("unterminated array", at: open) }
            if byte == Byte.rightBracket {
                pos += 1
                return .array(elements)
            }
            elements.append(try parseValue(depth: depth + 1))
            try skipWhitespaceCommentsAndNewlines()
            switch peek() {
            case Byte.comma?:
                pos += 1
            case Byte.rightBracket?:
                pos += 1
                return .array(elements)
            case nil:
                throw error("unterminated array", at: open)
            default:
                throw error("expected ',' or ']' after array element, found \(describe(at: pos))", at: pos)
            }
        }
    }

    private mutating func parseInlineTable(depth: Int, at tableLocation: SourceLocation) throws(TOMLError) -> TOMLValue {
        let open = pos
        guard depth <= TOML.maximumNestingDepth else { throw tooDeep(at: open) }
        pos += 1
        let table = TOMLTableBuilder(origin: .inline, location: tableLocation, depth: depth)
        skipWhitespace()
        if peek() == Byte.rightBrace {
            pos += 1
            return .table(table.build())
        }
        while true {
            skipWhitespace()
            try checkInsideInlineTable(opened: open)
            try parseKeyValue(into: table)
            skipWhitespace()
            try checkInsideInlineTable(opened: open)
            switch peek() {
            case Byte.comma?:
                let comma = pos
                pos += 1
                skipWhitespace()
                if peek() == Byte.rightBrace {
                    throw error("trailing comma is not allowed in an inline table", at: comma)
                }
            case Byte.rightBrace?:
                pos += 1
                return .table(table.build())
            default:
                throw error("expected ',' or '}' in inline table, found \(describe(at: pos))", at: pos)
            }
        }
    }

    private mutating func checkInsideInlineTable(opened open: Int) throws(TOMLError) {
        switch peek() {
        case nil:
            throw error("unterminated inline table", at: open)
        case Byte.lf?, Byte.cr?, Byte.hash?:
            throw error("inline table must be on a single line (newline before '}')", at: pos)
        default:
            break
        }
    }

    // MARK: - Whitespace, comments, newlines

    func peek(_ ahead: Int = 0) -> UInt8? {
        let index = pos + ahead
        return index < bytes.count ? bytes[index] : nil
    }

    var atEndOfLine: Bool {
        switch peek() {
        case nil, Byte.lf?, Byte.cr?, Byte.hash?: true
        default: false
        }
    }

    mutating func skipWhitespace() {
        while let byte = peek(), byte == Byte.space || byte == Byte.tab {
            pos += 1
        }
    }

    /// Consumes LF or CRLF; returns false if there is no newline here.
    mutating func consumeNewline() throws(TOMLError) -> Bool {
        switch peek() {
        case Byte.lf?:
            pos += 1
            return true
        case Byte.cr?:
            guard peek(1) == Byte.lf else {
                throw error("bare carriage return (line endings must be LF or CRLF)", at: pos)
            }
            pos += 2
            return true
        default:
            return false
        }
    }

    /// At '#': skips to the end of the line, leaving the newline.
    mutating func skipComment() throws(TOMLError) {
        pos += 1
        while let byte = peek(), byte != Byte.lf, byte != Byte.cr {
            if Self.isForbiddenControl(byte) {
                throw error("\(Self.scalarName(UInt32(byte))) is not allowed in comments", at: pos)
            }
            pos += 1
        }
    }

    private mutating func skipWhitespaceCommentsAndNewlines() throws(TOMLError) {
        while true {
            skipWhitespace()
            if peek() == Byte.hash {
                try skipComment()
            }
            guard try consumeNewline() else { return }
        }
    }

    /// Control characters TOML rejects in comments and strings: all but tab.
    /// (Newlines are handled by the callers before this check.)
    static func isForbiddenControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != Byte.tab) || byte == Byte.delete
    }

    // MARK: - Locations and messages

    mutating func location(_ offset: Int) -> SourceLocation {
        var line: Int  // 1-based; lineStarts[line - 1] is its first byte
        var index: Int
        var column: Int
        if offset >= locationCache.offset {
            // The usual case: walk forward from the previous answer.
            line = locationCache.line
            index = locationCache.offset
            column = locationCache.column
            while line < lineStarts.count && lineStarts[line] <= offset {
                line += 1
                index = lineStarts[line - 1]
                column = 1
            }
        } else {
            var low = 0
            var high = lineStarts.count - 1
            while low < high {
                let mid = (low + high + 1) / 2
                if lineStarts[mid] <= offset { low = mid } else { high = mid - 1 }
            }
            line = low + 1
            index = lineStarts[low]
            column = 1
        }
        let end = min(offset, bytes.count)
        while index < end {
            // Count scalars: every byte except UTF-8 continuation bytes starts one.
            if bytes[index] & 0xC0 != 0x80 { column += 1 }
            index += 1
        }
        locationCache = (offset, line, column)
        return SourceLocation(line: line, column: column)
    }

    mutating func error(_ message: String, at offset: Int) -> TOMLError {
        TOMLError(location: location(offset), message: message)
    }

    /// The character at `offset` as a message shows it: 'x', U+0007, end of line.
    func describe(at offset: Int) -> String {
        guard offset < bytes.count else { return "end of file" }
        let byte = bytes[offset]
        if byte == Byte.lf || byte == Byte.cr { return "end of line" }
        if Self.isForbiddenControl(byte) { return Self.scalarName(UInt32(byte)) }
        if byte < 0x80 { return "'\(Unicode.Scalar(byte))'" }
        var iterator = bytes[offset...].makeIterator()
        var decoder = UTF8()
        if case .scalarValue(let scalar) = decoder.decode(&iterator) {
            // A no-break space or byte order mark would print as nothing useful.
            let properties = scalar.properties
            let invisible = properties.isWhitespace || properties.generalCategory == .format
            return invisible ? Self.scalarName(scalar.value) : "'\(scalar)'"
        }
        return "byte 0x\(String(byte, radix: 16, uppercase: true))"
    }

    static func scalarName(_ value: UInt32) -> String {
        value < 0x20 || value == 0x7F ? "control character U+\(hex(value))" : "U+\(hex(value))"
    }

    /// Upper-case hex, at least four digits.
    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// A key as it could be written back: bare segments as they are, others quoted.
    static func display(_ key: some Collection<KeyPart>) -> String {
        key.map { part in
            if !part.name.isEmpty && part.name.utf8.allSatisfy(isBareKeyByte) {
                return part.name
            }
            var quoted = "\""
            for scalar in part.name.unicodeScalars {
                switch scalar {
                case "\"": quoted += "\\\""
                case "\\": quoted += "\\\\"
                case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                    quoted += "\\u" + hex(scalar.value)
                default: quoted.unicodeScalars.append(scalar)
                }
            }
            return quoted + "\""
        }.joined(separator: ".")
    }

    static func withArticle(_ typeName: String) -> String {
        typeName == "integer" || typeName == "array" ? "an \(typeName)" : "a \(typeName)"
    }
}
