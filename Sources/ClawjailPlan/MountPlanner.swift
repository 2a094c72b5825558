import ClawjailCore

/// The mount steps of a jail's root, in the order the child runs them: the base
/// (/usr and friends, or a directory rootfs), /etc, /dev, /proc, /tmp, then the
/// workspace, [[mount]]s, credentials and protect paths, parents before children.
struct MountPlanner {
    let spec: JailSpec
    let facts: HostFacts
    let resolvConf: String

    static let readOnlyBind: MountOptions = [.readOnly, .noSuid, .noDev, .recursive]
    /// Entries of a directory rootfs the jail gets its own of.
    static let ownEntries: Set<String> = ["proc", "sys", "dev", "tmp", "run", "etc"]

    func steps() -> [MountStep] {
        var out: [MountStep] = []
        base(&out)
        // The configured mounts' steps run last, but the ones that land in /etc need
        // mount points in the layer /etc is built from.
        let user = userMounts()
        etc(&out, mountPoints: user.compactMap { step in
            guard step.target.hasPrefix("etc/"), case .attach(let source, _) = step.action else { return nil }
            if case .hostPath(_, _, _, _, let expect) = source { return (step.target, expect == .file) }
            return (step.target, false)
        })
        dev(&out)
        proc(&out)
        out.append(MountStep(.tmpfs(data: "size=\(spec.limits.tmp),mode=1777", options: [.noSuid, .noDev]), "tmp",
                             label: "mount /tmp (tmpfs)"))
        out += user
        return out
    }

    // MARK: base

    private func base(_ out: inout [MountStep]) {
        switch spec.rootfs {
        case .host:
            for e in facts.baseEntries {
                switch e.entry {
                case .symlink(let target):
                    out.append(MountStep(.symlink(target: target), e.name, label: "symlink /\(e.name) -> \(target)"))
                case .directory:
                    out.append(MountStep(.bindHost(source: "/" + e.name, options: Self.readOnlyBind), e.name,
                                         label: "bind /\(e.name) read-only"))
                case .file, .other:
                    continue
                }
            }
        case .directory(let path):
            for e in facts.rootfsEntries where !Self.ownEntries.contains(e.name) {
                fromRoot(&out, root: path, e, target: e.name)
            }
        }
    }

    /// An entry of a directory rootfs: cloned read-only, or copied as a symlink.
    private func fromRoot(_ out: inout [MountStep], root: String, _ e: HostFacts.NamedEntry, target: String) {
        switch e.entry {
        case .symlink(let link):
            out.append(MountStep(.symlink(target: link), target, label: "symlink /\(target) -> \(link)"))
        case .directory, .file:
            out.append(MountStep(.attach(source: .rootfsEntry(root: root, name: e.name), options: Self.readOnlyBind), target,
                                 label: "mount \(root)/\(e.name) at /\(target)"))
        case .other:
            break
        }
    }

    // MARK: /etc

