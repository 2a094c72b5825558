import Testing
@testable import ClawjailStore

@Suite("RFC 3339 timestamps")
struct RFC3339Tests {
    @Test func formatsUTCWithMilliseconds() {
        #expect(RFC3339.format(unixMs: 0) == "1970-01-01T00:00:00.000Z")
        #expect(RFC3339.format(unixMs: 1_700_000_000_123) == "2023-11-14T22:13:20.123Z")
        #expect(RFC3339.format(unixMs: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(RFC3339.format(unixMs: 4_102_444_799_999) == "2099-12-31T23:59:59.999Z")
        #expect(RFC3339.format(unixMs: -1) == "1969-12-31T23:59:59.999Z")
    }
}
