import ClawjailCore
import Foundation
import Testing
@testable import ClawjailSeccomp

#if canImport(Glibc)
import Glibc
#endif

/// A profile tree in a temp directory: search path [over, a, b], `mine` in a (extends
/// `base`, uses @extra), `base` and groups.toml in b.
private struct IndexFixture {
    let root: String
    let cache: SeccompCache
    var over: String { root + "/over" }
    var a: String { root + "/a" }
    var b: String { root + "/b" }
    var searchPaths: [String] { [over, a, b] }

    static let groups = """
        [basic]
        description = "basic"
        syscalls = ["read", "write", "exit_group"]

        [extra]
        description = "extra"
        syscalls = ["getpid"]

        """

    init(_ tag: String) throws {
        root = try SeccompFixtures.tempDir("index-\(tag)")
        cache = SeccompCache(directory: root + "/cache")
        for dir in [over, a, b] { mkdir(dir, 0o755) }
        try SeccompFixtures.write(Self.groups, to: b + "/groups.toml")
        try SeccompFixtures.write("allow = [\"@basic\"]\n", to: b + "/base.toml")
        try SeccompFixtures.write("extends = \"base\"\nallow = [\"@extra\", \"gettid\"]\n", to: a + "/mine.toml")
    }

    func remove() { SeccompFixtures.remove(root) }

    /// `select` that reports whether it parsed the profile.
    func select(_ name: String = "mine", mode: ViolationMode? = nil,
                racyWindow: Int64 = SeccompIndex.racyWindow) throws -> (selection: SeccompSelection, parsed: Bool) {
        var parsed = false
        let s = try cache.select(nameOrPath: name, searchPaths: searchPaths, violationMode: mode,
                                 racyWindow: racyWindow) { n, paths, read in
            parsed = true
            return try ProfileLocator.load(nameOrPath: n, searchPaths: paths, readFile: read)
        }
        #expect(s.fromIndex == !parsed)
        return (s, parsed)
    }

    func indexPath(_ name: String = "mine", mode: ViolationMode? = nil) throws -> String {
        try #require(cache.indexPath(nameOrPath: name, searchPaths: searchPaths, violationMode: mode))
    }

    func entry(_ name: String = "mine", mode: ViolationMode? = nil) throws -> SeccompIndexEntry {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: try indexPath(name, mode: mode)))
        return try #require(SeccompIndexEntry.decode(Array(bytes)))
    }

    func writeEntry(_ entry: SeccompIndexEntry, _ name: String = "mine", mode: ViolationMode? = nil) throws {
        let bytes = try #require(entry.encode())
        try Data(bytes).write(to: URL(fileURLWithPath: try indexPath(name, mode: mode)))
    }

    /// name → inode of the compiled filters.
    func filters() throws -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: cache.directory) where name.hasSuffix(".bpf") {
            out[name] = inode(cache.directory + "/" + name)
        }
        return out
    }
}

private func inode(_ path: String) -> UInt64 {
    var st = stat()
    return lstat(path, &st) == 0 ? UInt64(st.st_ino) : 0
}

private func modeAndOwner(_ path: String) -> (mode: mode_t, uid: uid_t, regular: Bool) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return (0, 0, false) }
    return (st.st_mode & 0o7777, st.st_uid, st.st_mode & S_IFMT == S_IFREG)
}

@Suite("Seccomp index")
struct SeccompIndexTests {
    @Test func indexHitDoesNotParse() throws {
        let f = try IndexFixture("hit")
        defer { f.remove() }
        let first = try f.select()
        #expect(first.parsed)
        let second = try f.select()
        #expect(!second.parsed)
        #expect(second.selection.filter == first.selection.filter)
        #expect(second.selection.policy == first.selection.policy)
        #expect(second.selection.contentHash == first.selection.contentHash)
        #expect(second.selection.profileName == "mine")

        // The same answer as the API the runtime used so far.
        let profile = try ProfileLocator.load(nameOrPath: "mine", searchPaths: f.searchPaths)
        #expect(second.selection.filter == (try f.cache.filter(for: profile)))
        #expect(second.selection.policy == profile.violationPolicy)
        #expect(second.selection.contentHash == profile.contentHash)

        // The public entry point takes the same index.
        #expect(try f.cache.select(nameOrPath: "mine", searchPaths: f.searchPaths).fromIndex)

        let index = try f.indexPath()
        #expect(modeAndOwner(index).mode == 0o600)
        #expect(modeAndOwner(f.cache.directory + "/index").mode == 0o700)
        let names = try FileManager.default.contentsOfDirectory(atPath: f.cache.directory + "/index")
        #expect(names == [Paths.basename(index)], "temp files left behind: \(names)")
    }

