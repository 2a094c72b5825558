import ClawjailCore
import ClawjailStore
import ClawjailSystem
import ClawjailRuntime

/// `clawjail protect snapshot|diff|restore|list NAME`: copies of an agent's protected
/// memory and skill files, kept outside every jail.
///
/// Layout: <state>/snapshots/<agent>/<id>/files/<path> (directories 0700, files 0600)
/// plus <id>/meta.json (modes and owners to restore). The store records each file's
/// SHA-256 (`recordSnapshot`, with a `protect.snapshot` audit event) and prunes beyond
/// the kept count; pruned copies are deleted here. A copy is checked against its
/// recorded hash before it is restored.
public enum Protect {
    public static let defaultKeep = 10

    struct AgentContext {
        var name: String
        var workspace: String
        var entries: [String]
    }

    static func context(_ name: String, store: Store, layout: HostLayout) throws(ClawjailError) -> AgentContext {
        let record: AgentRecord?
        do { record = try store.agent(name: name) } catch { throw StoreAccess.wrap(error, "looking up agent \(name)") }
        guard let record else {
            throw ClawjailError(.notFound, "no agent named \(OperatorText.safeLine(name))",
                                hint: "an agent is known once `clawjail run` has started it")
        }
        let config = try CheckReport.loadAgentConfig(record.configPath, layout: layout)
        guard let ws = config.workspace?.host, !config.protect.isEmpty else {
            throw ClawjailError(.config, "agent \(name) protects no paths (\(record.configPath) has no [protect] paths)",
                                hint: "add [protect] paths = [\"SOUL.md\", \"skills/\"] to its config")
        }
        return AgentContext(name: name, workspace: ws, entries: config.protect)
    }

    static func requireStore(_ layout: HostLayout) throws(ClawjailError) -> Store {
        try AuditTools.requireStore(layout)
    }

    /// <state>/snapshots/<agent>, created 0700 (as is <state>/snapshots).
    static func agentDirectory(_ name: String, layout: HostLayout) throws(ClawjailError) -> FD {
        let state: FD
        do { state = try FileSystem.open(layout.stateDirectory, [.readOnly, .directory]) } catch {
            throw ClawjailError(.state, "cannot open the state directory \(layout.stateDirectory)", cause: error)
        }
        defer { state.close() }
        do {
            let snapshots = try ProtectTree.ensureDirectory("snapshots", at: state, mode: 0o700)
            defer { snapshots.close() }
            return try ProtectTree.ensureDirectory(name, at: snapshots, mode: 0o700)
        } catch {
            throw ClawjailError(.state, "cannot prepare \(layout.stateDirectory)/snapshots/\(name)",
                                hint: error == .EPERM ? "it must belong to the user that runs clawjail" : nil, cause: error)
        }
    }

    /// Serialises snapshot, prune and restore of one agent.
    static func lockAgentDirectory(_ dir: FD) throws(ClawjailError) -> FD {
        do {
            let fd = try FileSystem.open(".lock", [.readWrite, .create, .noFollow], mode: 0o600, at: dir)
            try fd.lock(.exclusive)
            return fd
        } catch {
            throw ClawjailError(.state, "cannot lock the snapshot directory", cause: error)
        }
    }

    // MARK: - snapshot

    public struct SnapshotReport: Sendable {
        public var agent: String
        public var id: Int64
        public var files: Int
        public var bytes: Int64
        public var totalHash: String
        public var skipped: [String]
        public var pruned: [Int64]
        public var workspace: String
    }

