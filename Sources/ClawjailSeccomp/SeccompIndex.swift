import ClawjailCore
import ClawjailSystem

/// What a jail start needs of its seccomp profile.
public struct SeccompSelection: Sendable {
    public let filter: CompiledFilter
    public let policy: SeccompViolationPolicy
    public let profileName: String
    /// `SeccompProfile.contentHash` of the resolved profile, violation mode applied.
    public let contentHash: String
    /// True when the profile files were only stat'ed, not read and parsed.
    public let fromIndex: Bool
}

extension SeccompCache {
    /// The compiled filter of a profile named or located as `ProfileLocator.load` does,
    /// with `violationMode` (agent.toml's `[seccomp] on_violation`) overriding the
    /// profile's own.
    ///
    /// A start whose profile files are unchanged since the last one is answered from
    /// `<directory>/index/` without reading or parsing TOML (see `SeccompIndex`);
    /// otherwise the profile is loaded, compiled or taken from the cache, and the
    /// index entry written anew.
    public func select(nameOrPath: String, searchPaths: [String],
                       violationMode: ViolationMode? = nil) throws -> SeccompSelection {
        try select(nameOrPath: nameOrPath, searchPaths: searchPaths, violationMode: violationMode,
                   racyWindow: SeccompIndex.racyWindow, parse: ProfileLocator.load(nameOrPath:searchPaths:readFile:))
    }

    typealias ParseProfile = (_ nameOrPath: String, _ searchPaths: [String],
                              _ readFile: @escaping ProfileLoader.ReadFile) throws -> SeccompProfile

    /// `parse` lets a test see whether the profile was parsed; `racyWindow` lets it
    /// treat files written a moment ago as settled.
    func select(nameOrPath: String, searchPaths: [String], violationMode: ViolationMode?,
                racyWindow: Int64, parse: ParseProfile) throws -> SeccompSelection {
        let dir = try openDirectory()
        defer { dir.close() }
        let indexKey = SeccompIndex.key(nameOrPath: nameOrPath, searchPaths: searchPaths, violationMode: violationMode)
        if let indexKey, let hit = SeccompIndex.lookup(key: indexKey, cache: self, in: dir, racyWindow: racyWindow) {
            return hit
        }

        let recorder = DependencyRecorder()
        var profile = try parse(nameOrPath, searchPaths, recorder.read)
        if let violationMode { profile = profile.withViolationMode(violationMode) }
        let filter = try load(profile, in: dir).filter
        let policy = profile.violationPolicy
        if let indexKey, let dependencies = recorder.dependencies(racyWindow: racyWindow),
           case .present(let exe) = SeccompFiles.status(of: SeccompIndex.executablePath) {
            let entry = SeccompIndexEntry(key: indexKey, executable: FileIdentity(exe), dependencies: dependencies,
                                          profileName: profile.name, contentHash: profile.contentHash,
                                          filterKey: Self.key(for: profile), policy: policy)
            // Without an index the next start only pays the parse again.
            try? SeccompIndex.write(entry, in: dir, cacheDirectory: directory)
        }
        return SeccompSelection(filter: filter, policy: policy, profileName: profile.name,
                                contentHash: profile.contentHash, fromIndex: false)
    }

    /// The index file `select` uses for these arguments (tests).
    func indexPath(nameOrPath: String, searchPaths: [String], violationMode: ViolationMode? = nil) -> String? {
        SeccompIndex.key(nameOrPath: nameOrPath, searchPaths: searchPaths, violationMode: violationMode)
            .map { directory + "/" + SeccompIndex.directoryName + "/" + SeccompIndex.fileName(forKey: $0) }
    }
}