    @Test func shippedProfilesGiveWhatTheOldPathGives() throws {
        let dir = try SeccompFixtures.tempDir("index-shipped")
        defer { SeccompFixtures.remove(dir) }
        let cache = SeccompCache(directory: dir + "/c")
        for name in ["agent", "tool", "openclaw", "nanoclaw"] {
            for mode in [nil, ViolationMode.log, .kill] {
                var profile = try SeccompFixtures.load(name)
                if let mode { profile = profile.withViolationMode(mode) }
                let expected = try cache.filter(for: profile)
                let slow = try cache.select(nameOrPath: name, searchPaths: [SeccompFixtures.profilesDir], violationMode: mode)
                let fast = try cache.select(nameOrPath: name, searchPaths: [SeccompFixtures.profilesDir], violationMode: mode)
                #expect(!slow.fromIndex && fast.fromIndex, "\(name) \(String(describing: mode))")
                for s in [slow, fast] {
                    #expect(s.filter == expected)
                    #expect(s.policy == profile.violationPolicy)
                    #expect(s.contentHash == profile.contentHash)
                    #expect(s.profileName == name)
                }
            }
        }
    }

    @Test(arguments: ["a/mine.toml", "b/base.toml", "b/groups.toml"])
    func editingAnyDependencyInvalidates(file: String) throws {
        let f = try IndexFixture("edit")
        defer { f.remove() }
        let before = try f.select().selection
        #expect(try f.select().selection.fromIndex)

        let path = f.root + "/" + file
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"gettid\"", with: "\"gettid\", \"getuid\"")
            .replacingOccurrences(of: "[\"@basic\"]", with: "[\"@basic\", \"getuid\"]")
            .replacingOccurrences(of: "[\"getpid\"]", with: "[\"getpid\", \"getuid\"]")
        try SeccompFixtures.write(text, to: path)

