import ClawjailCore
import ClawjailSystem

/// Reads profile files, follows `extends`, expands groups and checks every name.
/// All problems of one file are reported together, each with file:line:col.
final class ProfileLoader {
    /// A file's bytes, nil when it does not exist. Bytes, not text, so that a profile
    /// that is not UTF-8 is refused at the offending byte instead of read with U+FFFD.
    typealias ReadFile = (String) throws -> [UInt8]?

    let searchPaths: [String]
    let readFile: ReadFile
    private var groupFiles: [String: GroupLibrary] = [:]

    init(searchPaths: [String], readFile: @escaping ReadFile) {
        self.searchPaths = searchPaths
        self.readFile = readFile
    }

    /// Where a name or a group came from, for messages.
    struct Origin: Sendable {
        var file: String
        var location: SourceLocation?
        var text: String {
            guard let location else { return file }
            return "\(file):\(location.line):\(location.column)"
        }
    }

    struct GroupLibrary {
        var file: String
        var groups: [String: (entries: [(String, Origin)], origin: Origin)]
    }

    struct Resolved {
        var description = ""
        var files: [String] = []
        var mode: ViolationMode?
        var errno: Int32?
        var allowed: [String: Origin] = [:]
        var denied: [String: Origin] = [:]
        var rules: [(rule: SyscallRule, origin: Origin)] = []
        /// Why a call is refused, by syscall (groups expanded).
        var reasons: [String: (text: String, origin: Origin)] = [:]
    }

    // MARK: entry points

    func load(path: String) throws -> SeccompProfile {
        let resolved = try resolve(path: path, chain: [])
        let name = Self.profileName(of: path)
        try checkConflicts(resolved, file: path)
        return SeccompProfile(
            name: name, path: path, description: resolved.description, files: resolved.files,
            onViolation: resolved.mode ?? .errno, errno: resolved.errno ?? 1,
            allowed: resolved.allowed.keys.sorted(), denied: resolved.denied.keys.sorted(),
            rules: Self.dedupe(resolved.rules.map(\.rule)), reasons: resolved.reasons.mapValues(\.text))
    }

    /// Finds `<dir>/<name>.toml` in `directories`.
    func locate(name: String, in directories: [String]) throws -> String? {
        for dir in directories {
            let candidate = (dir.hasSuffix("/") ? dir : dir + "/") + name + ".toml"
            if try readFile(candidate) != nil { return candidate }
        }
        return nil
    }

    static func profileName(of path: String) -> String {
        let base = Paths.basename(path)
        return base.hasSuffix(".toml") ? String(base.dropLast(5)) : base
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 64 else { return false }
        func ok(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F }
        return ok(first) && first != 0x2D && first != 0x5F && name.utf8.allSatisfy(ok)
    }

    // MARK: one file