/// The index: which cached filter a `select` call gets, valid while every file the
/// profile was resolved from is unchanged.
///
/// One file per call signature (name or path, search path, violation mode, working
/// directory when a path is relative, libseccomp version, arch, formats), named by
/// its sha256. It lists every path the loader tried, in order: the files it read
/// (profile, parents, groups.toml) with their stat identity, and the ones that did not
/// exist, which must still not exist (a profile, parent or groups.toml added earlier in
/// a search would change the result). It also records the running executable, so a
/// new clawjail build, whose parser may read the same files differently, starts over.
///
/// A timestamp only moves once per clock tick (once per second on some
/// filesystems), so a file written again in the tick it was read in keeps its stat.
/// For a file whose ctime was within `racyWindow` of the read, the entry also holds
/// the sha256 of the bytes parsed and a hit compares the content; once the window
/// has passed, a hit rewrites the entry without it.
enum SeccompIndex {
    static let formatVersion = 1
    static let directoryName = "index"
    static let executablePath = "/proc/self/exe"
    /// Longer than any timestamp granularity of a filesystem profiles live on (1 s
    /// on ext4 with small inodes, 2 s on FAT), plus a clock tick.
    static let racyWindow: Int64 = 3_000_000_000
    /// An entry is well under 4 KiB; anything larger is not ours.
    static let maxSize = 64 << 10

    /// nil when the arguments cannot be keyed (a relative path and no working
    /// directory): then `select` runs without an index.
    static func key(nameOrPath: String, searchPaths: [String], violationMode: ViolationMode?) -> String? {
        var material = "clawjail-seccomp-index \(formatVersion)\ncompiler-format \(SeccompCompiler.formatVersion)\n"
            + "libseccomp \(SeccompCompiler.libseccompVersion)\narch \(SeccompCompiler.arch)\n"
            + "on_violation \(violationMode?.rawValue ?? "-")\n"
        func field(_ tag: String, _ value: String) { material += "\(tag) \(value.utf8.count):\(value)\n" }
        field("profile", nameOrPath)
        for path in searchPaths { field("search", path) }
        // The dependencies would catch another directory's files, but two working
        // directories should not keep evicting each other's entry.
        let relative = (nameOrPath.contains("/") && !nameOrPath.hasPrefix("/")) || searchPaths.contains { !$0.hasPrefix("/") }
        if relative {
            guard let cwd = FileSystem.currentDirectory() else { return nil }
            field("cwd", cwd)
        }
        return SHA256.hash(data: Array(material.utf8)).hexString
    }

    static func fileName(forKey key: String) -> String { key + ".idx" }

    // MARK: lookup

    static func lookup(key: String, cache: SeccompCache, in cacheDir: FD, racyWindow: Int64) -> SeccompSelection? {
        let now = ProcessInfoLite.wallClockNanoseconds
        guard let indexDir = openDirectory(in: cacheDir, create: false) else { return nil }
        defer { indexDir.close() }
        guard let bytes = readOwnFile(fileName(forKey: key), in: indexDir),
              let entry = SeccompIndexEntry.decode(bytes), entry.key == key,
              case .present(let exe) = SeccompFiles.status(of: executablePath), FileIdentity(exe) == entry.executable
        else { return nil }

        var settled = true
        for dependency in entry.dependencies {
            switch dependency {
            case .absent(let path):
                guard case .absent = SeccompFiles.status(of: path) else { return nil }
            case .file(let path, let identity, nil):
                guard case .present(let st) = SeccompFiles.status(of: path), FileIdentity(st) == identity else { return nil }
            case .file(let path, let identity, let contentHash?):
                guard let current = try? SeccompFiles.readFileAndStatus(path), FileIdentity(current.status) == identity,
                      SHA256.hash(data: current.bytes).hexString == contentHash else { return nil }
                if identity.changed > now - racyWindow { settled = false }
            }
        }

        guard let filterKey = Self.bytes(fromHex: entry.filterKey),
              case .found(let filter) = cache.read(entry.filterKey + ".bpf", in: cacheDir, key: filterKey,
                                                   profileHash: entry.contentHash),
              filter.needsNotify == (entry.policy.mode != .errno)
        else { return nil }

        if settled, entry.dependencies.contains(where: \.hasContentHash) {
            // Checked against the content after the window: the stat alone is enough from now on.
            try? write(entry.withoutContentHashes, in: cacheDir, cacheDirectory: cache.directory)
        }
        return SeccompSelection(filter: filter, policy: entry.policy, profileName: entry.profileName,
                                contentHash: entry.contentHash, fromIndex: true)
    }

    // MARK: files

