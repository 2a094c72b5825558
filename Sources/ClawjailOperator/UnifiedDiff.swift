/// A unified diff of two small texts (what `protect diff` shows for a changed memory
/// file). The common prefix and suffix are trimmed first, and the middle goes to the
/// standard library's `difference(from:)` (Myers), bounded so that a large rewrite is
/// summarised rather than computed.
enum UnifiedDiff {
    static let maxMiddleLines = 2000
    static let context = 3

    enum Op: Equatable {
        case equal(Int, Int)
        case delete(Int)
        case insert(Int)
    }

    /// nil when the texts are equal or too different to show line by line.
    static func render(old: String, new: String, oldLabel: String, newLabel: String) -> String? {
        let a = lines(old), b = lines(new)
        guard a != b, let ops = diff(a, b) else { return nil }
        var out = "--- \(oldLabel)\n+++ \(newLabel)\n"
        // Lines of a and of b that come before each op.
        var before: [(a: Int, b: Int)] = []
        var pa = 0, pb = 0
        for op in ops {
            before.append((pa, pb))
            switch op {
            case .equal: pa += 1; pb += 1
            case .delete: pa += 1
            case .insert: pb += 1
            }
        }
        for hunk in hunks(ops) {
            var aLen = 0, bLen = 0
            var body = ""
            for op in ops[hunk] {
                switch op {
                case .equal(let i, _):
                    aLen += 1
                    bLen += 1
                    body += " " + show(a[i]) + "\n"
                case .delete(let i):
                    aLen += 1
                    body += "-" + show(a[i]) + "\n"
                case .insert(let j):
                    bLen += 1
                    body += "+" + show(b[j]) + "\n"
                }
            }
            // Unified diff numbers lines from 1; an empty side names the line before it.
            let start = before[hunk.lowerBound]
            let aFrom = aLen == 0 ? start.a : start.a + 1
            let bFrom = bLen == 0 ? start.b : start.b + 1
            out += "@@ -\(aFrom),\(aLen) +\(bFrom),\(bLen) @@\n" + body
        }
        return out
    }

    /// Lines without their terminators; a last line without "\n" keeps a marker so that
    /// adding or removing the final newline is a change too.
    static func lines(_ text: String) -> [String] {
        var parts = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if parts.last == "" {
            parts.removeLast()
        } else if !parts.isEmpty {
            parts[parts.count - 1] += noNewline
        }
        return parts
    }

    static let noNewline = "\u{0}no-newline"

    static func show(_ line: String) -> String {
        if line.hasSuffix(noNewline) {
            return OperatorText.safe(String(line.dropLast(noNewline.count))) + "\n\\ No newline at end of file"
        }
        return OperatorText.safe(line)
    }

    static func diff(_ a: [String], _ b: [String]) -> [Op]? {
        var prefix = 0
        while prefix < a.count && prefix < b.count && a[prefix] == b[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < a.count - prefix && suffix < b.count - prefix && a[a.count - 1 - suffix] == b[b.count - 1 - suffix] {
            suffix += 1
        }
        let am = Array(a[prefix..<(a.count - suffix)]), bm = Array(b[prefix..<(b.count - suffix)])
        guard am.count <= maxMiddleLines, bm.count <= maxMiddleLines else { return nil }
        var removed = Set<Int>(), inserted = Set<Int>()
        for change in bm.difference(from: am) {
            switch change {
            case .remove(let offset, _, _): removed.insert(offset)
            case .insert(let offset, _, _): inserted.insert(offset)
            }
        }
        var ops: [Op] = (0..<prefix).map { .equal($0, $0) }
        // The lines of am that stay pair up in order with those of bm that were not
        // inserted; at each point the deletions go before the insertions.
        var i = 0, j = 0
        while i < am.count || j < bm.count {
            if i < am.count && removed.contains(i) {
                ops.append(.delete(prefix + i))
                i += 1
            } else if j < bm.count && inserted.contains(j) {
                ops.append(.insert(prefix + j))
                j += 1
            } else {
                ops.append(.equal(prefix + i, prefix + j))
                i += 1
                j += 1
            }
        }
        for k in 0..<suffix { ops.append(.equal(a.count - suffix + k, b.count - suffix + k)) }
        return ops
    }

    /// Ranges of ops to print: each change with `context` equal lines around it, merged
    /// when they touch.
    static func hunks(_ ops: [Op]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for (index, op) in ops.enumerated() {
            if case .equal = op { continue }
            let lo = max(0, index - context), hi = min(ops.count, index + context + 1)
            if let last = out.last, lo <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, hi)
            } else {
                out.append(lo..<hi)
            }
        }
        return out
    }
}