    private func resolve(path: String, chain: [String]) throws -> Resolved {
        guard let bytes = try readFile(path) else {
            throw ClawjailError(.notFound, "seccomp profile \(path) does not exist")
        }
        let table: TOMLTable
        do {
            table = try TOML.parse(utf8: bytes)
        } catch {
            throw ConfigError([ConfigIssue(file: path, location: error.location, message: error.message)])
        }

        var issues: [ConfigIssue] = []
        func issue(_ location: SourceLocation?, _ message: String, hint: String? = nil) {
            issues.append(ConfigIssue(file: path, location: location, message: message, hint: hint))
        }
        func origin(_ location: SourceLocation?) -> Origin { Origin(file: path, location: location) }

        var own = Resolved()
        own.files = [path]
        var extendsName: (String, SourceLocation)?
        var allowEntries: [(String, SourceLocation)] = []
        var denyEntries: [(String, SourceLocation)] = []
        var localGroups: [String: (entries: [(String, Origin)], origin: Origin)] = [:]
        var reasonEntries: [(name: String, text: String, location: SourceLocation)] = []

        for entry in table.entries {
            let node = entry.node
            switch entry.key {
            case "description":
                if case .string(let s) = node.value { own.description = s } else {
                    issue(node.location, "description must be a string, not \(node.typeName)")
                }
            case "extends":
                if case .string(let s) = node.value, Self.isValidName(s) {
                    extendsName = (s, node.location)
                } else {
                    issue(node.location, "extends must be a profile name such as \"agent\"")
                }
            case "on_violation":
                if case .string(let s) = node.value, let mode = ViolationMode(rawValue: s) {
                    own.mode = mode
                } else {
                    issue(node.location, "on_violation must be \"errno\", \"log\" or \"kill\"")
                }
            case "errno":
                if let e = Self.errnoValue(node) { own.errno = e } else {
                    issue(node.location, "errno must be a name such as \"EPERM\" or a number 0...4094")
                }
            case "allow", "deny":
                guard case .array(let items) = node.value else {
                    issue(node.location, "\(entry.key) must be an array of syscall names and @groups")
                    continue
                }
                for item in items {
                    guard case .string(let s) = item.value, !s.isEmpty else {
                        issue(item.location, "\(entry.key) entries must be strings, not \(item.typeName)")
                        continue
                    }
                    if entry.key == "allow" { allowEntries.append((s, item.location)) } else {
                        denyEntries.append((s, item.location))
                    }
                }
            case "rule":
                guard case .array(let items) = node.value else {
                    issue(node.location, "rule must be an array of tables: write [[rule]]")
                    continue
                }
                for item in items {
                    guard case .table(let t) = item.value else {
                        issue(item.location, "each rule must be a table")
                        continue
                    }
                    if let rule = parseRule(t, at: item.location, issue: issue) {
                        own.rules.append((rule, origin(item.location)))
                    }
                }
            case "reasons":
                guard case .table(let t) = node.value else {
                    issue(node.location, "reasons must be a table: write [reasons] with lines such as ptrace = \"why\"")
                    continue
                }
                for r in t.entries {
                    if case .string(let text) = r.node.value, !text.isEmpty {
                        reasonEntries.append((r.key, text, r.keyLocation))
                    } else {
                        issue(r.node.location, "the reason for '\(r.key)' must be a non-empty string")
                    }
                }
            case "group":
                guard case .table(let t) = node.value else {
                    issue(node.location, "group must be a table of groups: write [group.NAME]")
                    continue
                }
                for g in t.entries {
                    if let parsed = Self.parseGroup(key: g.key, keyLocation: g.keyLocation, node: g.node, file: path, issue: issue) {
                        localGroups[g.key] = parsed
                    }
                }
            default:
                issue(entry.keyLocation, "unknown key '\(entry.key)' in seccomp profile",
                      hint: "known keys: description, extends, on_violation, errno, allow, deny, [[rule]], [reasons], [group.NAME]")
            }
        }

        // Parent first, so this file's settings override and its lists add.
        var result = Resolved()
        if let (parentName, location) = extendsName {
            let dirs = [Paths.dirname(path)] + searchPaths
            if let parentPath = try locate(name: parentName, in: dirs) {
                if chain.contains(parentPath) || parentPath == path {
                    issue(location, "extends cycle: " + (chain + [path, parentPath]).joined(separator: " -> "))
                } else {
                    result = try resolve(path: parentPath, chain: chain + [path])
                }
            } else {
                issue(location, "extends: no profile '\(parentName)' in " + dirs.joined(separator: ", "))
            }
        }

        let library = try groupLibrary(for: path, local: localGroups)
        var expandedAllow: [(String, Origin)] = []
        var expandedDeny: [(String, Origin)] = []
        for (name, location) in allowEntries {
            expandedAllow += expand(name, at: origin(location), library: library, stack: [], issue: issue)
        }
        for (name, location) in denyEntries {
            expandedDeny += expand(name, at: origin(location), library: library, stack: [], issue: issue)
        }
        var expandedReasons: [(String, String, Origin)] = []
        for (name, text, location) in reasonEntries {
            for (syscall, _) in expand(name, at: origin(location), library: library, stack: [], issue: issue) {
                expandedReasons.append((syscall, text, origin(location)))
            }
        }
        for (rule, ruleOrigin) in own.rules where SyscallTable.number(of: rule.syscall) == nil {
            issue(ruleOrigin.location, Self.unknownSyscall(rule.syscall))
        }

        guard issues.isEmpty else { throw ConfigError(issues) }

        result.files = own.files + result.files
        if !own.description.isEmpty || result.description.isEmpty { result.description = own.description }
        if let m = own.mode { result.mode = m }
        if let e = own.errno { result.errno = e }
        for (name, o) in expandedAllow where result.allowed[name] == nil { result.allowed[name] = o }
        for (name, o) in expandedDeny where result.denied[name] == nil { result.denied[name] = o }
        // The child's reason for a call replaces its parent's: the child's policy is the one that runs.
        for (name, text, o) in expandedReasons { result.reasons[name] = (text, o) }
        for (rule, o) in own.rules {
            // An allow without conditions is just an allow.
            if rule.action == .allow && rule.conditions.isEmpty {
                if result.allowed[rule.syscall] == nil { result.allowed[rule.syscall] = o }
            } else if rule.action == .deny && rule.conditions.isEmpty {
                if result.denied[rule.syscall] == nil { result.denied[rule.syscall] = o }
            } else {
                result.rules.append((rule, o))
            }
        }
        return result
    }

