// Public model of a parsed TOML 1.0.0 document. Every key and value carries the
// position it was written at, so config errors can point at the offending text.

/// A 1-based position in the source text.
///
/// Columns count Unicode scalars, not bytes and not grapheme clusters: a tab is one
/// column, "é" written as U+00E9 is one column, and "e" + U+0301 is two. Scalars are
/// what the parser sees, and they match what most editors report for TOML text. A
/// UTF-8 byte order mark at the start of the file takes no column.
public struct SourceLocation: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.line, a.column) < (b.line, b.column)
    }
}

/// A syntax or redefinition error, located where the problem is.
public struct TOMLError: Error, Hashable, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String

    public init(location: SourceLocation, message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(message)" }
}

/// A date, time or date-time, validated and kept as written.
///
/// clawjail has no date-valued settings, so the text is not converted; `kind` says
/// which of the four TOML forms it is.
public struct TOMLDateTime: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// `1979-05-27T07:32:00Z`, `1979-05-27 07:32:00-07:00`
        case offsetDateTime
        /// `1979-05-27T07:32:00`
        case localDateTime
        /// `1979-05-27`
        case localDate
        /// `07:32:00.999`
        case localTime
    }

    public var text: String
    public var kind: Kind

    public init(text: String, kind: Kind) {
        self.text = text
        self.kind = kind
    }

    public var description: String { text }
}

public indirect enum TOMLValue: Sendable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case datetime(TOMLDateTime)
    case array([TOMLNode])
    case table(TOMLTable)

    /// "string", "integer", "float", "boolean", "datetime", "array" or "table".
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .datetime: "datetime"
        case .array: "array"
        case .table: "table"
        }
    }
}

/// A value and where it starts: the opening quote, bracket or brace, the first
/// character of a number, or the header of a `[table]` / `[[array]]` element.
public struct TOMLNode: Sendable {
    public var value: TOMLValue
    public var location: SourceLocation

    public init(value: TOMLValue, location: SourceLocation) {
        self.value = value
        self.location = location
    }

    /// Derived from `value` so the two can never disagree.
    public var typeName: String { value.typeName }

    public var string: String? { if case .string(let v) = value { v } else { nil } }
    public var integer: Int64? { if case .integer(let v) = value { v } else { nil } }
    public var float: Double? { if case .float(let v) = value { v } else { nil } }
    public var boolean: Bool? { if case .boolean(let v) = value { v } else { nil } }
    public var datetime: TOMLDateTime? { if case .datetime(let v) = value { v } else { nil } }
    public var array: [TOMLNode]? { if case .array(let v) = value { v } else { nil } }
    public var table: TOMLTable? { if case .table(let v) = value { v } else { nil } }
}

public struct TOMLTable: Sendable {
    public struct Entry: Sendable {
        public var key: String
        /// Where the key is written. For a table created by a header or dotted key,
        /// the first place its name appears.
        public var keyLocation: SourceLocation
        public var node: TOMLNode

        public init(key: String, keyLocation: SourceLocation, node: TOMLNode) {
            self.key = key
            self.keyLocation = keyLocation
            self.node = node
        }
    }

    /// In document order.
    public var entries: [Entry]
    /// The `[header]`, the `{` of an inline table, the first mention of an implicitly
    /// created table, or 1:1 for the root.
    public var location: SourceLocation

    public init(entries: [Entry] = [], location: SourceLocation = SourceLocation(line: 1, column: 1)) {
        self.entries = entries
        self.location = location
    }

    // Linear search: config tables hold a handful of keys, and this keeps `entries`
    // the single source of truth (the parser itself uses a hashed index).
    public func entry(_ key: String) -> Entry? {
        entries.first { $0.key == key }
    }

    public subscript(key: String) -> TOMLNode? {
        entry(key)?.node
    }

    public var keys: [String] { entries.map(\.key) }
}

public enum TOML {
    /// Parses a complete TOML 1.0.0 document.
    ///
    /// Deviations, all deliberate: a leading UTF-8 byte order mark is skipped; CRLF in
    /// multi-line strings becomes LF; keys are compared with Swift `String` equality,
    /// so two keys that are canonically equivalent Unicode (and look identical) count
    /// as duplicates; a float literal too large for a Double is an error rather than
    /// infinity; arrays, inline tables and tables nest at most
    /// `TOML.maximumNestingDepth` levels deep, so hostile input cannot exhaust the stack.
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(text)
        return try parser.parseDocument()
    }

    /// Parses a document as read from a file. Bytes that are not UTF-8 are an error
    /// located at the first of them, never replaced with U+FFFD: TOML 1.0 requires
    /// UTF-8, and a config must mean exactly what its bytes say.
    public static func parse(utf8 bytes: [UInt8]) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(bytes: bytes)
        try parser.checkUTF8()
        return try parser.parseDocument()
    }

    public static let maximumNestingDepth = 128
}
