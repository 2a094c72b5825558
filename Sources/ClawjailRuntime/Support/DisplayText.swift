import ClawjailCore

/// Text for the operator's terminal, shared by the runtime's messages and the operator
/// commands (OperatorText). Everything that can come from a jail (agent-chosen names,
/// workspace paths, file contents) goes through `safe` before it reaches a terminal.
public enum DisplayText {
    /// Control characters (C0, DEL, C1) made visible, so that nothing read from the
    /// store or a workspace can drive the operator's terminal.
    public static func safe(_ text: String) -> String {
        let bytes = OutputFilter(secrets: []).escape(Array(text.utf8))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// One line: like `safe`, with tabs and newlines made visible too.
    public static func safeLine(_ text: String) -> String {
        safe(text).replacingAll("\t", with: "\\t").replacingAll("\n", with: "\\n")
    }

    /// 43_253_760 -> "41.2M"; binary units, one decimal below 100.
    public static func bytes(_ n: UInt64) -> String {
        if n < 1024 { return "\(n)B" }
        // Limits are usually exact: "1G", not "1.0G".
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] as [(UInt64, String)] where n % (1 << shift) == 0 {
            return "\(n >> shift)\(unit)"
        }
        var value = Double(n)
        for unit in ["K", "M", "G", "T"] {
            value /= 1024
            if value < 1024 || unit == "T" {
                return value < 100 ? "\(tenths(value))\(unit)" : "\(Int(value.rounded()))\(unit)"
            }
        }
        return "\(n)B"
    }

    public static func tenths(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? "\(Int(r)).0" : "\(r)"
    }
}

extension String {
    /// Padded with spaces to `width` characters, for the columns of a table.
    public func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