    public static func snapshot(_ name: String, keep: Int, layout: HostLayout) throws(ClawjailError) -> SnapshotReport {
        let store = try requireStore(layout)
        let ctx = try context(name, store: store, layout: layout)
        let ws = try ProtectTree.openWorkspace(ctx.workspace)
        defer { ws.close() }
        let agentDir = try agentDirectory(name, layout: layout)
        defer { agentDir.close() }
        let lock = try lockAgentDirectory(agentDir)
        defer { lock.close() }
        // Copies left by an interrupted snapshot (we hold the lock: none is in progress).
        for n in (try? FileSystem.listDirectory(".", at: agentDir)) ?? [] where n.hasPrefix(".new-") {
            try? ProtectTree.removeTree(n, at: agentDir)
        }
        let tmpName = ".new-" + ToolRun.newRunID()
        var cleanup = true
        defer { if cleanup { try? ProtectTree.removeTree(tmpName, at: agentDir) } }
        let files: FD
        do {
            let tmp = try ProtectTree.ensureDirectory(tmpName, at: agentDir, mode: 0o700)
            defer { tmp.close() }
            files = try ProtectTree.ensureDirectory("files", at: tmp, mode: 0o700)
        } catch {
            throw ClawjailError(.state, "cannot create a snapshot directory", cause: error)
        }
        defer { files.close() }

        let nodes = try ProtectTree.scan(workspace: ws, entries: ctx.entries) { (rel, source, _) throws(ClawjailError) in
            do {
                let parent = Paths.dirname(rel)
                let dir = parent == "." ? try FileSystem.open(".", [.readOnly, .directory], at: files)
                    : try ProtectTree.openChain(parent, at: files) { _ in (0o700, nil, nil) }
                defer { dir.close() }
                let copy = try FileSystem.open(Paths.basename(rel), [.writeOnly, .create, .exclusive, .noFollow], mode: 0o600, at: dir)
                defer { copy.close() }
                let h = try ProtectTree.hash(source, copy: copy)
                try? copy.sync()
                return h.sha256
            } catch {
                throw ClawjailError(.state, "cannot copy \(OperatorText.safeLine(rel)) into the snapshot", cause: error)
            }
        }
        var recorded: [SnapshotFile] = []
        var skipped: [String] = []
        var bytes: Int64 = 0
        for n in nodes {
            switch n.type {
            case .file:
                recorded.append(SnapshotFile(path: n.path, sha256: n.sha256 ?? "", size: n.size))
                bytes += n.size
            case .directory: break
            case .other(let what): skipped.append("\(n.path) (\(what))")
            }
        }
        let meta = metaJSON(ctx: ctx, nodes: nodes)
        do {
            let tmp = try FileSystem.open(tmpName, [.readOnly, .directory, .noFollow], at: agentDir)
            defer { tmp.close() }
            let f = try FileSystem.open("meta.json", [.writeOnly, .create, .exclusive, .noFollow], mode: 0o600, at: tmp)
            defer { f.close() }
            try f.writeAll(OperatorText.json(meta))
            try? f.sync()
        } catch {
            throw ClawjailError(.state, "cannot write the snapshot's meta.json", cause: error)
        }
        let result: (id: Int64, pruned: [Int64])
        do { result = try store.recordSnapshot(agent: name, files: recorded, keep: keep) } catch {
            throw StoreAccess.wrap(error, "recording the snapshot of \(name)")
        }
        do {
            try FileSystem.rename(tmpName, String(result.id), at: agentDir)
            cleanup = false
            try? agentDir.sync()
        } catch {
            throw ClawjailError(.state, "snapshot \(result.id) is recorded but its files could not be put in place", cause: error)
        }
        for id in result.pruned { try? ProtectTree.removeTree(String(id), at: agentDir) }
        let totalHash = ((try? store.snapshot(id: result.id)) ?? nil)?.totalHash ?? ""
        return SnapshotReport(agent: name, id: result.id, files: recorded.count, bytes: bytes, totalHash: totalHash,
                              skipped: skipped, pruned: result.pruned, workspace: ctx.workspace)
    }

