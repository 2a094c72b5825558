import Testing
@testable import ClawjailOperator
@testable import ClawjailRuntime

/// `protect diff`'s unified diff. The middle of the texts goes to the standard
/// library's `difference(from:)` (Myers), which replaced a hand-made LCS table: the
/// outputs below are the table's, and on random texts the script is as short as the
/// table's (where several pairings are equally short, Myers may pick another).
@Suite("unified diff")
struct UnifiedDiffTests {
    @Test("a changed line, with context, as `protect diff` prints it")
    func changedLine() {
        let d = UnifiedDiff.render(old: "be good\nbe kind\nbe brief\n", new: "be good\nbe evil\nbe brief\n",
                                   oldLabel: "snapshot-1/SOUL.md", newLabel: "workspace/SOUL.md")
        #expect(d == "--- snapshot-1/SOUL.md\n+++ workspace/SOUL.md\n@@ -1,3 +1,3 @@\n be good\n-be kind\n+be evil\n be brief\n")
    }

    @Test("equal texts give nil; so does a rewrite too large to show line by line")
    func nilCases() {
        #expect(UnifiedDiff.render(old: "a\nb\n", new: "a\nb\n", oldLabel: "a", newLabel: "b") == nil)
        let big = (0...UnifiedDiff.maxMiddleLines).map { "line \($0)\n" }.joined()
        let other = (0...UnifiedDiff.maxMiddleLines).map { "other \($0)\n" }.joined()
        #expect(UnifiedDiff.render(old: big, new: other, oldLabel: "a", newLabel: "b") == nil)
    }

    @Test("hunks: far-apart changes in two hunks, an added final newline, a file from nothing")
    func hunks() {
        let old = (1...20).map { "l\($0)\n" }.joined()
        var lines = (1...20).map { "l\($0)" }
        lines[1] = "L2"
        lines[17] = "L18"
        let new = lines.map { $0 + "\n" }.joined()
        #expect(UnifiedDiff.render(old: old, new: new, oldLabel: "a", newLabel: "b") == """
            --- a
            +++ b
            @@ -1,5 +1,5 @@
             l1
            -l2
            +L2
             l3
             l4
             l5
            @@ -15,6 +15,6 @@
             l15
             l16
             l17
            -l18
            +L18
             l19
             l20

            """)
        #expect(UnifiedDiff.render(old: "x", new: "x\n", oldLabel: "a", newLabel: "b")
                == "--- a\n+++ b\n@@ -1,1 +1,1 @@\n-x\n\\ No newline at end of file\n+x\n")
        #expect(UnifiedDiff.render(old: "", new: "one\ntwo\n", oldLabel: "a", newLabel: "b")
                == "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+one\n+two\n")
        #expect(UnifiedDiff.render(old: "one\ntwo\n", new: "", oldLabel: "a", newLabel: "b")
                == "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-one\n-two\n")
    }

    @Test("on 3,000 random pairs of texts: a valid edit script, and a shortest one (as many equal lines as the LCS)")
    func shortestValidScript() throws {
        var rng = SplitMix(seed: 0x5eed)
        // Few distinct lines, so that there are many equally long ways to pair them up.
        let alphabet = ["a", "b", "c", "d", ""]
        for n in 0..<3000 {
            func text() -> [String] { (0..<Int(rng.next() % 13)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] } }
            let a = text(), b = text()
            let ops = try #require(UnifiedDiff.diff(a, b))
            // Walking the ops visits every line of a and of b once, in order, and pairs
            // only equal lines.
            var i = 0, j = 0
            var valid = true
            for op in ops {
                switch op {
                case .equal(let x, let y): valid = valid && x == i && y == j && a[x] == b[y]; i += 1; j += 1
                case .delete(let x): valid = valid && x == i; i += 1
                case .insert(let y): valid = valid && y == j; j += 1
                }
            }
            #expect(valid && i == a.count && j == b.count, "case \(n): \(a) -> \(b): \(ops)")
            let kept = ops.filter { if case .equal = $0 { true } else { false } }.count
            #expect(kept == Self.lcsLength(a, b), "case \(n): \(a) -> \(b): \(ops)")
        }
    }

    /// The length of the longest common subsequence, from the full table.
    static func lcsLength(_ a: [String], _ b: [String]) -> Int {
        let w = b.count + 1
        var t = [Int](repeating: 0, count: (a.count + 1) * w)
        for x in stride(from: a.count - 1, through: 0, by: -1) {
            for y in stride(from: b.count - 1, through: 0, by: -1) {
                t[x * w + y] = a[x] == b[y] ? t[(x + 1) * w + y + 1] + 1 : max(t[(x + 1) * w + y], t[x * w + y + 1])
            }
        }
        return t[0]
    }
}

/// A small deterministic generator, so a failing case can be replayed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