    // MARK: rules

    private func parseRule(_ t: TOMLTable, at location: SourceLocation,
                           issue: (SourceLocation?, String, String?) -> Void) -> SyscallRule? {
        var syscall: String?
        var actionName: (String, SourceLocation)?
        var errno: Int32?
        var errnoLocation: SourceLocation?
        var conditions: [SyscallCondition] = []
        var ok = true
        for entry in t.entries {
            let node = entry.node
            switch entry.key {
            case "syscall":
                if case .string(let s) = node.value { syscall = s } else {
                    issue(node.location, "syscall must be a string", nil); ok = false
                }
            case "action":
                if case .string(let s) = node.value, ["allow", "errno", "deny"].contains(s) {
                    actionName = (s, node.location)
                } else {
                    issue(node.location, "action must be \"allow\", \"errno\" or \"deny\"", nil); ok = false
                }
            case "errno":
                errnoLocation = node.location
                if let e = Self.errnoValue(node) { errno = e } else {
                    issue(node.location, "errno must be a name such as \"ENOSYS\" or a number 0...4094", nil); ok = false
                }
            case "when":
                guard case .array(let items) = node.value else {
                    issue(node.location, "when must be an array of conditions: [{ arg = 0, op = \"eq\", value = 1 }]", nil)
                    ok = false
                    continue
                }
                var seenArgs: Set<Int> = []
                for item in items {
                    guard case .table(let ct) = item.value else {
                        issue(item.location, "each condition must be an inline table", nil); ok = false
                        continue
                    }
                    guard let c = parseCondition(ct, at: item.location, issue: issue) else { ok = false; continue }
                    if !seenArgs.insert(c.arg).inserted {
                        issue(item.location, "two conditions on arg \(c.arg) in one rule: libseccomp cannot AND them",
                              "write two rules, or one masked_eq")
                        ok = false
                    }
                    conditions.append(c)
                }
            default:
                issue(entry.keyLocation, "unknown key '\(entry.key)' in [[rule]]", "known keys: syscall, action, errno, when")
                ok = false
            }
        }
        guard let syscall else { issue(location, "rule without syscall", nil); return nil }
        guard let (action, actionLocation) = actionName else { issue(location, "rule without action", nil); return nil }
        guard ok else { return nil }
        switch action {
        case "allow":
            if errno != nil { issue(errnoLocation, "errno only goes with action = \"errno\"", nil); return nil }
            return SyscallRule(syscall: syscall, action: .allow, conditions: conditions)
        case "deny":
            if errno != nil {
                issue(errnoLocation, "a deny rule uses the profile's violation action; for a fixed errno write action = \"errno\"", nil)
                return nil
            }
            return SyscallRule(syscall: syscall, action: .deny, conditions: conditions)
        default:
            guard let errno else { issue(actionLocation, "action = \"errno\" needs errno = \"ENAME\"", nil); return nil }
            return SyscallRule(syscall: syscall, action: .errno(errno), conditions: conditions)
        }
    }

    private func parseCondition(_ t: TOMLTable, at location: SourceLocation,
                                issue: (SourceLocation?, String, String?) -> Void) -> SyscallCondition? {
        var arg: Int?
        var op: SyscallCondition.Operator?
        var value: UInt64?
        var mask: UInt64?
        var maskLocation: SourceLocation?
        var ok = true
        for entry in t.entries {
            let node = entry.node
            switch entry.key {
            case "arg":
                if case .integer(let i) = node.value, (0...5).contains(i) { arg = Int(i) } else {
                    issue(node.location, "arg must be an argument index 0...5", nil); ok = false
                }
            case "op":
                if case .string(let s) = node.value, let o = SyscallCondition.Operator(rawValue: s) { op = o } else {
                    issue(node.location, "op must be one of " + SyscallCondition.Operator.allCases.map(\.rawValue).joined(separator: ", "), nil)
                    ok = false
                }
            case "value":
                if let v = Self.numericValue(node) { value = v } else {
                    issue(node.location, Self.symbolMessage(node), nil); ok = false
                }
            case "mask":
                maskLocation = node.location
                if let v = Self.numericValue(node) { mask = v } else {
                    issue(node.location, Self.symbolMessage(node), nil); ok = false
                }
            default:
                issue(entry.keyLocation, "unknown key '\(entry.key)' in a condition", "known keys: arg, op, value, mask")
                ok = false
            }
        }
        guard ok else { return nil }
        guard let arg, let op, let value else {
            issue(location, "a condition needs arg, op and value", nil)
            return nil
        }
        if op == .maskedEq {
            guard let mask else { issue(location, "op = \"masked_eq\" needs a mask", nil); return nil }
            if value & ~mask != 0 {
                issue(location, "value has bits outside the mask: the condition can never match", nil)
                return nil
            }
            return SyscallCondition(arg: arg, op: op, value: value, mask: mask)
        }
        if mask != nil { issue(maskLocation, "mask only goes with op = \"masked_eq\"", nil); return nil }
        return SyscallCondition(arg: arg, op: op, value: value)
    }