    static func metaJSON(ctx: AgentContext, nodes: [ProtectTree.Node]) -> JSONValue {
        var files: [JSONValue] = []
        var dirs: [JSONValue] = []
        for n in nodes {
            let common: [String: JSONValue] = ["path": .string(n.path), "mode": .int(Int64(n.mode)),
                                               "uid": .int(Int64(n.uid)), "gid": .int(Int64(n.gid))]
            switch n.type {
            case .file:
                var o = common
                o["size"] = .int(n.size)
                o["sha256"] = .string(n.sha256 ?? "")
                files.append(.object(o))
            case .directory: dirs.append(.object(common))
            case .other: continue
            }
        }
        return .object(["agent": .string(ctx.name), "workspace": .string(ctx.workspace),
                        "protect": .array(ctx.entries.map { .string($0) }), "files": .array(files), "dirs": .array(dirs)])
    }

    public static func renderSnapshot(_ r: SnapshotReport) -> String {
        var out = "snapshot \(r.id) of \(r.agent): \(r.files) file\(r.files == 1 ? "" : "s"), \(OperatorText.bytes(UInt64(r.bytes))), hash \(r.totalHash)\n"
        for s in r.skipped { out += "  skipped " + OperatorText.safeLine(s) + ": only regular files are kept\n" }
        if !r.pruned.isEmpty {
            out += "  pruned older snapshot\(r.pruned.count == 1 ? "" : "s") " + r.pruned.map(String.init).joined(separator: ", ") + "\n"
        }
        return out
    }

    public static func snapshotJSON(_ r: SnapshotReport) -> JSONValue {
        .object(["agent": .string(r.agent), "id": .int(r.id), "files": .int(Int64(r.files)), "bytes": .int(r.bytes),
                 "total_hash": .string(r.totalHash), "skipped": .array(r.skipped.map { .string($0) }),
                 "pruned": .array(r.pruned.map { .int($0) })])
    }

    // MARK: - list

    public struct ListedSnapshot: Sendable {
        public var record: SnapshotRecord
        public var onDisk: Bool
    }

    public static func list(_ name: String, layout: HostLayout) throws(ClawjailError) -> [ListedSnapshot] {
        let store = try requireStore(layout)
        let records: [SnapshotRecord]
        do { records = try store.snapshots(agent: name) } catch { throw StoreAccess.wrap(error, "listing snapshots of \(name)") }
        if records.isEmpty {
            _ = try context(name, store: store, layout: layout)
        }
        let base = layout.stateDirectory + "/snapshots/" + name + "/"
        return records.map { ListedSnapshot(record: $0, onDisk: FileSystem.exists(base + String($0.id) + "/meta.json")) }
    }

    public static func renderList(_ name: String, _ l: [ListedSnapshot]) -> String {
        if l.isEmpty { return "no snapshots of \(name) yet: `clawjail protect snapshot \(name)` takes one\n" }
        let rows = l.map { s in
            [String(s.record.id), OperatorText.timestamp(ms: s.record.createdMs), String(s.record.files.count),
             OperatorText.bytes(UInt64(max(0, s.record.files.reduce(0) { $0 + $1.size }))), String(s.record.totalHash.prefix(16)),
             s.onDisk ? "ok" : "missing"]
        }
        return OperatorText.table(["ID", "CREATED", "FILES", "SIZE", "HASH", "COPY"], rows)
    }

    public static func listJSON(_ name: String, _ l: [ListedSnapshot]) -> JSONValue {
        .object(["agent": .string(name), "snapshots": .array(l.map { s in
            .object(["id": .int(s.record.id), "created_ms": .int(s.record.createdMs),
                     "created": .string(OperatorText.timestamp(ms: s.record.createdMs)),
                     "total_hash": .string(s.record.totalHash), "on_disk": .bool(s.onDisk),
                     "files": .array(s.record.files.map { .object(["path": .string($0.path), "sha256": .string($0.sha256), "size": .int($0.size)]) })])
        })])
    }

    // MARK: - diff

