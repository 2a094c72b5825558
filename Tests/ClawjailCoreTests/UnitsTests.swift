import Testing
@testable import ClawjailCore

@Suite("Units: sizes")
struct SizeTests {
    @Test("plain bytes and binary K, M, G, T in either case", arguments: [
        ("1", UInt64(1)), ("65536", 65536), ("4096B", 4096), ("1K", 1024), ("1k", 1024), ("1KB", 1024), ("1KiB", 1024),
        ("512M", 512 << 20), ("512m", 512 << 20), ("1MiB", 1 << 20), ("2G", 2 << 30), ("1gib", 1 << 30),
        ("1T", 1 << 40), ("3TB", 3 << 40), ("00512M", 512 << 20),
        // The largest value that still fits an Int64 (what the kernel interfaces take).
        ("8388607T", 8_388_607 << 40), ("9223372036854775807", UInt64(Int64.max)),
    ] as [(String, UInt64)])
    func accepted(text: String, bytes: UInt64) throws {
        #expect(try Units.parseSize(text) == bytes)
    }

    @Test("surrounding spaces and tabs are ignored")
    func spaces() throws {
        #expect(try Units.parseSize(" 512M\t") == 512 << 20)
    }

    @Test("empty, zero, negative and overflowing sizes are errors", arguments: [
        ("", Units.ParseError.empty), ("   ", .empty),
        ("0", .zero), ("0K", .zero), ("000", .zero), ("0T", .zero),
        ("-1", .negative), ("-512M", .negative), ("-0", .negative),
        ("99999999999999999999", .overflow),           // more than UInt64
        ("9223372036854775808", .overflow),            // more than Int64
        ("8388608T", .overflow),                       // 2^63
        ("16777216T", .overflow),                      // 2^64: wraps to 0 without the check
        ("17179869184G", .overflow),                   // 2^64
    ])
    func refused(text: String, error: Units.ParseError) {
        #expect(throws: error) { try Units.parseSize(text) }
    }

    @Test("fractions, unknown units and non-numbers are malformed, with a message that says why", arguments: [
        ("1.5G", "has a fraction"), ("0.5", "has a fraction"), ("512X", "unknown unit 'X'"), ("1P", "unknown unit 'P'"),
        ("1E", "unknown unit 'E'"), ("1e3", "unknown unit 'E3'"), ("0x10", "unknown unit 'X10'"), ("1 2", "unknown unit '2'"),
        ("1MM", "unknown unit 'MM'"), ("M", "is not a size"), ("+1", "is not a size"), ("K512", "is not a size"),
        ("١٢", "is not a size"), ("１K", "is not a size"),
    ])
    func malformed(text: String, why: String) {
        do {
            let v = try Units.parseSize(text)
            Issue.record("\(text.debugDescription) parsed as \(v)")
        } catch {
            guard case .malformed(let message) = error else {
                Issue.record("\(text.debugDescription): \(error), not malformed")
                return
            }
            #expect(message.contains(why), "\(message)")
            #expect(message.contains("'\(text)'"))
        }
    }

    @Test("formatSize uses the largest exact unit", arguments: [
        (UInt64(512) << 20, "512M"), (1 << 30, "1G"), (1536 << 20, "1536M"), (1024, "1K"), (1000, "1000"),
        (1, "1"), (3 << 40, "3T"), (1025, "1025"),
    ] as [(UInt64, String)])
    func format(bytes: UInt64, text: String) throws {
        #expect(Units.formatSize(bytes) == text)
        #expect(try Units.parseSize(text) == bytes)
    }
}

