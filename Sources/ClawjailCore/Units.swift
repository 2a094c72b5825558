/// Sizes ("512M", "1G", "65536") and durations ("10m", "1h30m", "250ms").
public enum Units {
    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case malformed(String)
        case zero
        case negative
        case overflow
        case missingUnit(String)

        public var description: String {
            switch self {
            case .empty: return "empty value"
            case .malformed(let why): return why
            case .zero: return "must be greater than zero"
            case .negative: return "must not be negative"
            case .overflow: return "is too large"
            case .missingUnit(let v): return "'\(v)' has no unit; write e.g. '\(v)s' or '\(v)m'"
            }
        }
    }

    /// Binary sizes: plain bytes, or a number followed by K, M, G or T (also KiB, MiB, ...
    /// and the lower-case forms). Zero, negative and overflowing values are errors.
    public static func parseSize(_ text: String) throws(ParseError) -> UInt64 {
        let s = String(text.trimming(" \t"))
        guard !s.isEmpty else { throw .empty }
        if s.hasPrefix("-") { throw .negative }
        let digits = s.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty else { throw .malformed("'\(text)' is not a size; write bytes or e.g. 512M, 2G") }
        var suffix = String(s.dropFirst(digits.count))
        if suffix.hasPrefix(".") {
            throw .malformed("'\(text)' has a fraction; write a whole number of a smaller unit (e.g. 1536M)")
        }
        suffix = suffix.trimming(" \t").uppercased()
        let shift: UInt64
        switch suffix {
        case "", "B": shift = 0
        case "K", "KB", "KIB": shift = 10
        case "M", "MB", "MIB": shift = 20
        case "G", "GB", "GIB": shift = 30
        case "T", "TB", "TIB": shift = 40
        default: throw .malformed("'\(text)' has an unknown unit '\(suffix)'; use K, M, G or T (binary)")
        }
        guard let n = UInt64(digits) else { throw .overflow }
        if n == 0 { throw .zero }
        let (value, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        if overflow || value > UInt64(Int64.max) { throw .overflow }
        return value
    }

    /// Durations in milliseconds: "250ms", "30s", "10m", "2h", and sums like "1h30m".
    /// "0" alone means "no limit" and returns 0 when `allowZero` is set.
    public static func parseDuration(_ text: String, allowZero: Bool) throws(ParseError) -> UInt64 {
        let s = String(text.trimming(" \t"))
        guard !s.isEmpty else { throw .empty }
        if s.hasPrefix("-") { throw .negative }
        if s == "0" {
            if allowZero { return 0 }
            throw .zero
        }
        var total: UInt64 = 0
        var rest = Substring(s)
        while !rest.isEmpty {
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty else {
                throw .malformed("'\(text)' is not a duration; write e.g. 500ms, 30s, 10m, 1h30m")
            }
            rest = rest.dropFirst(digits.count)
            if rest.hasPrefix(".") {
                throw .malformed("'\(text)' has a fraction; write a sum of whole units (e.g. 1h30m)")
            }
            let unit = rest.prefix(while: { $0.isLetter })
            rest = rest.dropFirst(unit.count)
            let factor: UInt64
            switch unit {
            case "ms": factor = 1
            case "s": factor = 1000
            case "m": factor = 60_000
            case "h": factor = 3_600_000
            case "": throw .missingUnit(String(digits))
            default: throw .malformed("'\(text)' has an unknown unit '\(unit)'; use ms, s, m or h")
            }
            guard let n = UInt64(digits) else { throw .overflow }
            let (part, o1) = n.multipliedReportingOverflow(by: factor)
            let (sum, o2) = total.addingReportingOverflow(part)
            if o1 || o2 || sum > UInt64(Int64.max) / 1_000_000 { throw .overflow }
            total = sum
        }
        if total == 0 {
            if allowZero { return 0 }
            throw .zero
        }
        return total
    }

    /// 536870912 -> "512M"; exact binary units only, bytes otherwise.
    public static func formatSize(_ bytes: UInt64) -> String {
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] as [(UInt64, String)] {
            let unitSize: UInt64 = 1 << shift
            if bytes >= unitSize && bytes % unitSize == 0 { return "\(bytes / unitSize)\(unit)" }
        }
        return "\(bytes)"
    }

    /// 5400000 -> "1h30m"
    public static func formatDuration(_ ms: UInt64) -> String {
        if ms == 0 { return "0" }
        var rest = ms
        var out = ""
        for (size, unit) in [(3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")] as [(UInt64, String)] {
            if rest >= size {
                out += "\(rest / size)\(unit)"
                rest %= size
            }
        }
        return out
    }

    /// A strict decimal integer: optional digits only, no sign, no leading zeros (except
    /// "0"), no whitespace, no base prefixes. "1" is 1; "01", "+1", " 1" and "0x1" are not
    /// numbers. (CVE-2026-30892: a lenient parser turned "1" into 0.)
    public static func parseStrictDecimal(_ text: String) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        if text.count > 1 && text.hasPrefix("0") { return nil }
        return UInt64(text)
    }
}
