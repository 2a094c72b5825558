import Testing
@testable import ClawjailCore

@Suite("Paths")
struct PathsTests {
    @Test("absolute paths are normalised lexically", arguments: [
        ("/", "/"), ("//", "/"), ("/.", "/"), ("/a//b/./c/", "/a/b/c"), ("/workspace/", "/workspace"),
        ("/...", "/..."), ("/a/..b", "/a/..b"), ("/.hidden", "/.hidden"),
    ])
    func normalizeAbsolute(path: String, normalised: String) {
        #expect(Paths.normalizeAbsolute(path) == normalised)
    }

    @Test("relative paths, '..' anywhere and NUL bytes are refused",
          arguments: ["", "a", "./a", "/..", "/a/..", "/a/../b", "/a/b/../../..", "/a\0b", "/../etc"])
    func normalizeAbsoluteRefused(path: String) {
        #expect(Paths.normalizeAbsolute(path) == nil)
    }

    @Test("relative paths below a root are normalised", arguments: [
        ("skills/", "skills"), ("./a", "a"), ("a//b/.", "a/b"), ("SOUL.md", "SOUL.md"), ("...", "..."),
    ])
    func normalizeRelative(path: String, normalised: String) {
        #expect(Paths.normalizeRelative(path) == normalised)
    }

    @Test("absolute paths, '..' and empty results are not relative paths",
          arguments: ["", ".", "./", "/a", "../a", "a/../b", "a/..", "a\0b"])
    func normalizeRelativeRefused(path: String) {
        #expect(Paths.normalizeRelative(path) == nil)
    }

    @Test("isWithin compares whole components", arguments: [
        ("/a", "/a", true), ("/a/b", "/a", true), ("/ab", "/a", false), ("/a", "/a/b", false),
        ("/anything", "/", true), ("/", "/", true), ("/procfs", "/proc", false), ("/proc/1", "/proc", true),
    ])
    func isWithin(path: String, ancestor: String, within: Bool) {
        #expect(Paths.isWithin(path, ancestor) == within)
    }

    @Test("host paths: absolute kept, relative joined to the config's directory, '..' refused")
    func resolveHost() {
        #expect(Paths.resolveHost("/srv/x/", relativeTo: "/etc/clawjail") == "/srv/x")
        #expect(Paths.resolveHost("workspace", relativeTo: "/srv/alice") == "/srv/alice/workspace")
        #expect(Paths.resolveHost("./w//x/", relativeTo: "/srv/alice") == "/srv/alice/w/x")
        #expect(Paths.resolveHost("", relativeTo: "/srv/alice") == "/srv/alice")
        #expect(Paths.resolveHost("../bob", relativeTo: "/srv/alice") == nil)
        #expect(Paths.resolveHost("w/../../bob", relativeTo: "/srv/alice") == nil)
        #expect(Paths.resolveHost("/srv/alice/../bob", relativeTo: "/") == nil)
    }

    @Test("dirname and basename")
    func names() {
        #expect(Paths.dirname("/srv/alice/agent.toml") == "/srv/alice")
        #expect(Paths.dirname("/agent.toml") == "/")
        #expect(Paths.dirname("agent.toml") == ".")
        #expect(Paths.basename("/srv/alice/agent.toml") == "agent.toml")
        #expect(Paths.basename("agent.toml") == "agent.toml")
    }

    @Test("jail targets that are fine", arguments: [
        "/workspace", "/opt/openclaw", "/run/credentials", "/procfs", "/devices", "/system", "/sys2", "/etc/ssl/certs",
        "/usr/local/share/x", "/tmp/x", "/data/", "/home/agent",
    ])
    func targetOK(target: String) {
        #expect(Paths.targetProblem(target) == nil)
    }