    /// `index/` in the cache directory, 0700 and ours; nil when it is missing (and
    /// `create` is false) or belongs to someone else.
    static func openDirectory(in cacheDir: FD, create: Bool) -> FD? {
        let flags: OpenFlags = [.readOnly, .directory, .noFollow]
        var opened = Result { () throws(Errno) in try FileSystem.open(directoryName, flags, at: cacheDir) }
        if create, case .failure(let e) = opened, e == .ENOENT {
            try? FileSystem.mkdir(directoryName, mode: 0o700, at: cacheDir)
            opened = Result { () throws(Errno) in try FileSystem.open(directoryName, flags, at: cacheDir) }
        }
        guard case .success(let fd) = opened else { return nil }
        guard let st = try? fd.stat(), st.uid == ProcessInfoLite.effectiveUserID,
              st.mode & 0o077 == 0 || (try? fd.setMode(0o700)) != nil
        else {
            fd.close()
            return nil
        }
        return fd
    }

    /// The bytes of a regular file we own that nobody else may write; nil for
    /// anything else (a symlink, a fifo, a file of another user, a huge file).
    static func readOwnFile(_ name: String, in dir: FD) -> [UInt8]? {
        guard let fd = try? FileSystem.open(name, [.readOnly, .noFollow, .noControllingTerminal, .nonBlocking], at: dir)
        else { return nil }
        defer { fd.close() }
        guard let st = try? fd.stat(), st.isRegular,
              st.uid == ProcessInfoLite.effectiveUserID, st.mode & 0o022 == 0, st.size <= maxSize
        else { return nil }
        return try? SeccompFiles.readAll(fd, what: "read index \(name)", limit: maxSize)
    }

    static func write(_ entry: SeccompIndexEntry, in cacheDir: FD, cacheDirectory: String) throws {
        guard let bytes = entry.encode() else { return }
        let path = cacheDirectory + "/" + directoryName
        guard let indexDir = openDirectory(in: cacheDir, create: true) else {
            throw ClawjailError(.seccomp, "seccomp index \(path) cannot be created or is not owned by uid \(ProcessInfoLite.effectiveUserID)")
        }
        defer { indexDir.close() }
        try SeccompCache.writeAtomically(bytes, name: fileName(forKey: entry.key), in: indexDir, shownAs: path)
    }

