import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// Host-side preparation of the directories a jail gets, done through fds opened
/// without following symlinks, so that nothing an agent left in its workspace can
/// redirect a chown, a chmod or a mount.
enum HostPrep {
    /// Opens (and, if asked, creates) a host directory as an O_PATH fd, refusing
    /// symlinks anywhere on the path.
    static func openDirectory(_ path: String, create: Bool, mode: mode_t, what: String) throws(ClawjailError) -> FD {
        do {
            let fd = try FileSystem.openNoSymlinks(path, [.path, .directory])
            return fd
        } catch where error == .ENOENT && create {
            let old = FileSystem.umask(0o077)
            defer { _ = FileSystem.umask(old) }
            do {
                try FileSystem.mkdirs(Paths.dirname(path), mode: 0o755)
                try FileSystem.mkdir(path, mode: mode)
            } catch {
                throw ClawjailError(.setup, "cannot create the \(what) directory \(path)", cause: error)
            }
            return try openDirectory(path, create: false, mode: mode, what: what)
        } catch {
            throw pathError(error, path: path, what: what)
        }
    }

    static func pathError(_ e: Errno, path: String, what: String) -> ClawjailError {
        switch e {
        case .ELOOP:
            return ClawjailError(.config, "the \(what) path \(path) goes through a symlink",
                                 hint: "write the real path (`realpath \(path)` shows it); symlinks are refused so that nothing can redirect a mount (CVE-2021-30465)")
        case .ENOENT:
            return ClawjailError(.config, "the \(what) path \(path) does not exist")
        case .ENOTDIR:
            return ClawjailError(.config, "the \(what) path \(path) is not a directory")
        default:
            return ClawjailError(.setup, "cannot open the \(what) path \(path)", cause: e)
        }
    }

    /// Gives a workspace (or rw mount, a directory or a file) to the jail's outside uid. The walk runs only
    /// when the top directory is not yet owned by that uid, so it costs a full tree
    /// walk once and one fstat afterwards. It never follows symlinks and never leaves
    /// the filesystem of the top directory.
    static func giveTree(_ fd: FD, path: String, uid: UInt32, gid: UInt32, onlyFromRoot: Bool) throws(ClawjailError) {
        let top: Stat
        do { top = try FileSystem.stat(fd) } catch { throw ClawjailError(.setup, "cannot stat \(path)", cause: error) }
        if top.uid == uid && top.gid == gid { return }
        // An anonymous tool run takes over root's scratch directories only: a directory
        // of an agent or of a person is not its to chown.
        if onlyFromRoot && top.uid != 0 {
            let owner = top.uid >= IdRanges.base ? "a clawjail agent (uid \(top.uid))" : "uid \(top.uid)"
            throw ClawjailError(.permission, "\(path) belongs to \(owner); an anonymous tool run only takes over directories owned by root",
                                hint: top.uid >= IdRanges.base ? "run the tool for that agent: clawjail exec --agent NAME ..." : "pass a scratch directory owned by root, or chown this one to root first")
        }
        do {
            // A read-write [[mount]] of a single file: that file only.
            guard top.isDirectory else { return try FileSystem.chown(fd, uid: uid, gid: gid) }
            let dir = try FileSystem.open(fd.procPath, [.readOnly, .directory])
            defer { dir.close() }
            try FileSystem.chown(fd, uid: uid, gid: gid)
            var budget = 2_000_000
            try chownBelow(dir, device: top.device, uid: uid, gid: gid, depth: 0, budget: &budget)
        } catch {
            throw ClawjailError(.setup, "cannot give \(path) to uid \(uid)", hint: "check that the filesystem is writable by root", cause: error)
        }
    }

    private static func chownBelow(_ dir: FD, device: UInt64, uid: UInt32, gid: UInt32, depth: Int,
                                   budget: inout Int) throws(Errno) {
        guard depth < 256 else { return }
        for name in try FileSystem.listDirectory(".", at: dir) {
            budget -= 1
            if budget <= 0 { return }
            let st = try FileSystem.stat(name, at: dir)
            if st.device != device { continue }   // a mount point of another filesystem
            if st.uid != uid || st.gid != gid {
                try FileSystem.chown(name, at: dir, uid: uid, gid: gid)
            }
            if st.isDirectory {
                let sub = try FileSystem.open(name, [.readOnly, .directory, .noFollow], at: dir)
                defer { sub.close() }
                try chownBelow(sub, device: device, uid: uid, gid: gid, depth: depth + 1, budget: &budget)
            }
        }
    }

    /// Checks and fixes a credentials directory: 0700 directories and 0600 files, all
    /// owned by the agent's outside uid. Refuses symlinks, hard links and special
    /// files, and lists every file it could not fix.
    static func fixCredentials(_ path: String, uid: UInt32, gid: UInt32) throws(ClawjailError) -> FD {
        let fd = try openDirectory(path, create: true, mode: 0o700, what: "credentials")
        var problems: [String] = []
        var fixed: [String] = []
        do {
            try fixEntry(fd, display: path, isDirectory: true, uid: uid, gid: gid, problems: &problems, fixed: &fixed)
            let dir = try FileSystem.open(fd.procPath, [.readOnly, .directory])
            defer { dir.close() }
            try walkCredentials(dir, display: path, uid: uid, gid: gid, depth: 0, problems: &problems, fixed: &fixed)
        } catch {
            fd.close()
            throw ClawjailError(.setup, "cannot check the credentials directory \(path)", cause: error)
        }
        if !problems.isEmpty {
            fd.close()
            throw ClawjailError(.permission, "refusing to start: the credentials directory has files clawjail cannot make private:\n    "
                                + problems.joined(separator: "\n    "),
                                hint: "fix or remove them; credentials must be plain files readable only by the agent (0600)")
        }
        if !fixed.isEmpty {
            Log.info("fixed credentials permissions: " + fixed.joined(separator: ", "))
        }
        return fd
    }

