import ClawjailCore

/// What the planner needs to know about this host, probed once per launch by the
/// executor (ClawjailRuntime's HostProbe) and passed in as data, so that the plan is a
/// pure function of a JailSpec and these facts: tests feed it any host they like.
public struct HostFacts: Sendable, Hashable {
    /// The kind of a path on the host, as lstat saw it.
    public enum Entry: Sendable, Hashable {
        case directory
        case file
        case symlink(target: String)
        /// Sockets, devices, fifos: never mounted.
        case other
    }

    public struct NamedEntry: Sendable, Hashable {
        public var name: String
        public var entry: Entry
        public init(_ name: String, _ entry: Entry) {
            self.name = name
            self.entry = entry
        }
    }

    /// /usr, /bin, /sbin, /lib, /lib32, /lib64, /libx32 as they exist here (absent ones
    /// are left out). Only for the host rootfs.
    public var baseEntries: [NamedEntry] = []
    /// Names directly in /etc (host rootfs) that the policy hides and that exist, and
    /// deeper hidden paths that exist: only present entries get a whiteout.
    public var etcHiddenPresent: Set<String> = []
    /// For a directory rootfs: its top-level entries and its /etc's, sorted by name.
    public var rootfsEntries: [NamedEntry] = []
    public var rootfsEtcEntries: [NamedEntry] = []
    /// The /proc entries the jail must not see that exist and are readable to a jail on
    /// this kernel (see Planner.procMasks), and the /proc entries to make read-only that
    /// exist.
    public var procToMask: [String] = []
    public var procToMakeReadOnly: [String] = []
    /// The host's /etc/machine-id (the jail's is derived from it); empty when absent.
    public var hostMachineID: [UInt8] = []
    /// What each [[mount]] / workspace host path is, where it exists (keyed by host
    /// path): a mount under /etc needs a mount point of the same type.
    public var mountSources: [String: Entry] = [:]
    /// /proc/sys/kernel/cap_last_cap.
    public var capLastCap: Int32 = 40
    public var cgroup: CgroupFacts
    /// clawjail's run-directory paths the child uses (HostLayout).
    public var stagingRoot: String
    public var emptyDirectory: String
    /// Only for a VM agent; nil: not probed (the plan then assumes the default paths
    /// and unread boot files).
    public var vm: VMFacts?

    public init(cgroup: CgroupFacts, stagingRoot: String, emptyDirectory: String) {
        self.cgroup = cgroup
        self.stagingRoot = stagingRoot
        self.emptyDirectory = emptyDirectory
    }
}

/// The cgroup layout of this host, from /proc/self/mountinfo.
public struct CgroupFacts: Sendable, Hashable {
    public enum Mode: String, Sendable, Hashable { case v1, v2 }
    public var mode: Mode
    /// v1: the controllers of each mounted hierarchy clawjail uses, one entry per
    /// hierarchy ("cpu,cpuacct" share one), in mount order.
    public var v1Hierarchies: [[String]]
    /// v1: the io weight file the blkio hierarchy has ("blkio.weight" or
    /// "blkio.bfq.weight"), nil when neither.
    public var v1BlkioWeightFile: String?
    /// Where the jails' cgroups go ("/sys/fs/cgroup/unified/clawjail", or for v1
    /// "clawjail/ under each hierarchy"): for the reader of the plan.
    public var location: String

    public init(mode: Mode, v1Hierarchies: [[String]] = [], v1BlkioWeightFile: String? = nil, location: String) {
        self.mode = mode
        self.v1Hierarchies = v1Hierarchies
        self.v1BlkioWeightFile = v1BlkioWeightFile
        self.location = location
    }
}

/// What a VM agent's plan needs to know about this host: the VMM and file server it
/// runs, and the guest kernel and initramfs as they are now. Probed by the runtime's
/// HostProbe (which refuses a missing file or a mismatched pin before any plan is
/// used), never inside the plan.
public struct VMFacts: Sendable, Hashable {
    public struct BootFile: Sendable, Hashable {
        public var path: String
        /// Lower-case hex of the file's content; nil when it could not be read.
        public var sha256: String?
        public var size: UInt64?
        public init(path: String, sha256: String? = nil, size: UInt64? = nil) {
            self.path = path
            self.sha256 = sha256
            self.size = size
        }
    }

    public var qemu: String
    public var virtiofsd: String
    public var kernel: BootFile
    public var initrd: BootFile
    /// The host's TSC frequency: given to the guest so that microvm need not calibrate
    /// (which hangs about 4 boots in 10 here, design/vm-test-tier.md). nil: unknown.
    public var tscKHz: UInt64?
    /// The supervisor's hard RLIMIT_NOFILE: the VMM jail cannot be given more (a child
    /// in a new user namespace cannot raise it). nil: unlimited.
    public var openFilesHardLimit: UInt64?

    public static let defaultQemu = "/usr/bin/qemu-system-x86_64"
    public static let defaultVirtiofsd = "/usr/lib/qemu/virtiofsd"

    public init(qemu: String = VMFacts.defaultQemu, virtiofsd: String = VMFacts.defaultVirtiofsd,
                kernel: BootFile, initrd: BootFile, tscKHz: UInt64? = nil, openFilesHardLimit: UInt64? = 1 << 20) {
        self.qemu = qemu
        self.virtiofsd = virtiofsd
        self.kernel = kernel
        self.initrd = initrd
        self.tscKHz = tscKHz
        self.openFilesHardLimit = openFilesHardLimit
    }
}
