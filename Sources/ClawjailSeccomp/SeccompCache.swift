import ClawjailCore
import ClawjailSystem

/// Compiled filters on disk, so a jail start does not run libseccomp.
///
/// A file is named by the sha256 of everything that decides its bytes: the profile's
/// canonical content (parents and groups resolved), the libseccomp version, the arch
/// and `SeccompCompiler.formatVersion`. The directory is 0700 and must belong to the
/// user running clawjail (root): whoever can write here chooses every jail's filter.
/// Files are written to a temp name and renamed (0600), and one that is short,
/// altered or otherwise unreadable is ignored and rewritten. `index/` maps a
/// `select` call to its file while the profile's files are unchanged (SeccompIndex).
public struct SeccompCache: Sendable {
    public enum Outcome: String, Sendable {
        /// Read from disk; libseccomp did not run.
        case hit
        /// Compiled and written.
        case miss
        /// A file was there but failed its checks; compiled and written anew.
        case replacedCorrupt
    }

    public static let defaultDirectory = "/var/cache/clawjail/seccomp"
    static let magic = Array("CJSECBPF".utf8)
    static let headerSize = 152

    public let directory: String

    public init(directory: String = SeccompCache.defaultDirectory) {
        self.directory = directory
    }

    /// The cache key of a profile (hex sha256).
    public static func key(for profile: SeccompProfile) -> String {
        keyBytes(for: profile).hexString
    }

    static func keyBytes(for profile: SeccompProfile) -> [UInt8] {
        let material = "clawjail-seccomp-cache\nformat \(SeccompCompiler.formatVersion)\n"
            + "libseccomp \(SeccompCompiler.libseccompVersion)\narch \(SeccompCompiler.arch)\n"
            + profile.canonicalText
        return Array(SHA256.hash(data: Array(material.utf8)))
    }

    /// The file a profile's filter is cached in.
    public func path(for profile: SeccompProfile) -> String {
        directory + "/" + Self.key(for: profile) + ".bpf"
    }

    public func filter(for profile: SeccompProfile) throws -> CompiledFilter {
        try load(profile).filter
    }

    /// The filter and whether it came from disk.
    public func load(_ profile: SeccompProfile) throws -> (filter: CompiledFilter, outcome: Outcome) {
        let dir = try openDirectory()
        defer { dir.close() }
        return try load(profile, in: dir)
    }

    func load(_ profile: SeccompProfile, in dir: FD) throws -> (filter: CompiledFilter, outcome: Outcome) {
        let key = Self.keyBytes(for: profile)
        let name = key.hexString + ".bpf"

        var outcome = Outcome.miss
        switch read(name, in: dir, key: key, profileHash: profile.contentHash) {
        case .found(let filter): return (filter, .hit)
        case .absent: break
        case .corrupt: outcome = .replacedCorrupt
        }
        let filter = try SeccompCompiler.compile(profile)
        // A cache that cannot be written only costs the next start a compile.
        try? store(filter, key: key, name: name, in: dir)
        return (filter, outcome)
    }

    // MARK: directory

    func openDirectory() throws -> FD {
        // Open first: on every start but the first the directory exists, and the
        // mkdir of each path component would cost more than the rest of an index hit.
        let flags: OpenFlags = [.readOnly, .directory, .noFollow]
        var opened = Result { () throws(Errno) in try FileSystem.open(directory, flags) }
        if case .failure(let e) = opened, e == .ENOENT {
            try createDirectory()
            opened = Result { () throws(Errno) in try FileSystem.open(directory, flags) }
        }
        let fd: FD
        switch opened {
        case .success(let f): fd = f
        case .failure(let e):
            throw ClawjailError(.seccomp, "open seccomp cache \(directory)", cause: e)
        }
        do {
            let st: Stat
            do { st = try fd.stat() } catch { throw ClawjailError(.seccomp, "stat \(directory)", cause: error) }
            let euid = ProcessInfoLite.effectiveUserID
            guard st.uid == euid else {
                throw ClawjailError(.permission, "seccomp cache \(directory) belongs to uid \(st.uid), not to uid \(euid)",
                                    hint: "remove it or give it to the user running clawjail (mode 0700)")
            }
            if st.mode & 0o077 != 0 {
                do { try fd.setMode(0o700) } catch { throw ClawjailError(.seccomp, "chmod 0700 \(directory)", cause: error) }
            }
        } catch {
            fd.close()
            throw error
        }
        return fd
    }

