import ClawjailCore
import ClawjailStore
import ClawjailSystem
import ClawjailRuntime

/// Formatting shared by the operator commands (ps, stats, logs, stop, audit, protect,
/// doctor). Everything that can come from a jail (agent-chosen names in audit payloads,
/// file contents in a diff) goes through `safe` before it reaches a terminal.
public enum OperatorText {
    /// Control characters (C0, DEL, C1) made visible (DisplayText.safe).
    public static func safe(_ text: String) -> String { DisplayText.safe(text) }

    /// One line: like `safe`, with tabs and newlines made visible too.
    public static func safeLine(_ text: String) -> String { DisplayText.safeLine(text) }

    /// 43_253_760 -> "41.2M" (DisplayText.bytes).
    public static func bytes(_ n: UInt64) -> String { DisplayText.bytes(n) }

    /// 11_000 -> "11s", 7_520_000 -> "2h05m", 450 -> "0.45s".
    public static func duration(ms: Int64) -> String {
        let ms = max(0, ms)
        if ms < 1000 { return "\(hundredths(Double(ms) / 1000))s" }
        if ms < 60_000 { return "\(DisplayText.tenths(Double(ms) / 1000))s" }
        let s = ms / 1000
        if s < 3600 { return "\(s / 60)m" + pad2(s % 60) + "s" }
        if s < 86_400 { return "\(s / 3600)h" + pad2(s / 60 % 60) + "m" }
        return "\(s / 86_400)d" + pad2(s / 3600 % 24) + "h"
    }

    static func pad2(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }

    static func hundredths(_ v: Double) -> String {
        let r = Int((v * 100).rounded())
        return "\(r / 100)." + (r % 100 < 10 ? "0" : "") + "\(r % 100)"
    }

    /// Unix milliseconds as RFC 3339 UTC with milliseconds: "2026-03-01T12:00:00.000Z".
    public static func timestamp(ms: Int64) -> String { TimeSpec.format(unixMs: ms) }

    /// A fixed-width table: the last column is never padded.
    public static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows {
            for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) }
        }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (i, c) in cells.enumerated() {
                out += i == cells.count - 1 ? c : c.padding(widths[i] + 2)
            }
            return out + "\n"
        }
        return line(header) + rows.map(line).joined()
    }

    /// A JSON document on one line, as the --json outputs print it.
    public static func json(_ value: JSONValue) -> String {
        ((try? value.canonicalText()) ?? "{}") + "\n"
    }

    /// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
    public static func out(_ text: String) {
        _ = try? FD.standardOutput.writeAll(text)
    }

    public static func optionalInt(_ v: UInt64?) -> JSONValue {
        v.map { .int(Int64(clamping: $0)) } ?? .null
    }
}

extension JSONValue {
    /// `value["a"]["b"]` style lookups for reading manifests and payloads.
    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9e15: return Int64(d)
        default: return nil
        }
    }

    var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }
}