    static func numericValue(_ node: TOMLNode) -> UInt64? {
        switch node.value {
        case .integer(let i): return i >= 0 ? UInt64(i) : nil
        case .string(let s): return SeccompConstants.value(of: s)
        default: return nil
        }
    }

    static func symbolMessage(_ node: TOMLNode) -> String {
        if case .string(let s) = node.value { return "unknown constant in \"\(s)\"" }
        return "expected a non-negative integer or a constant name such as \"AF_INET\", not \(node.typeName)"
    }

    static func errnoValue(_ node: TOMLNode) -> Int32? {
        switch node.value {
        case .integer(let i): return (0...4094).contains(i) ? Int32(i) : nil
        case .string(let s): return Errno(name: s)?.rawValue
        default: return nil
        }
    }

    static func unknownSyscall(_ name: String) -> String {
        "unknown syscall '\(name)' (libseccomp \(SyscallTable.libseccompVersion) has no such \(SyscallTable.nativeArchName) syscall)"
    }

    /// Identical rules (a child repeating its parent's) compile once.
    static func dedupe(_ rules: [SyscallRule]) -> [SyscallRule] {
        var seen: Set<SyscallRule> = []
        return rules.filter { seen.insert($0).inserted }
    }

    // MARK: groups

    static func parseGroup(key: String, keyLocation: SourceLocation, node: TOMLNode, file: String,
                           issue: (SourceLocation?, String, String?) -> Void)
        -> (entries: [(String, Origin)], origin: Origin)? {
        guard case .table(let t) = node.value else {
            issue(node.location, "group '\(key)' must be a table with description and syscalls", nil)
            return nil
        }
        var entries: [(String, Origin)] = []
        var hasSyscalls = false
        for e in t.entries {
            switch e.key {
            case "description":
                if case .string = e.node.value {} else { issue(e.node.location, "description must be a string", nil) }
            case "syscalls":
                hasSyscalls = true
                guard case .array(let items) = e.node.value else {
                    issue(e.node.location, "syscalls must be an array of names", nil)
                    continue
                }
                for item in items {
                    if case .string(let s) = item.value, !s.isEmpty {
                        entries.append((s, Origin(file: file, location: item.location)))
                    } else {
                        issue(item.location, "syscalls entries must be strings", nil)
                    }
                }
            default:
                issue(e.keyLocation, "unknown key '\(e.key)' in group '\(key)'", "known keys: description, syscalls")
            }
        }
        if !hasSyscalls { issue(keyLocation, "group '\(key)' has no syscalls", nil) }
        return (entries, Origin(file: file, location: keyLocation))
    }

    /// The profile's own [group.*] tables, then the first groups.toml found beside the
    /// profile or in the search path.
    private func groupLibrary(for profilePath: String,
                              local: [String: (entries: [(String, Origin)], origin: Origin)]) throws -> GroupLibrary {
        var library = GroupLibrary(file: profilePath, groups: [:])
        for dir in [Paths.dirname(profilePath)] + searchPaths {
            let candidate = (dir.hasSuffix("/") ? dir : dir + "/") + "groups.toml"
            if let cached = groupFiles[candidate] {
                library = cached
                break
            }
            guard let bytes = try readFile(candidate) else { continue }
            var issues: [ConfigIssue] = []
            let table: TOMLTable
            do {
                table = try TOML.parse(utf8: bytes)
            } catch {
                throw ConfigError([ConfigIssue(file: candidate, location: error.location, message: error.message)])
            }
            var parsed = GroupLibrary(file: candidate, groups: [:])
            for entry in table.entries {
                if let g = Self.parseGroup(key: entry.key, keyLocation: entry.keyLocation, node: entry.node, file: candidate, issue: { l, m, h in
                    issues.append(ConfigIssue(file: candidate, location: l, message: m, hint: h))
                }) {
                    parsed.groups[entry.key] = g
                }
            }
            if !issues.isEmpty { throw ConfigError(issues) }
            groupFiles[candidate] = parsed
            library = parsed
            break
        }
        for (name, g) in local { library.groups[name] = g }
        return library
    }

