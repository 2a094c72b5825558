import ClawjailParsers

/// Collects config problems so that one run of `clawjail check` reports all of them.
final class Diagnostics {
    let file: String
    var issues: [ConfigIssue] = []
    var warnings: [ConfigIssue] = []

    init(file: String) { self.file = file }

    func error(_ location: SourceLocation?, _ message: String, hint: String? = nil) {
        issues.append(ConfigIssue(file: file, location: location, message: message, hint: hint))
    }

    func warn(_ location: SourceLocation?, _ message: String, hint: String? = nil) {
        warnings.append(ConfigIssue(file: file, location: location, message: message, hint: hint))
    }
}

/// Reads typed values out of one TOML table, remembering which keys were used so that
/// every unknown key is reported with its position (and a suggestion).
struct TableReader {
    let table: TOMLTable
    let context: String          // "[limits]", "top level", "[[mount]] #2"
    let diagnostics: Diagnostics
    private(set) var known: [String] = []

    init(_ table: TOMLTable, context: String, diagnostics: Diagnostics) {
        self.table = table
        self.context = context
        self.diagnostics = diagnostics
    }

    var location: SourceLocation { table.location }

    mutating func node(_ key: String) -> TOMLNode? {
        known.append(key)
        return table[key]
    }

    private func typeError(_ key: String, _ node: TOMLNode, expected: String) {
        diagnostics.error(node.location, "'\(key)' in \(context) must be \(expected), not \(node.typeName)")
    }

    mutating func string(_ key: String) -> (value: String, location: SourceLocation)? {
        guard let n = node(key) else { return nil }
        guard case .string(let s) = n.value else {
            typeError(key, n, expected: "a string")
            return nil
        }
        if s.utf8.contains(0) {
            diagnostics.error(n.location, "'\(key)' contains a NUL byte")
            return nil
        }
        return (s, n.location)
    }

    mutating func bool(_ key: String) -> (value: Bool, location: SourceLocation)? {
        guard let n = node(key) else { return nil }
        guard case .boolean(let b) = n.value else {
            typeError(key, n, expected: "true or false")
            return nil
        }
        return (b, n.location)
    }

    mutating func integer(_ key: String) -> (value: Int64, location: SourceLocation)? {
        guard let n = node(key) else { return nil }
        guard case .integer(let i) = n.value else {
            typeError(key, n, expected: "an integer")
            return nil
        }
        return (i, n.location)
    }

    /// A number that may be written as an integer or a float (cpu = 1 or 1.5).
    mutating func number(_ key: String) -> (value: Double, location: SourceLocation)? {
        guard let n = node(key) else { return nil }
        switch n.value {
        case .integer(let i): return (Double(i), n.location)
        case .float(let d): return (d, n.location)
        default:
            typeError(key, n, expected: "a number")
            return nil
        }
    }

    mutating func stringArray(_ key: String) -> (value: [(String, SourceLocation)], location: SourceLocation)? {
        guard let n = node(key) else { return nil }
        guard case .array(let items) = n.value else {
            typeError(key, n, expected: "an array of strings")
            return nil
        }
        var out: [(String, SourceLocation)] = []
        for item in items {
            guard case .string(let s) = item.value else {
                diagnostics.error(item.location, "'\(key)' in \(context) must hold strings only, not \(item.typeName)")
                continue
            }
            out.append((s, item.location))
        }
        return (out, n.location)
    }

    mutating func table(_ key: String) -> TOMLTable? {
        guard let n = node(key) else { return nil }
        guard case .table(let t) = n.value else {
            typeError(key, n, expected: "a table ([\(key)])")
            return nil
        }
        return t
    }

    mutating func tableArray(_ key: String) -> [TOMLTable] {
        guard let n = node(key) else { return [] }
        guard case .array(let items) = n.value else {
            typeError(key, n, expected: "an array of tables ([[\(key)]])")
            return []
        }
        var out: [TOMLTable] = []
        for item in items {
            if case .table(let t) = item.value { out.append(t) } else {
                diagnostics.error(item.location, "each '\(key)' must be a table ([[\(key)]])")
            }
        }
        return out
    }

    /// Reports every key of the table that no reader asked for.
    func finish() {
        for entry in table.entries where !known.contains(entry.key) {
            var hint: String?
            if let close = known.min(by: { editDistance($0, entry.key) < editDistance($1, entry.key) }),
               editDistance(close, entry.key) <= 2 {
                hint = "did you mean '\(close)'?"
            } else if !known.isEmpty {
                hint = "known keys here: " + known.joined(separator: ", ")
            }
            diagnostics.error(entry.keyLocation, "unknown key '\(entry.key)' in \(context)", hint: hint)
        }
    }
}

/// Levenshtein distance, for "did you mean" hints on short keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
