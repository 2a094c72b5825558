import ClawjailCore

/// Every step the executor takes to build one jail, decided without side effects by
/// `LaunchPlan.make` from a JailSpec and the HostFacts. The namespace executor
/// (ClawjailRuntime's Launcher) marshals it into the C child's flat plan;
/// `clawjail check` prints it, `check --json` and `exec --print-plan` emit it, and a run
/// records it in its manifest.
public struct LaunchPlan: Sendable, Hashable {
    public var kind: JailSpec.Kind
    public var name: String
    public var agent: String?
    /// Namespaces the jail's init gets: the first six from clone3, cgroup by unshare
    /// in the child once it is in its cgroup.
    public var namespaces: [Namespace]
    /// nil while the agent has no uid range yet (`check` before the first run).
    public var ids: IdMapping?
    public var root: Root
    /// In the order the child runs them.
    public var mounts: [MountStep]
    public var rlimits: [Rlimit]
    public var cgroup: CgroupPlan
    public var network: NetworkPlan
    public var seccomp: SeccompIdentity
    public var process: Process
    /// A VM agent (`isolation = "vm"`): the VMM this jail runs and its guest; the
    /// rest of the plan is the VMM's jail, whose cgroup allows guest RAM plus the VMM's
    /// overhead. nil for a namespace jail.
    public var vm: VMPlan? = nil

    public enum Namespace: String, Sendable, Hashable, CaseIterable {
        case user, mount, pid, net, ipc, uts, cgroup
    }

    /// Inside ids 0..<count are outside base..<base+count; setgroups is denied.
    public struct IdMapping: Sendable, Hashable {
        public var base: UInt32
        public var count: UInt32
        /// The jail's user, inside and outside.
        public var userInside: UInt32
        public var userOutside: UInt32 { base + userInside }
        public init(base: UInt32, count: UInt32, userInside: UInt32) {
            self.base = base
            self.count = count
            self.userInside = userInside
        }
    }

    /// The new root: a small tmpfs under the staging directory, pivoted into and made
    /// read-only once the mount steps are done.
    public struct Root: Sendable, Hashable {
        public var staging: String
        /// The empty host directory bound read-only over a masked directory.
        public var emptyDirectory: String
        public var tmpfsOptions: String
        public var readOnly: Bool
    }

    public struct Rlimit: Sendable, Hashable {
        public enum Resource: String, Sendable, Hashable { case core = "RLIMIT_CORE", nofile = "RLIMIT_NOFILE",
                                                           nproc = "RLIMIT_NPROC", fsize = "RLIMIT_FSIZE" }
        public var resource: Resource
        /// UInt64.max: unlimited.
        public var soft: UInt64
        public var hard: UInt64
        /// Names it in errors ("RLIMIT_NOFILE (open_files)").
        public var label: String
    }

    public struct SeccompIdentity: Sendable, Hashable {
        /// The name or path the spec asks for.
        public var profile: String
        /// `on_violation` from the config; nil: the profile's own.
        public var onViolation: String?
        /// SHA-256 of the resolved profile's content (what the filter is compiled from);
        /// nil when it was not resolved (a plan printed without the profile at hand).
        public var contentHash: String?
        public init(profile: String, onViolation: String?, contentHash: String?) {
            self.profile = profile
            self.onViolation = onViolation
            self.contentHash = contentHash
        }
    }

    /// What runs once the jail is built.
    public struct Process: Sendable, Hashable {
        public var argv: [String]
        public var environment: [JailSpec.EnvironmentVariable]
        /// Where execvp-style lookup of argv[0] searches (the jail's PATH).
        public var pathSearch: String
        public var cwd: String
        public var hostname: String
        public var uid: UInt32
        public var gid: UInt32
        /// Capabilities: the bounding set is emptied up to this number, and the
        /// permitted, effective, inheritable and ambient sets are empty.
        public var capLastCap: Int32
        public var noNewPrivileges: Bool
        /// Brought up in the new net namespace.
        public var loopbackUp: Bool
        /// Signals the jail's init forwards to the command.
        public var forwardedSignals: [String]
        /// Capabilities the command keeps (as ambient ones, within the jail's user
        /// namespace): none for every jail but a VM agent's VMM jail, whose file servers
        /// need a few (`VMPlan.fileServerCapabilities`).
        public var keptCapabilities: [Capability] = []
    }

    /// The capabilities a plan may keep, with their numbers (linux/capability.h).
    public enum Capability: String, Sendable, Hashable, CaseIterable {
        case chown = "CAP_CHOWN", dacOverride = "CAP_DAC_OVERRIDE", fowner = "CAP_FOWNER", fsetid = "CAP_FSETID"
        case setgid = "CAP_SETGID", setuid = "CAP_SETUID", setpcap = "CAP_SETPCAP", sysChroot = "CAP_SYS_CHROOT"

        public var number: Int {
            switch self {
            case .chown: return 0
            case .dacOverride: return 1
            case .fowner: return 3
            case .fsetid: return 4
            case .setgid: return 6
            case .setuid: return 7
            case .setpcap: return 8
            case .sysChroot: return 18
            }
        }
    }
}