    /// The host's /etc, read-only, as the lower layer of an overlay whose top layer
    /// clawjail writes: the generated files (EtcPolicy.generated), a whiteout for each
    /// hidden entry, and the mount points of configured mounts under /etc. One mount,
    /// whatever the size of the host's /etc, and hidden entries are absent, not empty.
    private func etc(_ out: inout [MountStep], mountPoints: [(path: String, isFile: Bool)]) {
        let userName = spec.kind == .agent ? (spec.agent ?? "agent") : "tool"
        let home = spec.environment.first { $0.name == "HOME" }?.value ?? "/tmp"
        let values = ["@USER@": userName, "@UID@": String(spec.user), "@GID@": String(spec.user),
                      "@HOME@": home, "@HOSTNAME@": spec.hostname]
        func fill(_ template: [UInt8]) -> [UInt8] {
            var text = String(decoding: template, as: UTF8.self)
            for (k, v) in values { text = text.replacingAll(k, with: v) }
            if spec.user == 0 {
                // Root inside: no second passwd/group line for the same id.
                text = text.split(separator: "\n", omittingEmptySubsequences: false)
                    .filter { !($0.hasPrefix(userName + ":x:0:")) }.joined(separator: "\n")
            }
            return Array(text.utf8)
        }
        var generated: [(String, [UInt8])] = [
            ("hosts", fill(PackageResources.hosts)),
            ("hostname", Array((spec.hostname + "\n").utf8)),
            ("resolv.conf", Array(resolvConf.utf8)),
        ]
        switch spec.rootfs {
        case .host:
            generated += [("passwd", fill(PackageResources.passwd)), ("group", fill(PackageResources.group)),
                          ("nsswitch.conf", fill(PackageResources.nsswitch_conf)),
                          ("machine-id", Self.machineID(host: facts.hostMachineID, of: spec))]
            for (name, content) in generated {
                out.append(MountStep(.writeFile(content: content, mode: 0o644), "etc/" + name, label: "write /etc/\(name)"))
            }
            for path in spec.etcHidden where facts.etcHiddenPresent.contains(path)
                && !mountPoints.contains(where: { $0.path == "etc/" + path }) {
                out.append(MountStep(.whiteout, "etc/" + path, label: "hide /etc/\(path)"))
            }
            for m in mountPoints {
                out.append(m.isFile ? MountStep(.writeFile(content: [], mode: 0o444), m.path, label: "create the mount point /\(m.path)")
                                    : MountStep(.mkdir(mode: 0o755), m.path, label: "create the mount point /\(m.path)"))
            }
            out.append(MountStep(.overlay(lower: ["etc", "/etc"], options: [.readOnly, .noSuid, .noDev, .noExec]), "etc",
                                 label: "mount /etc (overlay: the host's /etc read-only under the generated files)"))
        case .directory(let path):
            out.append(MountStep(.mkdir(mode: 0o755), "etc", label: "create /etc"))
            let hiddenTop = Set(spec.etcHidden.filter { !$0.contains("/") })
            for e in facts.rootfsEtcEntries where !["hosts", "hostname", "resolv.conf"].contains(e.name) && !hiddenTop.contains(e.name) {
                fromRoot(&out, root: path + "/etc", e, target: "etc/" + e.name)
            }
            for (name, content) in generated {
                out.append(MountStep(.writeFile(content: content, mode: 0o644), "etc/" + name, label: "write /etc/\(name)"))
            }
            // A directory rootfs's /etc is one mount per entry: a hidden path inside one
            // is covered, not removed.
            for hidden in spec.etcHidden where hidden.contains("/") && facts.etcHiddenPresent.contains(hidden) {
                out.append(MountStep(.mask, "etc/" + hidden, optional: true, label: "hide /etc/\(hidden)"))
            }
        }
    }

    /// The jail's /etc/machine-id: 32 hex digits from a one-way hash of the host's id
    /// and the agent's name (a tool run of no agent: its run), so programs that want a
    /// machine id have one, an agent keeps its own across restarts, and no jail can
    /// read the host's or tell two tenants apart by it.
    static func machineID(host: [UInt8], of spec: JailSpec) -> [UInt8] {
        let seed = Array("clawjail machine-id 1\0".utf8) + host + [0] + Array((spec.agent ?? spec.name).utf8)
        return Array((SHA256.lowercaseHex(Array(SHA256.hash(data: seed).prefix(16))) + "\n").utf8)
    }

    // MARK: /dev and /proc

