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
}
