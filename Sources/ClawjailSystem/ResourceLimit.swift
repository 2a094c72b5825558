#if canImport(Glibc)
import Glibc
#endif
import CClawjailShims

/// setrlimit(2) resource numbers, as the launch plan's C struct carries them.
public enum ResourceLimit {
    public static let core = Int32(RLIMIT_CORE.rawValue)
    public static let openFiles = Int32(RLIMIT_NOFILE.rawValue)
    public static let fileSize = Int32(RLIMIT_FSIZE.rawValue)
    /// Behind _GNU_SOURCE in Swift's Glibc module, so from the C shim.
    public static let processes = cj_rlimit_nproc()

    /// This process's hard limit for `resource` (getrlimit(2)); nil for unlimited or
    /// when it cannot be read.
    public static func hardLimit(_ resource: Int32) -> UInt64? {
        var r = rlimit()
        guard getrlimit(__rlimit_resource_t(UInt32(resource)), &r) == 0, r.rlim_max != rlim_t.max else { return nil }
        return UInt64(r.rlim_max)
    }
}
