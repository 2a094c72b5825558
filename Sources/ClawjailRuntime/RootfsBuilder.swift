#if canImport(Glibc)
import Glibc
#endif
import ClawjailCore
import ClawjailSystem

/// Turns a JailSpec into the ordered list of mount-tree steps the C child performs,
/// after preparing every host directory and opening every config-controlled mount
/// source as a detached, already read-only (where asked) mount tree.
///
/// Host system directories (/usr, /lib*, /dev/null, a few /etc entries) are bound by
/// path in the child: they belong to root, so nothing in a jail can swap them. Every
/// path that a config or an agent controls is opened here, without following
/// symlinks, and cloned with open_tree (CVE-2021-30465).
struct RootfsBuilder {
    let spec: JailSpec
    let outsideUid: UInt32
    let layout: HostLayout
    let resolvConf: String

    private(set) var ops: [ChildOp] = []
    /// Detached trees and O_PATH fds to close once the child has started (or failed).
    private(set) var openFDs: [FD] = []

    init(spec: JailSpec, outsideUid: UInt32, layout: HostLayout, resolvConf: String) {
        self.spec = spec
        self.outsideUid = outsideUid
        self.layout = layout
        self.resolvConf = resolvConf
    }

    static let hostBaseEntries = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"]
    static let maskedProc = ["kcore", "keys", "key-users", "timer_list", "sched_debug", "latency_stats", "interrupts",
                             "acpi", "scsi", "kallsyms", "kpagecount", "kpageflags", "kpagecgroup", "vmallocinfo",
                             "pagetypeinfo", "slabinfo", "sysvipc", "asound", "firmware", "pressure", "mtrr", "dynamic_debug"]
    static let readOnlyProc = ["sys", "sysrq-trigger", "bus", "fs", "irq"]

    static let readOnlyAttrs: Mount.Attributes = [.readOnly, .noSuid, .noDev]

    mutating func build() throws(ClawjailError) {
        do {
            try buildBase()
            // The configured mounts are prepared first (their steps still run last): the
            // ones that land in /etc need mount points in the layer /etc is built from.
            let userMounts = try buildUserMounts()
            try buildEtc(mountPoints: userMounts.compactMap { op in
                guard op.path.hasPrefix("etc/"), case .attach(_, let isFile) = op.kind else { return nil }
                return (op.path, isFile)
            })
            buildDev()
            buildProc()
            ops.append(ChildOp(.tmpfs(options: "size=\(spec.limits.tmp),mode=1777", flags: MountFlags.noSuid | MountFlags.noDev),
                               "tmp", label: "mount /tmp (tmpfs)"))
            ops += userMounts
        } catch {
            closeAll()
            throw error
        }
    }

    /// Closes every fd this builder opened, once: the numbers are reused right after.
    mutating func closeAll() {
        for fd in openFDs { fd.close() }
        openFDs = []
    }

    // MARK: base

    private mutating func buildBase() throws(ClawjailError) {
        switch spec.rootfs {
        case .host:
            for name in Self.hostBaseEntries {
                let host = "/" + name
                guard let st = try? FileSystem.stat(host) else { continue }
                if st.isSymlink {
                    let target = (try? FileSystem.readlink(host)) ?? ""
                    ops.append(ChildOp(.symlink(target: target), name, label: "symlink /\(name) -> \(target)"))
                } else if st.isDirectory {
                    ops.append(ChildOp(.bindHost(source: host, attributes: Self.readOnlyAttrs, recursive: true), name,
                                       label: "bind /\(name) read-only"))
                }
            }
        case .directory(let path):
            let root = try HostPrep.openDirectory(path, create: false, mode: 0o755, what: "rootfs")
            openFDs.append(root)
            let names: [String]
            do { names = try FileSystem.listDirectory(root.procPath) } catch {
                throw ClawjailError(.setup, "cannot list the rootfs \(path)", cause: error)
            }
            for name in names.sorted() where !["proc", "sys", "dev", "tmp", "run", "etc"].contains(name) {
                try attachFromRoot(root, name: name, target: name, rootPath: path)
            }
        }
    }