/// One step of building the jail's root, run by the C child in order. Paths are
/// relative to the new root ("usr", "dev/null").
public struct MountStep: Sendable, Hashable {
    public enum Action: Sendable, Hashable {
        case mkdir(mode: UInt32)
        case symlink(target: String)
        case writeFile(content: [UInt8], mode: UInt32)
        /// A root-owned host path bound by path in the child (nothing in a jail can swap
        /// /usr).
        case bindHost(source: String, options: MountOptions)
        /// A path a config or an agent controls: opened by the executor without
        /// following symlinks, prepared, and cloned with open_tree (CVE-2021-30465).
        case attach(source: AttachSource, options: MountOptions)
        case tmpfs(data: String, options: MountOptions)
        case proc
        case devpts(data: String)
        /// A file gets /dev/null bound over it, a directory a read-only bind of the
        /// host's empty directory (`HostFacts.emptyDirectory`).
        case mask
        case readOnly(options: MountOptions)
        /// Writes into a file that exists (a sysctl of the jail's own namespace).
        case writeExisting(content: String)
        /// An overlayfs whiteout: hides the same name in the layer below.
        case whiteout
        /// A read-only overlayfs of `lower` layers, top first (paths of the new root
        /// or absolute host paths).
        case overlay(lower: [String], options: MountOptions)
    }

    public var action: Action
    public var target: String
    /// A missing target is skipped, not an error.
    public var optional: Bool
    /// Names the step in errors ("mount workspace /srv/a at /workspace").
    public var label: String

    public init(_ action: Action, _ target: String, optional: Bool = false, label: String) {
        self.action = action
        self.target = target.hasPrefix("/") ? String(target.dropFirst()) : target
        self.optional = optional
        self.label = label
    }
}

public struct MountOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let readOnly = MountOptions(rawValue: 1)
    public static let noSuid = MountOptions(rawValue: 2)
    public static let noDev = MountOptions(rawValue: 4)
    public static let noExec = MountOptions(rawValue: 8)
    /// Binds and clones take the submounts too.
    public static let recursive = MountOptions(rawValue: 16)

    /// "ro,nosuid,nodev,rec": how the plan prints them.
    public var names: [String] {
        var out: [String] = []
        if contains(.readOnly) { out.append("ro") }
        if contains(.noSuid) { out.append("nosuid") }
        if contains(.noDev) { out.append("nodev") }
        if contains(.noExec) { out.append("noexec") }
        if contains(.recursive) { out.append("rec") }
        return out
    }
}

/// Where an attached mount comes from, and what the executor does to the host side
/// before cloning it.
public enum AttachSource: Sendable, Hashable {
    /// The workspace or a [[mount]]: `create` makes a missing directory (an agent's
    /// workspace); `giveTo` hands a writable tree to the jail's outside uid
    /// (onlyFromRoot: only files still root's, for tool runs of no agent).
    case hostPath(String, role: JailSpec.MountRole, create: Bool, giveTree: GiveTree?, expect: HostFacts.Entry?)
    /// The credentials directory: 0700, files 0600, owned by the outside uid.
    case credentials(String)
    /// A path inside the workspace (relative), made read-only; `pin` mounts an
    /// ancestor on itself so it cannot be renamed away.
    case protected(workspace: String, relative: String, isDirectory: Bool, pin: Bool)
    /// An entry of a directory rootfs (or of its /etc), opened from the root's fd.
    case rootfsEntry(root: String, name: String)

    public enum GiveTree: String, Sendable, Hashable { case all, onlyFromRoot = "only-from-root" }
}

/// The jail's cgroup: which controllers, and every value written before the child
/// joins it.
public struct CgroupPlan: Sendable, Hashable {
    public var mode: CgroupFacts.Mode
    public var location: String
    /// v1: the hierarchies (by their controllers) the jail gets a directory in.
    public var hierarchies: [[String]]
    public var writes: [Write]

    public struct Write: Sendable, Hashable {
        /// v1: the controller whose hierarchy holds the file; v2: nil.
        public var controller: String?
        public var file: String
        public var value: String
        /// A kernel without the file (no swap accounting, no cpu controller) is fine.
        public var optional: Bool
    }
}

public struct NetworkPlan: Sendable, Hashable {
    public var mode: AgentConfig.NetworkMode
    /// Egress: the veth's jail end and its peer (the proxy's namespace), prefix length.
    public var jailAddress: String?
    public var peerAddress: String?
    public var prefixLength: UInt8?
    public var proxyPort: UInt16?
    public var allow: [String]
    public var resolvers: [String]
    public var allowNonTLS443: Bool
    public var ingress: [AgentConfig.Ingress]
    /// The jail's /etc/resolv.conf.
    public var resolvConf: String
    /// A veth, a proxy namespace or an ingress socket is set up by the parent.
    public var needsParentWiring: Bool { mode == .egress || !ingress.isEmpty }
}