    public struct Change: Sendable {
        public enum Kind: String, Sendable { case added, removed, changed }
        public var kind: Kind
        public var path: String
        public var note: String?
        /// For small text files.
        public var unified: String?
    }

    public struct DiffReport: Sendable {
        public var agent: String
        public var snapshot: SnapshotRecord
        public var changes: [Change]
        public var unchanged: Int
    }

    static func chooseSnapshot(_ name: String, id: Int64?, store: Store) throws(ClawjailError) -> SnapshotRecord {
        do {
            if let id {
                guard let s = try store.snapshot(id: id), s.agent == name else {
                    throw ClawjailError(.notFound, "agent \(name) has no snapshot \(id)", hint: "`clawjail protect list \(name)` lists them")
                }
                return s
            }
            guard let s = try store.snapshots(agent: name).first else {
                throw ClawjailError(.notFound, "no snapshot of \(name) yet", hint: "`clawjail protect snapshot \(name)` takes one")
            }
            return s
        } catch let e as ClawjailError {
            throw e
        } catch {
            throw StoreAccess.wrap(error, "reading the snapshots of \(name)")
        }
    }

    static let textLimit = 64 * 1024

    public static func diff(_ name: String, snapshotID: Int64?, layout: HostLayout) throws(ClawjailError) -> DiffReport {
        let store = try requireStore(layout)
        let ctx = try context(name, store: store, layout: layout)
        let snap = try chooseSnapshot(name, id: snapshotID, store: store)
        let ws = try ProtectTree.openWorkspace(ctx.workspace)
        defer { ws.close() }
        let current = try ProtectTree.scan(workspace: ws, entries: ctx.entries) { (_, fd, _) throws(ClawjailError) in
            do { return try ProtectTree.hash(fd).sha256 } catch { throw ClawjailError(.setup, "cannot read a protected file", cause: error) }
        }
        let copies = try? FileSystem.open("\(layout.stateDirectory)/snapshots/\(name)/\(snap.id)/files", [.readOnly, .directory, .noFollow])
        defer { copies?.close() }

        let old = Dictionary(uniqueKeysWithValues: snap.files.map { ($0.path, $0) })
        var seen = Set<String>()
        var changes: [Change] = []
        var unchanged = 0
        for n in current where n.type != .directory {
            seen.insert(n.path)
            guard let before = old[n.path] else {
                var c = Change(kind: .added, path: n.path)
                if case .other(let what) = n.type { c.note = what }
                changes.append(c)
                continue
            }
            guard case .file = n.type else {
                if case .other(let what) = n.type { changes.append(Change(kind: .changed, path: n.path, note: "now \(what)")) }
                continue
            }
            if n.sha256 == before.sha256 {
                unchanged += 1
                continue
            }
            var c = Change(kind: .changed, path: n.path)
            if n.size <= textLimit && before.size <= textLimit, let copies,
               let oldBytes = try? ProtectTree.read(n.path, at: copies, limit: textLimit + 1),
               let newBytes = try? ProtectTree.read(n.path, at: ws, limit: textLimit + 1) {
                if let a = text(oldBytes), let b = text(newBytes) {
                    c.unified = UnifiedDiff.render(old: a, new: b, oldLabel: "snapshot-\(snap.id)/\(n.path)", newLabel: "workspace/\(n.path)")
                    if c.unified == nil { c.note = "too different to show line by line" }
                } else {
                    c.note = "binary, \(before.size) -> \(n.size) bytes"
                }
            } else {
                c.note = "\(before.size) -> \(n.size) bytes"
            }
            changes.append(c)
        }
        for f in snap.files where !seen.contains(f.path) {
            changes.append(Change(kind: .removed, path: f.path))
        }
        changes.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
        return DiffReport(agent: name, snapshot: snap, changes: changes, unchanged: unchanged)
    }

