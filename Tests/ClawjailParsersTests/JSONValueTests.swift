import Testing
@testable import ClawjailParsers

@Suite("JSONValue canonical form")
struct JSONValueTests {
    @Test func sortsKeysAndDropsWhitespace() throws {
        let value: JSONValue = ["b": 1, "a": ["z": true, "y": nil], "A": [1, "two", 3.5]]
        #expect(try value.canonicalText() == #"{"A":[1,"two",3.5],"a":{"y":null,"z":true},"b":1}"#)
    }

    @Test func keysSortByUTF16CodeUnits() throws {
        // U+00E9 (é) sorts after "z"; U+1F600 (a surrogate pair, 0xD83D…) after U+00E9.
        let value: JSONValue = ["\u{1F600}": 1, "é": 2, "z": 3, "Z": 4]
        #expect(try value.canonicalText() == "{\"Z\":4,\"z\":3,\"é\":2,\"\u{1F600}\":1}")
    }

    @Test func escapesStringsPerRFC8259() throws {
        let value = JSONValue.string("q\"b\\s/\u{08}\u{0C}\n\r\t\u{01}\u{1F}\u{7F}é\u{2028}")
        // Short escapes where JSON has them, lowercase \u00xx for other control
        // characters, and everything else (DEL, non-ASCII, U+2028) raw.
        #expect(try value.canonicalText() == "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\u{7F}é\u{2028}\"")
    }

    @Test func numbers() throws {
        #expect(try JSONValue.int(-42).canonicalText() == "-42")
        #expect(try JSONValue.int(Int64.max).canonicalText() == "9223372036854775807")
        #expect(try JSONValue.double(3.0).canonicalText() == "3")
        #expect(try JSONValue.double(-0.0).canonicalText() == "0")
        #expect(try JSONValue.double(0.1).canonicalText() == "0.1")
        #expect(try JSONValue.double(1e-7).canonicalText() == "1e-07")
        #expect(try JSONValue.double(1e300).canonicalText() == "1e+300")
        for bad in [Double.nan, .infinity, -.infinity] {
            let error = try #require(throws: JSONError.self) { try JSONValue.double(bad).canonicalText() }
            #expect(error.message.contains("JSON cannot hold"))
        }
    }

    @Test func parseThenEncodeIsAFixedPoint() throws {
        let samples: [JSONValue] = [
            ["n": 1, "d": 1.5, "big": 1e20, "neg": -7, "f": false, "s": "x\ny\u{1}", "nested": [[], [:], [nil]]],
            .double(3.0), .double(0.1), .double(-2.5e-8), .int(Int64.min), .string("é\u{1F600}"),
        ]
        for sample in samples {
            let once = try sample.canonicalText()
            let twice = try JSONValue.parse(once).canonicalText()
            #expect(once == twice)
        }
    }

    @Test func parsesTypesDistinctly() throws {
        #expect(try JSONValue.parse("1") == .int(1))
        #expect(try JSONValue.parse("true") == .bool(true))
        #expect(try JSONValue.parse("1.25") == .double(1.25))
        #expect(try JSONValue.parse(#" { "a" : [ null , "x" ] } "#) == ["a": [nil, "x"]])
        let error = try #require(throws: JSONError.self) { try JSONValue.parse("{nope") }
        #expect(error.message.hasPrefix("not valid JSON"))
    }
}

@Suite("JSON parser")
struct JSONParserTests {
    @Test func acceptsRFC8259Text() throws {
        #expect(try JSONValue.parse(" \t\r\n[1, -0, 0.5, -1.5e+3, 2E-2, 9223372036854775807, 9223372036854775808] ")
                == [1, 0, 0.5, -1500.0, 0.02, .int(Int64.max), .double(9_223_372_036_854_775_808)])
        #expect(try JSONValue.parse(#""a\"b\\c\/d\b\f\n\r\t\u00e9\u0001\ud83d\ude00""#)
                == .string("a\"b\\c/d\u{08}\u{0C}\n\r\té\u{01}\u{1F600}"))
        #expect(try JSONValue.parse(#"{"a":1,"a":2}"#) == ["a": 2])
        #expect(try JSONValue.parse("{}") == [:])
        #expect(try JSONValue.parse("[]") == [])
        #expect(try JSONValue.parse("\"é😀\"") == "é😀")
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: Never.self) { try JSONValue.parse(deep) }
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1", "0x10", "NaN", "Infinity",
        "1e400", "tru", "nul", "\"abc", "\"a\tb\"", "\"\\x\"", "\"\\u12\"", "\"\\ud83d\"", "\"\\ude00\"",
        "\"\\ud83d\\u0041\"", "[1] 2", "{\"a\" 1}", "[1 2]",
    ])
    func rejectsInvalidText(_ text: String) {
        #expect(throws: JSONError.self) { try JSONValue.parse(text) }
    }

    @Test func refusesExcessiveNesting() {
        let deep = String(repeating: "[", count: 201) + String(repeating: "]", count: 201)
        #expect(throws: JSONError.self) { try JSONValue.parse(deep) }
    }
}