    static func bytes(fromHex hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let hi = nibble(digits[i]), let lo = nibble(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// What stat says about a file, enough to tell that it changed: a rename puts
/// another inode there, and any write moves ctime (which no caller can set).
struct FileIdentity: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    /// ns since the epoch
    var modified: Int64
    var changed: Int64

    init(device: UInt64, inode: UInt64, size: Int64, modified: Int64, changed: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modified = modified
        self.changed = changed
    }

    init(_ st: Stat) {
        self.init(device: st.device, inode: st.inode, size: st.size,
                  modified: st.modifiedNanoseconds, changed: st.changedNanoseconds)
    }
}

/// One index file, decoded.
///
///     clawjail-seccomp-index 1
///     key <sha256 of the call signature, hex: the file's own name>
///     exe <dev> <ino> <size> <mtime ns> <ctime ns>
///     file <dev> <ino> <size> <mtime ns> <ctime ns> <sha256 of content, or -> <path>
///     absent <path>
///     profile <name>
///     hash <SeccompProfile.contentHash>
///     filter <cache key, hex: the .bpf file's name>
///     policy <errno|log|kill> <errno> <restricted syscall numbers, comma-separated, or ->
///     end <sha256 of every byte above, hex>
///
/// `file` and `absent` lines come in the order the loader tried the paths; a path is
/// the rest of its line (a path with a newline is never indexed).
struct SeccompIndexEntry: Sendable, Hashable {
    enum Dependency: Sendable, Hashable {
        /// `contentHash` only when the file was changed within the racy window.
        case file(path: String, identity: FileIdentity, contentHash: String?)
        case absent(path: String)

        var path: String {
            switch self {
            case .file(let path, _, _), .absent(let path): return path
            }
        }

        var hasContentHash: Bool {
            if case .file(_, _, .some) = self { return true }
            return false
        }
    }

    var key: String
    var executable: FileIdentity
    var dependencies: [Dependency]
    var profileName: String
    var contentHash: String
    var filterKey: String
    var policy: SeccompViolationPolicy

    var withoutContentHashes: SeccompIndexEntry {
        var copy = self
        copy.dependencies = dependencies.map { d in
            if case .file(let path, let identity, _) = d { return .file(path: path, identity: identity, contentHash: nil) }
            return d
        }
        return copy
    }

    static let header = "clawjail-seccomp-index \(SeccompIndex.formatVersion)"

    /// nil when a path or the name would not fit on one line.
    func encode() -> [UInt8]? {
        let texts = dependencies.map(\.path) + [profileName]
        guard !texts.contains(where: { $0.utf8.contains(0x0A) || $0.utf8.contains(0) || $0.isEmpty }) else { return nil }
        func identity(_ i: FileIdentity) -> String { "\(i.device) \(i.inode) \(i.size) \(i.modified) \(i.changed)" }
        var lines = [Self.header, "key \(key)", "exe " + identity(executable)]
        for d in dependencies {
            switch d {
            case .file(let path, let i, let hash): lines.append("file \(identity(i)) \(hash ?? "-") \(path)")
            case .absent(let path): lines.append("absent \(path)")
            }
        }
        let restricted = policy.restricted.sorted().map(String.init).joined(separator: ",")
        lines += ["profile \(profileName)", "hash \(contentHash)", "filter \(filterKey)",
                  "policy \(policy.mode.rawValue) \(policy.errno) \(restricted.isEmpty ? "-" : restricted)"]
        var bytes = Array((lines.joined(separator: "\n") + "\n").utf8)
        bytes += Array("end \(SHA256.hash(data: bytes).hexString)\n".utf8)
        return bytes
    }

    static func decode(_ bytes: [UInt8]) -> SeccompIndexEntry? {
        // The checksum first: it rules out a torn or edited file before anything is parsed.
        guard bytes.last == 0x0A, let endStart = bytes.dropLast().lastIndex(of: 0x0A).map({ $0 + 1 }),
              bytes[endStart...].starts(with: "end ".utf8),
              bytes[(endStart + 4)..<(bytes.count - 1)].elementsEqual(SHA256.hash(data: bytes[..<endStart]).hexString.utf8)
        else { return nil }

        // One pass over the bytes: this runs on every jail start.
        var c = IndexCursor(bytes: bytes, end: endStart)
        guard c.line(header), c.tag("key "), let key = c.hash(), c.newline(),
              c.tag("exe "), let exe = c.identity(), c.newline()
        else { return nil }

        var dependencies: [Dependency] = []
        while true {
            if c.tag("file ") {
                guard let identity = c.identity(), c.space() else { return nil }
                var contentHash: String?
                if !c.tag("-") {
                    guard let h = c.hash() else { return nil }
                    contentHash = h
                }
                guard c.space(), let path = c.rest() else { return nil }
                dependencies.append(.file(path: path, identity: identity, contentHash: contentHash))
            } else if c.tag("absent ") {
                guard let path = c.rest() else { return nil }
                dependencies.append(.absent(path: path))
            } else {
                break
            }
        }

        guard c.tag("profile "), let name = c.rest(),
              c.tag("hash "), let hash = c.hash(), c.newline(),
              c.tag("filter "), let filterKey = c.hash(), c.newline(),
              c.tag("policy "), let mode = c.violationMode(), c.space(), let errno = c.int32(), c.space()
        else { return nil }
        var restricted: Set<Int32> = []
        if !c.tag("-") {
            restricted.reserveCapacity(128)
            repeat {
                guard let nr = c.int32() else { return nil }
                restricted.insert(nr)
            } while c.tag(",")
        }
        guard c.newline(), c.atEnd else { return nil }
        return SeccompIndexEntry(key: key, executable: exe, dependencies: dependencies, profileName: name,
                                 contentHash: hash, filterKey: filterKey,
                                 policy: SeccompViolationPolicy(mode: mode, errno: errno, restricted: restricted))
    }
}

/// Reads an index file's fields in place, without splitting it into lines first.
private struct IndexCursor {
    let bytes: [UInt8]
    let end: Int
    var at = 0

    init(bytes: [UInt8], end: Int) {
        self.bytes = bytes
        self.end = end
    }

    var atEnd: Bool { at == end }

    /// Consumes `literal` if the bytes continue with it.
    mutating func tag(_ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard end - at >= n else { return false }
        let matches = literal.withUTF8Buffer { lit in
            (0..<n).allSatisfy { bytes[at + $0] == lit[$0] }
        }
        if matches { at += n }
        return matches
    }

    mutating func line(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard end - at > utf8.count, bytes[at..<(at + utf8.count)].elementsEqual(utf8),
              bytes[at + utf8.count] == 0x0A else { return false }
        at += utf8.count + 1
        return true
    }

    mutating func space() -> Bool { byte(0x20) }
    mutating func newline() -> Bool { byte(0x0A) }

    private mutating func byte(_ b: UInt8) -> Bool {
        guard at < end, bytes[at] == b else { return false }
        at += 1
        return true
    }

    /// The rest of the line, not empty; consumes the newline.
    mutating func rest() -> String? {
        var i = at
        while i < end, bytes[i] != 0x0A { i += 1 }
        guard i < end, i > at else { return nil }
        let s = String(decoding: bytes[at..<i], as: UTF8.self)
        at = i + 1
        return s
    }

    /// 64 lowercase hex digits.
    mutating func hash() -> String? {
        guard end - at >= 64 else { return nil }
        for i in at..<(at + 64) {
            let b = bytes[i]
            guard (0x30...0x39).contains(b) || (0x61...0x66).contains(b) else { return nil }
        }
        defer { at += 64 }
        return String(decoding: bytes[at..<(at + 64)], as: UTF8.self)
    }

    /// Decimal digits that fit in 64 bits.
    mutating func uint64() -> UInt64? {
        let start = at
        var value: UInt64 = 0
        while at < end, (0x30...0x39).contains(bytes[at]) {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[at] - 0x30))
            guard !o1, !o2 else { return nil }
            value = sum
            at += 1
        }
        return at > start ? value : nil
    }

