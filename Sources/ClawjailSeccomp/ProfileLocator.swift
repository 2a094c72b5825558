import ClawjailCore

/// Finds a profile by name or path and loads it (parents and groups included).
public enum ProfileLocator {
    /// Where installed profiles live, after the repository's own `profiles/`, which
    /// the runtime puts first when it runs from a checkout.
    public static let systemSearchPaths = ["/etc/clawjail/profiles", "/usr/local/share/clawjail/profiles"]

    /// `nameOrPath` containing "/" is a file path (relative to the working directory);
    /// otherwise it is a name, resolved to `<dir>/<name>.toml` in `searchPaths` order.
    /// `extends` names resolve in the profile's own directory first, then the same path.
    public static func load(nameOrPath: String, searchPaths: [String]) throws -> SeccompProfile {
        try load(nameOrPath: nameOrPath, searchPaths: searchPaths, readFile: { try SeccompFiles.readFile($0) })
    }

    static func load(nameOrPath: String, searchPaths: [String],
                     readFile: @escaping ProfileLoader.ReadFile) throws -> SeccompProfile {
        let loader = ProfileLoader(searchPaths: searchPaths, readFile: readFile)
        if nameOrPath.contains("/") {
            guard try readFile(nameOrPath) != nil else {
                throw ClawjailError(.notFound, "seccomp profile file \(nameOrPath) does not exist")
            }
            return try loader.load(path: nameOrPath)
        }
        guard ProfileLoader.isValidName(nameOrPath), nameOrPath != "groups" else {
            throw ClawjailError(.config, "'\(nameOrPath)' is not a profile name",
                                hint: "use a name such as \"agent\" or \"tool\", or a path to a .toml file")
        }
        guard let path = try loader.locate(name: nameOrPath, in: searchPaths) else {
            throw ClawjailError(.notFound, "no seccomp profile '\(nameOrPath)' in " + searchPaths.joined(separator: ", "),
                                hint: "shipped profiles: agent, tool, openclaw, nanoclaw")
        }
        return try loader.load(path: path)
    }

    /// The files loading `nameOrPath` reads (the profile, the profiles it extends,
    /// groups.toml), in the order first read: what a VM agent's guest needs to load the
    /// same profile by itself.
    public static func files(nameOrPath: String, searchPaths: [String]) throws -> [(path: String, content: [UInt8])] {
        final class Seen: @unchecked Sendable { var files: [(path: String, content: [UInt8])] = [] }
        let seen = Seen()
        _ = try load(nameOrPath: nameOrPath, searchPaths: searchPaths) { p in
            let content = try SeccompFiles.readFile(p)
            if let content, !seen.files.contains(where: { $0.path == p }) { seen.files.append((p, content)) }
            return content
        }
        return seen.files
    }

    /// Loads a profile from text (tests, `clawjail check`). `path` names it in messages
    /// and is the directory `extends` and groups.toml are looked up in first.
    public static func parse(_ text: String, path: String, searchPaths: [String]) throws -> SeccompProfile {
        let loader = ProfileLoader(searchPaths: searchPaths) { p in
            p == path ? Array(text.utf8) : try SeccompFiles.readFile(p)
        }
        return try loader.load(path: path)
    }
}
