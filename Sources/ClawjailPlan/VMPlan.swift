import ClawjailCore

/// The micro-VM layer of a VM agent's plan (design/vm-backend.md): the VMM that runs as
/// the command of the namespace jail LaunchPlan describes, the file servers beside it,
/// the guest's shares, its network and what the jail's cgroup must allow. Decided
/// without side effects from the JailSpec and VMFacts.
public struct VMPlan: Sendable, Hashable {
    /// The VMMs clawjail can drive. Debian 12 has qemu only (no firecracker,
    /// cloud-hypervisor or libkrun packages); another one is a case here and a
    /// `commandLine` of its own.
    public enum VMM: String, Sendable, Hashable {
        case qemuMicrovm = "qemu-microvm"
    }

    public enum ShareRole: String, Sendable, Hashable {
        /// The read-only base the agent's programs come from (/usr, or a directory rootfs).
        case base, workspace, mount, credentials
    }

    /// One virtio-fs export, served by its own virtiofsd from the VMM jail's mount view.
    public struct Share: Sendable, Hashable {
        public var tag: String
        public var role: ShareRole
        /// What virtiofsd serves: a path of the VMM jail's own mount view (the view a
        /// namespace jail of this agent would have), so that /etc is the jail's filtered
        /// /etc and [protect] paths are the jail's read-only binds.
        public var source: String
        public var guestPath: String
        /// Enforced on the host: virtiofsd serves a read-only bind, so even a hostile
        /// guest kernel gets EROFS.
        public var readOnly: Bool
        /// The vhost-user socket between virtiofsd and the VMM, inside the VMM jail.
        public var socket: String
        /// [protect] paths inside this share: read-only binds of the view virtiofsd
        /// serves (announced to the guest as submounts).
        public var readOnlyPaths: [String] = []
        /// A [[mount]] of a single file: virtiofsd serves directories, so the VMM jail
        /// binds the file, by this name, into a directory of its own (`source`, on the
        /// jail's read-only root: nothing can be added beside it), which the guest mounts
        /// at `guestPath`; the agent's jail in the guest binds the file at its target.
        public var fileName: String?
        /// The host file of a single-file share.
        public var fileHost: String?
    }

    public struct FileServer: Sendable, Hashable {
        public var tag: String
        public var argv: [String]
    }

    public struct BootFile: Sendable, Hashable {
        public var path: String
        /// Where the VMM jail sees it (a read-only bind of `path`).
        public var jailPath: String
        /// As probed (recorded in the run's manifest); nil when it could not be read.
        public var sha256: String?
        /// The config's pin, if any.
        public var pinnedSHA256: String?
        public var size: UInt64?
    }

    /// The virtio-serial port of the control protocol (ControlFrame): the VMM's stdin,
    /// one end of a socketpair whose other end the supervisor holds. Nothing of it is
    /// on any filesystem.
    public struct ControlChannel: Sendable, Hashable {
        public var fd: Int32
        public var portName: String
    }

    public struct Network: Sendable, Hashable {
        public var mode: AgentConfig.NetworkMode
        /// Egress: a tap in the jail's netns, tied to the veth by tc mirred redirects,
        /// opened by the supervisor and inherited by the VMM as `tapFD`.
        public var tap: String?
        public var tapFD: Int32?
        public var mac: String?
        public var guestAddress: String?
        public var gateway: String?
        public var prefixLength: UInt8?
    }

    /// The agent's process, as the guest starts it once its shares are mounted.
    public struct GuestProcess: Sendable, Hashable {
        public var argv: [String]
        public var environment: [JailSpec.EnvironmentVariable]
        public var cwd: String
        public var uid: UInt32
        public var gid: UInt32
    }