        let after = try f.select()
        #expect(after.parsed, "\(file) edited, index still used")
        #expect(after.selection.contentHash != before.contentHash)
        #expect(after.selection.filter != before.filter)
        let again = try f.select()
        #expect(!again.parsed)
        #expect(again.selection.contentHash == after.selection.contentHash)
    }

    /// Same size, same inode, most likely the same clock tick: only the content tells.
    @Test func sameSizeEditRightAfterTheIndexIsCaught() throws {
        let f = try IndexFixture("same-size")
        defer { f.remove() }
        let before = try f.select().selection
        #expect(try f.select().selection.fromIndex)
        let path = f.a + "/mine.toml"
        let ino = inode(path)
        try SeccompFixtures.write("extends = \"base\"\nallow = [\"@extra\", \"getuid\"]\n", to: path)
        #expect(inode(path) == ino)
        let after = try f.select()
        #expect(after.parsed)
        #expect(after.selection.contentHash != before.contentHash)
    }

    /// A file changed within the racy window is checked by content, not by stat alone.
    @Test func recentFilesAreCheckedByContent() throws {
        let f = try IndexFixture("racy")
        defer { f.remove() }
        _ = try f.select()
        let entry = try f.entry()
        #expect(entry.dependencies.contains { $0.hasContentHash }, "files written just now carry their hash")

        // The stat still matches, but the content is not what was parsed.
        var forged = entry
        forged.dependencies = entry.dependencies.map { d in
            guard case .file(let path, let identity, .some) = d, path.hasSuffix("/mine.toml") else { return d }
            return .file(path: path, identity: identity, contentHash: String(repeating: "0", count: 64))
        }
        #expect(forged != entry)
        try f.writeEntry(forged)
        #expect(try f.select().parsed)

        // Once the window has passed, a hit drops the hashes: the stat is enough from then on.
        #expect(try !f.select(racyWindow: 0).parsed)
        #expect(try !f.entry().dependencies.contains { $0.hasContentHash })
        #expect(try !f.select().parsed)
    }

    @Test(arguments: ["profile", "parent", "groups"])
    func anOverrideAddedEarlierInTheSearchInvalidates(kind: String) throws {
        let f = try IndexFixture("override")
        defer { f.remove() }
        let before = try f.select().selection
        #expect(try f.select().selection.fromIndex)
        let entry = try f.entry()

        switch kind {
        case "profile":
            try SeccompFixtures.write("allow = [\"read\", \"exit_group\"]\n", to: f.over + "/mine.toml")
        case "parent":
            // `extends` looks beside the profile first.
            try SeccompFixtures.write("allow = [\"read\", \"write\", \"exit_group\", \"getppid\"]\n", to: f.a + "/base.toml")
        default:
            // groups.toml beside the profile wins over the one further down the path.
            try SeccompFixtures.write("[extra]\ndescription = \"x\"\nsyscalls = [\"getppid\"]\n", to: f.a + "/groups.toml")
        }
        #expect(entry.dependencies.contains(.absent(path: [
            "profile": f.over + "/mine.toml", "parent": f.a + "/base.toml", "groups": f.a + "/groups.toml",
        ][kind] ?? "")))

        let after = try f.select()
        #expect(after.parsed, "\(kind) override not noticed")
        #expect(after.selection.contentHash != before.contentHash)
        #expect(try !f.select().parsed)
    }

    @Test func touchingRebuildsTheIndexButKeepsTheFilter() throws {
        let f = try IndexFixture("touch")
        defer { f.remove() }
        let before = try f.select().selection
        #expect(try f.select().selection.fromIndex)
        let filters = try f.filters()
        #expect(filters.count == 1)
        let indexInode = inode(try f.indexPath())

        // Same content, another mtime (and ctime).
        var times = [timespec(tv_sec: time(nil) - 3600, tv_nsec: 0), timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, f.b + "/base.toml", &times, 0) == 0)

        let after = try f.select()
        #expect(after.parsed)
        #expect(after.selection.contentHash == before.contentHash)
        #expect(after.selection.filter == before.filter)
        #expect(try f.filters() == filters, "the .bpf is keyed by content: not recompiled, not rewritten")
        #expect(inode(try f.indexPath()) != indexInode, "the index entry was not rewritten")
        #expect(try !f.select().parsed)
    }

    @Test func violationModeIsPartOfTheKey() throws {
        let f = try IndexFixture("mode")
        defer { f.remove() }
        let plain = try f.select()
        #expect(plain.parsed && plain.selection.policy.mode == .errno && !plain.selection.filter.needsNotify)
        let kill = try f.select(mode: .kill)
        #expect(kill.parsed, "the errno entry answered a kill-mode start")
        #expect(kill.selection.policy.mode == .kill && kill.selection.filter.needsNotify)
        #expect(kill.selection.contentHash != plain.selection.contentHash)
        #expect(try f.select(mode: .log).parsed)

        for (mode, expected) in [(nil, plain.selection), (.kill, kill.selection)] as [(ViolationMode?, SeccompSelection)] {
            let s = try f.select(mode: mode)
            #expect(!s.parsed)
            #expect(s.selection.policy == expected.policy && s.selection.filter == expected.filter)
        }
        #expect(try f.indexPath() != (try f.indexPath(mode: .kill)))
        #expect(try f.indexPath(mode: .log) != (try f.indexPath(mode: .kill)))
    }

    @Test func corruptOrForeignEntriesAreIgnoredAndRewritten() throws {
        let f = try IndexFixture("corrupt")
        defer { f.remove() }
        _ = try f.select(mode: .kill)
        _ = try f.select()
        let path = try f.indexPath()
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let killEntry = try Data(contentsOf: URL(fileURLWithPath: try f.indexPath(mode: .kill)))

        var flipped = good
        if let at = flipped.lastIndex(of: UInt8(ascii: "1")) { flipped[at] = UInt8(ascii: "2") }
        var damaged: [(String, () throws -> Void)] = [
            ("empty", { try Data().write(to: URL(fileURLWithPath: path)) }),
            ("truncated", { try good.prefix(good.count - 10).write(to: URL(fileURLWithPath: path)) }),
            ("garbage", { try Data(repeating: 0x41, count: good.count).write(to: URL(fileURLWithPath: path)) }),
            ("flipped digit", { try flipped.write(to: URL(fileURLWithPath: path)) }),
            // Valid, but another call's entry: its key line does not match the name.
            ("other key", { try killEntry.write(to: URL(fileURLWithPath: path)) }),
            ("group-writable", {
                try good.write(to: URL(fileURLWithPath: path))
                chmod(path, 0o666)
            }),
            ("symlink", {
                unlink(path)
                let target = f.root + "/copy.idx"
                try good.write(to: URL(fileURLWithPath: target))
                symlink(target, path)
            }),
            ("fifo", {
                unlink(path)
                mkfifo(path, 0o600)
            }),
        ]
        if geteuid() == 0 {
            damaged.append(("foreign owner", {
                try good.write(to: URL(fileURLWithPath: path))
                chown(path, 65534, 65534)
            }))
        }
        #expect(flipped != good)

        for (label, damage) in damaged {
            try damage()
            let r = try f.select()
            #expect(r.parsed, "\(label): entry trusted")
            let st = modeAndOwner(path)
            #expect(st.regular && st.uid == geteuid() && st.mode == 0o600, "\(label): not rewritten")
            #expect(try !f.select().parsed, "\(label): rewritten entry not used")
        }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root: chowns the index directory to another user"))
    func foreignIndexDirectoryIsNeverUsed() throws {
        let f = try IndexFixture("foreign-dir")
        defer { f.remove() }
        _ = try f.select()
        #expect(try !f.select().parsed)
        #expect(chown(f.cache.directory + "/index", 65534, 65534) == 0)
        for _ in 0..<2 {
            let r = try f.select()
            #expect(r.parsed, "an index directory of another user was trusted")
        }
    }

    /// A new clawjail build may read the same files differently: its starts do not
    /// take entries the old one wrote.
    @Test func anotherExecutableStartsOver() throws {
        let f = try IndexFixture("exe")
        defer { f.remove() }
        _ = try f.select()
        var entry = try f.entry()
        entry.executable.inode &+= 1
        try f.writeEntry(entry)
        #expect(try f.select().parsed)
        #expect(try !f.select().parsed)
    }

    @Test func errorsAreNotMaskedByTheIndex() throws {
        let f = try IndexFixture("errors")
        defer { f.remove() }
        _ = try f.select()
        try SeccompFixtures.write("extends = \"base\"\nallow = [\"no_such_syscall\"]\n", to: f.a + "/mine.toml")
        #expect(throws: ConfigError.self) { try f.select() }
        #expect(throws: ConfigError.self) { try f.select() }
        unlink(f.a + "/mine.toml")
        #expect(throws: ClawjailError.self) { try f.select() }
        #expect(throws: ClawjailError.self) { try f.select("no-such-profile") }
        #expect(throws: ClawjailError.self) { try f.select("Not A Name") }
    }

    @Test func entriesRoundTrip() throws {
        let entry = SeccompIndexEntry(
            key: String(repeating: "a", count: 64),
            executable: FileIdentity(device: UInt64.max, inode: 1, size: 0, modified: -5, changed: Int64.max),
            dependencies: [.absent(path: "/x y/mine.toml"),
                           .file(path: "rel/a b.toml", identity: FileIdentity(device: 1, inode: 2, size: 3, modified: 4, changed: 5),
                                 contentHash: String(repeating: "b", count: 64)),
                           .file(path: "/c", identity: FileIdentity(device: 1, inode: 2, size: 3, modified: 4, changed: 5),
                                 contentHash: nil)],
            profileName: "mine", contentHash: String(repeating: "c", count: 64), filterKey: String(repeating: "d", count: 64),
            policy: SeccompViolationPolicy(mode: .log, errno: 38, restricted: [1, 165, 425]))
        let bytes = try #require(entry.encode())
        #expect(SeccompIndexEntry.decode(bytes) == entry)
        var empty = entry
        empty.policy = SeccompViolationPolicy(mode: .errno, errno: 1, restricted: [])
        empty.dependencies = []
        #expect(SeccompIndexEntry.decode(try #require(empty.encode())) == empty)
        // A path that would not fit on one line is never indexed.
        var newline = entry
        newline.dependencies = [.absent(path: "/a\nb")]
        #expect(newline.encode() == nil)
        // Every prefix is refused.
        for n in 0..<bytes.count { #expect(SeccompIndexEntry.decode(Array(bytes.prefix(n))) == nil) }
    }
}
