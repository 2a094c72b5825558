import Testing
import ClawjailParsers

// `SourceLocation` exists in both Testing and ClawjailParsers, hence the qualified names.

// MARK: - Helpers

/// One-line rendering of a value, so expectations stay short:
/// `{a: 1, b: [1.5, "s", true, localDate:1979-05-27], c: {}}`.
private func render(_ value: TOMLValue) -> String {
    switch value {
    case .string(let string): "\"\(string)\""
    case .integer(let integer): "\(integer)"
    case .float(let float): "\(float)"
    case .boolean(let boolean): "\(boolean)"
    case .datetime(let datetime): "\(datetime.kind):\(datetime.text)"
    case .array(let array): "[" + array.map { render($0.value) }.joined(separator: ", ") + "]"
    case .table(let table): render(table)
    }
}

private func render(_ table: TOMLTable) -> String {
    "{" + table.entries.map { "\($0.key): \(render($0.node.value))" }.joined(separator: ", ") + "}"
}

private func rendered(_ text: String) throws -> String {
    render(try TOML.parse(text))
}

/// The value of `v` in a one-key document.
private func value(_ literal: String) throws -> TOMLValue {
    let node = try #require(try TOML.parse("v = \(literal)")["v"])
    return node.value
}

private func failure(_ text: String) -> TOMLError? {
    do {
        _ = try TOML.parse(text)
        return nil
    } catch {
        return error
    }
}

/// Expects `text` to fail at `location` ("line:column") with exactly `message`.
private func expectError(_ text: String, at location: String, _ message: String,
                         sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    guard let error = failure(text) else {
        Issue.record("parsed without error: \(text.debugDescription)", sourceLocation: sourceLocation)
        return
    }
    #expect(error.location.description == location, "\(error)", sourceLocation: sourceLocation)
    #expect(error.message == message, sourceLocation: sourceLocation)
}

private func loc(_ line: Int, _ column: Int) -> ClawjailParsers.SourceLocation {
    ClawjailParsers.SourceLocation(line: line, column: column)
}

/// A document that must be rejected, for parameterized tests.
struct BadTOML: Sendable, CustomTestStringConvertible {
    var toml: String
    var location: String
    var message: String

    init(_ toml: String, _ location: String, _ message: String) {
        self.toml = toml
        self.location = location
        self.message = message
    }

    var testDescription: String { toml.debugDescription }
}

private func check(_ bad: BadTOML, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    expectError(bad.toml, at: bad.location, bad.message, sourceLocation: sourceLocation)
}

// MARK: - Documents and value kinds

@Suite("TOML documents")
struct TOMLDocumentTests {
    @Test func emptyAndBlankDocuments() throws {
        #expect(try rendered("") == "{}")
        #expect(try rendered("\n\n   \n\t\n") == "{}")
        #expect(try rendered("# only a comment") == "{}")
        #expect(try rendered("# comment\n  # indented comment\r\n") == "{}")
        #expect(try TOML.parse("").location == loc(1, 1))
    }

