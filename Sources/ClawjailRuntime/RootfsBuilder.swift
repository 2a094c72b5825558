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
    /// The host /etc entries a jail may see (read-only): what programs need to start,
    /// find libraries, verify TLS and name things. No shadow, keys or machine-id.
    static let hostEtcEntries = ["alternatives", "ssl", "ca-certificates", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
                                 "localtime", "timezone", "protocols", "services", "mime.types", "os-release",
                                 "debian_version", "gai.conf", "host.conf", "inputrc", "terminfo", "magic", "magic.mime",
                                 "perl", "python3", "gitconfig", "wgetrc", "nanorc", "vim"]
    static let generatedEtc = ["passwd", "group", "hosts", "nsswitch.conf", "hostname", "resolv.conf"]
    static let maskedProc = ["kcore", "keys", "key-users", "timer_list", "sched_debug", "latency_stats", "interrupts",
                             "acpi", "scsi", "kallsyms", "kpagecount", "kpageflags", "kpagecgroup", "vmallocinfo",
                             "pagetypeinfo", "slabinfo", "sysvipc", "asound", "firmware", "pressure", "mtrr", "dynamic_debug"]
    static let readOnlyProc = ["sys", "sysrq-trigger", "bus", "fs", "irq"]

    static let readOnlyAttrs: Mount.Attributes = [.readOnly, .noSuid, .noDev]

    mutating func build() throws(ClawjailError) {
        do {
            try buildBase()
            try buildEtc()
            buildDev()
            buildProc()
            ops.append(ChildOp(.tmpfs(options: "size=\(spec.limits.tmp),mode=1777", flags: MountFlags.noSuid | MountFlags.noDev),
                               "tmp", label: "mount /tmp (tmpfs)"))
            try buildUserMounts()
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

    private mutating func buildEtc() throws(ClawjailError) {
        ops.append(ChildOp(.mkdir(mode: 0o755), "etc", label: "create /etc"))
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
        // /etc as one mount of its own: the host entries are bound into it without
        // attributes and one recursive mount_setattr makes the whole tree read-only,
        // instead of a mount_setattr per entry. Not when a configured mount lands under
        // /etc: its mount point must be created after the others, in a writable /etc.
        let etcAttrs: Mount.Attributes = [.readOnly, .noSuid, .noDev, .noExec]
        let grouped = spec.rootfs == .host && !spec.mounts.contains { $0.target == "/etc" || $0.target.hasPrefix("/etc/") }
        switch spec.rootfs {
        case .host:
            generated += [("passwd", fill(PackageResources.passwd)), ("group", fill(PackageResources.group)),
                          ("nsswitch.conf", fill(PackageResources.nsswitch_conf))]
            if grouped { ops.append(ChildOp(.bindSelf, "etc", label: "make /etc a mount")) }
            for name in Self.hostEtcEntries + Self.pythonEtcEntries() {
                let host = "/etc/" + name
                guard let st = try? FileSystem.stat(host) else { continue }
                if st.isSymlink {
                    let target = (try? FileSystem.readlink(host)) ?? ""
                    ops.append(ChildOp(.symlink(target: target), "etc/" + name, label: "symlink /etc/\(name)"))
                } else {
                    ops.append(ChildOp(.bindHost(source: host, attributes: grouped ? [] : etcAttrs, recursive: st.isDirectory,
                                                 isFile: !st.isDirectory),
                                       "etc/" + name, optional: true, label: "bind /etc/\(name) read-only"))
                }
            }
        case .directory(let path):
            let etc = try HostPrep.openDirectory(path + "/etc", create: false, mode: 0o755, what: "rootfs /etc")
            openFDs.append(etc)
            let names: [String]
            do { names = try FileSystem.listDirectory(etc.procPath) } catch {
                throw ClawjailError(.setup, "cannot list \(path)/etc", cause: error)
            }
            for name in names.sorted() where !["hosts", "hostname", "resolv.conf"].contains(name) {
                try attachFromRoot(etc, name: name, target: "etc/" + name, rootPath: path + "/etc")
            }
        }
        for (name, content) in generated {
            ops.append(ChildOp(.writeFile(content: content, mode: 0o644), "etc/" + name, label: "write /etc/\(name)"))
        }
        if grouped { ops.append(ChildOp(.setAttributes(etcAttrs, recursive: true), "etc", label: "make /etc read-only")) }
    }

    static func pythonEtcEntries() -> [String] {
        ((try? FileSystem.listDirectory("/etc")) ?? []).filter { $0.hasPrefix("python3.") }
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

    private mutating func buildUserMounts() throws(ClawjailError) {
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
        for a in attaches.sorted(by: { ($0.depth, $0.order) < ($1.depth, $1.order) }) { ops.append(a.op) }
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
