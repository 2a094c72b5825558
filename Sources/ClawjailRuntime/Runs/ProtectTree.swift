import ClawjailCore
import ClawjailStore
import ClawjailSystem

/// The protected paths of a workspace as files on the host, read without ever following
/// a symlink: every open is relative to the workspace's fd, beneath it, with
/// RESOLVE_NO_SYMLINKS (the workspace belongs to the agent, and a skill may have left
/// links in it), and directories are walked through fds opened with O_NOFOLLOW.
public enum ProtectTree {
    public enum NodeType: Sendable, Equatable {
        case file
        case directory
        /// A symlink, a device, a socket, ... : never read, never followed.
        case other(String)
    }

    public struct Node: Sendable {
        public var path: String
        public var type: NodeType
        public var mode: UInt32 = 0
        public var uid: UInt32 = 0
        public var gid: UInt32 = 0
        public var size: Int64 = 0
        public var sha256: String?
        public init(path: String, type: NodeType, mode: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0, size: Int64 = 0, sha256: String? = nil) {
            self.path = path
            self.type = type
            self.mode = mode
            self.uid = uid
            self.gid = gid
            self.size = size
            self.sha256 = sha256
        }
    }

    public struct Limits {
        public var maxFiles = 10_000
        public var maxFileBytes: Int64 = 64 << 20
        public var maxTotalBytes: Int64 = 512 << 20
        public init() {}
    }

    public static let resolve = FileSystem.resolveBeneath | FileSystem.resolveNoSymlinks

    /// Opens the workspace (no symlink anywhere on its path).
    public static func openWorkspace(_ path: String) throws(ClawjailError) -> FD {
        do {
            return try FileSystem.openNoSymlinks(path, [.readOnly, .directory])
        } catch {
            throw HostPrep.pathError(error, path: path, what: "workspace")
        }
    }

    /// Every file and directory under the protected entries ("SOUL.md", "skills/"),
    /// sorted by path. `onFile` reads each regular file through its fd and returns its
    /// SHA-256 (and may copy it meanwhile).
    public static func scan(workspace ws: FD, entries: [String], limits: Limits = Limits(),
                     onFile: (String, FD, Stat) throws(ClawjailError) -> String) throws(ClawjailError) -> [Node] {
        var nodes: [String: Node] = [:]
        var total: Int64 = 0
        for entry in entries {
            let rel = entry.hasSuffix("/") ? String(entry.dropLast()) : entry
            if nodes[rel] != nil { continue }
            let fd: FD
            do {
                fd = try FileSystem.openat2(rel, O_PATH, resolve: resolve, at: ws)
            } catch where error == .ENOENT {
                continue
            } catch where error == .ELOOP || error == .EXDEV {
                nodes[rel] = Node(path: rel, type: .other("a symlink (on the path or the entry itself)"))
                continue
            } catch {
                throw ClawjailError(.setup, "cannot open the protected path \(rel)", cause: error)
            }
            defer { fd.close() }
            let st: Stat
            do { st = try FileSystem.stat(fd) } catch { throw ClawjailError(.setup, "cannot stat \(rel)", cause: error) }
            try visit(rel, pathFD: fd, st: st, nodes: &nodes, total: &total, limits: limits, depth: 0, onFile: onFile)
        }
        return nodes.values.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    }

    private static func visit(_ rel: String, pathFD: FD, st: Stat, nodes: inout [String: Node], total: inout Int64,
                              limits: Limits, depth: Int,
                              onFile: (String, FD, Stat) throws(ClawjailError) -> String) throws(ClawjailError) {
        var node = Node(path: rel, type: .file, mode: st.permissions, uid: st.uid, gid: st.gid, size: st.size)
        if st.isRegular {
            guard nodes.count < limits.maxFiles else {
                throw ClawjailError(.setup, "more than \(limits.maxFiles) protected files; protect fewer paths")
            }
            guard st.size <= limits.maxFileBytes else {
                throw ClawjailError(.setup, "the protected file \(DisplayText.safeLine(rel)) is \(DisplayText.bytes(UInt64(st.size))), "
                                    + "more than the \(DisplayText.bytes(UInt64(limits.maxFileBytes))) a snapshot takes per file")
            }
            total += st.size
            guard total <= limits.maxTotalBytes else {
                throw ClawjailError(.setup, "the protected files add up to more than \(DisplayText.bytes(UInt64(limits.maxTotalBytes)))")
            }
            let file: FD
            // Reopened through the O_PATH fd's magic link: exactly the inode that was checked.
            do { file = try FileSystem.open(pathFD.procPath, [.readOnly, .nonBlocking]) } catch {
                throw ClawjailError(.setup, "cannot read \(DisplayText.safeLine(rel))", cause: error)
            }
            defer { file.close() }
            node.sha256 = try onFile(rel, file, st)
            nodes[rel] = node
        } else if st.isDirectory {
            node.type = .directory
            node.size = 0
            nodes[rel] = node
            guard depth < 64 else { throw ClawjailError(.setup, "\(DisplayText.safeLine(rel)) is nested too deep") }
            let dir: FD
            let names: [String]
            do {
                dir = try FileSystem.open(pathFD.procPath, [.readOnly, .directory])
                names = try FileSystem.listDirectory(".", at: dir).sorted()
            } catch {
                throw ClawjailError(.setup, "cannot list \(DisplayText.safeLine(rel))", cause: error)
            }
            defer { dir.close() }
            for name in names {
                let child = rel + "/" + name
                let fd: FD
                do { fd = try FileSystem.open(name, [.path, .noFollow], at: dir) } catch {
                    throw ClawjailError(.setup, "cannot open \(DisplayText.safeLine(child))", cause: error)
                }
                defer { fd.close() }
                let cst: Stat
                do { cst = try FileSystem.stat(fd) } catch { throw ClawjailError(.setup, "cannot stat \(child)", cause: error) }
                try visit(child, pathFD: fd, st: cst, nodes: &nodes, total: &total, limits: limits, depth: depth + 1, onFile: onFile)
            }
        } else {
            node.type = .other(st.isSymlink ? "a symlink" : "not a regular file or directory")
            node.size = 0
            nodes[rel] = node
        }
    }