    @Test("jail targets that are refused, and why", arguments: [
        ("/proc", "is inside /proc"), ("/proc/sys/kernel", "is inside /proc"), ("//proc//", "'/proc' is inside /proc"),
        ("/sys", "is inside /sys"), ("/sys/kernel/uevent_helper", "is inside /sys"),
        ("/dev", "is inside /dev"), ("/dev/shm", "is inside /dev"), ("/dev/pts/0", "is inside /dev"),
        ("/", "would replace part of the jail's base layout"), ("/etc", "would replace"), ("/usr", "would replace"),
        ("/bin", "would replace"), ("/sbin", "would replace"), ("/lib", "would replace"), ("/lib64", "would replace"),
        ("/tmp", "would replace"), ("/run/clawjail", "would replace"),
        ("workspace", "is not an absolute path"), ("", "is not an absolute path"),
        ("/a/../proc", "contains '..'"), ("/a\0b", "contains '..' or a NUL byte"),
    ])
    func targetRefused(target: String, why: String) {
        let problem = Paths.targetProblem(target)
        #expect(problem?.contains(why) == true, "\(problem ?? "nil")")
    }

    @Test("host paths: what each use allows", arguments: [
        // (host, writable, problem fragment or "" for none)
        ("/srv/clawjail/alice/workspace", true, ""),
        ("/home/alice/agent", true, ""),
        ("/opt/openclaw", false, ""),
        ("/etc", false, ""),
        ("/etc/ssl/certs", false, ""),
        ("/usr", false, ""),
        ("/usr/share/zoneinfo", false, ""),
        ("/home", false, ""),
        ("/run/user/1000", false, ""),
        ("/", false, "'/' is the whole host"),
        ("/", true, "'/' is the whole host"),
        ("/var/lib/clawjail", false, "overlaps clawjail's state directory /var/lib/clawjail"),
        ("/var/lib/clawjail/agents/a", true, "overlaps clawjail's state directory"),
        ("/var/lib", false, "overlaps clawjail's state directory"),
        ("/var", false, "overlaps clawjail's state directory"),
        ("/proc", false, "'/proc' is inside /proc, which is never mounted"),
        ("/sys/fs/cgroup", false, "is inside /sys"),
        ("/dev/sda", false, "is inside /dev"),
        ("/boot/grub", false, "is inside /boot"),
        ("/run/clawjail", false, "is inside /run/clawjail"),
        ("/run/clawjail/bob/gateway.sock", false, "is inside /run/clawjail"),
        ("/var/cache/clawjail/x", false, "is inside /var/cache/clawjail"),
        ("/run", false, "'/run' contains /run/clawjail, which is never mounted"),
        ("/var/cache", false, "'/var/cache' contains /var/cache/clawjail"),
        ("/etc", true, "is inside the system tree /etc"),
        ("/etc/clawjail", true, "is inside the system tree /etc"),
        ("/usr/local/ws", true, "is inside the system tree /usr"),
        ("/lib/x", true, "is inside the system tree /lib"),
        ("/run/user/1000", true, "is inside the system tree /run"),
        ("/home", true, "'/home' is too broad to give to one agent"),
        ("/srv", true, "is too broad"),
        ("/tmp", true, "is too broad"),
        ("/root", true, "is too broad"),
    ])
    func hostProblem(host: String, writable: Bool, why: String) {
        let problem = Paths.hostProblem(host, writable: writable, stateDirectory: "/var/lib/clawjail")
        if why.isEmpty {
            #expect(problem == nil)
        } else {
            #expect(problem?.contains(why) == true, "\(problem ?? "nil")")
        }
    }

    @Test("a custom state directory is protected like the default one")
    func customState() {
        #expect(Paths.hostProblem("/srv/state/db", writable: false, stateDirectory: "/srv/state")?
            .contains("overlaps clawjail's state directory /srv/state") == true)
        #expect(Paths.hostProblem("/srv", writable: false, stateDirectory: "/srv/state") != nil)
        #expect(Paths.hostProblem("/srv/statex", writable: false, stateDirectory: "/srv/state") == nil)
        // The default location stays refused (never mounted) even when another is used.
        #expect(Paths.hostProblem("/var/lib/clawjail", writable: false, stateDirectory: "/srv/state") != nil)
    }
}
