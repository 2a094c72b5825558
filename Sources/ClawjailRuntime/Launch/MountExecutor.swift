import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// Runs the host half of a plan's mount steps: opens every config-controlled source
/// without following symlinks, prepares it (creates, hands a writable tree to the
/// jail's outside uid, fixes credentials), clones it with open_tree, and turns each
/// step into the C child's op. Nothing is decided here: the order, the targets and the
/// flags are the plan's.
struct MountExecutor {
    let plan: LaunchPlan
    let outsideUid: UInt32

    private(set) var ops: [ChildOp] = []
    /// Detached trees and O_PATH fds to close once the child has started (or failed).
    private(set) var openFDs: [FD] = []
    /// Open workspaces (for their protect paths) and directory rootfs roots, by host path.
    private var workspaces: [String: FD] = [:]
    private var roots: [String: FD] = [:]

    init(plan: LaunchPlan, outsideUid: UInt32) {
        self.plan = plan
        self.outsideUid = outsideUid
    }

    mutating func run() throws(ClawjailError) {
        do {
            ops.reserveCapacity(plan.mounts.count)
            for step in plan.mounts { ops.append(try op(for: step)) }
        } catch {
            closeAll()
            throw error
        }
    }

    /// Closes every fd this executor opened, once: the numbers are reused right after.
    mutating func closeAll() {
        for fd in openFDs { fd.close() }
        openFDs = []
        workspaces = [:]
        roots = [:]
    }

    static func attributes(_ o: MountOptions) -> Mount.Attributes {
        var a: Mount.Attributes = []
        if o.contains(.readOnly) { a.insert(.readOnly) }
        if o.contains(.noSuid) { a.insert(.noSuid) }
        if o.contains(.noDev) { a.insert(.noDev) }
        if o.contains(.noExec) { a.insert(.noExec) }
        return a
    }

    static func msFlags(_ o: MountOptions) -> UInt64 {
        var f: UInt64 = 0
        if o.contains(.readOnly) { f |= MountFlags.readOnly }
        if o.contains(.noSuid) { f |= MountFlags.noSuid }
        if o.contains(.noDev) { f |= MountFlags.noDev }
        if o.contains(.noExec) { f |= MountFlags.noExec }
        return f
    }

    private mutating func op(for step: MountStep) throws(ClawjailError) -> ChildOp {
        let kind: ChildOp.Kind
        switch step.action {
        case .mkdir(let mode): kind = .mkdir(mode: mode)
        case .symlink(let target): kind = .symlink(target: target)
        case .writeFile(let content, let mode): kind = .writeFile(content: content, mode: mode)
        case .bindHost(let source, let options):
            kind = .bindHost(source: source, attributes: Self.attributes(options), recursive: options.contains(.recursive))
        case .attach(let source, let options):
            kind = try attach(source, options)
        case .tmpfs(let data, let options): kind = .tmpfs(options: data, flags: Self.msFlags(options))
        case .proc: kind = .proc(options: nil)
        case .devpts(let data): kind = .devpts(options: data)
        case .mask: kind = .mask(emptyDirectory: plan.root.emptyDirectory)
        case .readOnly(let options): kind = .readOnly(extra: Self.attributes(options))
        case .writeExisting(let content): kind = .writeExisting(content: content)
        case .whiteout: kind = .whiteout
        case .overlay(let lower, let options): kind = .overlay(layers: lower, flags: Self.msFlags(options))
        }
        return ChildOp(kind, step.target, optional: step.optional, label: step.label)
    }

    private mutating func attach(_ source: AttachSource, _ options: MountOptions) throws(ClawjailError) -> ChildOp.Kind {
        let attrs = Self.attributes(options)
        let recursive = options.contains(.recursive)
        switch source {
        case .hostPath(let host, let role, let create, let give, let expect):
            let fd = try HostPrep.openDirectoryOrFile(host, create: create, what: role == .workspace ? "workspace" : "mount")
            openFDs.append(fd)
            if let give {
                try HostPrep.giveTree(fd, path: host, uid: outsideUid, gid: outsideUid, onlyFromRoot: give == .onlyFromRoot)
            }
            let isFile = (try? FileSystem.stat(fd))?.isDirectory == false
            // The plan made a mount point of the type it saw (a mount under /etc).
            if let expect, (expect == .file && !isFile) || (expect == .directory && isFile) {
                throw ClawjailError(.setup, "\(host) changed from a \(isFile ? "directory" : "file") to a \(isFile ? "file" : "directory") while the jail was prepared",
                                    hint: "start the jail again")
            }
            if role == .workspace { workspaces[host] = fd }
            return .attach(fd: try clone(fd, attrs, recursive: recursive, path: host), isFile: isFile)
        case .credentials(let host):
            let fd = try HostPrep.fixCredentials(host, uid: outsideUid, gid: outsideUid)
            openFDs.append(fd)
            return .attach(fd: try clone(fd, attrs, recursive: recursive, path: host), isFile: false)
        case .protected(let workspace, let relative, let isDirectory, let pin):
            guard let ws = workspaces[workspace] else {
                throw ClawjailError(.internalError, "the plan protects \(relative) before it mounts the workspace \(workspace)")
            }
            let fd = try HostPrep.openProtected(relative, isDirectory: isDirectory, workspace: ws, workspaceHost: workspace,
                                                owner: outsideUid, pin: pin)
            openFDs.append(fd)
            let isFile = !pin && (try? FileSystem.stat(fd))?.isDirectory == false
            return .attach(fd: try clone(fd, attrs, recursive: recursive, path: workspace + "/" + relative), isFile: isFile)
        case .rootfsEntry(let rootPath, let name):
            let root: FD
            if let r = roots[rootPath] { root = r } else {
                root = try HostPrep.openDirectory(rootPath, create: false, mode: 0o755, what: "rootfs")
                openFDs.append(root)
                roots[rootPath] = root
            }
            do {
                let fd = try FileSystem.open(name, [.path, .noFollow], at: root)
                defer { fd.close() }
                let st = try FileSystem.stat(fd)
                guard st.isDirectory || st.isRegular else {
                    throw ClawjailError(.setup, "\(rootPath)/\(name) is no longer a file or directory", hint: "start the jail again")
                }
                let tree = try Mount.detachedClone(of: fd, attributes: attrs, recursive: recursive)
                openFDs.append(tree)
                return .attach(fd: tree, isFile: !st.isDirectory)
            } catch let e as ClawjailError {
                throw e
            } catch {
                throw ClawjailError(.setup, "cannot prepare \(rootPath)/\(name)", cause: error)
            }
        }
    }

    private mutating func clone(_ fd: FD, _ attrs: Mount.Attributes, recursive: Bool, path: String) throws(ClawjailError) -> FD {
        do {
            let tree = try Mount.detachedClone(of: fd, attributes: attrs, recursive: recursive)
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
