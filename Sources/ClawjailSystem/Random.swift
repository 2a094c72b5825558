import CClawjailShims

/// getrandom(2) from the kernel's pool.
public enum Random {
    /// `count` random bytes, for ids rather than keys: one getrandom call, and the
    /// bytes it did not fill stay zero.
    public static func bytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = bytes.withUnsafeMutableBytes { cj_sys_getrandom($0.baseAddress, $0.count) }
        return bytes
    }
}
