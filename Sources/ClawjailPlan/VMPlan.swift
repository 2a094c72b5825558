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
        public var host: String
        public var guestPath: String
        /// Enforced on the host: virtiofsd serves a read-only bind, so even a hostile
        /// guest kernel gets EROFS.
        public var readOnly: Bool
        /// The vhost-user socket between virtiofsd and the VMM.
        public var socket: String
        /// [protect] paths inside this share: read-only binds in the view virtiofsd
        /// serves (announced to the guest as submounts), host path and guest path.
        public var readOnlyPaths: [ReadOnlyPath] = []
    }

    public struct ReadOnlyPath: Sendable, Hashable {
        public var host: String
        public var guestPath: String
    }

    public struct FileServer: Sendable, Hashable {
        public var tag: String
        public var argv: [String]
    }

    public struct BootFile: Sendable, Hashable {
        public var path: String
        /// As probed (recorded in the run's manifest); nil when it could not be read.
        public var sha256: String?
        /// The config's pin, if any.
        public var pinnedSHA256: String?
        public var size: UInt64?
    }

    /// The virtio-serial port of the control protocol (spawn, stdio, signals, exit).
    public struct ControlChannel: Sendable, Hashable {
        public var socket: String
        public var portName: String
    }

    public struct Network: Sendable, Hashable {
        public var mode: AgentConfig.NetworkMode
        /// Egress: a tap in the jail's netns, tied to the veth by tc mirred redirects,
        /// passed to the VMM as `tapFD`.
        public var tap: String?
        public var tapFD: Int32?
        public var mac: String?
        public var guestAddress: String?
        public var gateway: String?
        public var prefixLength: UInt8?
    }

    public var vmm: VMM
    public var accel: AgentConfig.Accelerator
    public var vcpus: UInt32
    public var guestMemory: UInt64
    /// What the VMM and its file servers need beyond guest RAM (see `overhead`).
    public var vmmOverhead: UInt64
    /// memory.max of the jail the VMM runs in: guest RAM plus the overhead.
    public var cgroupMemory: UInt64
    public var kernel: BootFile
    public var initrd: BootFile
    public var kernelCommandLine: String
    /// argv[0] is the VMM's path.
    public var command: [String]
    public var shares: [Share]
    public var fileServers: [FileServer]
    public var control: ControlChannel
    public var network: Network
    /// Host paths bound read-only into the VMM's jail besides the shares.
    public var readOnlyBinds: [String]
    /// The seccomp profile of the VMM's jail.
    public var seccompProfile: String
}

extension VMPlan {
    public static let vmmSeccompProfile = "vmm"
    public static let controlPortName = "clawjail.control"
    public static let tapName = "cjtap0"
    /// The executor passes the tap as the VMM's fd 3 (after stdio).
    public static let tapFD: Int32 = 3
    /// Locally administered, the same in every jail: each has its own netns and link.
    public static let guestMAC = "52:54:00:c1:a0:02"
    /// -accel tcg,tb-size: bounds TCG's translation cache (qemu's default is 1 GiB).
    public static let tcgCodeBufferMiB: UInt64 = 128

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