    @Test func everyValueKind() throws {
        let table = try TOML.parse("""
            s = "text"
            i = 42
            f = 1.5
            b = true
            d = 1979-05-27
            a = [1, 2]
            t = { x = 1 }
            [h]
            """)
        #expect(table.keys == ["s", "i", "f", "b", "d", "a", "t", "h"])
        #expect(table.entries.map(\.node.typeName)
                == ["string", "integer", "float", "boolean", "datetime", "array", "table", "table"])
        #expect(table["s"]?.string == "text")
        #expect(table["i"]?.integer == 42)
        #expect(table["f"]?.float == 1.5)
        #expect(table["b"]?.boolean == true)
        #expect(table["d"]?.datetime == TOMLDateTime(text: "1979-05-27", kind: .localDate))
        #expect(table["a"]?.array?.compactMap(\.integer) == [1, 2])
        #expect(table["t"]?.table?["x"]?.integer == 1)
        #expect(table["h"]?.table?.entries.isEmpty == true)
        #expect(table["missing"] == nil)
        #expect(table["s"]?.integer == nil)
    }

    @Test func whitespaceAroundEverything() throws {
        #expect(try rendered("  a=1\n\tb\t=\t2\t\n c = 3 # trailing") == "{a: 1, b: 2, c: 3}")
        #expect(try rendered("[ t . u ]\nx=1") == "{t: {u: {x: 1}}}")
        #expect(try rendered("[[ t ]]  # comment\nx=1") == "{t: [{x: 1}]}")
    }

    @Test func lastLineNeedsNoNewline() throws {
        #expect(try rendered("a = 1") == "{a: 1}")
        #expect(try rendered("a = 1 # c") == "{a: 1}")
        #expect(try rendered("[t]") == "{t: {}}")
    }

    @Test func clawjailExampleConfig() throws {
        let table = try TOML.parse(#"""
            name = "alice"                      # [a-z0-9][a-z0-9-]{0,30}
            command = ["/usr/bin/node", "/opt/openclaw/gateway.js"]
            cwd = "/workspace"
            env = { NODE_ENV = "production" }
            env_pass = ["TZ", "LANG"]
            user = 1000

            [rootfs]
            base = "host"
            # path = "/var/lib/clawjail/rootfs/bookworm"

            [workspace]
            host = "/srv/clawjail/alice/workspace"
            path = "/workspace"

            [[mount]]
            host = "/opt/openclaw"
            path = "/opt/openclaw"

            [[mount]]
            host = "/opt/tools"
            path = "/opt/tools"
            mode = "rw"

            [limits]
            memory = "512M"
            pids = 256
            cpu = 1.0
            wall_time = "0"

            [network]
            mode = "egress"
            allow = ["api.anthropic.com", "*.slack.com:443"]

            [[ingress]]
            port = 18789
            socket_mode = "0660"
            """#)
        #expect(table.keys == ["name", "command", "cwd", "env", "env_pass", "user",
                               "rootfs", "workspace", "mount", "limits", "network", "ingress"])
        #expect(table["user"]?.integer == 1000)
        #expect(table["env"]?.table?["NODE_ENV"]?.string == "production")
        let mounts = try #require(table["mount"]?.array)
        #expect(mounts.count == 2)
        #expect(mounts[1].table?["mode"]?.string == "rw")
        #expect(mounts.map(\.location) == [loc(16, 1), loc(20, 1)])
        let limits = try #require(table.entry("limits"))
        #expect(limits.keyLocation == loc(25, 2))
        #expect(limits.node.location == loc(25, 1))
        let memory = try #require(limits.node.table?.entry("memory"))
        #expect(memory.keyLocation == loc(26, 1))
        #expect(memory.node.location == loc(26, 10))
        #expect(table["limits"]?.table?["cpu"]?.float == 1.0)
        #expect(table["ingress"]?.array?.first?.table?["socket_mode"]?.string == "0660")
    }

    @Test func tomlSpecExample() throws {
        let table = try TOML.parse("""
            # This is a TOML document

            title = "TOML Example"

            [owner]
            name = "Tom Preston-Werner"
            dob = 1979-05-27T07:32:00-08:00

            [database]
            enabled = true
            ports = [ 8000, 8001, 8002 ]
            data = [ ["delta", "phi"], [3.14] ]
            temp_targets = { cpu = 79.5, case = 72.0 }

            [servers]

            [servers.alpha]
            ip = "10.0.0.1"
            role = "frontend"

            [servers.beta]
            ip = "10.0.0.2"
            role = "backend"
            """)
        #expect(render(table) == """
            {title: "TOML Example", \
            owner: {name: "Tom Preston-Werner", dob: offsetDateTime:1979-05-27T07:32:00-08:00}, \
            database: {enabled: true, ports: [8000, 8001, 8002], data: [["delta", "phi"], [3.14]], \
            temp_targets: {cpu: 79.5, case: 72.0}}, \
            servers: {alpha: {ip: "10.0.0.1", role: "frontend"}, beta: {ip: "10.0.0.2", role: "backend"}}}
            """)
    }

    @Test func commentsEverywhere() throws {
        let text = """
            # Top comment.
              # Top comment.
            # Top comment.

            # [no-extraneous-groups-please]

            [group] # Comment
            answer = 42 # Comment
            # no-extraneous-keys-please = 999
            # Inbetween comment.
            more = [ # Comment
              # What about multiple # comments?
              # Can you handle it?
              #
                      # Evil.
            # Evil.
              42, 42, # Comments within arrays are fun.
              # What about multiple # comments?
              # Can you handle it?
              #
                      # Evil.
            # Evil.
            # ] Did I fool you?
            ] # Hopefully not.

            # Make sure the space between the datetime and "#" isn't lexed.
            dt = 1979-05-27T07:32:12-07:00  # c
            d = 1979-05-27 # Comment
            """
        #expect(try rendered(text) == """
            {group: {answer: 42, more: [42, 42], dt: offsetDateTime:1979-05-27T07:32:12-07:00, \
            d: localDate:1979-05-27}}
            """)
    }

    @Test func valueMustEndTheLine() {
        expectError("a = 1 b = 2", at: "1:7", "expected end of line after value, found 'b'")
        expectError("a = \"x\" \"y\"", at: "1:9", "expected end of line after value, found '\"'")
        expectError("[t] x = 1", at: "1:5", "expected end of line after table header, found 'x'")
        expectError("a = 1,", at: "1:6", "expected end of line after value, found ','")
    }

    @Test func missingValue() {
        expectError("a =", at: "1:4", "expected a value")
        expectError("a = # comment", at: "1:5", "expected a value")
        expectError("a = \nb = 1", at: "1:5", "expected a value")
        expectError("a = ]", at: "1:5", "expected a value, found ']'")
    }

    @Test func comments() throws {
        #expect(try rendered("a = 1 # comment with \"quotes\" and 'ticks' and ünïcode\t and tab") == "{a: 1}")
        #expect(try rendered("a = \"# not a comment\"") == "{a: \"# not a comment\"}")
        #expect(try rendered("#\n#\n") == "{}")
        expectError("# bell \u{07}", at: "1:8", "control character U+0007 is not allowed in comments")
        expectError("a = 1 # nul \u{00}", at: "1:13", "control character U+0000 is not allowed in comments")
        expectError("# del \u{7F}", at: "1:7", "control character U+007F is not allowed in comments")
        expectError("# form feed \u{0C} x", at: "1:13", "control character U+000C is not allowed in comments")
    }
}

// MARK: - Line endings

@Suite("TOML line endings")
struct TOMLLineEndingTests {
    @Test func crlfAccepted() throws {
        let table = try TOML.parse("a = 1\r\n[t]\r\nb = [\r\n  2, # c\r\n  3,\r\n]\r\n")
        #expect(render(table) == "{a: 1, t: {b: [2, 3]}}")
        let b = try #require(table["t"]?.table?.entry("b"))
        #expect(b.keyLocation == loc(3, 1))
        #expect(b.node.array?.map(\.location) == [loc(4, 3), loc(5, 3)])
    }

    @Test func crlfInMultilineStringsBecomesLF() throws {
        #expect(try value("\"\"\"\r\none\r\ntwo\"\"\"").stringValue == "one\ntwo")
        #expect(try value("'''\r\none\r\ntwo'''").stringValue == "one\ntwo")
        #expect(try value("\"\"\"one \\\r\n   two\"\"\"").stringValue == "one two")
    }

    @Test(arguments: [
        BadTOML("a = 1\rb = 2", "1:6", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("\r", "1:1", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("# comment\r", "1:10", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("# comment\rx", "1:10", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("[t]\r", "1:4", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("a = [1,\r2]", "1:8", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("a = \"\"\"x\ry\"\"\"", "1:9", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("a = '''x\ry'''", "1:9", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("a = \"\"\"\rx\"\"\"", "1:8", "bare carriage return (line endings must be LF or CRLF)"),
        BadTOML("a = \"x\ry\"", "1:5", "unterminated string"),
        BadTOML("a = 'x\ry'", "1:5", "unterminated string"),
    ])
    func bareCarriageReturnRejected(_ bad: BadTOML) {
        check(bad)
    }
}

extension TOMLValue {
    fileprivate var stringValue: String? { if case .string(let string) = self { string } else { nil } }
}

// MARK: - Strings

@Suite("TOML strings")
struct TOMLStringTests {
    @Test func basicStrings() throws {
        #expect(try value(#""hello""#).stringValue == "hello")
        #expect(try value(#""""#).stringValue == "")
        #expect(try value(#""tab\there""#).stringValue == "tab\there")
        #expect(try value("\"literal\ttab\"").stringValue == "literal\ttab")
        #expect(try value(#""ünïcödé 😀""#).stringValue == "ünïcödé 😀")
        #expect(try value(#""it's""#).stringValue == "it's")
    }

    @Test func everyEscape() throws {
        #expect(try value(#""\b\t\n\f\r\"\\""#).stringValue == "\u{08}\t\n\u{0C}\r\"\\")
        #expect(try value(#""\u00e9 \u00E9 \u0000""#).stringValue == "é é \u{0}")
        #expect(try value(#""\U0001F600 \U0010FFFF \U00000041""#).stringValue == "😀 \u{10FFFF} A")
        #expect(try value(#""\uD7FF \uE000""#).stringValue == "\u{D7FF} \u{E000}")
        #expect(try value(#""a\\nb""#).stringValue == "a\\nb")
        #expect(try value(#""Name\tJos\u00E9\nLoc\tSF.""#).stringValue == "Name\tJos\u{E9}\nLoc\tSF.")
        #expect(try value(#""\"quoted\"""#).stringValue == "\"quoted\"")
    }

    @Test(arguments: [
        BadTOML(#"v = "\x41""#, "1:6", #"invalid escape sequence '\x'"#),
        BadTOML(#"v = "\e""#, "1:6", #"invalid escape sequence '\e'"#),
        BadTOML(#"v = "a\ b""#, "1:7", #"invalid escape sequence '\ '"#),
        BadTOML(#"v = "\/""#, "1:6", #"invalid escape sequence '\/'"#),
        BadTOML(#"v = "\u12""#, "1:6", #"\u escape needs exactly 4 hex digits"#),
        BadTOML(#"v = "\u12G4""#, "1:6", #"\u escape needs exactly 4 hex digits"#),
        BadTOML(#"v = "\U0001F60""#, "1:6", #"\U escape needs exactly 8 hex digits"#),
        BadTOML(#"v = "\uD800""#, "1:6",
                #"\uD800 is not a Unicode scalar value (surrogates and values above 10FFFF are not allowed)"#),
        BadTOML(#"v = "\uDFFF""#, "1:6",
                #"\uDFFF is not a Unicode scalar value (surrogates and values above 10FFFF are not allowed)"#),
        BadTOML(#"v = "\U00110000""#, "1:6",
                #"\U00110000 is not a Unicode scalar value (surrogates and values above 10FFFF are not allowed)"#),
        BadTOML(#"v = "\UFFFFFFFF""#, "1:6",
                #"\UFFFFFFFF is not a Unicode scalar value (surrogates and values above 10FFFF are not allowed)"#),
        BadTOML("v = \"\\\u{01}\"", "1:6", "invalid escape sequence: backslash followed by control character U+0001"),
        BadTOML(#"v = "abc\"#, "1:5", "unterminated string"),
    ])
    func invalidEscapes(_ bad: BadTOML) {
        check(bad)
    }

    @Test func literalStrings() throws {
        #expect(try value(#"'C:\Users\nodejs\templates'"#).stringValue == #"C:\Users\nodejs\templates"#)
        #expect(try value(#"'Tom "Dubs" Preston-Werner'"#).stringValue == #"Tom "Dubs" Preston-Werner"#)
        #expect(try value(#"'<\i\c*\s*>'"#).stringValue == #"<\i\c*\s*>"#)
        #expect(try value("''").stringValue == "")
        #expect(try value("'a\tb'").stringValue == "a\tb")
    }

    @Test func multilineBasicStrings() throws {
        // The newline right after the opening delimiter is trimmed; others are kept.
        #expect(try value("\"\"\"\nRoses are red\nViolets are blue\"\"\"").stringValue == "Roses are red\nViolets are blue")
        #expect(try value("\"\"\"\n\nx\n\"\"\"").stringValue == "\nx\n")
        #expect(try value("\"\"\"one line\"\"\"").stringValue == "one line")
        #expect(try value("\"\"\"\"\"\"").stringValue == "")
        #expect(try value(#""""tab\tand \u00e9""""#).stringValue == "tab\tand é")
    }

    @Test func lineEndingBackslash() throws {
        let spec = "\"\"\"\nThe quick brown \\\n\n\n  fox jumps over \\\n    the lazy dog.\"\"\""
        #expect(try value(spec).stringValue == "The quick brown fox jumps over the lazy dog.")
        let closing = "\"\"\"\\\n       The quick brown \\\n       fox jumps over \\\n       the lazy dog.\\\n       \"\"\""
        #expect(try value(closing).stringValue == "The quick brown fox jumps over the lazy dog.")
        // Whitespace between the backslash and the newline is allowed.
        #expect(try value("\"\"\"a \\   \t\n   b\"\"\"").stringValue == "a b")
        // An escaped backslash at the end of a line is just a backslash.
        #expect(try value("\"\"\"a\\\\\nb\"\"\"").stringValue == "a\\\nb")
        expectError("v = \"\"\"a \\  b\"\"\"", at: "1:10", #"invalid escape sequence '\ '"#)
    }

    @Test func quotesInsideMultilineStrings() throws {
        #expect(try value(#""""Here are two quotation marks: "". Simple enough.""""#).stringValue
                == #"Here are two quotation marks: "". Simple enough."#)
        #expect(try value(#""""Here are three quotation marks: ""\".""""#).stringValue
                == #"Here are three quotation marks: """."#)
        #expect(try value(#""""Here are fifteen quotation marks: ""\"""\"""\"""\"""\".""""#).stringValue
                == "Here are fifteen quotation marks: \(String(repeating: "\"", count: 15)).")
        #expect(try value("\"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"").stringValue
                == "\"This,\" she said, \"is just a pointless statement.\"")
        // """lol\"""""" and """""two quotes""""" from toml-test.
        #expect(try value("\"\"\"lol\\\"\"\"\"\"\"").stringValue == "lol\"\"\"")
        #expect(try value("\"\"\"\"\"two quotes\"\"\"\"\"").stringValue == "\"\"two quotes\"\"")
        #expect(try value(#""""aaa'''bbb""""#).stringValue == "aaa'''bbb")
        #expect(try value(#""""a"""""#).stringValue == #"a""#)
        #expect(try value(#""""a""""""#).stringValue == #"a"""#)
        expectError(#"v = """a"""""""#, at: "1:9", "too many quotes (6) in a row in a multi-line string")
        expectError(#"v = """a""" """#, at: "1:13", #"expected end of line after value, found '"'"#)
    }

    @Test func multilineLiteralStrings() throws {
        #expect(try value("'''I [dw]on't need \\d{2} apples'''").stringValue == #"I [dw]on't need \d{2} apples"#)
        let text = "'''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''"
        #expect(try value(text).stringValue
                == "The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n")
        let fifteen = String(repeating: "\"", count: 15)
        #expect(try value("'''Here are fifteen quotation marks: \(fifteen)'''").stringValue
                == "Here are fifteen quotation marks: \(fifteen)")
        #expect(try value("''''That,' she said, 'is still pointless.''''").stringValue
                == "'That,' she said, 'is still pointless.'")
        #expect(try value("'''a\\\n b'''").stringValue == "a\\\n b")
        #expect(try value("''''''").stringValue == "")
        expectError("v = '''a''''''", at: "1:9", "too many quotes (6) in a row in a multi-line string")
    }

    @Test(arguments: [
        BadTOML("v = \"abc", "1:5", "unterminated string"),
        BadTOML("v = \"abc\nx = 1", "1:5", "unterminated string"),
        BadTOML("v = 'abc", "1:5", "unterminated string"),
        BadTOML("v = 'abc\n'", "1:5", "unterminated string"),
        BadTOML("v = \"\"\"abc\n\"\"", "1:5", "unterminated multi-line string"),
        BadTOML("v = '''abc''", "1:5", "unterminated multi-line string"),
        BadTOML("\n  name = \"alice", "2:10", "unterminated string"),
    ])
    func unterminatedStrings(_ bad: BadTOML) {
        check(bad)
    }

    @Test(arguments: [
        BadTOML("v = \"a\u{00}b\"", "1:7", "control character U+0000 must be escaped in a string"),
        BadTOML("v = \"a\u{1F}b\"", "1:7", "control character U+001F must be escaped in a string"),
        BadTOML("v = \"a\u{7F}b\"", "1:7", "control character U+007F must be escaped in a string"),
        BadTOML("v = \"\"\"a\u{0B}b\"\"\"", "1:9", "control character U+000B must be escaped in a string"),
        BadTOML("v = 'a\u{08}b'", "1:7", "control character U+0008 is not allowed in a literal string"),
        BadTOML("v = '''a\u{7F}b'''", "1:9", "control character U+007F is not allowed in a literal string"),
        BadTOML("\"k\u{01}\" = 1", "1:3", "control character U+0001 must be escaped in a string"),
    ])
    func controlCharactersRejected(_ bad: BadTOML) {
        check(bad)
    }

    @Test func tabAllowedEverywhere() throws {
        #expect(try value("\"\"\"a\tb\"\"\"").stringValue == "a\tb")
        #expect(try value("'''a\tb'''").stringValue == "a\tb")
    }
}

// MARK: - Integers

@Suite("TOML integers")
struct TOMLIntegerTests {
    @Test(arguments: [
        ("+99", Int64(99)), ("42", 42), ("0", 0), ("-17", -17), ("+0", 0), ("-0", 0),
        ("1_000", 1_000), ("5_349_221", 5_349_221), ("53_49_221", 5_349_221), ("1_2_3_4_5", 12345),
        ("0xDEADBEEF", 0xDEADBEEF), ("0xdeadbeef", 0xDEADBEEF), ("0xdead_beef", 0xDEADBEEF), ("0x00ff", 255),
        ("0o01234567", 0o1234567), ("0o755", 0o755), ("0b11010110", 0b11010110), ("0b1_0", 2), ("0x0", 0),
        ("9223372036854775807", Int64.max), ("-9223372036854775808", Int64.min),
        ("+9223372036854775807", Int64.max),
        ("0x7FFFFFFFFFFFFFFF", Int64.max), ("0o777777777777777777777", Int64.max),
        ("0b111111111111111111111111111111111111111111111111111111111111111", Int64.max),
    ])
    func validIntegers(_ literal: String, _ expected: Int64) throws {
        let node = try #require(try TOML.parse("v = \(literal)")["v"])
        #expect(node.integer == expected)
        #expect(node.typeName == "integer")
    }

    @Test(arguments: [
        BadTOML("v = 9223372036854775808", "1:5", "integer 9223372036854775808 does not fit in 64 bits"),
        BadTOML("v = -9223372036854775809", "1:5", "integer -9223372036854775809 does not fit in 64 bits"),
        BadTOML("v = 99999999999999999999", "1:5", "integer 99999999999999999999 does not fit in 64 bits"),
        BadTOML("v = -99999999999999999999", "1:5", "integer -99999999999999999999 does not fit in 64 bits"),
        BadTOML("v = 0x8000000000000000", "1:5", "integer 0x8000000000000000 does not fit in 64 bits"),
        BadTOML("v = 0xFFFFFFFFFFFFFFFF", "1:5", "integer 0xFFFFFFFFFFFFFFFF does not fit in 64 bits"),
        BadTOML("v = 0o1000000000000000000000", "1:5", "integer 0o1000000000000000000000 does not fit in 64 bits"),
        BadTOML("v = 0b1000000000000000000000000000000000000000000000000000000000000000", "1:5",
                "integer 0b1000000000000000000000000000000000000000000000000000000000000000 does not fit in 64 bits"),
    ])
    func overflowIsAnError(_ bad: BadTOML) {
        check(bad)
    }

    @Test(arguments: [
        BadTOML("v = 01", "1:5", "leading zeros are not allowed in '01'"),
        BadTOML("v = 007", "1:5", "leading zeros are not allowed in '007'"),
        BadTOML("v = -01", "1:5", "leading zeros are not allowed in '-01'"),
        BadTOML("v = +01", "1:5", "leading zeros are not allowed in '+01'"),
        BadTOML("v = 0_0", "1:5", "leading zeros are not allowed in '0_0'"),
        BadTOML("v = 1__000", "1:5", "invalid number '1__000': an underscore must be between two digits"),
        BadTOML("v = 1000_", "1:5", "invalid number '1000_': an underscore must be between two digits"),
        BadTOML("v = _1000", "1:5", "invalid number '_1000'"),
        BadTOML("v = 0x_1", "1:5", "invalid hexadecimal integer '0x_1'"),
        BadTOML("v = 0x1_", "1:5", "invalid number '0x1_': an underscore must be between two digits"),
        BadTOML("v = 0x", "1:5", "invalid hexadecimal integer '0x'"),
        BadTOML("v = 0xG", "1:5", "invalid hexadecimal integer '0xG'"),
        BadTOML("v = 0o8", "1:5", "invalid octal integer '0o8'"),
        BadTOML("v = 0o17_8", "1:5", "invalid number '0o17_8': an underscore must be between two digits"),
        BadTOML("v = 0b102", "1:5", "invalid binary integer '0b102'"),
        BadTOML("v = 0X1F", "1:5", "invalid number '0X1F'"),
        BadTOML("v = 0O17", "1:5", "invalid number '0O17'"),
        BadTOML("v = +0x1", "1:5", "invalid integer '+0x1': only decimal integers may have a sign"),
        BadTOML("v = -0b1", "1:5", "invalid integer '-0b1': only decimal integers may have a sign"),
        BadTOML("v = +", "1:5", "invalid number '+'"),
        BadTOML("v = -", "1:5", "invalid number '-'"),
        BadTOML("v = --1", "1:5", "invalid number '--1'"),
        BadTOML("v = 1-2", "1:5", "invalid number '1-2'"),
        BadTOML("v = 12a", "1:5", "invalid number '12a'"),
        BadTOML("v = 1 2", "1:7", "expected end of line after value, found '2'"),
    ])
    func malformedIntegers(_ bad: BadTOML) {
        check(bad)
    }
}

// MARK: - Floats

@Suite("TOML floats")
struct TOMLFloatTests {
    @Test(arguments: [
        ("+1.0", 1.0), ("3.1415", 3.1415), ("-0.01", -0.01), ("5e+22", 5e+22), ("1e06", 1e06),
        ("-2E-2", -2e-2), ("6.626e-34", 6.626e-34), ("224_617.445_991_228", 224_617.445_991_228),
        ("0.0", 0.0), ("0e0", 0), ("1e1_0", 1e10), ("1.0E+2", 100), ("9_9.0_1e1_0", 99.01e10),
        ("0.1", 0.1), ("1.01", 1.01), ("1e-400", 0),
    ])
    func validFloats(_ literal: String, _ expected: Double) throws {
        let node = try #require(try TOML.parse("v = \(literal)")["v"])
        #expect(node.float == expected)
        #expect(node.typeName == "float")
    }

    @Test func specialFloats() throws {
        #expect(try TOML.parse("v = inf")["v"]?.float == .infinity)
        #expect(try TOML.parse("v = +inf")["v"]?.float == .infinity)
        #expect(try TOML.parse("v = -inf")["v"]?.float == -.infinity)
        for literal in ["nan", "+nan", "-nan"] {
            #expect(try TOML.parse("v = \(literal)")["v"]?.float?.isNaN == true)
        }
        #expect(try TOML.parse("v = -nan")["v"]?.float?.sign == .minus)
        #expect(try TOML.parse("v = -0.0")["v"]?.float?.sign == .minus)
        #expect(try TOML.parse("v = +0.0")["v"]?.float?.sign == .plus)
        #expect(try rendered("v = [inf, -inf]") == "{v: [inf, -inf]}")
    }

    @Test(arguments: [
        BadTOML("v = 1.", "1:5", "invalid float '1.': a digit must follow the decimal point"),
        BadTOML("v = .5", "1:5", "invalid number '.5'"),
        BadTOML("v = -.5", "1:5", "invalid number '-.5'"),
        BadTOML("v = 1.e5", "1:5", "invalid float '1.e5': a digit must follow the decimal point"),
        BadTOML("v = 1e", "1:5", "invalid float '1e': the exponent needs digits"),
        BadTOML("v = 1e+", "1:5", "invalid float '1e+': the exponent needs digits"),
        BadTOML("v = 1e_5", "1:5", "invalid float '1e_5': the exponent needs digits"),
        BadTOML("v = 1_.5", "1:5", "invalid number '1_.5': an underscore must be between two digits"),
        BadTOML("v = 1._5", "1:5", "invalid float '1._5': a digit must follow the decimal point"),
        BadTOML("v = 1.5_", "1:5", "invalid number '1.5_': an underscore must be between two digits"),
        BadTOML("v = 1e5_", "1:5", "invalid number '1e5_': an underscore must be between two digits"),
        BadTOML("v = 01.5", "1:5", "leading zeros are not allowed in '01.5'"),
        BadTOML("v = -01.5", "1:5", "leading zeros are not allowed in '-01.5'"),
        BadTOML("v = 00e1", "1:5", "leading zeros are not allowed in '00e1'"),
        BadTOML("v = 1.5.3", "1:5", "invalid number '1.5.3'"),
        BadTOML("v = 1e5e3", "1:5", "invalid number '1e5e3'"),
        BadTOML("v = 1e400", "1:5", "float 1e400 is out of range for a 64-bit float"),
        BadTOML("v = -1e400", "1:5", "float -1e400 is out of range for a 64-bit float"),
        BadTOML("v = infinity", "1:5", "invalid value 'infinity': strings must be in quotes"),
        BadTOML("v = Inf", "1:5", "invalid value 'Inf': strings must be in quotes"),
        BadTOML("v = NaN", "1:5", "invalid value 'NaN': strings must be in quotes"),
        BadTOML("v = inf_", "1:5", "invalid value 'inf_': strings must be in quotes"),
        BadTOML("v = 0x1p3", "1:5", "invalid hexadecimal integer '0x1p3'"),
    ])
    func malformedFloats(_ bad: BadTOML) {
        check(bad)
    }
}

// MARK: - Booleans and bare words

@Suite("TOML booleans")
struct TOMLBooleanTests {
    @Test func booleans() throws {
        #expect(try rendered("t = true\nf = false") == "{t: true, f: false}")
        #expect(try rendered("a = [true,false]") == "{a: [true, false]}")
    }

    @Test(arguments: [
        BadTOML("v = True", "1:5", "invalid value 'True': booleans are lower-case 'true' or 'false'"),
        BadTOML("v = FALSE", "1:5", "invalid value 'FALSE': booleans are lower-case 'true' or 'false'"),
        BadTOML("v = truex", "1:5", "invalid value 'truex': strings must be in quotes"),
        BadTOML("v = yes", "1:5", "invalid value 'yes': strings must be in quotes"),
        BadTOML("v = hello world", "1:5", "invalid value 'hello': strings must be in quotes"),
        BadTOML("v = tru", "1:5", "invalid value 'tru': strings must be in quotes"),
        BadTOML("v = @", "1:5", "expected a value, found '@'"),
        BadTOML("v = é", "1:5", "expected a value, found 'é'"),
    ])
    func notBooleans(_ bad: BadTOML) {
        check(bad)
    }
}

// MARK: - Dates and times

@Suite("TOML dates and times")
struct TOMLDateTimeTests {
    @Test(arguments: [
        ("1979-05-27T07:32:00Z", TOMLDateTime.Kind.offsetDateTime),
        ("1979-05-27T00:32:00-07:00", .offsetDateTime),
        ("1979-05-27T00:32:00.999999-07:00", .offsetDateTime),
        ("1979-05-27T00:32:00+14:00", .offsetDateTime),
        ("1979-05-27 07:32:00Z", .offsetDateTime),
        ("1979-05-27t07:32:00z", .offsetDateTime),
        ("1979-05-27T07:32:00", .localDateTime),
        ("1979-05-27T00:32:00.999999", .localDateTime),
        ("1979-05-27 07:32:00", .localDateTime),
        ("1979-05-27", .localDate),
        ("07:32:00", .localTime),
        ("00:32:00.999999", .localTime),
        ("23:59:60", .localTime),
        ("2024-02-29", .localDate),
        ("2000-02-29", .localDate),
        ("2023-01-31", .localDate),
        ("2023-04-30", .localDate),
        ("0000-01-01", .localDate),
        ("9999-12-31T23:59:59.1+23:59", .offsetDateTime),
    ])
    func validDateTimes(_ literal: String, _ kind: TOMLDateTime.Kind) throws {
        let node = try #require(try TOML.parse("v = \(literal) # comment")["v"])
        #expect(node.datetime == TOMLDateTime(text: literal, kind: kind))
        #expect(node.typeName == "datetime")
        #expect(node.datetime?.description == literal)
    }

    @Test func dateTimesInArraysAndInlineTables() throws {
        #expect(try rendered("a = [1979-05-27, 07:32:00, 1979-05-27 07:32:00Z]")
                == "{a: [localDate:1979-05-27, localTime:07:32:00, offsetDateTime:1979-05-27 07:32:00Z]}")
        #expect(try rendered("t = {d = 1979-05-27, e = 1}") == "{t: {d: localDate:1979-05-27, e: 1}}")
        // A date followed by a space and something that is not a time stays a date.
        #expect(try rendered("a = [1979-05-27 , 1]") == "{a: [localDate:1979-05-27, 1]}")
    }

    @Test(arguments: [
        BadTOML("v = 2023-02-29", "1:5", "invalid date-time '2023-02-29': day must be 01-28 for February 2023"),
        BadTOML("v = 1900-02-29", "1:5", "invalid date-time '1900-02-29': day must be 01-28 for February 1900"),
        BadTOML("v = 2024-02-30", "1:5", "invalid date-time '2024-02-30': day must be 01-29 for February 2024"),
        BadTOML("v = 2023-04-31", "1:5", "invalid date-time '2023-04-31': day must be 01-30 for month 4"),
        BadTOML("v = 2023-01-32", "1:5", "invalid date-time '2023-01-32': day must be 01-31 for month 1"),
        BadTOML("v = 2023-01-00", "1:5", "invalid date-time '2023-01-00': day must be 01-31 for month 1"),
        BadTOML("v = 2023-13-01", "1:5", "invalid date-time '2023-13-01': month must be 01-12"),
        BadTOML("v = 2023-00-01", "1:5", "invalid date-time '2023-00-01': month must be 01-12"),
        BadTOML("v = 2023-1-01", "1:5", "invalid date-time '2023-1-01': the month must be 2 digits"),
        BadTOML("v = 2023-01-1", "1:5", "invalid date-time '2023-01-1': the day must be 2 digits"),
        BadTOML("v = 24:00:00", "1:5", "invalid date-time '24:00:00': hour must be 00-23"),
        BadTOML("v = 12:60:00", "1:5", "invalid date-time '12:60:00': minute must be 00-59"),
        BadTOML("v = 12:00:61", "1:5", "invalid date-time '12:00:61': second must be 00-60"),
        BadTOML("v = 12:00", "1:5", "invalid date-time '12:00': expected ':' after the minute (seconds are required)"),
        BadTOML("v = 1979-05-27T07:32", "1:5",
                "invalid date-time '1979-05-27T07:32': expected ':' after the minute (seconds are required)"),
        BadTOML("v = 07:32:00.", "1:5", "invalid date-time '07:32:00.': expected digits after the decimal point"),
        BadTOML("v = 07:32:00Z", "1:5", "invalid date-time '07:32:00Z': unexpected text after the time"),
        BadTOML("v = 1979-05-27X07:32:00", "1:5", "invalid date-time '1979-05-27X07:32:00': expected 'T' between date and time"),
        BadTOML("v = 1979-05-27T07:32:00+7:00", "1:5",
                "invalid date-time '1979-05-27T07:32:00+7:00': the offset hour must be 2 digits"),
        BadTOML("v = 1979-05-27T07:32:00+24:00", "1:5",
                "invalid date-time '1979-05-27T07:32:00+24:00': offset hour must be 00-23"),
        BadTOML("v = 1979-05-27T07:32:00+01:60", "1:5",
                "invalid date-time '1979-05-27T07:32:00+01:60': offset minute must be 00-59"),
        BadTOML("v = 1979-05-27T07:32:00+0100", "1:5",
                "invalid date-time '1979-05-27T07:32:00+0100': expected ':' in the offset"),
        BadTOML("v = 1979-05-27T07:32:00Q", "1:5",
                "invalid date-time '1979-05-27T07:32:00Q': expected 'Z' or a +hh:mm offset after the time"),
        BadTOML("v = 1979-05-27T07:32:00ZZ", "1:5",
                "invalid date-time '1979-05-27T07:32:00ZZ': unexpected text after the time"),
        BadTOML("v = 1979-05-27T", "1:5", "invalid date-time '1979-05-27T': the hour must be 2 digits"),
        BadTOML("v = 1979-05-27 07:32", "1:5",
                "invalid date-time '1979-05-27 07:32': expected ':' after the minute (seconds are required)"),
        BadTOML("v = 1979-05-27  07:32:00", "1:17", "expected end of line after value, found '0'"),
    ])
    func invalidDateTimes(_ bad: BadTOML) {
        check(bad)
    }
}

// MARK: - Arrays

@Suite("TOML arrays")
struct TOMLArrayTests {
    @Test func arrays() throws {
        #expect(try rendered("a = []") == "{a: []}")
        #expect(try rendered("a = [ ]") == "{a: []}")
        #expect(try rendered("a = [1, 2, 3]") == "{a: [1, 2, 3]}")
        #expect(try rendered("a = [[1, 2], [3, 4, 5]]") == "{a: [[1, 2], [3, 4, 5]]}")
        #expect(try rendered("a = [[1, 2], [\"a\", \"b\", \"c\"]]") == "{a: [[1, 2], [\"a\", \"b\", \"c\"]]}")
        #expect(try rendered("a = [0.1, 0.2, 0.5, 1, 2, 5]") == "{a: [0.1, 0.2, 0.5, 1, 2, 5]}")
        #expect(try rendered("a = [1,]") == "{a: [1]}")
        #expect(try rendered("a = [\"all\", 'strings', \"\"\"are the same\"\"\", '''type''']")
                == "{a: [\"all\", \"strings\", \"are the same\", \"type\"]}")
        #expect(try rendered("a = [{ x = 1 }, { y = [2] }]") == "{a: [{x: 1}, {y: [2]}]}")
        // TOML 1.0 allows mixed types in one array.
        #expect(try rendered("a = [1, \"s\", 1.5, true, 1979-05-27, [], {}]")
                == "{a: [1, \"s\", 1.5, true, localDate:1979-05-27, [], {}]}")
    }

    @Test func newlinesAndCommentsInsideArrays() throws {
        let text = """
            a = [ # start
              1, # one
              # a comment line

              2
              , 3 ,
              [
                "nested" # inside
              ],
            ] # end
            """
        #expect(try rendered(text) == "{a: [1, 2, 3, [\"nested\"]]}")
    }

    @Test(arguments: [
        BadTOML("a = [1, 2", "1:5", "unterminated array"),
        BadTOML("a = [1, 2,\n", "1:5", "unterminated array"),
        BadTOML("a = [", "1:5", "unterminated array"),
        BadTOML("a = [,]", "1:6", "expected a value, found ','"),
        BadTOML("a = [1,,2]", "1:8", "expected a value, found ','"),
        BadTOML("a = [1 2]", "1:8", "expected ',' or ']' after array element, found '2'"),
        BadTOML("a = [1}", "1:7", "expected ',' or ']' after array element, found '}'"),
        BadTOML("a = [1 # c\u{01}\n]", "1:11", "control character U+0001 is not allowed in comments"),
    ])
    func malformedArrays(_ bad: BadTOML) {
        check(bad)
    }
}

// MARK: - Inline tables

@Suite("TOML inline tables")
struct TOMLInlineTableTests {
    @Test func inlineTables() throws {
        #expect(try rendered("name = { first = \"Tom\", last = \"Preston-Werner\" }")
                == "{name: {first: \"Tom\", last: \"Preston-Werner\"}}")
        #expect(try rendered("point = { x = 1, y = 2 }") == "{point: {x: 1, y: 2}}")
        #expect(try rendered("animal = { type.name = \"pug\" }") == "{animal: {type: {name: \"pug\"}}}")
        #expect(try rendered("e = {}") == "{e: {}}")
        #expect(try rendered("e = {   }") == "{e: {}}")
        #expect(try rendered("t = {a={b={c=1}}}") == "{t: {a: {b: {c: 1}}}}")
        #expect(try rendered("t = { a.b = 1, a.c = 2, d = [1, 2] }") == "{t: {a: {b: 1, c: 2}, d: [1, 2]}}")
        // Values inside an inline table may span lines where the value allows it.
        #expect(try rendered("t = { a = [\n1,\n2], s = \"\"\"x\ny\"\"\" }") == "{t: {a: [1, 2], s: \"x\ny\"}}")
    }

    @Test(arguments: [
        BadTOML("t = { a = 1, }", "1:12", "trailing comma is not allowed in an inline table"),
        BadTOML("t = { a = 1,\n b = 2 }", "1:13", "inline table must be on a single line (newline before '}')"),
        BadTOML("t = {\n a = 1 }", "1:6", "inline table must be on a single line (newline before '}')"),
        BadTOML("t = { a = 1 \n}", "1:13", "inline table must be on a single line (newline before '}')"),
        BadTOML("t = { a = 1 # c\n}", "1:13", "inline table must be on a single line (newline before '}')"),
        BadTOML("t = { a = 1", "1:5", "unterminated inline table"),
        BadTOML("t = { a = 1 b = 2 }", "1:13", "expected ',' or '}' in inline table, found 'b'"),
        BadTOML("t = { , }", "1:7", "expected a key, found ','"),
        BadTOML("t = { a }", "1:9", "expected '=' after key 'a', found '}'"),
        BadTOML("t = { a = 1, a = 2 }", "1:14", "duplicate key 'a' (first defined at 1:7)"),
        BadTOML("t = { a.b = 1, a = 2 }", "1:16", "duplicate key 'a' (first defined at 1:7)"),
        BadTOML("t = { a = {}, a.b = 1 }", "1:15", "inline table 'a' (defined at 1:7) cannot be extended"),
        BadTOML("t = { a = 1, a.b = 2 }", "1:14", "'a' is already an integer (defined at 1:7), not a table"),
    ])
    func malformedInlineTables(_ bad: BadTOML) {
        check(bad)
    }
}

// MARK: - Keys

@Suite("TOML keys")
struct TOMLKeyTests {
    @Test func bareAndQuotedKeys() throws {
        #expect(try rendered("key = 1\nbare_key = 2\nbare-key = 3\n1234 = 4\nABC = 5")
                == "{key: 1, bare_key: 2, bare-key: 3, 1234: 4, ABC: 5}")
        let quoted = try TOML.parse(#"""
            "127.0.0.1" = "value"
            "character encoding" = "value"
            "ʎǝʞ" = "value"
            'key2' = "value"
            'quoted "value"' = "value"
            "tab\tkey" = 1
            "" = "empty"
            """#)
        #expect(quoted.keys == ["127.0.0.1", "character encoding", "ʎǝʞ", "key2", "quoted \"value\"", "tab\tkey", ""])
        #expect(try TOML.parse("'' = 1")[""]?.integer == 1)
        #expect(try rendered("true = 1\nfalse = 2\ninf = 3\nnan = 4") == "{true: 1, false: 2, inf: 3, nan: 4}")
    }

    @Test func dottedKeys() throws {
        #expect(try rendered("name = \"Orange\"\nphysical.color = \"orange\"\nphysical.shape = \"round\"\nsite.\"google.com\" = true")
                == "{name: \"Orange\", physical: {color: \"orange\", shape: \"round\"}, site: {google.com: true}}")
        #expect(try rendered("fruit.name = \"banana\"\nfruit. color = \"yellow\"\nfruit . flavor = \"banana\"")
                == "{fruit: {name: \"banana\", color: \"yellow\", flavor: \"banana\"}}")
        #expect(try rendered("3.14159 = \"pi\"") == "{3: {14159: \"pi\"}}")
        #expect(try rendered("a . \"b.c\" . 'd' = 1") == "{a: {b.c: {d: 1}}}")
        #expect(try rendered("apple.type = \"fruit\"\norange.type = \"fruit\"\napple.skin = \"thin\"")
                == "{apple: {type: \"fruit\", skin: \"thin\"}, orange: {type: \"fruit\"}}")
    }

    @Test(arguments: [
        BadTOML("= 1", "1:1", "missing key before '='"),
        BadTOML("key = ", "1:7", "expected a value"),
        BadTOML("user 1000", "1:6", "expected '=' after key 'user', found '1'"),
        BadTOML("user", "1:5", "expected '=' after key 'user'"),
        BadTOML("user # comment", "1:6", "expected '=' after key 'user'"),
        BadTOML("memory: 1", "1:7", "expected '=' after key 'memory', found ':'"),
        BadTOML("first name = 1", "1:7", "expected '=' after key 'first', found 'n'"),
        BadTOML("a. = 1", "1:4", "missing key before '='"),
        BadTOML("a..b = 1", "1:3", "expected a key, found '.'"),
        BadTOML(".a = 1", "1:1", "expected a key, found '.'"),
        BadTOML("a.\nb = 1", "1:3", "expected a key"),
        BadTOML("ключ = 1", "1:1",
                "expected a key, found 'к' (bare keys allow only A-Z a-z 0-9 _ -; quote this key)"),
        BadTOML("\"\"\"key\"\"\" = 1", "1:1", "a multi-line string cannot be a key"),
        BadTOML("'''key''' = 1", "1:1", "a multi-line string cannot be a key"),
        BadTOML("\"key = 1", "1:1", "unterminated string"),
        BadTOML("a.\"b\".c d = 1", "1:9", "expected '=' after key 'a.b.c', found 'd'"),
        BadTOML("\"a b\".\"\" x = 1", "1:10", "expected '=' after key '\"a b\".\"\"', found 'x'"),
        // Invisible characters are named by code point.
        BadTOML("a\u{A0}= 1", "1:2", "expected '=' after key 'a', found U+00A0"),
        BadTOML("a = 1\n\u{FEFF}b = 2", "2:1",
                "expected a key, found U+FEFF (bare keys allow only A-Z a-z 0-9 _ -; quote this key)"),
        BadTOML("\"a\\u001F\".b c", "1:13", "expected '=' after key '\"a\\u001F\".b', found 'c'"),
    ])
    func malformedKeys(_ bad: BadTOML) {
        check(bad)
    }

    @Test func escapesInQuotedKeys() throws {
        let table = try TOML.parse(#"""
            "\n" = "newline"
            "\u00c0" = "latin"
            "\"quoted\"" = 1
            'back\slash' = 2
            """#)
        #expect(table.keys == ["\n", "À", "\"quoted\"", "back\\slash"])
    }

    @Test func quotedAndBareKeysAreTheSameKey() {
        expectError("spelling = \"favorite\"\n\"spelling\" = \"favourite\"", at: "2:1",
                    "duplicate key 'spelling' (first defined at 1:1)")
        expectError("'a' = 1\na = 2", at: "2:1", "duplicate key 'a' (first defined at 1:1)")
        expectError("\"\" = 1\n'' = 2", at: "2:1", "duplicate key '\"\"' (first defined at 1:1)")
        expectError("\"\\u0061\" = 1\na = 2", at: "2:1", "duplicate key 'a' (first defined at 1:1)")
    }

    @Test func unicodeKeysAndValues() throws {
        let table = try TOML.parse("\"ключ\" = \"значение\"\n\"😀\".\"é\" = 'ü'")
        #expect(table["ключ"]?.string == "значение")
        #expect(table["😀"]?.table?["é"]?.string == "ü")
    }
}

// MARK: - Tables and arrays of tables

@Suite("TOML tables")
struct TOMLTableTests {
    @Test func standardTables() throws {
        #expect(try rendered("[table-1]\nkey1 = \"some string\"\nkey2 = 123\n\n[table-2]\nkey1 = \"another string\"\nkey2 = 456")
                == "{table-1: {key1: \"some string\", key2: 123}, table-2: {key1: \"another string\", key2: 456}}")
        #expect(try rendered("[dog.\"tater.man\"]\ntype.name = \"pug\"") == "{dog: {tater.man: {type: {name: \"pug\"}}}}")
        #expect(try rendered("[a.b.c]\n[ d.e.f ]\n[ g .  h  . i ]\n[ j . \"ʞ\" . 'l' ]")
                == "{a: {b: {c: {}}}, d: {e: {f: {}}}, g: {h: {i: {}}}, j: {ʞ: {l: {}}}}")
        #expect(try rendered("[x.y.z.w]\n[x]") == "{x: {y: {z: {w: {}}}}}")
        #expect(try rendered("a = 1\n[t]\nb = 2\n[u]\nc = 3") == "{a: 1, t: {b: 2}, u: {c: 3}}")
        #expect(try rendered("[\"\"]\na = 1") == "{: {a: 1}}")
    }

    @Test func arraysOfTables() throws {
        let text = """
            [[products]]
            name = "Hammer"
            sku = 738594937

            [[products]]  # empty table within the array

            [[products]]
            name = "Nail"
            sku = 284758393

            color = "gray"
            """
        #expect(try rendered(text)
                == "{products: [{name: \"Hammer\", sku: 738594937}, {}, {name: \"Nail\", sku: 284758393, color: \"gray\"}]}")
    }

    @Test func nestedArraysOfTables() throws {
        let text = """
            [[fruits]]
            name = "apple"

            [fruits.physical]  # subtable
            color = "red"
            shape = "round"

            [[fruits.varieties]]  # nested array of tables
            name = "red delicious"

            [[fruits.varieties]]
            name = "granny smith"


            [[fruits]]
            name = "banana"

            [[fruits.varieties]]
            name = "plantain"
            """
        #expect(try rendered(text) == """
            {fruits: [{name: "apple", physical: {color: "red", shape: "round"}, \
            varieties: [{name: "red delicious"}, {name: "granny smith"}]}, \
            {name: "banana", varieties: [{name: "plantain"}]}]}
            """)
    }

    @Test func headerSyntaxErrors() {
        expectError("[]", at: "1:2", "expected a key")
        expectError("[a", at: "1:3", "expected ']' to close table header, found end of file")
        expectError("[a\nb = 1", at: "1:3", "expected ']' to close table header, found end of line")
        expectError("[a.]", at: "1:4", "expected a key")
        expectError("[a b]", at: "1:4", "expected ']' to close table header, found 'b'")
        expectError("[[a]", at: "1:5", "expected ']]' to close array-of-tables header, found end of file")
        expectError("[[a] ]", at: "1:5", "expected ']]' to close array-of-tables header, found ' '")
        expectError("[ [a]]", at: "1:3", "expected a key, found '['")
        expectError("[a]]", at: "1:4", "expected end of line after table header, found ']'")
        expectError("[a] b = 1", at: "1:5", "expected end of line after table header, found 'b'")
        expectError("[a = 1]", at: "1:4", "expected ']' to close table header, found '='")
    }
}

// MARK: - Redefinition rules

@Suite("TOML redefinition rules")
struct TOMLRedefinitionTests {
    @Test(arguments: [
        // Super-tables may be defined after their sub-tables.
        ("[x.y.z.w]\n[x]", "{x: {y: {z: {w: {}}}}}"),
        ("[a.b.c]\nanswer = 42\n[a]\nbetter = 43", "{a: {b: {c: {answer: 42}}, better: 43}}"),
        // [table] may add sub-tables to a table made by dotted keys.
        ("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple.texture]\nsmooth = true",
         "{fruit: {apple: {color: \"red\", taste: {sweet: true}, texture: {smooth: true}}}}"),
        ("a.b = 1\n[a.c]\nd = 2", "{a: {b: 1, c: {d: 2}}}"),
        // Dotted keys may extend a table that headers only created implicitly.
        ("[a.b.c]\n[a]\nb.d = 1", "{a: {b: {c: {}, d: 1}}}"),
        ("[[a.b]]\nx = 1\n[a]\ny = 2", "{a: {b: [{x: 1}], y: 2}}"),
        // Each [[a]] starts a new element, so [a.b] may follow each one.
        ("[[a]]\n[a.b]\nx = 1\n[[a]]\n[a.b]\nx = 2", "{a: [{b: {x: 1}}, {b: {x: 2}}]}"),
        ("[a]\n[b]\n[a.c]", "{a: {c: {}}, b: {}}"),
        ("[[albums.songs]]\nname = \"Glory Days\"", "{albums: {songs: [{name: \"Glory Days\"}]}}"),
        ("[[a.b]]\n[a]\n[[a.b]]", "{a: {b: [{}, {}]}}"),
        ("t = { a.b = 1, a.c = 2 }", "{t: {a: {b: 1, c: 2}}}"),
        ("[a]\nb.c.d = 1\n[a.b.x.y]", "{a: {b: {c: {d: 1}, x: {y: {}}}}}"),
    ])
    func validRedefinitions(_ text: String, _ expected: String) throws {
        #expect(try rendered(text) == expected)
    }

    @Test(arguments: [
        BadTOML("name = \"Tom\"\nname = \"Pradyun\"", "2:1", "duplicate key 'name' (first defined at 1:1)"),
        BadTOML("[limits]\nmemory = 1\n  memory = 2", "3:3", "duplicate key 'memory' (first defined at 2:1)"),
        BadTOML("a.b = 1\na.b = 2", "2:3", "duplicate key 'a.b' (first defined at 1:3)"),
        BadTOML("a.b = 1\na = 2", "2:1", "duplicate key 'a' (first defined at 1:1)"),
        BadTOML("fruit.apple = 1\nfruit.apple.smooth = true", "2:7",
                "'fruit.apple' is already an integer (defined at 1:7), not a table"),
        BadTOML("a = 1\na.b = 2", "2:1", "'a' is already an integer (defined at 1:1), not a table"),
        BadTOML("a = \"s\"\na.b = 2", "2:1", "'a' is already a string (defined at 1:1), not a table"),
        BadTOML("a = [{ b = 1 }]\na.c = 2", "2:1", "'a' is already an array (defined at 1:1), not a table"),
        // [table] twice, in all its forms.
        BadTOML("[fruit]\napple = \"red\"\n[fruit]\norange = \"orange\"", "3:1", "table [fruit] is already defined at 1:1"),
        BadTOML("[a.b]\n[a]\n[a]", "3:1", "table [a] is already defined at 2:1"),
        BadTOML("[a]\n[a.b]\n[a.b]", "3:1", "table [a.b] is already defined at 2:1"),
        BadTOML("[a]\n['a']", "2:1", "table [a] is already defined at 1:1"),
        BadTOML("[fruit]\napple = \"red\"\n[fruit.apple]\ntexture = \"smooth\"", "3:1",
                "'fruit.apple' is already a string (defined at 2:1), not a table"),
        BadTOML("[a]\nb = 1\n[a.b.c]", "3:4", "'a.b' is already an integer (defined at 2:1), not a table"),
        BadTOML("a = 1\n[a]", "2:1", "'a' is already an integer (defined at 1:1), not a table"),
        // [table] after dotted keys defined it.
        BadTOML("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple]", "4:1",
                "table [fruit.apple] is already defined by dotted keys at 2:1"),
        BadTOML("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple.taste]", "4:1",
                "table [fruit.apple.taste] is already defined by dotted keys at 3:7"),
        BadTOML("a.b.c = 1\n[a]", "2:1", "table [a] is already defined by dotted keys at 1:1"),
        BadTOML("[t1]\nt2.t3.v = 0\n[t1.t2]", "3:1", "table [t1.t2] is already defined by dotted keys at 2:1"),
        BadTOML("[a.b.c]\n[a]\nb.d = 1\n[a.b]", "4:1", "table [a.b] is already defined by dotted keys at 1:4"),
        // Dotted keys into a table that a header defined.
        BadTOML("[a.b.c]\nz = 9\n[a]\nb.c.t = 1", "4:3",
                "cannot add keys to table 'b.c' with dotted keys: it was defined by a [table] header at 1:1"),
        BadTOML("[a.b.c.d]\nz = 9\n[a]\nb.c.d.k.t = 1", "4:5",
                "cannot add keys to table 'b.c.d' with dotted keys: it was defined by a [table] header at 1:1"),
        BadTOML("[[a.b]]\n[a]\nb.y = 2", "3:1",
                "cannot add keys to 'b' with dotted keys: it is an array of tables (defined at 1:1)"),
        BadTOML("[[tab.arr]]\n[tab]\narr.val1 = 1", "3:1",
                "cannot add keys to 'arr' with dotted keys: it is an array of tables (defined at 1:1)"),
        // Inline tables are complete once closed.
        BadTOML("[product]\ntype = { name = \"Nail\" }\ntype.edible = false", "3:1",
                "inline table 'type' (defined at 2:1) cannot be extended"),
        BadTOML("[product]\ntype.name = \"Nail\"\ntype = { edible = false }", "3:1",
                "duplicate key 'type' (first defined at 2:1)"),
        BadTOML("a = {}\n[a]", "2:1", "table [a] is already defined as an inline table at 1:1"),
        BadTOML("a = {}\n[a.b]", "2:2", "inline table 'a' (defined at 1:1) cannot be extended"),
        BadTOML("a = { b = { c = 1 } }\n[a.b.d]", "2:2", "inline table 'a' (defined at 1:1) cannot be extended"),
        BadTOML("a = { b = { c = 1 } }\na.b.d = 2", "2:1", "inline table 'a' (defined at 1:1) cannot be extended"),
        BadTOML("a = {}\n[[a]]", "2:1", "[[a]] conflicts with inline table 'a' defined at 1:1"),
        // Static arrays cannot be appended to, or reached into, by headers.
        BadTOML("fruits = []\n[[fruits]]", "2:1", "cannot append to static array 'fruits' (defined at 1:1) with [[fruits]]"),
        BadTOML("a = [{ b = 1 }]\n[a.c]", "2:2", "'a' is already an array (defined at 1:1), not a table"),
        BadTOML("a = [{ b = 1 }]\n[[a.c]]", "2:3", "'a' is already an array (defined at 1:1), not a table"),
        BadTOML("a = [1]\n[a]", "2:1", "'a' is already an array (defined at 1:1), not a table"),
        BadTOML("a = \"x\"\n[[a]]", "2:1", "'a' is already a string (defined at 1:1), not a table"),
        // Tables and arrays of tables do not mix.
        BadTOML("[[fruit]]\nname = \"apple\"\n[[fruit.variety]]\nname = \"red delicious\"\n[fruit.variety]\nname = \"granny smith\"",
                "5:1", "[fruit.variety] conflicts with array of tables [[fruit.variety]] defined at 3:1"),
        BadTOML("[[fruit]]\n[fruit.physical]\ncolor = \"red\"\n[[fruit.physical]]", "4:1",
                "[[fruit.physical]] conflicts with table 'fruit.physical' defined at 2:1"),
        BadTOML("[[albums.songs]]\nname = \"Glory Days\"\n[[albums]]", "3:1",
                "[[albums]] conflicts with table 'albums' defined at 1:3"),
        BadTOML("[[a]]\n[a]", "2:1", "[a] conflicts with array of tables [[a]] defined at 1:1"),
        BadTOML("[a]\n[[a]]", "2:1", "[[a]] conflicts with table 'a' defined at 1:1"),
        BadTOML("a.b = 1\n[[a]]", "2:1", "[[a]] conflicts with table 'a' defined at 1:1"),
        BadTOML("[a]\nb = 1\n[[a.b]]", "3:1", "'a.b' is already an integer (defined at 2:1), not a table"),
    ])
    func invalidRedefinitions(_ bad: BadTOML) {
        check(bad)
    }
}

// MARK: - Positions

@Suite("TOML positions")
struct TOMLPositionTests {
    @Test func keysValuesAndTables() throws {
        let table = try TOML.parse("""
            name = "alice"
            [limits]
              memory   =  "512M"
            [[mount]]
            host = "/opt"
            [[mount]]
            """)
        let name = try #require(table.entry("name"))
        #expect(name.keyLocation == loc(1, 1))
        #expect(name.node.location == loc(1, 8))

        let limits = try #require(table.entry("limits"))
        #expect(limits.keyLocation == loc(2, 2))
        #expect(limits.node.location == loc(2, 1))
        #expect(limits.node.table?.location == loc(2, 1))
        let memory = try #require(limits.node.table?.entry("memory"))
        #expect(memory.keyLocation == loc(3, 3))
        #expect(memory.node.location == loc(3, 15))

        let mount = try #require(table.entry("mount"))
        #expect(mount.keyLocation == loc(4, 3))
        #expect(mount.node.location == loc(4, 1))
        let elements = try #require(mount.node.array)
        #expect(elements.map(\.location) == [loc(4, 1), loc(6, 1)])
        #expect(elements.map { $0.table?.location } == [loc(4, 1), loc(6, 1)])
        let host = try #require(elements[0].table?.entry("host"))
        #expect(host.keyLocation == loc(5, 1))
        #expect(host.node.location == loc(5, 8))
        #expect(table.location == loc(1, 1))
    }

    @Test func dottedKeysAndImplicitTables() throws {
        let table = try TOML.parse("a.b.c = 1\n[x.y.z]\n[x]")
        let a = try #require(table.entry("a"))
        #expect(a.keyLocation == loc(1, 1))
        #expect(a.node.location == loc(1, 1))
        let b = try #require(a.node.table?.entry("b"))
        #expect(b.keyLocation == loc(1, 3))
        #expect(b.node.location == loc(1, 3))
        let c = try #require(b.node.table?.entry("c"))
        #expect(c.keyLocation == loc(1, 5))
        #expect(c.node.location == loc(1, 9))

        // `x` is first mentioned in [x.y.z] and later defined by [x]; `y` stays implicit.
        let x = try #require(table.entry("x"))
        #expect(x.keyLocation == loc(2, 2))
        #expect(x.node.location == loc(3, 1))
        let y = try #require(x.node.table?.entry("y"))
        #expect(y.keyLocation == loc(2, 4))
        #expect(y.node.location == loc(2, 4))
        let z = try #require(y.node.table?.entry("z"))
        #expect(z.keyLocation == loc(2, 6))
        #expect(z.node.location == loc(2, 1))
    }

    @Test func containerElements() throws {
        let table = try TOML.parse("a = [ 1, \"two\",\n  [3], { t = 4 } ]\nb = { x = 1, y = [ 2 ] }")
        let a = try #require(table["a"])
        #expect(a.location == loc(1, 5))
        let elements = try #require(a.array)
        #expect(elements.map(\.location) == [loc(1, 7), loc(1, 10), loc(2, 3), loc(2, 8)])
        #expect(elements[2].array?.first?.location == loc(2, 4))
        #expect(elements[3].table?.location == loc(2, 8))
        #expect(elements[3].table?.entry("t")?.keyLocation == loc(2, 10))
        #expect(elements[3].table?["t"]?.location == loc(2, 14))
        let b = try #require(table["b"]?.table)
        #expect(b.location == loc(3, 5))
        #expect(b.entry("x")?.keyLocation == loc(3, 7))
        #expect(b.entry("y")?.keyLocation == loc(3, 14))
        #expect(b["y"]?.location == loc(3, 18))
        #expect(b["y"]?.array?.first?.location == loc(3, 20))
    }

    @Test func valuesAfterMultilineStrings() throws {
        let table = try TOML.parse("s = \"\"\"\none\ntwo\"\"\"\nn = 1\nm = '''x\n''' # c\nk = 2")
        #expect(table["s"]?.location == loc(1, 5))
        #expect(table.entry("n")?.keyLocation == loc(4, 1))
        #expect(table["n"]?.location == loc(4, 5))
        #expect(table.entry("k")?.keyLocation == loc(7, 1))
    }

    /// Columns count Unicode scalars: a 4-byte emoji is one column, a combining
    /// accent is its own column, a tab is one column.
    @Test func columnsCountUnicodeScalars() throws {
        let cyrillic = try TOML.parse("\"ключ\" = \"значение\"")
        #expect(cyrillic.entry("ключ")?.keyLocation == loc(1, 1))
        #expect(cyrillic["ключ"]?.location == loc(1, 10))

        let emoji = try TOML.parse("a = { e = \"😀\", n = 1 }")
        #expect(emoji["a"]?.table?.entry("n")?.keyLocation == loc(1, 16))
        #expect(emoji["a"]?.table?["n"]?.location == loc(1, 20))

        let combining = try TOML.parse("x = { a = \"e\u{301}\", b = 2 }")
        #expect(combining["x"]?.table?.entry("b")?.keyLocation == loc(1, 17))

        let tab = try TOML.parse("\ta\t=\t1")
        #expect(tab.entry("a")?.keyLocation == loc(1, 2))
        #expect(tab["a"]?.location == loc(1, 6))

        expectError("\"é\" = 1\n\"😀😀\" = \"x\" y", at: "2:12", "expected end of line after value, found 'y'")
        expectError("s = \"ü\u{07}\"", at: "1:7", "control character U+0007 must be escaped in a string")
    }

    @Test func byteOrderMarkTakesNoColumn() throws {
        let table = try TOML.parse("\u{FEFF}a = 1\nb = 2")
        #expect(table.entry("a")?.keyLocation == loc(1, 1))
        #expect(table["a"]?.location == loc(1, 5))
        #expect(table.entry("b")?.keyLocation == loc(2, 1))
        expectError("\u{FEFF}a = ?", at: "1:5", "expected a value, found '?'")
    }

    @Test func crlfPositions() throws {
        let table = try TOML.parse("a = 1\r\n\r\n  b = \"x\"\r\n")
        #expect(table.entry("b")?.keyLocation == loc(3, 3))
        #expect(table["b"]?.location == loc(3, 7))
        expectError("a = 1\r\nb = 1\r\nb = 2\r\n", at: "3:1", "duplicate key 'b' (first defined at 2:1)")
    }

    @Test func descriptions() {
        #expect(loc(12, 5).description == "12:5")
        #expect(TOMLError(location: loc(12, 5), message: "unknown key 'memroy' in [limits]").description
                == "12:5: unknown key 'memroy' in [limits]")
        #expect(loc(1, 9) < loc(2, 1))
        #expect(loc(2, 1) < loc(2, 3))
        guard let error = failure("a = 1\na = 2") else {
            Issue.record("expected an error")
            return
        }
        #expect("\(error)" == "2:1: duplicate key 'a' (first defined at 1:1)")
    }
}

// MARK: - Limits

@Suite("TOML nesting limits")
struct TOMLLimitTests {
    @Test func nestingUpToTheLimitParses() throws {
        let depth = TOML.maximumNestingDepth
        let arrays = "a = " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        var node = try #require(try TOML.parse(arrays)["a"])
        var levels = 1
        while let inner = node.array?.first {
            node = inner
            levels += 1
        }
        #expect(levels == depth)

        let keys = (0...depth).map { _ in "k" }.joined(separator: ".") + " = 1"
        #expect(try TOML.parse(keys)["k"] != nil)
    }

    @Test func nestingBeyondTheLimitIsAnError() {
        let depth = TOML.maximumNestingDepth
        let message = "nesting is too deep (limit \(depth) levels)"
        let arrays = "a = " + String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
        expectError(arrays, at: "1:\(5 + depth)", message)
        expectError("a = " + String(repeating: "{b=", count: depth + 1), at: "1:\(5 + depth * 3)", message)
        // 130 segments: the 129th table of the prefix is one level too deep.
        let keys = (0...(depth + 1)).map { _ in "k" }.joined(separator: ".") + " = 1"
        expectError(keys, at: "1:\(1 + depth * 2)", message)
        // 129 segments: the header's own table is one level too deep.
        let header = "[" + (0...depth).map { _ in "k" }.joined(separator: ".") + "]"
        expectError(header, at: "1:1", message)
        // Hostile input fails cleanly instead of exhausting the stack.
        #expect(failure("a = " + String(repeating: "[", count: 100_000))?.message == message)
        #expect(failure(String(repeating: "a.", count: 100_000) + "a = 1")?.message == message)
    }
}

// MARK: - Large documents

@Suite("TOML large documents")
struct TOMLLargeDocumentTests {
    /// Past a few keys the parser switches from a linear scan to a hashed index.
    @Test func largeTablesKeepOrderAndCatchDuplicates() throws {
        let lines = (0..<100).map { "key\($0) = \($0)" }
        let table = try TOML.parse(lines.joined(separator: "\n"))
        #expect(table.keys == (0..<100).map { "key\($0)" })
        #expect(table["key77"]?.integer == 77)
        #expect(table.entry("key99")?.keyLocation == loc(100, 1))

        for duplicate in [3, 15, 16, 60] {
            expectError((lines + ["key\(duplicate) = 0"]).joined(separator: "\n"), at: "101:1",
                        "duplicate key 'key\(duplicate)' (first defined at \(duplicate + 1):1)")
        }
        let headers = (0..<40).map { "[t\($0)]" } + ["[t20]"]
        expectError(headers.joined(separator: "\n"), at: "41:1", "table [t20] is already defined at 21:1")
    }

    @Test func manyArrayOfTablesElements() throws {
        let text = (0..<500).map { "[[item]]\nid = \($0)" }.joined(separator: "\n")
        let items = try #require(try TOML.parse(text)["item"]?.array)
        #expect(items.count == 500)
        #expect(items[499].table?["id"]?.integer == 499)
        #expect(items[499].location == loc(999, 1))
    }
}

@Suite("TOML hostile input")
struct TOMLHostileInputTests {
    @Test func hugeTokensAreCutInMessages() {
        let digits = String(repeating: "9", count: 100_000)
        expectError("v = \(digits)", at: "1:5", "integer \(String(repeating: "9", count: 128))... does not fit in 64 bits")
        expectError("v = 1\(String(repeating: "x", count: 200))", at: "1:5",
                    "invalid number '1\(String(repeating: "x", count: 127))...'")
    }
}

// MARK: - Encoding

/// ASCII parts of a byte document, so the bytes under test stand out:
/// `u8("# caf") + [0xFF]`.
private func u8(_ text: String) -> [UInt8] { Array(text.utf8) }

private func expectUTF8Error(_ input: [UInt8], at location: String, _ detail: String,
                             sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    do {
        _ = try TOML.parse(utf8: input)
        Issue.record("parsed without error: \(input)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.location.description == location, "\(error)", sourceLocation: sourceLocation)
        #expect(error.message == "invalid UTF-8: \(detail); TOML files must be UTF-8, so save the file as UTF-8 "
                + "(an editor may have written it as Latin-1 or Windows-1252)", sourceLocation: sourceLocation)
    }
}

@Suite("TOML encoding")
struct TOMLEncodingTests {
    @Test func validUTF8ParsesAsText() throws {
        let text = "\u{FEFF}s = \"é€😀\" # ü and a C1 control \u{85}\n'k€' = 'x'\n"
        let table = try TOML.parse(utf8: Array(text.utf8))
        #expect(render(table) == (try rendered(text)))
        #expect(table["s"]?.string == "é€😀")
        #expect(table.entry("k€")?.keyLocation == loc(2, 1))
    }

    @Test func invalidByteInComment() {
        expectUTF8Error(u8("# caf") + [0xFF] + u8("\nname = 1\n"), at: "1:6", "byte 0xFF never appears in UTF-8")
        expectUTF8Error(u8("a = 1\n# caf") + [0xE9] + u8(" au lait\n"), at: "2:6",
                        "the sequence 0xE9 is cut short (3 bytes expected)")
    }

    @Test func overlongEncodings() {
        // "/" as two and as three bytes.
        expectUTF8Error(u8("v = \"a") + [0xC0, 0xAF] + u8("\""), at: "1:7", "byte 0xC0 only starts overlong encodings")
        expectUTF8Error(u8("v = \"a") + [0xE0, 0x80, 0xAF] + u8("\""), at: "1:7", "bytes 0xE0 0x80 are an overlong encoding")
        expectUTF8Error(u8("v = 'a") + [0xF0, 0x80, 0x80, 0xAF] + u8("'"), at: "1:7", "bytes 0xF0 0x80 are an overlong encoding")
    }

    @Test func encodedSurrogate() {
        expectUTF8Error(u8("v = \"") + [0xED, 0xA0, 0x80] + u8("\""), at: "1:6",
                        "bytes 0xED 0xA0 encode a surrogate (U+D800 to U+DFFF), which is not a character")
        expectUTF8Error(u8("v = '''\n") + [0xED, 0xBF, 0xBF] + u8("'''"), at: "2:1",
                        "bytes 0xED 0xBF encode a surrogate (U+D800 to U+DFFF), which is not a character")
    }

    @Test func outOfRangeAndStrayBytes() {
        expectUTF8Error(u8("# ") + [0xF4, 0x90, 0x80, 0x80], at: "1:3", "bytes 0xF4 0x90 encode a value above U+10FFFF")
        expectUTF8Error(u8("# ") + [0xF5, 0x80, 0x80, 0x80], at: "1:3", "byte 0xF5 never appears in UTF-8")
        expectUTF8Error(u8("# x") + [0x80], at: "1:4", "byte 0x80 is a continuation byte with no character to continue")
    }

    @Test func truncatedSequences() {
        // "€" is E2 82 AC.
        expectUTF8Error(u8("# ") + [0xE2, 0x82], at: "1:3", "the file ends inside the sequence 0xE2 0x82")
        expectUTF8Error(u8("v = \"") + [0xE2, 0x82] + u8("\""), at: "1:6", "the sequence 0xE2 0x82 is cut short (3 bytes expected)")
        expectUTF8Error(u8("v = 1\n") + [0xF0, 0x9F, 0x98], at: "2:1", "the file ends inside the sequence 0xF0 0x9F 0x98")
        // A byte order mark cut short is not one.
        expectUTF8Error([0xEF, 0xBB], at: "1:1", "the file ends inside the sequence 0xEF 0xBB")
    }

    @Test func columnsCountCharactersBeforeTheBadByte() {
        expectUTF8Error(u8("\u{FEFF}s = \"é😀") + [0xFF] + u8("\""), at: "1:8", "byte 0xFF never appears in UTF-8")
        expectUTF8Error(u8("\u{FEFF}") + [0xFF], at: "1:1", "byte 0xFF never appears in UTF-8")
    }

    /// The whole file is checked before it is parsed, so a bad byte is reported even
    /// when a syntax error comes earlier.
    @Test func checkedBeforeParsing() {
        expectUTF8Error(u8("a = \n# ") + [0xFF], at: "2:3", "byte 0xFF never appears in UTF-8")
    }
}