@Suite("Units: durations")
struct DurationTests {
    @Test("ms, s, m, h and sums of them", arguments: [
        ("250ms", UInt64(250)), ("1ms", 1), ("30s", 30_000), ("10m", 600_000), ("2h", 7_200_000),
        ("1h30m", 5_400_000), ("1m30s500ms", 90_500), ("90m", 5_400_000), ("1h1h", 7_200_000), (" 10m ", 600_000),
        ("2562047h", 2_562_047 * 3_600_000),   // the largest whole hour that fits in Int64 nanoseconds
    ] as [(String, UInt64)])
    func accepted(text: String, ms: UInt64) throws {
        #expect(try Units.parseDuration(text, allowZero: false) == ms)
        #expect(try Units.parseDuration(text, allowZero: true) == ms)
    }

    @Test("\"0\" means no limit only where that is allowed", arguments: ["0", "0s", "0m", "0h0m"])
    func zero(text: String) throws {
        #expect(try Units.parseDuration(text, allowZero: true) == 0)
        #expect(throws: Units.ParseError.zero) { try Units.parseDuration(text, allowZero: false) }
    }

    @Test("refused durations", arguments: [
        ("", Units.ParseError.empty),
        ("-5m", .negative), ("-0", .negative),
        ("30", .missingUnit("30")), ("1h30", .missingUnit("30")), ("00", .missingUnit("00")),
        ("99999999999999999999h", .overflow), ("2562048h", .overflow), ("9223372036854775807ms", .overflow),
    ])
    func refused(text: String, error: Units.ParseError) {
        #expect(throws: error) { try Units.parseDuration(text, allowZero: true) }
    }

    @Test("bare numbers say which unit to add")
    func missingUnitMessage() {
        #expect(Units.ParseError.missingUnit("30").description == "'30' has no unit; write e.g. '30s' or '30m'")
    }

    @Test("unknown units, fractions and non-numbers are malformed", arguments: [
        ("10x", "unknown unit 'x'"), ("10M", "unknown unit 'M'"), ("1d", "unknown unit 'd'"), ("10S", "unknown unit 'S'"),
        ("5min", "unknown unit 'min'"), ("1us", "unknown unit 'us'"), ("1.5h", "has a fraction"), ("0.5s", "has a fraction"),
        ("h", "is not a duration"), ("1h 30m", "is not a duration"), ("+5m", "is not a duration"), ("m5", "is not a duration"),
    ])
    func malformed(text: String, why: String) {
        do {
            let v = try Units.parseDuration(text, allowZero: true)
            Issue.record("\(text.debugDescription) parsed as \(v)")
        } catch {
            guard case .malformed(let message) = error else {
                Issue.record("\(text.debugDescription): \(error), not malformed")
                return
            }
            #expect(message.contains(why), "\(message)")
        }
    }

    @Test("formatDuration round-trips", arguments: [
        (UInt64(0), "0"), (250, "250ms"), (30_000, "30s"), (600_000, "10m"), (5_400_000, "1h30m"), (90_500, "1m30s500ms"),
        (7_200_000, "2h"),
    ] as [(UInt64, String)])
    func format(ms: UInt64, text: String) throws {
        #expect(Units.formatDuration(ms) == text)
        #expect(try Units.parseDuration(text, allowZero: true) == ms)
    }
}

@Suite("Units: strict decimals (CVE-2026-30892)")
struct StrictDecimalTests {
    @Test("digits only, no leading zero", arguments: [
        ("0", UInt64(0)), ("1", 1), ("1000", 1000), ("65534", 65534), ("18446744073709551615", UInt64.max),
    ] as [(String, UInt64)])
    func accepted(text: String, value: UInt64) {
        #expect(Units.parseStrictDecimal(text) == value)
    }

    @Test("signs, spaces, prefixes, leading zeros and overflow are not numbers",
          arguments: ["", "01", "00", "+1", "-1", " 1", "1 ", "0x1", "0o1", "0b1", "1.0", "1e3", "1_000", "１", "١",
                      "18446744073709551616", "99999999999999999999"])
    func refused(text: String) {
        #expect(Units.parseStrictDecimal(text) == nil)
    }

    @Test("\"1\" is 1, never 0")
    func one() {
        #expect(Units.parseStrictDecimal("1") == 1)
    }
}