    private func dev(_ out: inout [MountStep]) {
        // /dev is a directory of the new root (read-only with it at the end, and nodev:
        // only the bound nodes below work), not a filesystem of its own. Every
        // superblock a jail holds makes each new memory cgroup on the host bigger (the
        // kernel sizes a cgroup's shrinker map by every shrinker that ever existed).
        out.append(MountStep(.mkdir(mode: 0o755), "dev", label: "create /dev"))
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            out.append(MountStep(.bindHost(source: "/dev/" + node, options: [.noSuid, .noExec]), "dev/" + node,
                                 label: "bind /dev/\(node)"))
        }
        out.append(MountStep(.devpts(data: "newinstance,ptmxmode=0666,mode=0620,gid=5"), "dev/pts", label: "mount /dev/pts (devpts)"))
        out.append(MountStep(.symlink(target: "pts/ptmx"), "dev/ptmx", label: "symlink /dev/ptmx"))
        out.append(MountStep(.tmpfs(data: "size=\(spec.limits.tmp),mode=1777", options: [.noSuid, .noDev, .noExec]), "dev/shm",
                             label: "mount /dev/shm (tmpfs)"))
        for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                               ("stderr", "/proc/self/fd/2")] {
            out.append(MountStep(.symlink(target: target), "dev/" + name, label: "symlink /dev/\(name)"))
        }
    }

    private func proc(_ out: inout [MountStep]) {
        out.append(MountStep(.proc, "proc", label: "mount /proc"))
        // The jail's own user namespace may not nest another one: 0 here makes any
        // later unshare(CLONE_NEWUSER) fail with ENOSPC even where seccomp allows it.
        out.append(MountStep(.writeExisting(content: "0"), "proc/sys/user/max_user_namespaces", optional: true,
                             label: "set max_user_namespaces to 0"))
        for name in facts.procToMask {
            out.append(MountStep(.mask, "proc/" + name, optional: true, label: "mask /proc/\(name)"))
        }
        for name in facts.procToMakeReadOnly {
            out.append(MountStep(.readOnly(options: [.noSuid, .noDev, .noExec]), "proc/" + name, optional: true,
                                 label: "make /proc/\(name) read-only"))
        }
    }

    // MARK: workspace, mounts, credentials, protect

    private func userMounts() -> [MountStep] {
        var steps: [(depth: Int, order: Int, step: MountStep)] = []
        func depth(_ target: String) -> Int { target.split(separator: "/").count }
        let workspace = spec.workspace
        for (order, m) in spec.mounts.enumerated() {
            switch m.role {
            case .workspace, .mount:
                // In a guest the host's executor already made and gave the tree (the
                // VMM's jail); the guest's jail only binds the share.
                let inGuest = spec.guest != nil
                let create = m.role == .workspace && spec.kind == .agent && !inGuest
                let give: AttachSource.GiveTree? = m.writable && !inGuest ? (spec.kind == .tool && spec.agent == nil ? .onlyFromRoot : .all) : nil
                var options: MountOptions = [.noSuid, .noDev]
                if !m.writable { options.insert(.readOnly) }
                let source = AttachSource.hostPath(m.host, role: m.role, create: create, giveTree: give,
                                                   expect: facts.mountSources[m.host] ?? (create ? .directory : nil))
                let label = "mount \(m.role == .workspace ? "workspace " : "")\(m.host) at \(m.target)\(m.writable ? "" : " read-only")"
                steps.append((depth(m.target), order, MountStep(.attach(source: source, options: options), m.target, label: label)))
            case .credentials:
                // A guest's credentials share is read-only, its modes fixed on the host.
                let source: AttachSource = spec.guest == nil ? .credentials(m.host)
                    : .hostPath(m.host, role: .credentials, create: false, giveTree: nil, expect: .directory)
                steps.append((depth(m.target), order, MountStep(.attach(source: source, options: [.readOnly, .noSuid, .noDev, .noExec]),
                                                                m.target, label: "mount credentials \(m.host) at \(m.target) read-only")))
            case .protect:
                guard let ws = workspace else { continue }
                // Pin every ancestor inside the workspace as a mount point of its own:
                // a mount point cannot be renamed, so the protected file cannot be
                // moved aside and replaced by renaming its parent.
                var prefix = ""
                for part in m.host.split(separator: "/").dropLast() {
                    prefix += (prefix.isEmpty ? "" : "/") + part
                    let pinTarget = ws.target + "/" + prefix
                    steps.append((depth(pinTarget), order, MountStep(
                        .attach(source: .protected(workspace: ws.host, relative: prefix, isDirectory: true, pin: true),
                                options: [.noSuid, .noDev]), pinTarget, label: "pin \(pinTarget)")))
                }
                steps.append((depth(m.target), order, MountStep(
                    .attach(source: .protected(workspace: ws.host, relative: m.host, isDirectory: m.isDirectoryHint, pin: false),
                            options: [.readOnly, .noSuid, .noDev]), m.target, label: "protect \(m.target) read-only")))
            }
        }
        // Parents before children; the config order breaks ties.
        return steps.sorted(by: { ($0.depth, $0.order) < ($1.depth, $1.order) }).map(\.step)
    }
}
