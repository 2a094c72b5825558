/// Byte counts and the single audit record of one tunnel. Lives on one event
/// loop (both channels of a tunnel share it) until the kernel takes the tunnel
/// over, when the report goes with it.
final class TunnelRecord {
    var bytesUp: UInt64 = 0
    var bytesDown: UInt64 = 0
    private var finish: (@Sendable (_ up: UInt64, _ down: UInt64) -> Void)?

    init(finish: @escaping @Sendable (_ up: UInt64, _ down: UInt64) -> Void) {
        self.finish = finish
    }

    /// Reports once, when the first of the two sides closes for good.
    func close() {
        if let f = finish {
            finish = nil
            f(bytesUp, bytesDown)
        }
    }

    /// Takes the report away, for whoever carries the tunnel on; this record
    /// then reports nothing unless it is given back.
    func detachReport() -> (@Sendable (_ up: UInt64, _ down: UInt64) -> Void)? {
        defer { finish = nil }
        return finish
    }

    func reattach(_ report: (@Sendable (_ up: UInt64, _ down: UInt64) -> Void)?) {
        finish = report
    }
}