    mutating func int64() -> Int64? {
        let negative = byte(0x2D)
        guard let magnitude = uint64(), magnitude <= UInt64(Int64.max) else { return nil }
        return negative ? -Int64(magnitude) : Int64(magnitude)
    }

    mutating func int32() -> Int32? { int64().flatMap { Int32(exactly: $0) } }

    mutating func identity() -> FileIdentity? {
        guard let dev = uint64(), space(), let ino = uint64(), space(), let size = int64(), space(),
              let modified = int64(), space(), let changed = int64() else { return nil }
        return FileIdentity(device: dev, inode: ino, size: size, modified: modified, changed: changed)
    }

    mutating func violationMode() -> ViolationMode? {
        if tag("errno") { return .errno }
        if tag("log") { return .log }
        if tag("kill") { return .kill }
        return nil
    }
}

/// The loader's `readFile` during a slow `select`: reads as `SeccompFiles.readFile`
/// does and notes every path tried, for the index entry.
final class DependencyRecorder {
    private var tried: [(dependency: SeccompIndexEntry.Dependency, readAt: Int64)] = []
    private var positions: [String: Int] = [:]
    /// False when a path read twice gave different answers (changed while loading):
    /// what was parsed is then no single state of the files, so it is not indexed.
    private var consistent = true

    func read(_ path: String) throws -> [UInt8]? {
        let result = try SeccompFiles.readFileAndStatus(path)
        let dependency: SeccompIndexEntry.Dependency
        if let result {
            dependency = .file(path: path, identity: FileIdentity(result.status),
                               contentHash: SHA256.hash(data: result.bytes).hexString)
        } else {
            dependency = .absent(path: path)
        }
        if let i = positions[path] {
            if tried[i].dependency != dependency { consistent = false }
        } else {
            positions[path] = tried.count
            tried.append((dependency, ProcessInfoLite.wallClockNanoseconds))
        }
        return result?.bytes
    }

    /// What the index entry lists; content hashes only for files whose ctime is within
    /// `racyWindow` of the read (a change in the same tick would keep the stat). nil when
    /// the loading saw the files change.
    func dependencies(racyWindow: Int64) -> [SeccompIndexEntry.Dependency]? {
        guard consistent else { return nil }
        return tried.map { item in
            guard case .file(let path, let identity, _) = item.dependency,
                  identity.changed <= item.readAt - racyWindow else { return item.dependency }
            return .file(path: path, identity: identity, contentHash: nil)
        }
    }
}