    public var vmm: VMM
    public var accel: AgentConfig.Accelerator
    public var vcpus: UInt32
    public var guestMemory: UInt64
    /// What the VMM and its file servers need beyond guest RAM (see `overhead`).
    public var vmmOverhead: UInt64
    /// memory.max of the jail the VMM runs in: guest RAM plus the overhead.
    public var cgroupMemory: UInt64
    /// pids.max of the VMM jail: qemu's threads and each file server's pool (the
    /// agent's own `limits.pids` is the guest's business).
    public var vmmPids: UInt64
    /// RLIMIT_NOFILE of the VMM jail: virtiofsd holds an O_PATH fd for every inode the
    /// guest has looked up, so a guest walking /usr needs far more than a process does.
    public var vmmOpenFiles: UInt64
    public var kernel: BootFile
    public var initrd: BootFile
    public var kernelCommandLine: String
    /// argv[0] is the VMM's path.
    public var command: [String]
    /// The uid (inside the jail's user namespace) the VMM runs as, with no capabilities:
    /// the agent's user.
    public var vmmUser: UInt32
    public var shares: [Share]
    public var fileServers: [FileServer]
    /// The symlinks of the guest's root (bin -> usr/bin), as the jail's base has them.
    public var guestLinks: [ControlFrame.GuestLink]
    /// The agent's process (what the guest's jail runs).
    public var guest: GuestProcess
    /// The agent's namespace jail inside the guest: the agent's spec with the guest's
    /// paths and its seccomp profile as `guestProfileFile` in the guest's file directory.
    public var guestJail: JailSpec
    /// The file the guest's jail's profile is sent as (its chain's other files beside it).
    public var guestProfileFile: String
    public var control: ControlChannel
    public var network: Network
    /// The VMM jail's command: /bin/sh starting the file servers, waiting for their
    /// sockets, then exec'ing the VMM through setpriv (its uid, no capabilities).
    public var launchScript: String
    /// The seccomp profile of the VMM's jail.
    public var seccompProfile: String
}

extension VMPlan {
    public static let vmmSeccompProfile = "vmm"
    /// The guest's init looks for this name (ClawjailGuest.GuestMode.controlPortName).
    public static let controlPortName = "org.clawjail.control"
    public static let tapName = "cjtap0"
    /// The supervisor passes the tap as the VMM jail's fd 3 (LaunchRequest.passFD).
    public static let tapFD: Int32 = 3
    /// The launch script moves the jail's stdin (the control socket) to fd 4, because
    /// qemu takes no standard stream as a chardev's fd, and duplicates stdout (the
    /// console pipe) to fd 5.
    public static let controlFD: Int32 = 4
    public static let consoleFD: Int32 = 5
    /// Locally administered, the same in every jail: each has its own netns and link.
    public static let guestMAC = "52:54:00:c1:a0:02"
    /// -accel tcg,tb-size: bounds TCG's translation cache (qemu's default is 1 GiB).
    public static let tcgCodeBufferMiB: UInt64 = 128
    /// In the VMM jail: the boot files' binds, and the tmpfs the sockets live on
    /// (virtiofsd also keeps its pid file lock under /var/run/virtiofsd).
    public static let bootDirectory = "/vm"
    public static let runDirectory = "/var/run"
    public static let socketDirectory = "/var/run/clawjail-vm"
    /// In the VMM jail: the directories of single-file shares, one per file.
    public static let fileShareDirectory = "/vm/files"
    /// In the guest: where those shares are mounted (outside every jail's view).
    public static let guestFileShareDirectory = "/run/clawjail/shares"
    public static let setpriv = "/usr/bin/setpriv"
    /// What virtiofsd needs in the VMM jail's user namespace to serve files as the
    /// guest's uids (setfsuid/setfsgid, chown, permission overrides), to chroot into its
    /// share, and to drop the rest of its bounding set itself (setpcap: without it
    /// virtiofsd exits silently once the VMM connects). qemu gets none of them:
    /// setpriv empties every set, the bounding set too, before its exec.
    public static let fileServerCapabilities: [LaunchPlan.Capability] = [.chown, .dacOverride, .fowner, .fsetid, .setgid, .setuid,
                                                                        .setpcap, .sysChroot]