    /// SHA-256 of everything readable from `fd`, written to `copy` too when given.
    public static func hash(_ fd: FD, copy: FD? = nil) throws(Errno) -> (sha256: String, size: Int64) {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var size: Int64 = 0
        while true {
            let n = try fd.read(into: &buffer)
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            if let copy { try copy.writeAll(Array(buffer[0..<n])) }
            size += Int64(n)
        }
        return (SHA256.lowercaseHex(hasher.finalize()), size)
    }

    // MARK: - directories we own (snapshots)

    /// mkdir (existing is fine) and open it, refusing anything but a directory of ours,
    /// and giving it `mode`.
    public static func ensureDirectory(_ name: String, at dir: FD, mode: mode_t) throws(Errno) -> FD {
        try FileSystem.ensureDirectory(name, mode: mode, at: dir)
        let fd = try FileSystem.open(name, [.readOnly, .directory, .noFollow], at: dir)
        do throws(Errno) {
            let st = try fd.stat()
            guard st.uid == ProcessInfoLite.effectiveUserID else { throw Errno.EPERM }
            if st.permissions != mode { try fd.setMode(mode) }
        } catch {
            fd.close()
            throw error
        }
        return fd
    }

    /// Opens (creating as needed) the directory chain `a/b/c` below `root`, one component
    /// at a time, each opened beneath the last and never through a symlink.
    public static func openChain(_ rel: String, at root: FD, create: (String) -> (mode: mode_t, uid: UInt32?, gid: UInt32?)?) throws(Errno) -> FD {
        var current = try FileSystem.open(".", [.readOnly, .directory], at: root)
        var prefix = ""
        for part in rel.split(separator: "/").map(String.init) {
            prefix += (prefix.isEmpty ? "" : "/") + part
            if let how = create(prefix) {
                let made: Bool
                do { made = try FileSystem.ensureDirectory(part, mode: how.mode, at: current) } catch {
                    current.close()
                    throw error
                }
                if made {
                    if let uid = how.uid, let gid = how.gid { try? FileSystem.chown(part, at: current, uid: uid, gid: gid) }
                    try? FileSystem.chmod(part, how.mode, at: current)
                }
            }
            let next: FD
            do { next = try FileSystem.openat2(part, [.readOnly, .directory], resolve: resolve, at: current) } catch {
                current.close()
                throw error
            }
            current.close()
            current = next
        }
        return current
    }

    /// rm -r of `name` in `dir`, never following a symlink (links are removed, not walked).
    public static func removeTree(_ name: String, at dir: FD, depth: Int = 0) throws(Errno) {
        let st = try FileSystem.stat(name, at: dir)
        if st.isDirectory && depth < 128 {
            let sub = try FileSystem.open(name, [.readOnly, .directory, .noFollow], at: dir)
            defer { sub.close() }
            for child in try FileSystem.listDirectory(".", at: sub) {
                try removeTree(child, at: sub, depth: depth + 1)
            }
            try FileSystem.rmdir(name, at: dir)
        } else {
            try FileSystem.unlink(name, at: dir)
        }
    }

    /// The contents of a (small) file below `root`, read beneath it.
    public static func read(_ rel: String, at root: FD, limit: Int) throws(Errno) -> [UInt8] {
        let fd = try FileSystem.openat2(rel, [.readOnly, .nonBlocking], resolve: resolve, at: root)
        defer { fd.close() }
        return try fd.readAll(limit: limit)
    }
}

/// The protect hashes a run records in its manifest (`protect_hashes`): path -> SHA-256
/// of every regular file under the agent's protected paths at run start, so that
/// "which SOUL.md did Tuesday's run have?" has an answer.
public enum ProtectHashes {
    public static func manifestValue(spec: JailSpec) -> JSONValue {
        guard !spec.protect.isEmpty, let ws = spec.mounts.first(where: { $0.role == .workspace })?.host,
              let fd = try? FileSystem.openNoSymlinks(ws, [.readOnly, .directory]) else { return .object([:]) }
        defer { fd.close() }
        var limits = ProtectTree.Limits()
        limits.maxFiles = 1000
        limits.maxFileBytes = 16 << 20
        limits.maxTotalBytes = 64 << 20
        let nodes: [ProtectTree.Node]
        do {
            nodes = try ProtectTree.scan(workspace: fd, entries: spec.protect, limits: limits) { (_, file, _) throws(ClawjailError) in
                do { return try ProtectTree.hash(file).sha256 } catch { throw ClawjailError(.setup, "read", cause: error) }
            }
        } catch {
            return .object(["error": .string(error.message)])
        }
        var out: [String: JSONValue] = [:]
        for n in nodes {
            switch n.type {
            case .file: out[n.path] = .string(n.sha256 ?? "")
            case .directory: continue
            case .other(let what): out[n.path] = .string(what)
            }
        }
        return .object(out)
    }
}