    private static func walkCredentials(_ dir: FD, display: String, uid: UInt32, gid: UInt32, depth: Int,
                                        problems: inout [String], fixed: inout [String]) throws(Errno) {
        guard depth < 32 else {
            problems.append("\(display): nested too deep")
            return
        }
        for name in try FileSystem.listDirectory(".", at: dir).sorted() {
            let shown = display + "/" + name
            let entry: FD
            do {
                entry = try FileSystem.open(name, [.path, .noFollow], at: dir)
            } catch {
                problems.append("\(shown): cannot open (\(error))")
                continue
            }
            defer { entry.close() }
            let st = try FileSystem.stat(entry)
            if st.isSymlink {
                problems.append("\(shown) is a symlink; put the file itself in the directory")
            } else if st.isDirectory {
                try fixEntry(entry, display: shown, isDirectory: true, uid: uid, gid: gid, problems: &problems, fixed: &fixed)
                let sub = try FileSystem.open(entry.procPath, [.readOnly, .directory])
                defer { sub.close() }
                try walkCredentials(sub, display: shown, uid: uid, gid: gid, depth: depth + 1, problems: &problems, fixed: &fixed)
            } else if st.isRegular {
                if st.nlink > 1 {
                    problems.append("\(shown) has \(st.nlink) hard links; a chmod here would change the other names too")
                } else {
                    try fixEntry(entry, display: shown, isDirectory: false, uid: uid, gid: gid, problems: &problems, fixed: &fixed)
                }
            } else {
                problems.append("\(shown) is not a regular file or directory")
            }
        }
    }

    private static func fixEntry(_ fd: FD, display: String, isDirectory: Bool, uid: UInt32, gid: UInt32,
                                 problems: inout [String], fixed: inout [String]) throws(Errno) {
        let st = try FileSystem.stat(fd)
        let wanted: UInt32 = isDirectory ? 0o700 : 0o600
        if st.uid != uid || st.gid != gid {
            do { try FileSystem.chown(fd, uid: uid, gid: gid) } catch {
                problems.append("\(display): cannot change owner (\(error))")
                return
            }
        }
        if st.permissions != wanted {
            do {
                try FileSystem.chmod(fd, mode_t(wanted))
                if st.permissions & 0o077 != 0 {
                    fixed.append("\(display) \(String(st.permissions, radix: 8)) -> \(String(wanted, radix: 8))")
                }
            } catch {
                if st.permissions & 0o077 != 0 {
                    problems.append("\(display) is mode \(String(st.permissions, radix: 8)) (group/world readable) and cannot be changed (\(error))")
                }
            }
        }
    }

    /// Opens a protected path below the workspace (never through a symlink, never
    /// outside it), creating it when missing: an empty file, or a directory for a
    /// trailing "/" entry. Created entries belong to root, so the host operator owns them.
    static func openProtected(_ relative: String, isDirectory: Bool, workspace: FD,
                              workspaceHost: String, owner: UInt32, pin: Bool = false) throws(ClawjailError) -> FD {
        let resolve = FileSystem.resolveBeneath | FileSystem.resolveNoSymlinks
        do {
            return try FileSystem.openat2(relative, O_PATH, resolve: resolve, at: workspace)
        } catch where error == .ENOENT {
            do {
                // Walk down one component at a time, each opened beneath the last:
                // mkdirat with a multi-component path would follow a planted symlink.
                var current = try FileSystem.openat2(".", [.path, .directory], resolve: resolve, at: workspace)
                defer { current.close() }
                let parent = Paths.dirname(relative)
                if parent != "." {
                    for part in parent.split(separator: "/").map(String.init) {
                        if try FileSystem.ensureDirectory(part, mode: 0o755, at: current) {
                            // A directory on the way belongs to the agent like the rest
                            // of its workspace; only the protected entry is root's.
                            try FileSystem.chown(part, at: current, uid: owner, gid: owner)
                        }
                        let next = try FileSystem.openat2(part, [.path, .directory], resolve: resolve, at: current)
                        current.close()
                        current = next
                    }
                }
                let name = Paths.basename(relative)
                if isDirectory {
                    try FileSystem.mkdir(name, mode: 0o755, at: current)
                    // A pinned ancestor is an ordinary workspace directory: the agent's.
                    if pin { try FileSystem.chown(name, at: current, uid: owner, gid: owner) }
                } else {
                    let f = try FileSystem.open(name, [.writeOnly, .create, .exclusive, .noFollow], mode: 0o644, at: current)
                    f.close()
                }
                return try FileSystem.openat2(relative, O_PATH, resolve: resolve, at: workspace)
            } catch {
                throw ClawjailError(.setup, "cannot create the protected path \(workspaceHost)/\(relative)", cause: error)
            }
        } catch {
            if error == .ELOOP || error == .EXDEV {
                throw ClawjailError(.config, "the protected path \(workspaceHost)/\(relative) is (or goes through) a symlink",
                                    hint: "a skill may have replaced it; restore it with `clawjail protect restore`, or remove the link")
            }
            throw ClawjailError(.setup, "cannot open the protected path \(workspaceHost)/\(relative)", cause: error)
        }
    }
}