    /// The VMM overhead the cgroup allows beyond guest RAM:
    /// - 64 MiB for qemu itself: heap, device models, vCPU and I/O thread stacks
    ///   (Kata's ~195 MB for a 256 MB guest and the ~225 MiB RSS seen under TCG at
    ///   -m 256, which includes TCG's code buffer, put qemu proper well under this);
    /// - the kernel and initramfs once more: qemu keeps its own copy as ROM blobs;
    /// - the TCG code buffer (tb-size, set explicitly so that it is bounded);
    /// - 16 MiB per virtiofsd (a thread pool and its FUSE buffers).
    /// Too small and the jail's OOM killer takes the VMM; too large only lets a hostile
    /// VMM hold a little more host memory, inside the same cgroup.
    public static func overhead(accel: AgentConfig.Accelerator, fileServers: Int, bootFileBytes: UInt64) -> UInt64 {
        let mib: UInt64 = 1 << 20
        var total: UInt64 = 64 * mib + UInt64(fileServers) * 16 * mib + bootFileBytes
        if accel == .tcg { total += tcgCodeBufferMiB * mib }
        return (total + mib - 1) / mib * mib
    }

    /// The guest kernel's command line. panic=-1 with the VMM's -no-reboot: a panic ends
    /// the VMM. tsc_early_khz: microvm need not calibrate (which hangs about 4 boots in
    /// 10 here). SWIFT_BACKTRACE: the static Swift binary as PID 1 has no /proc yet for
    /// its backtracer to find itself.
    public static func kernelCommandLine(tscKHz: UInt64?) -> String {
        var append = ["console=ttyS0", "quiet", "panic=-1"]
        if let khz = tscKHz { append.append("tsc_early_khz=\(khz)") }
        append.append("SWIFT_BACKTRACE=enable=no,swift-backtrace=/none")
        return append.joined(separator: " ")
    }