    /// Clones `name` (inside an fd-opened root) read-only, or copies it as a symlink.
    private mutating func attachFromRoot(_ root: FD, name: String, target: String, rootPath: String) throws(ClawjailError) {
        do {
            let fd = try FileSystem.open(name, O_PATH | O_NOFOLLOW, at: root)
            defer { fd.close() }
            let st = try FileSystem.stat(fd)
            if st.isSymlink {
                let link = try FileSystem.readlink(name, at: root)
                ops.append(ChildOp(.symlink(target: link), target, label: "symlink /\(target) -> \(link)"))
                return
            }
            guard st.isDirectory || st.isRegular else { return }
            let tree = try Mount.detachedClone(of: fd, attributes: Self.readOnlyAttrs, recursive: true)
            openFDs.append(tree)
            ops.append(ChildOp(.attach(fd: tree, isFile: !st.isDirectory), target, label: "mount \(rootPath)/\(name) at /\(target)"))
        } catch {
            throw ClawjailError(.setup, "cannot prepare \(rootPath)/\(name)", cause: error)
        }
    }

    // MARK: /etc

    /// The host's /etc, read-only, as the lower layer of an overlay whose top layer
    /// clawjail writes: the generated files (EtcPolicy.generated), a whiteout for each
    /// hidden entry, and the mount points of configured mounts under /etc. One mount,
    /// whatever the size of the host's /etc, and hidden entries are absent, not empty.
    /// `mountPoints`: paths ("etc/x") that configured mounts attach to later.
    private mutating func buildEtc(mountPoints: [(path: String, isFile: Bool)]) throws(ClawjailError) {
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
                          ("nsswitch.conf", fill(PackageResources.nsswitch_conf)), ("machine-id", Self.machineID(of: spec))]
            for (name, content) in generated {
                ops.append(ChildOp(.writeFile(content: content, mode: 0o644), "etc/" + name, label: "write /etc/\(name)"))
            }
            let top = Set((try? FileSystem.listDirectory("/etc")) ?? [])
            for path in spec.etcHidden where !mountPoints.contains(where: { $0.path == "etc/" + path }) {
                let present = path.contains("/") ? FileSystem.exists("/etc/" + path) : top.contains(path)
                if present { ops.append(ChildOp(.whiteout, "etc/" + path, label: "hide /etc/\(path)")) }
            }
            for m in mountPoints {
                ops.append(m.isFile ? ChildOp(.writeFile(content: [], mode: 0o444), m.path, label: "create the mount point /\(m.path)")
                                    : ChildOp(.mkdir(mode: 0o755), m.path, label: "create the mount point /\(m.path)"))
            }
            ops.append(ChildOp(.overlay(layers: ["etc", "/etc"], flags: MountFlags.readOnly | MountFlags.noSuid | MountFlags.noDev | MountFlags.noExec),
                               "etc", label: "mount /etc (overlay: the host's /etc read-only under the generated files)"))
        case .directory(let path):
            ops.append(ChildOp(.mkdir(mode: 0o755), "etc", label: "create /etc"))
            let etc = try HostPrep.openDirectory(path + "/etc", create: false, mode: 0o755, what: "rootfs /etc")
            openFDs.append(etc)
            let names: [String]
            do { names = try FileSystem.listDirectory(etc.procPath) } catch {
                throw ClawjailError(.setup, "cannot list \(path)/etc", cause: error)
            }
            let hiddenTop = Set(spec.etcHidden.filter { !$0.contains("/") })
            for name in names.sorted() where !["hosts", "hostname", "resolv.conf"].contains(name) && !hiddenTop.contains(name) {
                try attachFromRoot(etc, name: name, target: "etc/" + name, rootPath: path + "/etc")
            }
            for (name, content) in generated {
                ops.append(ChildOp(.writeFile(content: content, mode: 0o644), "etc/" + name, label: "write /etc/\(name)"))
            }
            // A directory rootfs's /etc is one mount per entry: a hidden path inside one
            // is covered, not removed.
            for hidden in spec.etcHidden where hidden.contains("/") && FileSystem.exists(path + "/etc/" + hidden) {
                ops.append(ChildOp(.mask(emptyDirectory: layout.emptyDirectory), "etc/" + hidden, optional: true,
                                   label: "hide /etc/\(hidden)"))
            }
        }
    }

    /// The jail's /etc/machine-id: 32 hex digits from a one-way hash of the host's id
    /// and the agent's name (a tool run of no agent: its run), so programs that want a
    /// machine id have one, an agent keeps its own across restarts, and no jail can
    /// read the host's or tell two tenants apart by it.
    static func machineID(of spec: JailSpec) -> [UInt8] {
        let host = (try? FileSystem.readFile("/etc/machine-id", limit: 256)) ?? []
        let seed = Array("clawjail machine-id 1\0".utf8) + host + [0] + Array((spec.agent ?? spec.name).utf8)
        return Array((SHA256.lowercaseHex(Array(SHA256.hash(data: seed).prefix(16))) + "\n").utf8)
    }

    // MARK: /dev and /proc

    private mutating func buildDev() {
        // /dev is a directory of the new root (read-only with it at the end, and nodev:
        // only the bound nodes below work), not a filesystem of its own. Every
        // superblock a jail holds makes each new memory cgroup on the host bigger (the
        // kernel sizes a cgroup's shrinker map by every shrinker that ever existed).
        ops.append(ChildOp(.mkdir(mode: 0o755), "dev", label: "create /dev"))
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            ops.append(ChildOp(.bindHost(source: "/dev/" + node, attributes: [.noSuid, .noExec], recursive: false),
                               "dev/" + node, label: "bind /dev/\(node)"))
        }
        ops.append(ChildOp(.devpts(options: "newinstance,ptmxmode=0666,mode=0620,gid=5"), "dev/pts", label: "mount /dev/pts (devpts)"))
        ops.append(ChildOp(.symlink(target: "pts/ptmx"), "dev/ptmx", label: "symlink /dev/ptmx"))
        ops.append(ChildOp(.tmpfs(options: "size=\(spec.limits.tmp),mode=1777", flags: MountFlags.noSuid | MountFlags.noDev | MountFlags.noExec),
                           "dev/shm", label: "mount /dev/shm (tmpfs)"))
        for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                               ("stderr", "/proc/self/fd/2")] {
            ops.append(ChildOp(.symlink(target: target), "dev/" + name, label: "symlink /dev/\(name)"))
        }
    }

    private mutating func buildProc() {
        ops.append(ChildOp(.proc(options: nil), "proc", label: "mount /proc"))
        // The jail's own user namespace may not nest another one: 0 here makes any
        // later unshare(CLONE_NEWUSER) fail with ENOSPC even where seccomp allows it.
        ops.append(ChildOp(.writeExisting(content: "0"), "proc/sys/user/max_user_namespaces", optional: true,
                           label: "set max_user_namespaces to 0"))
        // The jail's procfs shows the same kernel's files as the host's: what this kernel
        // lacks needs no step, and a file only host root may read (0400, root) already
        // reads as EACCES inside, where nobody is root outside. Every mount less is
        // cheaper to set up and to tear down.
        for name in Self.maskedProc where Self.needsMask(name) {
            ops.append(ChildOp(.mask(emptyDirectory: layout.emptyDirectory), "proc/" + name, optional: true, label: "mask /proc/\(name)"))
        }
        for name in Self.readOnlyProc where (try? FileSystem.stat("/proc/" + name)) != nil {
            ops.append(ChildOp(.readOnly(extra: [.noSuid, .noDev, .noExec]), "proc/" + name, optional: true,
                               label: "make /proc/\(name) read-only"))
        }
    }

    static func needsMask(_ name: String) -> Bool {
        do {
            let st = try FileSystem.stat("/proc/" + name)
            return !(st.isRegular && st.uid == 0 && st.permissions & 0o066 == 0)
        } catch {
            return error != .ENOENT
        }
    }

    // MARK: workspace, mounts, credentials, protect

    /// The steps of the workspace, [[mount]]s, credentials and protect paths, parents
    /// before children, after the host side of each is prepared.
    private mutating func buildUserMounts() throws(ClawjailError) -> [ChildOp] {
        var workspaceFD: FD?
        var workspaceHost = ""
        var attaches: [(depth: Int, order: Int, op: ChildOp)] = []
        func depth(_ target: String) -> Int { target.split(separator: "/").count }

        for (order, m) in spec.mounts.enumerated() {
            switch m.role {
            case .workspace, .mount:
                let create = m.role == .workspace && spec.kind == .agent
                let fd = try HostPrep.openDirectoryOrFile(m.host, create: create, what: m.role == .workspace ? "workspace" : "mount")
                openFDs.append(fd)
                if m.writable {
                    try HostPrep.giveTree(fd, path: m.host, uid: outsideUid, gid: outsideUid,
                                          onlyFromRoot: spec.kind == .tool && spec.agent == nil)
                }
                let isFile = (try? FileSystem.stat(fd))?.isDirectory == false
                var attrs: Mount.Attributes = [.noSuid, .noDev]
                if !m.writable { attrs.insert(.readOnly) }
                let tree = try clone(fd, attrs, path: m.host)
                if m.role == .workspace {
                    workspaceFD = fd
                    workspaceHost = m.host
                }
                attaches.append((depth(m.target), order, ChildOp(.attach(fd: tree, isFile: isFile), m.target,
                                                                  label: "mount \(m.role == .workspace ? "workspace " : "")\(m.host) at \(m.target)\(m.writable ? "" : " read-only")")))
            case .credentials:
                let fd = try HostPrep.fixCredentials(m.host, uid: outsideUid, gid: outsideUid)
                openFDs.append(fd)
                let tree = try clone(fd, [.readOnly, .noSuid, .noDev, .noExec], path: m.host)
                attaches.append((depth(m.target), order, ChildOp(.attach(fd: tree, isFile: false), m.target,
                                                                  label: "mount credentials \(m.host) at \(m.target) read-only")))
            case .protect:
                guard let ws = workspaceFD else { continue }
                // Pin every ancestor inside the workspace as a mount point of its own:
                // a mount point cannot be renamed, so the protected file cannot be
                // moved aside and replaced by renaming its parent.
                var prefix = ""
                let parts = m.host.split(separator: "/").map(String.init)
                for part in parts.dropLast() {
                    prefix += (prefix.isEmpty ? "" : "/") + part
                    let pin = try HostPrep.openProtected(prefix, isDirectory: true, workspace: ws, workspaceHost: workspaceHost,
                                                         owner: outsideUid, pin: true)
                    openFDs.append(pin)
                    let tree = try clone(pin, [.noSuid, .noDev], path: workspaceHost + "/" + prefix)
                    let pinTarget = (spec.workspace?.target ?? "") + "/" + prefix
                    attaches.append((depth(pinTarget), order, ChildOp(.attach(fd: tree, isFile: false), pinTarget,
                                                                       label: "pin \(pinTarget)")))
                }
                let fd = try HostPrep.openProtected(m.host, isDirectory: m.isDirectoryHint, workspace: ws, workspaceHost: workspaceHost,
                                                    owner: outsideUid)
                openFDs.append(fd)
                let isFile = (try? FileSystem.stat(fd))?.isDirectory == false
                let tree = try clone(fd, [.readOnly, .noSuid, .noDev], path: workspaceHost + "/" + m.host)
                attaches.append((depth(m.target), order, ChildOp(.attach(fd: tree, isFile: isFile), m.target,
                                                                  label: "protect \(m.target) read-only")))
            }
        }
        // Parents before children; the config order breaks ties.
        return attaches.sorted(by: { ($0.depth, $0.order) < ($1.depth, $1.order) }).map(\.op)
    }

    private mutating func clone(_ fd: FD, _ attrs: Mount.Attributes, path: String) throws(ClawjailError) -> FD {
        do {
            let tree = try Mount.detachedClone(of: fd, attributes: attrs, recursive: false)
            openFDs.append(tree)
            return tree
        } catch {
            throw ClawjailError(.setup, "cannot clone the mount tree of \(path)", cause: error)
        }
    }
}