    /// mkdir -p; the last component 0700, missing parents 0755.
    private func createDirectory() throws {
        guard directory.hasPrefix("/") else {
            throw ClawjailError(.seccomp, "seccomp cache directory must be absolute: \(directory)")
        }
        let parts = directory.split(separator: "/")
        var prefix = ""
        for (i, part) in parts.enumerated() {
            prefix += "/" + part
            let mode: mode_t = i == parts.count - 1 ? 0o700 : 0o755
            do {
                try FileSystem.mkdir(prefix, mode: mode)
            } catch where error == .EEXIST {
                continue
            } catch {
                throw ClawjailError(.seccomp, "create seccomp cache \(prefix)", cause: error)
            }
        }
    }

    // MARK: files

    enum ReadResult {
        case found(CompiledFilter)
        case absent
        case corrupt
    }

    func read(_ name: String, in dir: FD, key: [UInt8], profileHash: String) -> ReadResult {
        let fd: FD
        do {
            fd = try FileSystem.open(name, [.readOnly, .noFollow, .noControllingTerminal, .nonBlocking], at: dir)
        } catch where error == .ENOENT {
            return .absent
        } catch {
            return .corrupt
        }
        defer { fd.close() }
        guard let st = try? fd.stat(), st.isRegular, st.uid == ProcessInfoLite.effectiveUserID,
              st.size <= Self.headerSize + SeccompCompiler.maxInstructions * 8,
              let bytes = try? SeccompFiles.readAll(fd, what: "read cache", limit: Self.headerSize + SeccompCompiler.maxInstructions * 8)
        else { return .corrupt }
        guard let filter = Self.decode(bytes, key: key, profileHash: profileHash) else { return .corrupt }
        return .found(filter)
    }

    private func store(_ filter: CompiledFilter, key: [UInt8], name: String, in dir: FD) throws {
        try Self.writeAtomically(Self.encode(filter, key: key), name: name, in: dir, shownAs: directory)
    }

    /// Temp file (0600, O_EXCL) and rename: a reader sees the old file or the whole new one.
    static func writeAtomically(_ bytes: [UInt8], name: String, in dir: FD, shownAs dirPath: String) throws {
        let random = UInt64.random(in: 0...UInt64.max)
        let temp = ".tmp-\(ProcessInfoLite.pid)-\(String(random, radix: 16))-\(name)"
        let fd: FD
        do {
            fd = try FileSystem.open(temp, [.writeOnly, .create, .exclusive, .noFollow], mode: 0o600, at: dir)
        } catch {
            throw ClawjailError(.seccomp, "create \(dirPath)/\(temp)", cause: error)
        }
        var fdIsOpen = true
        do throws(ClawjailError) {
            try SeccompFiles.writeAll(fd, bytes, what: "write \(dirPath)/\(temp)")
            fdIsOpen = false
            fd.close()
            do {
                try FileSystem.rename(temp, name, at: dir)
            } catch {
                throw ClawjailError(.seccomp, "rename \(temp) to \(name) in \(dirPath)", cause: error)
            }
        } catch {
            if fdIsOpen { fd.close() }
            try? FileSystem.unlink(temp, at: dir)
            throw error
        }
    }

    // MARK: format

    /// magic(8) version(4) flags(4) instructions(4) compiler-format(4) key(32)
    /// sha256(bpf)(32) profile-hash(64 ascii) bpf
    static func encode(_ filter: CompiledFilter, key: [UInt8]) -> [UInt8] {
        var out = magic
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        u32(1)
        u32(filter.needsNotify ? 1 : 0)
        u32(UInt32(filter.instructionCount))
        u32(UInt32(SeccompCompiler.formatVersion))
        out += key
        out += Array(SHA256.hash(data: filter.bpf))
        var hash = Array(filter.profileHash.utf8.prefix(64))
        hash += [UInt8](repeating: 0x20, count: 64 - hash.count)
        out += hash
        out += filter.bpf
        return out
    }

    static func decode(_ bytes: [UInt8], key: [UInt8], profileHash: String) -> CompiledFilter? {
        guard bytes.count > headerSize, Array(bytes[0..<8]) == magic else { return nil }
        func u32(_ at: Int) -> UInt32 {
            UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        let flags = u32(12)
        let count = Int(u32(16))
        guard u32(8) == 1, flags & ~1 == 0, u32(20) == UInt32(SeccompCompiler.formatVersion),
              count > 0, count <= SeccompCompiler.maxInstructions,
              bytes.count == headerSize + count * 8,
              Array(bytes[24..<56]) == key else { return nil }
        let bpf = Array(bytes[headerSize...])
        guard Array(SHA256.hash(data: bpf)) == Array(bytes[56..<88]) else { return nil }
        let storedHash = String(decoding: bytes[88..<152], as: UTF8.self).trimmingSuffixSpaces
        guard storedHash == profileHash else { return nil }
        return CompiledFilter(bpf: bpf, needsNotify: flags & 1 == 1, profileHash: storedHash)
    }
}

extension String {
    fileprivate var trimmingSuffixSpaces: String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