    /// `baseEntries`: the host rootfs's /usr, /bin, ... as the jail's base has them.
    /// `mountSources`: what each [[mount]]'s host path is (HostFacts.mountSources).
    public static func make(_ spec: JailSpec, _ vm: JailSpec.VMSpec, facts: VMFacts, baseEntries: [HostFacts.NamedEntry],
                            mountSources: [String: HostFacts.Entry] = [:]) -> VMPlan {
        var shares: [Share] = []
        /// `file`: a single file's share (its directory of its own, both sides).
        func share(_ tag: String, _ role: ShareRole, path: String, readOnly: Bool, file: (name: String, host: String)? = nil) {
            shares.append(Share(tag: tag, role: role, source: file == nil ? path : fileShareDirectory + "/" + tag,
                                guestPath: file == nil ? path : guestFileShareDirectory + "/" + tag, readOnly: readOnly,
                                socket: socketDirectory + "/fs-" + tag + ".sock", fileName: file?.name, fileHost: file?.host))
        }
        var links: [ControlFrame.GuestLink] = []
        // The directories of the host's base; the guest recreates its symlinks (bin -> usr/bin).
        for e in baseEntries {
            switch e.entry {
            case .directory: share("base-" + e.name, .base, path: "/" + e.name, readOnly: true)
            case .symlink(let target): links.append(.init(path: "/" + e.name, target: target))
            case .file, .other: break
            }
        }
        // The jail's /etc: the host's, with the policy's entries hidden and its own files on top.
        share("etc", .base, path: "/etc", readOnly: true)
        for (i, m) in spec.mounts.enumerated() {
            switch m.role {
            case .workspace: share("workspace", .workspace, path: m.target, readOnly: false)
            case .mount:
                let tag = mountTag(spec, at: i) ?? ""
                share(tag, .mount, path: m.target, readOnly: !m.writable,
                      file: mountSources[m.host] == .file ? (Paths.basename(m.target), m.host) : nil)
            case .credentials:
                // A share of its own, so that the guest can keep it out of tool runs.
                share("credentials", .credentials, path: m.target, readOnly: true)
            case .protect:
                break
            }
        }
        if let i = shares.firstIndex(where: { $0.role == .workspace }) {
            shares[i].readOnlyPaths = spec.mounts.filter { $0.role == .protect }.map(\.target)
        }
        let fileServers = shares.map { FileServer(tag: $0.tag, argv: fileServerCommand(facts.virtiofsd, $0)) }

        // A NIC for egress, and for [[ingress]] (connections forwarded to the guest's
        // address); with mode "none" and ingress it has no default route.
        let egress = spec.network.mode == .egress
        let nic = egress || !spec.network.ingress.isEmpty
        let network = Network(mode: spec.network.mode, tap: nic ? tapName : nil, tapFD: nic ? tapFD : nil,
                              mac: nic ? guestMAC : nil,
                              guestAddress: nic ? NetworkLayout.jailAddress : nil,
                              gateway: egress ? NetworkLayout.peerAddress : nil,
                              prefixLength: nic ? NetworkLayout.prefixLength : nil)
        let bootBytes = (facts.kernel.size ?? 0) + (facts.initrd.size ?? 0)
        let overhead = overhead(accel: vm.accel, fileServers: fileServers.count, bootFileBytes: bootBytes)
        let guest = GuestProcess(argv: spec.argv, environment: spec.environment, cwd: spec.cwd, uid: spec.user, gid: spec.user)
        let profileFile = guestProfileFile(for: spec.seccompProfile)
        var plan = VMPlan(
            vmm: .qemuMicrovm, accel: vm.accel, vcpus: vm.vcpus, guestMemory: vm.memory,
            vmmOverhead: overhead, cgroupMemory: vm.memory + overhead,
            vmmPids: 64 + 32 * UInt64(fileServers.count), vmmOpenFiles: max(spec.limits.openFiles, min(1 << 16, facts.openFilesHardLimit ?? .max)),
            kernel: BootFile(path: vm.kernel, jailPath: bootDirectory + "/kernel", sha256: facts.kernel.sha256,
                             pinnedSHA256: vm.kernelSHA256, size: facts.kernel.size),
            initrd: BootFile(path: vm.initrd, jailPath: bootDirectory + "/initrd", sha256: facts.initrd.sha256,
                             pinnedSHA256: vm.initrdSHA256, size: facts.initrd.size),
            kernelCommandLine: kernelCommandLine(tscKHz: facts.tscKHz),
            command: [], vmmUser: spec.user, shares: shares, fileServers: fileServers, guestLinks: links, guest: guest,
            guestJail: guestJail(spec, shares: shares, profile: ControlFrame.fileDirectory + "/" + profileFile), guestProfileFile: profileFile,
            control: ControlChannel(fd: controlFD, portName: controlPortName), network: network,
            launchScript: "", seccompProfile: vmmSeccompProfile)
        plan.command = plan.vmm.commandLine(plan, path: facts.qemu)
        plan.launchScript = launchScript(plan)
        return plan
    }

    /// The agent's jail in the guest: its spec with the guest's paths, a single file's
    /// mount taken from the directory its share is mounted on.
    static func guestJail(_ spec: JailSpec, shares: [Share], profile: String) -> JailSpec {
        var g = spec.inGuest(profile: profile)
        for i in spec.mounts.indices {
            if let tag = mountTag(spec, at: i), let s = shares.first(where: { $0.tag == tag }), s.fileName != nil {
                g.mounts[i].host = guestSource(spec, at: i, isFile: true)
            }
        }
        return g
    }

    /// The share tag of the [[mount]] `spec.mounts[i]` (nil: not a [[mount]]).
    static func mountTag(_ spec: JailSpec, at i: Int) -> String? {
        guard spec.mounts[i].role == .mount else { return nil }
        return "mount-\(spec.mounts[...i].filter { $0.role == .mount }.count)"
    }

    /// Where the guest has the agent's workspace or [[mount]] `spec.mounts[i]` (a tool
    /// run in the guest binds the same): its target, or for a single file, the file in
    /// the directory its share is mounted on.
    public static func guestSource(_ spec: JailSpec, at i: Int, isFile: Bool) -> String {
        guard isFile, let tag = mountTag(spec, at: i) else { return spec.mounts[i].target }
        return guestFileShareDirectory + "/" + tag + "/" + Paths.basename(spec.mounts[i].target)
    }