    public static func make(_ spec: JailSpec, _ vm: JailSpec.VMSpec, facts: VMFacts, baseEntries: [HostFacts.NamedEntry]) -> VMPlan {
        let socketDirectory = facts.runDirectory + "/vm/" + spec.name
        var shares: [Share] = []
        func share(_ tag: String, _ role: ShareRole, host: String, guest: String, readOnly: Bool) {
            shares.append(Share(tag: tag, role: role, host: host, guestPath: guest, readOnly: readOnly,
                                socket: socketDirectory + "/fs-" + tag + ".sock"))
        }
        switch spec.rootfs {
        case .host:
            // The directories of the host's base; the guest recreates its symlinks (bin -> usr/bin).
            for e in baseEntries where e.entry == .directory {
                share("base-" + e.name, .base, host: "/" + e.name, guest: "/" + e.name, readOnly: true)
            }
        case .directory(let root):
            share("rootfs", .base, host: root, guest: "/", readOnly: true)
        }
        var mountIndex = 0
        for m in spec.mounts {
            switch m.role {
            case .workspace: share("workspace", .workspace, host: m.host, guest: m.target, readOnly: false)
            case .mount:
                mountIndex += 1
                share("mount-\(mountIndex)", .mount, host: m.host, guest: m.target, readOnly: !m.writable)
            case .credentials:
                // A share of its own, so that the guest mounts it only into the agent's jail.
                share("credentials", .credentials, host: m.host, guest: m.target, readOnly: true)
            case .protect:
                break
            }
        }
        if let w = spec.workspace, let i = shares.firstIndex(where: { $0.role == .workspace }) {
            shares[i].readOnlyPaths = spec.mounts.filter { $0.role == .protect }.map {
                ReadOnlyPath(host: w.host + "/" + $0.host, guestPath: $0.target)
            }
        }
        let fileServers = shares.map { FileServer(tag: $0.tag, argv: fileServerCommand(facts.virtiofsd, $0)) }

        let egress = spec.network.mode == .egress
        let network = Network(mode: spec.network.mode, tap: egress ? tapName : nil, tapFD: egress ? tapFD : nil,
                              mac: egress ? guestMAC : nil,
                              guestAddress: egress ? NetworkLayout.jailAddress : nil,
                              gateway: egress ? NetworkLayout.peerAddress : nil,
                              prefixLength: egress ? NetworkLayout.prefixLength : nil)
        var append = ["console=ttyS0", "quiet", "panic=-1"]
        if let khz = facts.tscKHz { append.append("tsc_early_khz=\(khz)") }
        let control = ControlChannel(socket: socketDirectory + "/control.sock", portName: controlPortName)
        let bootBytes = (facts.kernel.size ?? 0) + (facts.initrd.size ?? 0)
        let overhead = overhead(accel: vm.accel, fileServers: fileServers.count, bootFileBytes: bootBytes)
        var binds = [vm.kernel, vm.initrd]
        if vm.accel == .kvm { binds.append("/dev/kvm") }
        var plan = VMPlan(
            vmm: .qemuMicrovm, accel: vm.accel, vcpus: vm.vcpus, guestMemory: vm.memory,
            vmmOverhead: overhead, cgroupMemory: vm.memory + overhead,
            kernel: BootFile(path: vm.kernel, sha256: facts.kernel.sha256, pinnedSHA256: vm.kernelSHA256, size: facts.kernel.size),
            initrd: BootFile(path: vm.initrd, sha256: facts.initrd.sha256, pinnedSHA256: vm.initrdSHA256, size: facts.initrd.size),
            kernelCommandLine: append.joined(separator: " "),
            command: [], shares: shares, fileServers: fileServers, control: control, network: network,
            readOnlyBinds: binds, seccompProfile: vmmSeccompProfile)
        plan.command = plan.vmm.commandLine(plan, path: facts.qemu)
        return plan
    }

    /// virtiofsd from qemu-system-common: chroot sandbox (the jail refuses unshare), no
    /// rlimit change (the jail's are the limit), no host locks or xattrs for the guest.
    /// It has no read-only option: a read-only share is a read-only bind in its view.
    static func fileServerCommand(_ virtiofsd: String, _ share: Share) -> [String] {
        [virtiofsd, "--socket-path=" + share.socket, "-o", "source=" + share.host, "-o", "sandbox=chroot",
         "-o", "cache=auto", "-o", "announce_submounts", "-o", "no_posix_lock", "-o", "no_flock", "-o", "no_xattr",
         "--rlimit-nofile=0"]
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
              "-nodefaults", "-no-user-config", "-nographic",
              // A guest panic (panic=-1 reboots) ends the VMM instead of a reboot loop.
              "-no-reboot",
              "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
              "-serial", "stdio",
              "-kernel", p.kernel.path, "-initrd", p.initrd.path, "-append", p.kernelCommandLine]
        for (i, s) in p.shares.enumerated() {
            a += ["-chardev", "socket,id=fs\(i),path=\(s.socket)",
                  "-device", "vhost-user-fs-device,chardev=fs\(i),tag=\(s.tag)"]
        }
        a += ["-device", "virtio-serial-device",
              "-chardev", "socket,id=control,path=\(p.control.socket),server=on,wait=off",
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