    /// UTF-8 without NUL bytes, or nil (then it is shown as binary).
    static func text(_ bytes: [UInt8]) -> String? {
        guard bytes.count <= textLimit, !bytes.contains(0) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    public static func renderDiff(_ d: DiffReport) -> String {
        let when = OperatorText.timestamp(ms: d.snapshot.createdMs)
        if d.changes.isEmpty {
            return "no changes since snapshot \(d.snapshot.id) of \(d.agent) (\(when)): \(d.unchanged) file\(d.unchanged == 1 ? "" : "s") match\n"
        }
        var out = "\(d.agent): protected files against snapshot \(d.snapshot.id) (\(when))\n"
        for c in d.changes {
            out += "  " + c.kind.rawValue.padding(8) + " " + OperatorText.safeLine(c.path)
            if let n = c.note { out += "  (" + OperatorText.safeLine(n) + ")" }
            out += "\n"
        }
        for c in d.changes { if let u = c.unified { out += "\n" + u } }
        let counts = [Change.Kind.changed, .added, .removed].map { k in (k, d.changes.filter { $0.kind == k }.count) }
            .filter { $0.1 > 0 }.map { "\($0.1) \($0.0.rawValue)" }
        out += "\n\(d.changes.count) change\(d.changes.count == 1 ? "" : "s") (" + counts.joined(separator: ", ")
            + "). `clawjail protect restore \(d.agent) --snapshot \(d.snapshot.id)` puts the snapshot back.\n"
        return out
    }

    public static func diffJSON(_ d: DiffReport) -> JSONValue {
        .object(["agent": .string(d.agent), "snapshot": .int(d.snapshot.id), "unchanged": .int(Int64(d.unchanged)),
                 "changes": .array(d.changes.map { c in
                     .object(["kind": .string(c.kind.rawValue), "path": .string(c.path),
                              "note": c.note.map { .string($0) } ?? .null, "diff": c.unified.map { .string($0) } ?? .null])
                 })])
    }

    // MARK: - restore

    public struct RestoreReport: Sendable {
        public var agent: String
        public var snapshot: Int64
        public var restored: [String]
        public var removed: [String]
        public var problems: [String]
    }

    public static func restore(_ name: String, snapshotID: Int64?, layout: HostLayout) throws(ClawjailError) -> RestoreReport {
        let store = try requireStore(layout)
        let ctx = try context(name, store: store, layout: layout)
        let snap = try chooseSnapshot(name, id: snapshotID, store: store)

        // Hold the agent's registry lock: `clawjail run` of this agent cannot start while
        // files are being put back, and a running one makes this refuse. A running jail
        // would keep seeing the old files anyway: its read-only binds pin the old inodes.
        try layout.ensureRunDirectories()
        let lockPath = JailRegistry.path(name, layout: layout)
        let held: FileLock?
        do { held = try FileLock.tryExclusive(lockPath) } catch { throw ClawjailError(.setup, "cannot lock \(lockPath)", cause: error) }
        guard let lock = held else {
            let pid = JailRegistry.read(name, layout: layout).map { " (supervisor pid \($0.supervisorPid))" } ?? ""
            throw ClawjailError(.conflict, "agent \(name) is running\(pid); its protected files are restored only while it is stopped",
                                hint: "`clawjail stop \(name)` first")
        }
        try? lock.fd.truncate(to: 0)
        _ = try? lock.fd.writeAll("\(ProcessInfoLite.pid) restore \(ProcessInfoLite.wallClockMilliseconds)\n")
        defer { JailRegistry.release(lock, name: name, layout: layout) }
        let tools = ((try? store.runningRuns()) ?? []).filter { $0.agent == name && $0.supervisorIsAlive }
        if let t = tools.first {
            throw ClawjailError(.conflict, "a tool run of \(name) is running (run \(t.id), supervisor pid \(t.supervisorPid))",
                                hint: "wait for it, or `clawjail ps` and `clawjail stop exec-...`")
        }

        let agentDir = try agentDirectory(name, layout: layout)
        defer { agentDir.close() }
        let dirLock = try lockAgentDirectory(agentDir)
        defer { dirLock.close() }
        let snapDir: FD
        let copies: FD
        do {
            snapDir = try FileSystem.open(String(snap.id), [.readOnly, .directory, .noFollow], at: agentDir)
            copies = try FileSystem.open("files", [.readOnly, .directory, .noFollow], at: snapDir)
        } catch {
            throw ClawjailError(.state, "the files of snapshot \(snap.id) are missing from \(layout.stateDirectory)/snapshots/\(name)", cause: error)
        }
        defer { snapDir.close(); copies.close() }
        let meta = (try? FileSystem.readText("meta.json", at: snapDir, limit: 16 << 20)).flatMap { try? JSONValue.parse($0) }
        var fileMeta: [String: JSONValue] = [:]
        var dirMeta: [String: JSONValue] = [:]
        for f in meta?["files"]?.arrayValue ?? [] { if let p = f["path"]?.stringValue { fileMeta[p] = f } }
        for d in meta?["dirs"]?.arrayValue ?? [] { if let p = d["path"]?.stringValue { dirMeta[p] = d } }

        // Every copy must still be what was recorded before anything is touched.
        for f in snap.files {
            let ok: Bool
            do {
                let fd = try FileSystem.openat2(f.path, .readOnly, resolve: ProtectTree.resolve, at: copies)
                defer { fd.close() }
                ok = try ProtectTree.hash(fd).sha256 == f.sha256
            } catch {
                ok = false
            }
            guard ok else {
                throw ClawjailError(.state, "snapshot \(snap.id) is damaged: the copy of \(OperatorText.safeLine(f.path)) does not match its recorded hash",
                                    hint: "restore another snapshot (`clawjail protect list \(name)`)")
            }
        }

        let ws = try ProtectTree.openWorkspace(ctx.workspace)
        defer { ws.close() }
        let current = try ProtectTree.scan(workspace: ws, entries: ctx.entries) { (_, fd, _) throws(ClawjailError) in
            do { return try ProtectTree.hash(fd).sha256 } catch { throw ClawjailError(.setup, "cannot read a protected file", cause: error) }
        }
        let now = Dictionary(current.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var report = RestoreReport(agent: name, snapshot: snap.id, restored: [], removed: [], problems: [])

        for f in snap.files {
            if let n = now[f.path], n.type == .file, n.sha256 == f.sha256 { continue }
            if let n = now[f.path], n.type == .directory {
                report.problems.append("\(f.path) is now a directory; remove it and restore again")
                continue
            }
            do {
                try putBack(f, meta: fileMeta[f.path], dirMeta: dirMeta, existing: now[f.path], copies: copies, ws: ws)
                report.restored.append(f.path)
            } catch {
                report.problems.append("\(f.path): \(error)")
            }
        }
        // What a skill added inside protected directories goes; directories last, deepest first.
        let inSnapshot = Set(snap.files.map(\.path))
        for n in current.reversed() where !inSnapshot.contains(n.path) && n.type != .directory {
            do {
                let dir = try parentDirectory(n.path, ws: ws, create: nil)
                defer { dir.close() }
                try FileSystem.unlink(Paths.basename(n.path), at: dir)
                report.removed.append(n.path)
            } catch {
                report.problems.append("\(n.path): cannot remove (\(error))")
            }
        }
        for n in current.reversed() where n.type == .directory && dirMeta[n.path] == nil && meta != nil {
            if let dir = try? parentDirectory(n.path, ws: ws, create: nil) {
                if (try? FileSystem.rmdir(Paths.basename(n.path), at: dir)) != nil { report.removed.append(n.path + "/") }
                dir.close()
            }
        }
        _ = try? store.append(AuditEventInput(agent: name, kind: "protect.restore", payload: [
            "snapshot_id": .int(snap.id), "total_hash": .string(snap.totalHash),
            "restored": .array(report.restored.map { .string($0) }), "removed": .array(report.removed.map { .string($0) }),
            "problems": .array(report.problems.map { .string($0) }), "by_uid": .int(Int64(ProcessInfoLite.userID)),
        ]))
        return report
    }

    /// The directory that holds `rel` in the workspace, its missing parents created
    /// with the snapshot's modes and owners.
    static func parentDirectory(_ rel: String, ws: FD, create: [String: JSONValue]?) throws(Errno) -> FD {
        let parent = Paths.dirname(rel)
        if parent == "." { return try FileSystem.open(".", [.readOnly, .directory], at: ws) }
        return try ProtectTree.openChain(parent, at: ws) { prefix in
            guard let create else { return nil }
            let m = create[prefix]
            return (mode_t(m?["mode"]?.intValue ?? 0o755) & 0o777, m?["uid"]?.intValue.map { UInt32($0) }, m?["gid"]?.intValue.map { UInt32($0) })
        }
    }

    /// Replaces one file atomically: a new file next to it, then rename over the old
    /// name (which replaces a planted symlink rather than following it).
    static func putBack(_ f: SnapshotFile, meta: JSONValue?, dirMeta: [String: JSONValue], existing: ProtectTree.Node?,
                        copies: FD, ws: FD) throws(Errno) {
        let dir = try parentDirectory(f.path, ws: ws, create: dirMeta)
        defer { dir.close() }
        let name = Paths.basename(f.path)
        let tmp = ".\(name).clawjail-restore-\(ToolRun.newRunID())"
        let source = try FileSystem.openat2(f.path, .readOnly, resolve: ProtectTree.resolve, at: copies)
        defer { source.close() }
        let out = try FileSystem.open(tmp, [.writeOnly, .create, .exclusive, .noFollow], mode: 0o600, at: dir)
        do throws(Errno) {
            let h = try ProtectTree.hash(source, copy: out)
            guard h.sha256 == f.sha256 else { throw Errno.EINVAL }
            try out.sync()
            // The owner of the file it replaces, else the one recorded; never set-id bits.
            let uid = existing?.type == .file ? existing?.uid : meta?["uid"]?.intValue.map { UInt32($0) }
            let gid = existing?.type == .file ? existing?.gid : meta?["gid"]?.intValue.map { UInt32($0) }
            if let uid, let gid { try FileSystem.chown(out, uid: uid, gid: gid) }
            let mode = mode_t(meta?["mode"]?.intValue ?? 0o644) & 0o777
            try out.setMode(mode)
            out.close()
            try FileSystem.rename(tmp, name, at: dir)
            try? dir.sync()
        } catch {
            out.close()
            try? FileSystem.unlink(tmp, at: dir)
            throw error
        }
    }

    public static func renderRestore(_ r: RestoreReport) -> String {
        var out: String
        if r.restored.isEmpty && r.removed.isEmpty && r.problems.isEmpty {
            out = "nothing to restore: the protected files of \(r.agent) match snapshot \(r.snapshot)\n"
        } else {
            out = "restored snapshot \(r.snapshot) of \(r.agent): \(r.restored.count) file\(r.restored.count == 1 ? "" : "s") put back"
            out += r.removed.isEmpty ? "\n" : ", \(r.removed.count) removed\n"
            for p in r.restored { out += "  restored " + OperatorText.safeLine(p) + "\n" }
            for p in r.removed { out += "  removed  " + OperatorText.safeLine(p) + "\n" }
        }
        for p in r.problems { out += "  problem  " + OperatorText.safeLine(p) + "\n" }
        return out
    }

    public static func restoreJSON(_ r: RestoreReport) -> JSONValue {
        .object(["agent": .string(r.agent), "snapshot": .int(r.snapshot), "restored": .array(r.restored.map { .string($0) }),
                 "removed": .array(r.removed.map { .string($0) }), "problems": .array(r.problems.map { .string($0) })])
    }
}
