import ClawjailCore
import ClawjailSystem

/// Where clawjail keeps things on the host.
public struct HostLayout: Sendable {
    /// The SQLite store, snapshots (0700, root).
    public var stateDirectory: String
    /// Locks, the staging mount point, ingress sockets (0755, root; files inside 0600).
    public var runDirectory: String
    /// Compiled seccomp filters (0700, root).
    public var cacheDirectory: String
    /// Where named seccomp profiles are looked up, in order.
    public var profileSearchPath: [String]
    /// Bytes reserved in the state directory per run for its end record
    /// (ClawjailStore/RunEnds.swift). CLAWJAIL_RECORD_RESERVE (a size: 0, 64K, 1M)
    /// changes it: 0 for a state directory too small to spare it, and for the tests
    /// that need a disk that stays full.
    public var recordReserveBytes: Int64

    public init(stateDirectory: String? = nil, environment: [String: String] = ProcessInfoLite.environment()) {
        self.stateDirectory = stateDirectory ?? environment["CLAWJAIL_STATE_DIR"] ?? Defaults.stateDirectory
        self.runDirectory = environment["CLAWJAIL_RUN_DIR"] ?? Defaults.runDirectory
        self.cacheDirectory = environment["CLAWJAIL_CACHE_DIR"] ?? "/var/cache/clawjail"
        var search: [String] = []
        if let extra = environment["CLAWJAIL_PROFILE_PATH"] {
            search += extra.split(separator: ":").map(String.init)
        }
        search += HostLayout.bundledProfileDirectories() + ["/etc/clawjail/profiles", "/usr/local/share/clawjail/profiles"]
        self.profileSearchPath = search
        // A value that is not a size keeps the default: a typo must not remove the reserve.
        let reserve = environment["CLAWJAIL_RECORD_RESERVE"].flatMap { v in v == "0" ? 0 : try? Units.parseSize(v) }
        self.recordReserveBytes = reserve.map { Int64(clamping: $0) } ?? 128 * 1024
    }

    /// profiles/ next to the binary's source tree (a build in .build/<config>/clawjail)
    /// or under <prefix>/share/clawjail/profiles for an installed binary.
    static func bundledProfileDirectories() -> [String] {
        guard let exe = try? FileSystem.readlink("/proc/self/exe") else { return [] }
        var dir = Paths.dirname(exe)
        var out: [String] = []
        for _ in 0..<5 {
            out.append(dir + "/profiles")
            out.append(dir + "/share/clawjail/profiles")
            if dir == "/" { break }
            dir = Paths.dirname(dir)
        }
        return out.filter { FileSystem.exists($0) }
    }

    public var stagingRoot: String { runDirectory + "/root" }
    /// The Unix sockets of running VM agents' supervisors (0700, root; sockets 0600):
    /// where `clawjail exec --agent` of a VM agent asks for a tool run in its guest.
    public var vmSocketDirectory: String { runDirectory + "/vm" }
    public func vmToolSocket(_ agent: String) -> String { vmSocketDirectory + "/" + agent + ".sock" }
    /// The guest's last memory report (JSON), for `clawjail stats`.
    public func vmGuestMemoryFile(_ agent: String) -> String { vmSocketDirectory + "/" + agent + ".memory" }
    public var lockDirectory: String { runDirectory + "/locks" }
    public var jailDirectory: String { runDirectory + "/jails" }
    /// An empty, read-only (0555, root) directory: bound over the /proc directories a
    /// jail must not see, so that masking them costs no filesystem instance of its own.
    public var emptyDirectory: String { runDirectory + "/empty" }

    /// Creates the run directory tree (idempotent). The staging mount point must be
    /// reachable by the jail's unprivileged root, hence 0755 all the way.
    public func ensureRunDirectories() throws(ClawjailError) {
        // Already there on every run but the first: two stats instead of a dozen mkdirs.
        if (try? FileSystem.stat(stagingRoot))?.isDirectory == true, (try? FileSystem.stat(jailDirectory))?.isDirectory == true,
           (try? FileSystem.stat(emptyDirectory))?.isDirectory == true {
            return
        }
        for (dir, mode) in [(runDirectory, mode_t(0o755)), (stagingRoot, 0o755), (lockDirectory, 0o700), (jailDirectory, 0o700),
                            (emptyDirectory, 0o555)] {
            do {
                try FileSystem.mkdirs(dir, mode: mode)
            } catch {
                throw ClawjailError(.setup, "cannot create \(dir)", hint: "clawjail must run as root", cause: error)
            }
        }
    }
}