    /// virtiofsd from qemu-system-common: chroot sandbox (the jail refuses unshare), no
    /// rlimit change (the jail's are the limit), no host locks or xattrs for the guest,
    /// and only the capabilities the jail kept for it (no mknod, no setfcap).
    /// It has no read-only option: a read-only share is a read-only bind in its view.
    static func fileServerCommand(_ virtiofsd: String, _ share: Share) -> [String] {
        [virtiofsd, "--socket-path=" + share.socket, "-o", "source=" + share.source, "-o", "sandbox=chroot",
         "-o", "cache=auto", "-o", "announce_submounts", "-o", "no_posix_lock", "-o", "no_flock", "-o", "no_xattr",
         "-o", "modcaps=-mknod:-setfcap", "--rlimit-nofile=0"]
    }

    /// The file name a profile the host names `profile` (a name or a path) gets in the guest.
    public static func guestProfileFile(for profile: String) -> String {
        profile.contains("/") ? Paths.basename(profile) : profile + ".toml"
    }

    /// The guest jail's spec, as the file the guest's init is sent.
    public static let guestJailFile = "jail.json"

    /// What the guest's init starts: `clawjail guest-jail` (the same binary, as root of
    /// the guest), which builds the agent's jail from `guestJailFile`.
    public var guestJailCommand: GuestProcess { Self.guestJailCommand(directory: nil) }

    /// The same for a tool run, whose files are in `directory` under the file directory.
    public static func guestJailCommand(directory: String?) -> GuestProcess {
        GuestProcess(argv: ["/init", "guest-jail", ControlFrame.fileDirectory + "/" + (directory.map { $0 + "/" } ?? "") + guestJailFile],
                     environment: [JailSpec.EnvironmentVariable(name: "PATH", value: "/usr/sbin:/usr/bin:/sbin:/bin")],
                     cwd: "/", uid: 0, gid: 0)
    }

    /// The guest's NIC, for the guest's init; nil: it has none.
    public var guestNetwork: ControlFrame.GuestNetwork? {
        guard let mac = network.mac, let address = network.guestAddress, let prefix = network.prefixLength else { return nil }
        // An empty gateway: no default route (ingress only).
        return ControlFrame.GuestNetwork(mac: mac, address: address, prefixLength: prefix, gateway: network.gateway ?? "")
    }

    /// The guest's mounts, in order: the base, /etc, then the workspace and mounts.
    public var guestMounts: [ControlFrame.GuestMount] {
        shares.map { ControlFrame.GuestMount(tag: $0.tag, path: $0.guestPath, readOnly: $0.readOnly) }
    }

    /// The VMM jail's /bin/sh script. It moves the control socket off stdin (file
    /// servers inherit stdin, and must not get the channel: they close 4 and 5 below), its socket is handed to the VMM's uid
    /// (virtiofsd makes it 0700 for itself), and the VMM replaces the shell, so the
    /// jail's init reports the VMM's own exit status.
    static func launchScript(_ p: VMPlan) -> String {
        var lines = ["set -u", "umask 077", "mkdir -m 0755 \(socketDirectory)",
                     "exec \(controlFD)<&0 \(consoleFD)>&1 0</dev/null"]
        for f in p.fileServers {
            let tap = p.network.tapFD.map { " \($0)<&-" } ?? ""
            lines.append(f.argv.map(PlanQuote.shell).joined(separator: " ") + " \(controlFD)<&- \(consoleFD)>&-\(tap) &")
        }
        let sockets = p.shares.map { PlanQuote.shell($0.socket) }.joined(separator: " ")
        if !p.shares.isEmpty {
            lines += [
                "for s in \(sockets); do",
                "  i=0",
                "  while [ ! -S \"$s\" ]; do",
                "    i=$((i + 1))",
                "    if [ \"$i\" -gt 1000 ]; then echo \"clawjail-vmm: virtiofsd made no socket $s within 10 s\" >&2; exit 125; fi",
                "    sleep 0.01",
                "  done",
                "  chown \(p.vmmUser):\(p.vmmUser) \"$s\"",
                "done",
            ]
        }
        // --keep-groups: the jail has no supplementary groups, and setgroups is denied
        // in its user namespace. The inheritable and ambient sets emptied and the uid no
        // longer 0: the exec of
        // a file without file capabilities, under no_new_privs, leaves the VMM none.
        let drop = [setpriv, "--reuid=\(p.vmmUser)", "--regid=\(p.vmmUser)", "--keep-groups",
                    "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]
        lines.append("exec " + (drop + p.command).map(PlanQuote.shell).joined(separator: " "))
        return lines.joined(separator: "\n") + "\n"
    }
}

extension VMPlan.VMM {
    /// The VMM's argv for `plan`, argv[0] = `path`.
    public func commandLine(_ plan: VMPlan, path: String) -> [String] {
        switch self {
        case .qemuMicrovm: return Self.qemuMicrovm(plan, path: path)
        }
    }

