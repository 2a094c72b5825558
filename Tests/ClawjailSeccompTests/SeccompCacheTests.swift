import ClawjailCore
import Foundation
import Testing
@testable import ClawjailSeccomp

#if canImport(Glibc)
import Glibc
#endif

@Suite("Seccomp cache")
struct SeccompCacheTests {
    func mode(_ path: String) -> mode_t {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : 0
    }

    @Test func secondStartDoesNotRecompileAndAnEditDoes() throws {
        let dir = try SeccompFixtures.tempDir("cache")
        defer { SeccompFixtures.remove(dir) }
        let profiles = try SeccompFixtures.tempDir("cache-profiles")
        defer { SeccompFixtures.remove(profiles) }
        let cache = SeccompCache(directory: dir + "/var/cache/clawjail/seccomp")

        let original = "extends = \"agent\"\ndescription = \"mine\"\n"
        try SeccompFixtures.write(original, to: profiles + "/mine.toml")
        let first = try ProfileLocator.load(nameOrPath: "mine", searchPaths: [profiles, SeccompFixtures.profilesDir])
        let a = try cache.load(first)
        #expect(a.outcome == .miss)
        #expect(mode(cache.directory) == 0o700)
        #expect(mode(cache.path(for: first)) == 0o600)

        // A second start (profile read again) hits.
        let again = try ProfileLocator.load(nameOrPath: "mine", searchPaths: [profiles, SeccompFixtures.profilesDir])
        let b = try cache.load(again)
        #expect(b.outcome == .hit)
        #expect(b.filter == a.filter)

        // A comment changes nothing the filter depends on: still a hit.
        try SeccompFixtures.write("# tuned\n" + original, to: profiles + "/mine.toml")
        #expect(try cache.load(try ProfileLocator.load(nameOrPath: "mine", searchPaths: [profiles, SeccompFixtures.profilesDir])).outcome == .hit)

        // An edit of the policy recompiles.
        try SeccompFixtures.write(original + "errno = \"EACCES\"\n", to: profiles + "/mine.toml")
        let edited = try ProfileLocator.load(nameOrPath: "mine", searchPaths: [profiles, SeccompFixtures.profilesDir])
        let c = try cache.load(edited)
        #expect(c.outcome == .miss)
        #expect(c.filter != a.filter)
        #expect(try cache.load(edited).outcome == .hit)
        // No temp files left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: cache.directory)
        #expect(names.allSatisfy { $0.hasSuffix(".bpf") && !$0.hasPrefix(".tmp") })
        #expect(names.count == 2)
    }

    @Test func violationModeIsPartOfTheKey() throws {
        let dir = try SeccompFixtures.tempDir("cache-mode")
        defer { SeccompFixtures.remove(dir) }
        let cache = SeccompCache(directory: dir + "/c")
        let agent = try SeccompFixtures.load("agent")
        #expect(try cache.load(agent).outcome == .miss)
        let kill = try cache.load(agent.withViolationMode(.kill))
        #expect(kill.outcome == .miss)
        #expect(kill.filter.needsNotify)
        #expect(try cache.load(agent.withViolationMode(.kill)).filter.needsNotify)
    }

    @Test func corruptFilesAreIgnoredAndRewritten() throws {
        let dir = try SeccompFixtures.tempDir("cache-corrupt")
        defer { SeccompFixtures.remove(dir) }
        let cache = SeccompCache(directory: dir + "/c")
        let profile = try SeccompFixtures.load("tool")
        let good = try cache.load(profile).filter
        let path = cache.path(for: profile)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))

        var damaged: [(String, Data)] = [
            ("empty", Data()),
            ("short", bytes.prefix(bytes.count - 3)),
            ("header only", bytes.prefix(SeccompCache.headerSize)),
            ("garbage", Data(repeating: 0x41, count: bytes.count)),
        ]
        var flipped = bytes
        flipped[flipped.count - 5] ^= 0x01   // an instruction changed: the checksum catches it
        damaged.append(("flipped bit", flipped))
        var otherKey = bytes
        otherKey[30] ^= 0xFF                  // a file copied from another profile's name
        damaged.append(("wrong key", otherKey))

        for (label, data) in damaged {
            try data.write(to: URL(fileURLWithPath: path))
            let r = try cache.load(profile)
            #expect(r.outcome == .replacedCorrupt, "\(label)")
            #expect(r.filter == good, "\(label)")
            #expect(try cache.load(profile).outcome == .hit, "\(label) was not rewritten")
        }

        // A symlink where the file should be is not followed; it is replaced.
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "/etc/hostname")
        #expect(try cache.load(profile).outcome == .replacedCorrupt)
        #expect(try cache.load(profile).outcome == .hit)
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        #expect(attrs[.type] as? FileAttributeType == .typeRegular)
    }

    @Test func groupReadableDirectoryIsTightened() throws {
        let dir = try SeccompFixtures.tempDir("cache-perm")
        defer { SeccompFixtures.remove(dir) }
        let cacheDir = dir + "/c"
        #expect(mkdir(cacheDir, 0o755) == 0)
        chmod(cacheDir, 0o777)
        _ = try SeccompCache(directory: cacheDir).load(try SeccompFixtures.load("tool"))
        #expect(mode(cacheDir) == 0o700)
    }

    @Test(.enabled(if: getuid() == 0, "needs root: chowns the cache directory to another user"))
    func foreignOwnedDirectoryIsRefused() throws {
        let dir = try SeccompFixtures.tempDir("cache-owner")
        defer { SeccompFixtures.remove(dir) }
        let cacheDir = dir + "/c"
        #expect(mkdir(cacheDir, 0o700) == 0)
        #expect(chown(cacheDir, 65534, 65534) == 0)
        #expect(throws: ClawjailError.self) { try SeccompCache(directory: cacheDir).load(try SeccompFixtures.load("tool")) }
    }

}