extension HostPrep {
    /// Like openDirectory, but a [[mount]] may also name a single file.
    static func openDirectoryOrFile(_ path: String, create: Bool, what: String) throws(ClawjailError) -> FD {
        if create { return try openDirectory(path, create: true, mode: 0o750, what: what) }
        do {
            return try FileSystem.openNoSymlinks(path, O_PATH)
        } catch {
            throw pathError(error, path: path, what: what)
        }
    }
}

extension String {
    /// Every occurrence of `target` replaced, left to right. On UTF-8 bytes: the
    /// generic string search of the standard library costs more to set up than the
    /// jail's /etc templates take to fill, on every exec. (A match of valid UTF-8 can
    /// only start at a character boundary, so bytes give the same result.)
    func replacingAll(_ target: String, with replacement: String) -> String {
        let t = Array(target.utf8)
        guard let first = t.first else { return self }
        let s = Array(utf8)
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var matched = false
        var i = 0
        while i < s.count {
            if s[i] == first, i + t.count <= s.count, s[i..<(i + t.count)].elementsEqual(t) {
                out.append(contentsOf: replacement.utf8)
                i += t.count
                matched = true
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return matched ? String(decoding: out, as: UTF8.self) : self
    }
}

extension Substring {
    func range(of target: String) -> Range<Substring.Index>? {
        let t = Array(target.utf8)
        let u = self.utf8
        var i = u.startIndex
        while i != u.endIndex {
            var j = i
            var k = 0
            while k < t.count, j != u.endIndex, u[j] == t[k] {
                j = u.index(after: j)
                k += 1
            }
            if k == t.count { return i..<j }
            i = u.index(after: i)
        }
        return nil
    }
}
