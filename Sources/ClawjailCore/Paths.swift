/// Path rules for config values. Pure string logic; the runtime does the filesystem
/// half (opening without following symlinks).
public enum Paths {
    /// Joins and normalises an absolute path lexically. Returns nil when the path is
    /// relative, contains ".." (refused outright: it is how `workspace = "/srv/a/../../"`
    /// tricks work), or a NUL byte.
    public static func normalizeAbsolute(_ path: String) -> String? {
        guard path.hasPrefix("/"), !path.utf8.contains(0) else { return nil }
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { return nil }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// A relative path below some root, normalised ("skills/" -> "skills"); nil for
    /// absolute paths, ".." anywhere, or an empty result.
    public static func normalizeRelative(_ path: String) -> String? {
        guard !path.hasPrefix("/"), !path.utf8.contains(0) else { return nil }
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { return nil }
            parts.append(part)
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }

    /// True when `path` is `ancestor` or below it (both normalised absolute).
    public static func isWithin(_ path: String, _ ancestor: String) -> Bool {
        if ancestor == "/" { return true }
        return path == ancestor || path.hasPrefix(ancestor + "/")
    }

    /// Resolves a host path from a config file: relative paths are relative to the
    /// directory of the config file.
    public static func resolveHost(_ value: String, relativeTo configDirectory: String) -> String? {
        if value.hasPrefix("/") { return normalizeAbsolute(value) }
        return normalizeAbsolute(configDirectory + "/" + value)
    }

    public static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let d = String(path[..<slash])
        return d.isEmpty ? "/" : d
    }

    public static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Targets inside the jail that a mount may never cover: the kernel interfaces.
    public static let forbiddenTargets = ["/proc", "/sys", "/dev"]
    /// Targets that are part of the jail's own layout and may not be replaced wholesale
    /// (a mount below them is fine where the base allows it).
    public static let reservedTargets = ["/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                         "/libx32", "/tmp", "/run/clawjail"]

    /// Why a jail-side target is refused, or nil when it is fine.
    public static func targetProblem(_ target: String) -> String? {
        guard let n = normalizeAbsolute(target) else {
            return target.hasPrefix("/") ? "'\(target)' contains '..' or a NUL byte" : "'\(target)' is not an absolute path"
        }
        for f in forbiddenTargets where isWithin(n, f) {
            return "'\(n)' is inside \(f), which the jail provides itself and no mount may cover"
        }
        if reservedTargets.contains(n) {
            return "'\(n)' would replace part of the jail's base layout"
        }
        return nil
    }

    /// Host directories that a jail may never be given read-write (they are chowned to
    /// the agent's uid), nor mounted at all where noted.
    public static let systemTrees = ["/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                                     "/boot", "/dev", "/proc", "/sys", "/run", "/var/lib/clawjail",
                                     "/var/cache/clawjail", "/etc/clawjail"]
    /// Too broad to hand to one agent (they hold other people's data), though a
    /// subdirectory is fine.
    public static let broadDirectories = ["/", "/home", "/root", "/srv", "/opt", "/var", "/var/lib", "/tmp",
                                          "/var/tmp", "/mnt", "/media", "/data"]
    /// Host trees that may not be mounted even read-only.
    public static let neverMounted = ["/proc", "/sys", "/dev", "/boot", "/run/clawjail", "/var/lib/clawjail",
                                      "/var/cache/clawjail"]

    /// Why a host path is refused for the given use, or nil.
    public static func hostProblem(_ host: String, writable: Bool, stateDirectory: String) -> String? {
        if host == "/" { return "'/' is the whole host" }
        if isWithin(host, stateDirectory) || isWithin(stateDirectory, host) {
            return "'\(host)' overlaps clawjail's state directory \(stateDirectory)"
        }
        for t in neverMounted where isWithin(host, t) {
            return "'\(host)' is inside \(t), which is never mounted into a jail"
        }
        // A parent brings the tree along: a read-only /run would expose /run/clawjail's
        // sockets (connect works on a read-only mount).
        for t in neverMounted where isWithin(t, host) {
            return "'\(host)' contains \(t), which is never mounted into a jail"
        }
        if writable {
            for t in systemTrees where isWithin(host, t) {
                return "'\(host)' is inside the system tree \(t); a writable mount is chowned to the agent's uid"
            }
            if broadDirectories.contains(host) {
                return "'\(host)' is too broad to give to one agent"
            }
            for t in systemTrees where isWithin(t, host) {
                return "'\(host)' contains the system tree \(t)"
            }
        }
        return nil
    }
}