    private func expand(_ entry: String, at origin: Origin, library: GroupLibrary, stack: [String],
                        issue: (SourceLocation?, String, String?) -> Void) -> [(String, Origin)] {
        guard entry.hasPrefix("@") else {
            if SyscallTable.number(of: entry) == nil {
                issueAt(origin, Self.unknownSyscall(entry), issue: issue)
                return []
            }
            return [(entry, origin)]
        }
        let groupName = String(entry.dropFirst())
        guard let group = library.groups[groupName] else {
            issueAt(origin, "unknown group '@\(groupName)'",
                    hint: "groups come from [group.NAME] in the profile or from \(library.file == "" ? "groups.toml" : library.file)",
                    issue: issue)
            return []
        }
        if stack.contains(groupName) {
            issueAt(origin, "group cycle: @" + (stack + [groupName]).joined(separator: " -> @"), issue: issue)
            return []
        }
        var out: [(String, Origin)] = []
        for (name, o) in group.entries {
            out += expand(name, at: o, library: library, stack: stack + [groupName], issue: issue)
        }
        return out
    }

    /// Issues are collected per profile file; one that sits in a groups file names
    /// that file in its message.
    private func issueAt(_ origin: Origin, _ message: String, hint: String? = nil,
                         issue: (SourceLocation?, String, String?) -> Void) {
        issue(origin.location, message + (origin.file.hasSuffix("groups.toml") ? " (in \(origin.text))" : ""), hint)
    }

    // MARK: whole-profile checks

    /// Contradictions that only show once parents and groups are merged.
    private func checkConflicts(_ r: Resolved, file: String) throws {
        var issues: [ConfigIssue] = []
        func add(_ o: Origin, _ message: String, hint: String? = nil) {
            issues.append(ConfigIssue(file: o.file, location: o.location, message: message, hint: hint))
        }
        for (name, deniedAt) in r.denied.sorted(by: { $0.key < $1.key }) {
            if let allowedAt = r.allowed[name] {
                add(deniedAt, "'\(name)' is denied here and allowed at \(allowedAt.text)")
            }
        }
        var bySyscall: [String: [(rule: SyscallRule, origin: Origin)]] = [:]
        for item in r.rules { bySyscall[item.rule.syscall, default: []].append(item) }
        // A reason explains a refusal: a call allowed whole, with nothing carved out, has none.
        for (name, reason) in r.reasons.sorted(by: { $0.key < $1.key }) {
            if let allowedAt = r.allowed[name], !(bySyscall[name] ?? []).contains(where: { $0.rule.action != .allow }) {
                add(reason.origin, "[reasons] explains why '\(name)' is refused, but it is allowed at \(allowedAt.text)",
                    hint: "drop the reason, or stop allowing '\(name)'")
            }
        }
        for (name, items) in bySyscall.sorted(by: { $0.key < $1.key }) {
            let allowedAt = r.allowed[name]
            let deniedAt = r.denied[name]
            // The compiler splits the allow on one argument; denials on two can't share it.
            let carveArgs = Set(items.filter { $0.rule.action != .allow }.compactMap { $0.rule.conditions.first?.arg })
            if allowedAt != nil, carveArgs.count > 1, let first = items.first {
                add(first.origin, "'\(name)' is allowed without conditions and denied on different arguments; "
                    + "denials carved out of an allow must all test the same argument")
            }
            for (rule, o) in items {
                switch rule.action {
                case .allow:
                    if let allowedAt {
                        add(o, "this rule has no effect: '\(name)' is allowed without conditions at \(allowedAt.text)")
                    }
                    if let deniedAt { add(o, "'\(name)' is allowed here and denied at \(deniedAt.text)") }
                case .errno, .deny:
                    if let deniedAt, rule.conditions.isEmpty || rule.action == .deny {
                        add(o, "'\(name)' is already denied at \(deniedAt.text)")
                    }
                    if rule.conditions.isEmpty {
                        if let allowedAt { add(o, "'\(name)' is allowed at \(allowedAt.text); an errno rule without conditions contradicts it") }
                        if items.contains(where: { $0.rule != rule && $0.rule.conditions.isEmpty }) {
                            add(o, "'\(name)' has two rules without conditions")
                        }
                    } else if allowedAt != nil, !SeccompCompiler.canCarveOut(rule) {
                        add(o, "'\(name)' is allowed without conditions, so a denial can only be carved out with one "
                            + "condition { op = \"masked_eq\", mask = 0xffffffff } whose value is at least 2",
                            hint: "allow '\(name)' through rules with conditions instead")
                    }
                }
            }
        }
        if !issues.isEmpty { throw ConfigError(issues) }
    }
}
