import ClawjailCore
import ClawjailSystem
import ClawjailRuntime

/// Points in time on the command line (`audit export --since TIME`): RFC 3339
/// ("2026-03-01T12:00:00Z", "2026-03-01T14:00:00.5+02:00", "2026-03-01") or an age
/// counted back from now ("24h", "90m", "7d", "1d12h"). No Foundation formatters: the
/// static binary stays small and the parsing stays exact.
public enum TimeSpec {
    /// Unix milliseconds for `text`, relative forms counted back from `nowMs`.
    public static func parse(_ text: String, nowMs: Int64 = ProcessInfoLite.wallClockMilliseconds) throws(ClawjailError) -> Int64 {
        let s = String(text.trimming(" "))
        if let age = relative(s) { return nowMs - age }
        if let t = rfc3339(s) { return t }
        throw ClawjailError(.usage, "'\(OperatorText.safeLine(text))' is not a time",
                            hint: "write an RFC 3339 time (2026-03-01T12:00:00Z, 2026-03-01) or an age such as 30m, 24h, 7d")
    }

    /// "24h" -> 86_400_000; sums of whole units: s, m, h, d, w.
    static func relative(_ s: String) -> Int64? {
        guard !s.isEmpty, let first = s.unicodeScalars.first, ("0"..."9").contains(first) else { return nil }
        var total: Int64 = 0
        var rest = Substring(s)
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 9, let n = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let factor: Int64
            switch unit {
            case "s": factor = 1000
            case "m": factor = 60_000
            case "h": factor = 3_600_000
            case "d": factor = 86_400_000
            case "w": factor = 7 * 86_400_000
            default: return nil
            }
            total += n * factor
        }
        return total
    }

    /// RFC 3339 date-time (or a bare full-date, taken as midnight UTC).
    static func rfc3339(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        func num(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= b.count else { return nil }
            var v: Int64 = 0
            for i in from..<(from + count) {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[i] - 0x30)
            }
            return v
        }
        guard b.count >= 10, let year = num(0, 4), b[4] == 0x2d, let month = num(5, 2), b[7] == 0x2d,
              let day = num(8, 2), (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        if b.count == 10 { return days * 86_400_000 }
        // "T", "t" or a space between date and time.
        guard b.count >= 19, b[10] == 0x54 || b[10] == 0x74 || b[10] == 0x20,
              let hour = num(11, 2), b[13] == 0x3a, let minute = num(14, 2), b[16] == 0x3a, let second = num(17, 2),
              hour < 24, minute < 60, second < 61 else { return nil }
        var i = 19
        var millis: Int64 = 0
        if i < b.count && b[i] == 0x2e {
            i += 1
            var digits = 0
            while i < b.count && b[i] >= 0x30 && b[i] <= 0x39 {
                if digits < 3 { millis = millis * 10 + Int64(b[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { millis *= 10 } }
        }
        guard i < b.count else { return nil }
        var offsetMinutes: Int64 = 0
        if b[i] == 0x5a || b[i] == 0x7a {
            i += 1
        } else if b[i] == 0x2b || b[i] == 0x2d {
            guard let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == 0x3a, let om = num(i + 4, 2), oh < 24, om < 60 else { return nil }
            offsetMinutes = (oh * 60 + om) * (b[i] == 0x2d ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offsetMinutes * 60
        return seconds * 1000 + millis
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Howard Hinnant's days_from_civil (proleptic Gregorian).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// RFC 3339 UTC with milliseconds (the format `audit export` uses for `ts`).
    public static func format(unixMs: Int64) -> String {
        let (seconds, millis) = floorDivide(unixMs, 1000)
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" + pad(secondOfDay / 3600, 2) + ":"
            + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2) + "." + pad(millis, 3) + "Z"
    }

    private static func floorDivide(_ v: Int64, _ d: Int64) -> (Int64, Int64) {
        let r = v % d
        return r < 0 ? (v / d - 1, r + d) : (v / d, r)
    }

    private static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}
