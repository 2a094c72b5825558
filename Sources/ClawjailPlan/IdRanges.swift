/// The outside id range of a jail: inside ids 0..<count map to base..<base+count.
public struct IdMap: Sendable, Hashable {
    public var base: UInt32
    public var count: UInt32
    public init(base: UInt32, count: UInt32) {
        self.base = base
        self.count = count
    }

    public func outside(_ inside: UInt32) -> UInt32 { base + inside }
}

/// Uid ranges: slot N owns outside ids base + N * 65536 ..< base + (N + 1) * 65536.
/// Slot 0 belongs to anonymous tool runs (`clawjail exec` without --agent); agents get
/// their own slot from the store, for good.
public enum IdRanges {
    public static let base: UInt32 = 0x7000_0000
    public static let size: UInt32 = 65536
    public static let maxSlot = 4093

    public static func slot(_ n: Int) -> IdMap { IdMap(base: base + UInt32(n) * size, count: size) }
    public static let anonymousTools = slot(0)
}