    private static func qemuMicrovm(_ p: VMPlan, path: String) -> [String] {
        let mib = p.guestMemory >> 20
        var a = [path, "-M", "microvm,memory-backend=mem"]
        switch p.accel {
        case .kvm: a += ["-accel", "kvm", "-cpu", "host"]
        case .tcg: a += ["-accel", "tcg,tb-size=\(VMPlan.tcgCodeBufferMiB)", "-cpu", "max"]
        }
        a += ["-m", "\(mib)M", "-smp", String(p.vcpus),
              // vhost-user-fs needs guest RAM the file servers can map.
              "-object", "memory-backend-memfd,id=mem,size=\(mib)M,share=on",
              "-global", "virtio-mmio.force-legacy=false",
              "-nodefaults", "-no-user-config", "-nographic", "-monitor", "none",
              // A guest panic (panic=-1 reboots) ends the VMM instead of a reboot loop.
              "-no-reboot",
              "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
              // The console on the VMM's stdout (the supervisor reads it), its own
              // messages on stderr. Through an fd set (qemu takes no standard stream
              // there): the VMM, once setpriv changed its uid, may not open /proc/self/fd/1.
              // append=on: a truncating open would ftruncate the pipe, which fails.
              "-add-fd", "fd=\(VMPlan.consoleFD),set=1", "-chardev", "file,id=console,path=/dev/fdset/1,append=on",
              "-serial", "chardev:console",
              "-kernel", p.kernel.jailPath, "-initrd", p.initrd.jailPath, "-append", p.kernelCommandLine]
        for (i, s) in p.shares.enumerated() {
            a += ["-chardev", "socket,id=fs\(i),path=\(s.socket)",
                  "-device", "vhost-user-fs-device,chardev=fs\(i),tag=\(s.tag)"]
        }
        a += ["-device", "virtio-serial-device",
              "-chardev", "socket,id=control,fd=\(p.control.fd)",
              "-device", "virtserialport,chardev=control,name=\(p.control.portName)"]
        if let fd = p.network.tapFD, let mac = p.network.mac {
            a += ["-netdev", "tap,id=net0,fd=\(fd),vhost=off", "-device", "virtio-net-device,netdev=net0,mac=\(mac)"]
        }
        return a
    }
}

extension VMFacts {
    /// What stops a VM agent before boot: a guest kernel or initramfs that is missing,
    /// unreadable, or not the file the config pinned. Empty: it may boot.
    public func bootProblems(_ vm: JailSpec.VMSpec) -> [String] {
        var out: [String] = []
        for (name, file, pin, key) in [("guest kernel", kernel, vm.kernelSHA256, "kernel"),
                                       ("initramfs", initrd, vm.initrdSHA256, "initrd")] {
            guard let sha = file.sha256 else {
                out.append("the \(name) \(file.path) is missing or unreadable: scripts/vm/guest-image builds it into .build/vm/guest/ (copy it here), or set vm.\(key) to its path")
                continue
            }
            if let pin, pin != sha {
                out.append("the \(name) \(file.path) has sha256 \(sha), but vm.\(key)_sha256 pins \(pin): "
                           + "the file changed since it was pinned; check where it came from, then update the pin")
            }
        }
        return out
    }
}
