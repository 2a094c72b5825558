import ClawjailSystem
import Glibc
import Testing

/// The launch threads' stacks: `joinRetiringStack()` keeps the mapping past the join
/// (the unmap is what costs, so it waits), and `unmapRetiredStacks()` gives it back.
@Suite("Launch thread stacks")
struct OwnedStackTests {
    /// The bounds of the mapping of this process that contains `address`, if any.
    /// Other tests map memory meanwhile and may reuse a freed range, so "gone" is
    /// checked as "no longer these bounds", not as "nothing there".
    private func mapping(containing address: UInt) throws -> [UInt]? {
        let text = try FileSystem.readText("/proc/self/maps", limit: 4 << 20)
        for line in text.split(separator: "\n") {
            let range = line.prefix { $0 != " " }.split(separator: "-")
            guard range.count == 2, let lo = UInt(range[0], radix: 16), let hi = UInt(range[1], radix: 16) else { continue }
            if lo <= address && address < hi { return [lo, hi] }
        }
        return nil
    }

    @Test("a retired stack stays mapped until unmapRetiredStacks, then is gone")
    func retiredStackIsUnmappedLater() throws {
        nonisolated(unsafe) var onStack: UInt = 0
        let t = try PosixThread.spawnOwnedStack(stackSize: 1 << 20) {
            var local = 0
            withUnsafeMutablePointer(to: &local) { onStack = UInt(bitPattern: $0) }
        }
        t.joinRetiringStack()
        #expect(onStack != 0)
        let kept = try #require(try mapping(containing: onStack))
        PosixThread.unmapRetiredStacks()
        #expect(try mapping(containing: onStack) != kept)
    }

    @Test("join() unmaps at once")
    func joinUnmaps() throws {
        nonisolated(unsafe) var onStack: UInt = 0
        nonisolated(unsafe) var whileRunning: [UInt]?
        let t = try PosixThread.spawnOwnedStack(stackSize: 1 << 20) {
            var local = 0
            withUnsafeMutablePointer(to: &local) { onStack = UInt(bitPattern: $0) }
            whileRunning = try? mapping(containing: onStack)
        }
        t.join()
        #expect(onStack != 0)
        let before = try #require(whileRunning)
        #expect(try mapping(containing: onStack) != before)
    }
}
