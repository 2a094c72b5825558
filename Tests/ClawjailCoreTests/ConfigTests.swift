import Testing
@testable import ClawjailCore

// Every validation rule of design/agent-toml.md, each with a passing and a failing
// example. Failures assert the exact line:column and the part of the message (or hint)
// that tells the user what is wrong. `SourceLocation` exists in both Testing and
// ClawjailCore, hence the qualified names.

// MARK: - Helpers

/// The config file every test pretends to read; relative host paths resolve against
/// its directory.
private let configFile = "/srv/clawjail/alice/agent.toml"
private let configDirectory = "/srv/clawjail/alice"

/// The two required top-level keys; a test's `body` starts at line 3.
private let head = """
    name = "alice"
    command = ["/usr/bin/node", "gateway.js"]

    """

private func agent(_ body: String) -> String { head + body }

private func parse(_ text: String, kind: AgentConfig.Kind = .agent,
                   state: String = Defaults.stateDirectory) throws(ConfigError) -> AgentConfig {
    try AgentConfig.parse(text, file: configFile, kind: kind, stateDirectory: state)
}

/// The problems reported for `text`; records a test issue when it is accepted.
private func problems(_ text: String, kind: AgentConfig.Kind = .agent, state: String = Defaults.stateDirectory,
                      sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [ConfigIssue] {
    do {
        _ = try parse(text, kind: kind, state: state)
        Issue.record("accepted, but should fail:\n\(text)", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.issues
    }
}

/// Expects exactly one problem, at `at` ("line:column", or nil for "no position"),
/// whose message contains `message` and whose hint contains `hint`.
@discardableResult
private func expectOne(_ text: String, at: String?, _ message: String, hint: String? = nil,
                       kind: AgentConfig.Kind = .agent, state: String = Defaults.stateDirectory,
                       sourceLocation: Testing.SourceLocation = #_sourceLocation) -> ConfigIssue? {
    let found = problems(text, kind: kind, state: state, sourceLocation: sourceLocation)
    guard found.count == 1, let issue = found.first else {
        if !found.isEmpty {
            Issue.record("expected one problem, got \(found.count):\n\(ConfigError(found))", sourceLocation: sourceLocation)
        }
        return nil
    }
    #expect(issue.file == configFile, sourceLocation: sourceLocation)
    #expect(issue.location?.description == at, "\(issue)", sourceLocation: sourceLocation)
    #expect(issue.message.contains(message), "\(issue)", sourceLocation: sourceLocation)
    if let hint {
        #expect(issue.hint?.contains(hint) == true, "\(issue)", sourceLocation: sourceLocation)
    }
    return issue
}

private func loc(_ line: Int, _ column: Int) -> ClawjailCore.SourceLocation {
    ClawjailCore.SourceLocation(line: line, column: column)
}

// MARK: - The documented example

@Suite("agent.toml: the example")
struct ConfigExampleTests {
    /// The example from design/agent-toml.md, verbatim.
    static let example = """
        name = "alice"                      # [a-z0-9][a-z0-9-]{0,30}; names cgroup, netns, state rows
        command = ["/usr/bin/node", "/opt/openclaw/gateway.js"]
        cwd = "/workspace"
        env = { NODE_ENV = "production" }   # nothing from the host environment leaks by default
        env_pass = ["TZ", "LANG"]           # explicit pass-through
        hostname = "alice"
        user = 1000                         # uid inside the jail; outside it maps into the tenant's range

        [rootfs]
        base = "host"                       # "host": read-only /usr,/lib*,/bin,/sbin,/etc subset
        # path = "/var/lib/clawjail/rootfs/bookworm"   # or a directory rootfs (scripts/mkrootfs)

        [workspace]                         # the one read-write tree
        host = "/srv/clawjail/alice/workspace"
        path = "/workspace"

        [[mount]]                           # extra allowlisted paths; read-only unless mode = "rw"
        host = "/opt/openclaw"
        path = "/opt/openclaw"

        [credentials]                       # 0700 dir / 0600 files, owned by the agent's mapped uid
        host = "/srv/clawjail/alice/credentials"
        path = "/run/credentials"           # read-only in the agent jail; absent in tool runs

        [protect]                           # persistent memory / skills: read-only inside, hashed
        paths = ["AGENTS.md", "SOUL.md", "MEMORY.md", "skills/"]   # relative to the workspace

        [limits]
        memory = "512M"                     # cgroup memory max (v2 memory.max / v1 limit_in_bytes)
        pids = 256
        cpu = 1.0                           # cores (cpu.max quota/period)
        io_weight = 100
        tmp = "64M"                         # size of /tmp and /dev/shm tmpfs
        open_files = 1024
        wall_time = "0"                     # 0 = no limit (agents); tool runs default "10m"

        [seccomp]
        profile = "agent"                   # profiles/agent.*; "tool" is stricter

        [network]
        mode = "none"                       # "none" (lo only) | "egress"
        allow = ["api.anthropic.com", "*.slack.com:443"]   # names, whole-label wildcards, optional port

        [[ingress]]                         # reach the agent's own server only through a host Unix socket
        port = 18789
        socket = "/run/clawjail/alice/gateway.sock"
        socket_mode = "0660"

        [tools]                             # defaults for `clawjail exec --agent alice`
        profile = "tool"
        network = "none"
        memory = "256M"
        pids = 64
        wall_time = "10m"
        """

    @Test("the documented example parses into exactly what it says")
    func example() throws {
        let c = try parse(Self.example)
        #expect(c.kind == .agent)
        #expect(c.file == configFile)
        #expect(c.name == "alice")
        #expect(c.command == ["/usr/bin/node", "/opt/openclaw/gateway.js"])
        #expect(c.cwd == "/workspace")
        #expect(c.env == ["NODE_ENV": "production"])
        #expect(c.envPass == ["TZ", "LANG"])
        #expect(c.hostname == "alice")
        #expect(c.user == 1000)
        #expect(c.allowRootInside == false)
        #expect(c.rootfs == .host)
        #expect(c.workspace == AgentConfig.Bind(host: "/srv/clawjail/alice/workspace", path: "/workspace",
                                                writable: true, location: loc(13, 1)))
        #expect(c.mounts == [AgentConfig.Bind(host: "/opt/openclaw", path: "/opt/openclaw", writable: false,
                                              location: loc(17, 1))])
        #expect(c.credentials == AgentConfig.Bind(host: "/srv/clawjail/alice/credentials", path: "/run/credentials",
                                                  writable: false, location: loc(21, 1)))
        #expect(c.protect == ["AGENTS.md", "SOUL.md", "MEMORY.md", "skills/"])
        #expect(c.limits.memory == 512 << 20)
        #expect(c.limits.pids == 256)
        #expect(c.limits.cpu == 1.0)
        #expect(c.limits.ioWeight == 100)
        #expect(c.limits.tmp == 64 << 20)
        #expect(c.limits.openFiles == 1024)
        #expect(c.limits.wallTimeMs == 0)
        #expect(c.limits.fileSize == nil)
        #expect(c.seccompProfile == "agent")
        #expect(c.network.mode == .none)
        #expect(c.network.allow == [AllowRule(pattern: .exact("api.anthropic.com")),
                                    AllowRule(pattern: .subdomains(of: "slack.com"), port: 443)])
        let ingress = try #require(c.ingress.first)
        #expect(c.ingress.count == 1)
        #expect(ingress.port == 18789)
        #expect(ingress.socket == "/run/clawjail/alice/gateway.sock")
        #expect(ingress.socketMode == 0o660)
        #expect(ingress.socketGroup == nil)
        #expect(c.tools.profile == "tool")
        #expect(c.tools.network == AgentConfig.NetworkMode.none)
        #expect(c.tools.limits.memory == 256 << 20)
        #expect(c.tools.limits.pids == 64)
        #expect(c.tools.limits.wallTimeMs == 10 * 60_000)
        // allow with mode = "none" is legal but pointless: a warning, not an error.
        #expect(c.warnings.map(\.message) == ["network.allow is ignored while mode = \"none\""])
        #expect(c.warnings.first?.location == loc(42, 9))
    }

    @Test("a minimal agent needs only name and command; everything else is unset")
    func minimal() throws {
        let c = try parse(head)
        #expect(c.name == "alice")
        #expect(c.command == ["/usr/bin/node", "gateway.js"])
        #expect(c.cwd == nil && c.hostname == nil && c.user == nil && c.seccompProfile == nil)
        #expect(c.env.isEmpty && c.envPass.isEmpty)
        #expect(c.workspace == nil && c.credentials == nil && c.mounts.isEmpty && c.protect.isEmpty)
        #expect(c.limits == AgentConfig.Limits())
        #expect(c.network.mode == .none && c.network.allow.isEmpty)
        #expect(c.ingress.isEmpty)
        #expect(c.tools == AgentConfig.Tools())
        #expect(c.rootfs == .host)
        #expect(c.warnings.isEmpty)
    }

    @Test("an empty tool.toml is valid: name and command come from the command line")
    func emptyToolConfig() throws {
        let c = try parse("", kind: .tool)
        #expect(c.kind == .tool)
        #expect(c.name == nil)
        #expect(c.command.isEmpty)
    }

    @Test("issues print as file:line:column: message, then the hint")
    func issueFormat() {
        let issue = expectOne(agent("user = 0\n"), at: "3:8", "user 0 (root inside the jail) needs allow_root_inside = true")
        #expect(issue?.description == """
            \(configFile):3:8: user 0 (root inside the jail) needs allow_root_inside = true
              hint: run as an unprivileged uid such as 1000; root inside is still unprivileged outside, but it is rarely needed
            """)
    }

    @Test("a TOML syntax error is one issue with its position")
    func syntaxError() {
        let found = problems("name = \"alice\ncommand = [\"/bin/true\"]\n")
        #expect(found.count == 1)
        #expect(found.first?.location == loc(1, 8))
        #expect(found.first?.message == "unterminated string")
        #expect(found.first?.file == configFile)
    }
}

// MARK: - Required keys, name, command, hostname

@Suite("agent.toml: name, command, hostname")
struct ConfigIdentityTests {
    @Test("names that match [a-z0-9][a-z0-9-]{0,30} are accepted",
          arguments: ["alice", "a", "0", "0agent", "a-b", "agent-", "a123456789012345678901234567890"])
    func validName(name: String) throws {
        let c = try parse("name = \"\(name)\"\ncommand = [\"/bin/true\"]\n")
        #expect(c.name == name)
        #expect(AgentConfig.isValidName(name))
    }

    @Test("names outside the pattern are refused at the value",
          arguments: ["", "Alice", "-a", "a_b", "a.b", "a b", "a/b", "ä",
                      "a1234567890123456789012345678901", "../etc"])
    func invalidName(name: String) {
        expectOne("name = \"\(name)\"\ncommand = [\"/bin/true\"]\n", at: "1:8", "name '\(name)' is not valid",
                  hint: AgentConfig.namePattern)
        #expect(!AgentConfig.isValidName(name))
    }

    @Test("name must be a string")
    func nameType() {
        expectOne("name = 7\ncommand = [\"/bin/true\"]\n", at: "1:8",
                  "'name' in the top level must be a string, not integer")
    }

    @Test("missing name or command is reported without a position, with an example to copy")
    func missing() {
        expectOne("command = [\"/bin/true\"]\n", at: nil, "missing 'name'", hint: "name = \"alice\"")
        expectOne("name = \"alice\"\n", at: nil, "missing 'command'", hint: "command = [")
        let both = problems("")
        #expect(both.map(\.message) == ["missing 'name'", "missing 'command'"])
    }

    @Test("command must be a non-empty array of strings whose program is not empty")
    func command() {
        expectOne("name = \"alice\"\ncommand = []\n", at: "2:11", "'command' is empty")
        expectOne("name = \"alice\"\ncommand = [\"\", \"x\"]\n", at: "2:12", "'command' starts with an empty program name")
        expectOne("name = \"alice\"\ncommand = \"/bin/true\"\n", at: "2:11",
                  "'command' in the top level must be an array of strings, not string")
        expectOne("name = \"alice\"\ncommand = [\"/bin/echo\", 1]\n", at: "2:25",
                  "'command' in the top level must hold strings only, not integer")
        // execve would cut the argument at the NUL; refuse rather than run something else.
        expectOne("name = \"alice\"\ncommand = [\"/bin/sh\", \"a\\u0000b\"]\n", at: "2:23", "'command' contains a NUL byte")
    }

    @Test("NUL bytes are refused in every string value")
    func nul() {
        expectOne(agent("hostname = \"a\\u0000b\"\n"), at: "3:12", "'hostname' contains a NUL byte")
        expectOne(agent("[workspace]\nhost = \"/srv/a\\u0000/b\"\n"), at: "4:8", "'host' contains a NUL byte")
        expectOne(agent("[workspace]\nhost = \"ws\"\n[protect]\npaths = [\"a\\u0000\"]\n"), at: "6:10",
                  "must be relative to the workspace")
    }

    @Test("valid host names", arguments: ["alice", "Alice-1", "a.example", "x", String(repeating: "a", count: 63)])
    func validHostname(hostname: String) throws {
        let c = try parse(agent("hostname = \"\(hostname)\"\n"))
        #expect(c.hostname == hostname)
    }

    @Test("invalid host names are refused at the value",
          arguments: ["", "-alice", "alice-", "a_b", "a..b", ".a", "a b", "ä",
                      String(repeating: "a", count: 64), String(repeating: "a.", count: 32) + "a"])
    func invalidHostname(hostname: String) {
        expectOne(agent("hostname = \"\(hostname)\"\n"), at: "3:12", "hostname '\(hostname)' is not a valid host name")
    }
}

// MARK: - Unknown and duplicate keys

@Suite("agent.toml: unknown and duplicate keys")
struct ConfigKeyTests {
    @Test("an unknown top-level key is reported at the key, with a suggestion")
    func top() {
        expectOne(agent("hostnme = \"alice\"\n"), at: "3:1", "unknown key 'hostnme' in the top level",
                  hint: "did you mean 'hostname'?")
        expectOne(agent("commands = [\"x\"]\n"), at: "3:1", "unknown key 'commands' in the top level",
                  hint: "did you mean 'command'?")
    }

    @Test("a key that is nothing like a known one lists the known keys instead")
    func noSuggestion() {
        expectOne(agent("[workspace]\nhost = \"workspace\"\nmode = \"rw\"\n"), at: "5:1",
                  "unknown key 'mode' in [workspace]", hint: "known keys here: host, path")
    }

    @Test("unknown keys in every section", arguments: [
        // (body, location, message, hint)
        ("[rootfs]\nbsae = \"host\"\n", "4:1", "unknown key 'bsae' in [rootfs]", "did you mean 'base'?"),
        ("[workspace]\nhots = \"ws\"\nhost = \"ws\"\n", "4:1", "unknown key 'hots' in [workspace]", "did you mean 'host'?"),
        ("[credentials]\nhost = \"creds\"\npth = \"/run/c\"\n", "5:1", "unknown key 'pth' in [credentials]", "did you mean 'path'?"),
        ("[protect]\npath = [\"SOUL.md\"]\n", "4:1", "unknown key 'path' in [protect]", "did you mean 'paths'?"),
        ("[limits]\nmemroy = \"1G\"\n", "4:1", "unknown key 'memroy' in [limits]", "did you mean 'memory'?"),
        ("[limits]\nwalltime = \"1h\"\n", "4:1", "unknown key 'walltime' in [limits]", "did you mean 'wall_time'?"),
        ("[seccomp]\nprofil = \"agent\"\n", "4:1", "unknown key 'profil' in [seccomp]", "did you mean 'profile'?"),
        ("[network]\nmode = \"egress\"\nalow = [\"api.example.com\"]\n", "5:1", "unknown key 'alow' in [network]", "did you mean 'allow'?"),
        ("[tools]\nwalltime = \"5m\"\n", "4:1", "unknown key 'walltime' in [tools]", "did you mean 'wall_time'?"),
        ("[tools]\nio_weight = 10\n", "4:1", "unknown key 'io_weight' in [tools]", "known keys here: profile, network"),
        ("[[ingress]]\nport = 8080\nsocket = \"g.sock\"\nsocket_mod = \"0600\"\n", "6:1",
         "unknown key 'socket_mod' in [[ingress]] #1", "did you mean 'socket_mode'?"),
        ("[limits.cgroup]\nmemory = 1\n", "3:9", "unknown key 'cgroup' in [limits]", "known keys here: memory"),
    ])
    func section(body: String, at: String, message: String, hint: String) {
        expectOne(agent(body), at: at, message, hint: hint)
    }

    @Test("an unknown key in the second [[mount]] names that mount")
    func secondMount() {
        let text = agent("""
            [[mount]]
            host = "/opt/a"
            path = "/opt/a"
            [[mount]]
            host = "/opt/b"
            path = "/opt/b"
            mdoe = "rw"

            """)
        expectOne(text, at: "9:1", "unknown key 'mdoe' in [[mount]] #2", hint: "did you mean 'mode'?")
    }

    @Test("agent-only keys are unknown in a tool.toml", arguments: [
        ("name = \"t\"\n", "1:1", "unknown key 'name' in the top level"),
        ("command = [\"x\"]\n", "1:1", "unknown key 'command' in the top level"),
        ("[credentials]\nhost = \"/srv/c\"\n", "1:2", "unknown key 'credentials' in the top level"),
        ("[[ingress]]\nport = 1\n", "1:3", "unknown key 'ingress' in the top level"),
        ("[tools]\npids = 1\n", "1:2", "unknown key 'tools' in the top level"),
    ])
    func toolOnly(text: String, at: String, message: String) {
        expectOne(text, at: at, message, kind: .tool)
    }

    @Test("every unknown key is reported, not just the first")
    func allUnknown() {
        let found = problems(agent("usr = 1000\n[limits]\nmem = \"1G\"\n[network]\nmod = \"none\"\n"))
        #expect(found.count == 3)
        #expect(Set(found.compactMap { $0.location?.description }) == ["3:1", "5:1", "7:1"])
        #expect(Set(found.map(\.message)) == ["unknown key 'usr' in the top level", "unknown key 'mem' in [limits]",
                                              "unknown key 'mod' in [network]"])
    }

    @Test("a value of the wrong type is reported at the value")
    func wrongTypes() {
        expectOne(agent("cwd = 1\n"), at: "3:7", "'cwd' in the top level must be a string, not integer")
        expectOne(agent("workspace = \"/srv/ws\"\n"), at: "3:13", "'workspace' in the top level must be a table ([workspace]), not string")
        expectOne(agent("mount = { host = \"/opt\" }\n"), at: "3:9", "'mount' in the top level must be an array of tables ([[mount]]), not table")
        expectOne(agent("[limits]\npids = \"64\"\n"), at: "4:8", "'pids' in [limits] must be an integer, not string")
        expectOne(agent("[limits]\ncpu = \"1\"\n"), at: "4:7", "'cpu' in [limits] must be a number, not string")
        expectOne(agent("env_pass = \"TZ\"\n"), at: "3:12", "'env_pass' in the top level must be an array of strings, not string")
    }

    @Test("a bad value is reported once, without a follow-on 'needs' error")
    func noFollowOn() {
        let mount = problems(agent("[[mount]]\nhost = 1\npath = [\"/x\"]\n"))
        #expect(mount.map(\.message) == ["'host' in [[mount]] #1 must be a string, not integer",
                                         "'path' in [[mount]] #1 must be a string, not array"])
        #expect(mount.map(\.location?.description) == ["4:8", "5:8"])
        expectOne(agent("[[mount]]\nhost = \"/opt/x\"\npath = 1\n"), at: "5:8", "'path' in [[mount]] #1 must be a string, not integer")
        expectOne(agent("[workspace]\nhost = true\n"), at: "4:8", "'host' in [workspace] must be a string, not boolean")
        expectOne(agent("[workspace]\nhost = \"ws\"\npath = 1\n"), at: "5:8", "'path' in [workspace] must be a string, not integer")
        expectOne(agent("[[ingress]]\nport = \"80\"\nsocket = \"g.sock\"\n"), at: "4:8", "'port' in [[ingress]] #1 must be an integer, not string")
        expectOne(agent("[[ingress]]\nport = 80\nsocket = 1\n"), at: "5:10", "'socket' in [[ingress]] #1 must be a string, not integer")
    }

    @Test("duplicate keys are refused by the TOML layer at the second key", arguments: [
        ("name = \"bob\"\n", "3:1", "duplicate key 'name' (first defined at 1:1)"),
        ("[limits]\nmemory = \"1G\"\nmemory = \"2G\"\n", "5:1", "duplicate key 'memory' (first defined at 4:1)"),
        ("env = { A = \"1\", A = \"2\" }\n", "3:18", "duplicate key 'A' (first defined at 3:9)"),
        ("[limits]\npids = 1\n[limits]\n", "5:1", "table [limits] is already defined at 3:1"),
    ])
    func duplicates(body: String, at: String, message: String) {
        let found = problems(agent(body))
        #expect(found.count == 1)
        #expect(found.first?.location?.description == at, "\(found)")
        #expect(found.first?.message.contains(message) == true, "\(found)")
    }

    @Test("a config without unknown keys has no key problems")
    func allKnown() throws {
        _ = try parse(ConfigExampleTests.example)
        _ = try parse("cwd = \"/tmp\"\nenv_pass = [\"TZ\"]\n[limits]\nfile_size = \"1G\"\n[network]\nresolvers = [\"192.0.2.53\"]\n",
                      kind: .tool)
    }
}

// MARK: - user

@Suite("agent.toml: user")
struct ConfigUserTests {
    @Test("decimal uids 1...65534, as integers or strings; \"1\" is uid 1 (CVE-2026-30892)", arguments: [
        ("1000", UInt32(1000)), ("1", 1), ("\"1\"", 1), ("\"1000\"", 1000), ("65534", 65534), ("\"65534\"", 65534),
    ] as [(String, UInt32)])
    func accepted(literal: String, uid: UInt32) throws {
        let c = try parse(agent("user = \(literal)\n"))
        #expect(c.user == uid)
    }

    @Test("anything else is refused at the value", arguments: [
        ("-1", "user -1 is negative"),
        ("-9223372036854775808", "user -9223372036854775808 is negative"),
        ("65535", "user 65535 is out of range"),
        ("99999999999", "user 99999999999 is out of range"),
        ("\"65535\"", "user 65535 is out of range"),
        ("\"01\"", "user '01' is not a decimal uid"),
        ("\"+1\"", "user '+1' is not a decimal uid"),
        ("\" 1\"", "user ' 1' is not a decimal uid"),
        ("\"1 \"", "user '1 ' is not a decimal uid"),
        ("\"0x1\"", "user '0x1' is not a decimal uid"),
        ("\"-1\"", "user '-1' is not a decimal uid"),
        ("\"1e3\"", "user '1e3' is not a decimal uid"),
        ("\"\"", "user '' is not a decimal uid"),
        ("\"99999999999999999999\"", "user '99999999999999999999' is not a decimal uid"),
        ("1.5", "user must be a uid (an integer), not float"),
        ("1.0", "user must be a uid (an integer), not float"),
        ("true", "user must be a uid (an integer), not boolean"),
        ("[1]", "user must be a uid (an integer), not array"),
    ])
    func refused(literal: String, message: String) {
        expectOne(agent("user = \(literal)\n"), at: "3:8", message)
    }

    @Test("uid 0 needs allow_root_inside = true, wherever that key is written")
    func root() throws {
        expectOne(agent("user = 0\n"), at: "3:8", "needs allow_root_inside = true", hint: "unprivileged uid such as 1000")
        expectOne(agent("user = \"0\"\n"), at: "3:8", "needs allow_root_inside = true")
        expectOne(agent("user = 0\nallow_root_inside = false\n"), at: "3:8", "needs allow_root_inside = true")
        let after = try parse(agent("user = 0\nallow_root_inside = true\n"))
        #expect(after.user == 0)
        #expect(after.allowRootInside)
        let before = try parse(agent("allow_root_inside = true\nuser = \"0\"\n"))
        #expect(before.user == 0)
        // Allowing root does not widen the range.
        expectOne(agent("allow_root_inside = true\nuser = 65535\n"), at: "4:8", "user 65535 is out of range")
    }

    @Test("allow_root_inside must be a boolean")
    func allowRootType() {
        let found = problems(agent("allow_root_inside = \"true\"\nuser = 0\n"))
        #expect(found.map(\.location?.description) == ["3:21", "4:8"])
        #expect(found.first?.message == "'allow_root_inside' in the top level must be true or false, not string")
    }

    @Test("user is optional")
    func absent() throws {
        #expect(try parse(head).user == nil)
    }
}

// MARK: - Host paths

@Suite("agent.toml: host paths")
struct ConfigHostPathTests {
    @Test("relative host paths are resolved against the config file's directory", arguments: [
        ("workspace", "/srv/clawjail/alice/workspace"),
        ("./workspace/", "/srv/clawjail/alice/workspace"),
        ("data//ws/.", "/srv/clawjail/alice/data/ws"),
        ("/srv/clawjail/alice/ws/", "/srv/clawjail/alice/ws"),
    ])
    func relative(host: String, resolved: String) throws {
        let c = try parse(agent("[workspace]\nhost = \"\(host)\"\n"))
        #expect(c.workspace?.host == resolved)
        #expect(c.workspace?.path == "/workspace")
        #expect(c.workspace?.writable == true)
        #expect(c.workspace?.location == loc(3, 1))
    }

    @Test("'..' is refused outright, relative or absolute",
          arguments: ["../bob/workspace", "ws/../../bob", "/srv/clawjail/alice/../bob", "/srv/a/../../", ".."])
    func dotDot(host: String) {
        expectOne(agent("[workspace]\nhost = \"\(host)\"\n"), at: "4:8",
                  "host '\(host)' in [workspace] contains '..'", hint: "'..' is refused")
        expectOne(agent("[[mount]]\nhost = \"\(host)\"\npath = \"/data\"\n"), at: "4:8",
                  "host '\(host)' in [[mount]] #1 contains '..'")
    }

    @Test("'/' is refused for every host field, in every spelling", arguments: ["/", "//", "/.", "/./", "///."])
    func root(host: String) {
        expectOne(agent("[workspace]\nhost = \"\(host)\"\n"), at: "4:8", "[workspace] host: '/' is the whole host",
                  hint: "give the agent its own directory")
        expectOne(agent("[[mount]]\nhost = \"\(host)\"\npath = \"/host\"\n"), at: "4:8",
                  "[[mount]] #1 host: '/' is the whole host", hint: "mount a narrower directory")
        expectOne(agent("[credentials]\nhost = \"\(host)\"\n"), at: "4:8", "[credentials] host: '/' is the whole host")
        expectOne(agent("[rootfs]\npath = \"\(host)\"\n"), at: "4:8", "rootfs.path: '/' is the whole host")
    }

    @Test("nothing inside (or containing) the state directory, even read-only", arguments: [
        ("[workspace]\nhost = \"/var/lib/clawjail/agents/alice\"\n", "[workspace] host: '/var/lib/clawjail/agents/alice' overlaps clawjail's state directory /var/lib/clawjail"),
        ("[[mount]]\nhost = \"/var/lib/clawjail\"\npath = \"/state\"\n", "overlaps clawjail's state directory"),
        ("[[mount]]\nhost = \"/var/lib/clawjail/state.db\"\npath = \"/db\"\n", "overlaps clawjail's state directory"),
        ("[[mount]]\nhost = \"/var/lib\"\npath = \"/vl\"\n", "'/var/lib' overlaps clawjail's state directory"),
        ("[[mount]]\nhost = \"/var\"\npath = \"/v\"\n", "'/var' overlaps clawjail's state directory"),
        ("[credentials]\nhost = \"/var/lib/clawjail/creds\"\n", "overlaps clawjail's state directory"),
    ])
    func stateDirectory(body: String, message: String) {
        expectOne(agent(body), at: "4:8", message)
    }

    @Test("the state directory is the one given, not a fixed path")
    func customStateDirectory() throws {
        let state = "/srv/state"
        expectOne(agent("[[mount]]\nhost = \"/srv/state/agents\"\npath = \"/s\"\n"), at: "4:8",
                  "overlaps clawjail's state directory /srv/state", state: state)
        expectOne(agent("[[mount]]\nhost = \"/srv\"\npath = \"/s\"\n"), at: "4:8",
                  "'/srv' overlaps clawjail's state directory /srv/state", state: state)
        // A file whose name merely starts like the state directory is fine.
        let c = try parse(agent("[[mount]]\nhost = \"/srv/state2\"\npath = \"/s\"\n"), state: state)
        #expect(c.mounts.first?.host == "/srv/state2")
    }

    @Test("system trees are refused for writable mounts and the workspace", arguments: [
        ("[workspace]\nhost = \"/etc/alice\"\n", "[workspace] host: '/etc/alice' is inside the system tree /etc; a writable mount is chowned to the agent's uid"),
        ("[workspace]\nhost = \"/usr/local/ws\"\n", "is inside the system tree /usr"),
        ("[workspace]\nhost = \"/lib64/x\"\n", "is inside the system tree /lib64"),
        ("[workspace]\nhost = \"/etc\"\n", "is inside the system tree /etc"),
        ("[[mount]]\nhost = \"/usr/share\"\npath = \"/share\"\nmode = \"rw\"\n", "'/usr/share' is inside the system tree /usr"),
        ("[[mount]]\nhost = \"/run/user/1000\"\npath = \"/r\"\nmode = \"rw\"\n", "is inside the system tree /run"),
        ("[[mount]]\nhost = \"/bin\"\npath = \"/hostbin\"\nmode = \"rw\"\n", "is inside the system tree /bin"),
        ("[[mount]]\nhost = \"/etc/clawjail/agents\"\npath = \"/cfg\"\nmode = \"rw\"\n", "is inside the system tree /etc"),
    ])
    func systemTreesWritable(body: String, message: String) {
        expectOne(agent(body), at: "4:8", message, hint: "give the agent its own directory")
    }

    @Test("system trees may be mounted read-only", arguments: [
        ("/etc/ssl/certs", "/etc/ssl/certs"),
        ("/usr/share/zoneinfo", "/usr/share/zoneinfo"),
        ("/etc", "/host/etc"),
        ("/usr", "/host/usr"),
        ("/opt/openclaw", "/opt/openclaw"),
        ("/run/user/1000/data", "/data"),
    ])
    func systemTreesReadOnly(host: String, path: String) throws {
        let c = try parse(agent("[[mount]]\nhost = \"\(host)\"\npath = \"\(path)\"\n"))
        #expect(c.mounts == [AgentConfig.Bind(host: host, path: path, writable: false, location: loc(3, 1))])
        let ro = try parse(agent("[[mount]]\nhost = \"\(host)\"\npath = \"\(path)\"\nmode = \"ro\"\n"))
        #expect(ro.mounts.first?.writable == false)
    }

    @Test("kernel and clawjail trees are never mounted, not even read-only or through a parent", arguments: [
        ("/proc", "'/proc' is inside /proc, which is never mounted into a jail"),
        ("/proc/1/root", "is inside /proc"),
        ("/sys/fs/cgroup", "is inside /sys"),
        ("/dev", "is inside /dev"),
        ("/dev/sda", "is inside /dev"),
        ("/boot", "is inside /boot"),
        ("/run/clawjail/bob", "is inside /run/clawjail"),
        ("/var/cache/clawjail", "is inside /var/cache/clawjail"),
        ("/run", "'/run' contains /run/clawjail, which is never mounted into a jail"),
        ("/var/cache", "'/var/cache' contains /var/cache/clawjail"),
    ])
    func neverMounted(host: String, message: String) {
        expectOne(agent("[[mount]]\nhost = \"\(host)\"\npath = \"/x\"\n"), at: "4:8", message, hint: "mount a narrower directory")
    }

    @Test("directories that hold other people's data are too broad to give writable",
          arguments: ["/home", "/srv", "/tmp", "/var/tmp", "/opt", "/root", "/mnt", "/media", "/data"])
    func broad(host: String) throws {
        expectOne(agent("[workspace]\nhost = \"\(host)\"\n"), at: "4:8", "'\(host)' is too broad to give to one agent")
        // A directory of their own below it is the intended use.
        let c = try parse(agent("[workspace]\nhost = \"\(host)/alice/workspace\"\n"))
        #expect(c.workspace?.host == host + "/alice/workspace")
    }

    @Test("the credentials directory is chowned and chmodded on the host, so it gets the writable checks", arguments: [
        ("/etc", "is inside the system tree /etc"),
        ("/etc/ssh", "is inside the system tree /etc"),
        ("/usr/local/creds", "is inside the system tree /usr"),
        ("/home", "is too broad"),
        ("/srv", "is too broad"),
        ("/proc/self", "is inside /proc"),
    ])
    func credentialsHost(host: String, message: String) {
        expectOne(agent("[credentials]\nhost = \"\(host)\"\n"), at: "4:8", "[credentials] host: '\(host)' " + message,
                  hint: "give the agent its own directory")
    }

    @Test("a credentials directory of the agent's own is fine, read-only at /run/credentials by default")
    func credentialsOK() throws {
        let c = try parse(agent("[credentials]\nhost = \"credentials\"\n"))
        #expect(c.credentials == AgentConfig.Bind(host: "/srv/clawjail/alice/credentials", path: "/run/credentials",
                                                  writable: false, location: loc(3, 1)))
        expectOne(agent("[credentials]\nhost = \"c\"\nmode = \"rw\"\n"), at: "5:1", "unknown key 'mode' in [credentials]")
    }

    @Test("host is required")
    func hostRequired() {
        expectOne(agent("[workspace]\npath = \"/w\"\n"), at: "3:1", "[workspace] needs 'host'")
        expectOne(agent("[[mount]]\npath = \"/w\"\n"), at: "3:1", "[[mount]] #1 needs 'host'")
        expectOne(agent("[credentials]\n"), at: "3:1", "[credentials] needs 'host'")
    }

    @Test("mount mode is ro or rw")
    func mountMode() throws {
        let c = try parse(agent("[[mount]]\nhost = \"/srv/shared/alice\"\npath = \"/shared\"\nmode = \"rw\"\n"))
        #expect(c.mounts.first?.writable == true)
        expectOne(agent("[[mount]]\nhost = \"/opt/x\"\npath = \"/x\"\nmode = \"RW\"\n"), at: "6:8",
                  "mode 'RW' in [[mount]] #1 must be \"ro\" or \"rw\"")
        expectOne(agent("[[mount]]\nhost = \"/opt/x\"\npath = \"/x\"\nmode = \"rwx\"\n"), at: "6:8", "must be \"ro\" or \"rw\"")
    }
}

// MARK: - rootfs

@Suite("agent.toml: rootfs")
struct ConfigRootfsTests {
    @Test("base = \"host\" or a directory path")
    func accepted() throws {
        #expect(try parse(agent("[rootfs]\nbase = \"host\"\n")).rootfs == .host)
        #expect(try parse(agent("[rootfs]\npath = \"/var/lib/clawjail/rootfs/bookworm\"\n")).rootfs
                == .directory("/var/lib/clawjail/rootfs/bookworm"))
        #expect(try parse(agent("[rootfs]\npath = \"rootfs\"\n")).rootfs == .directory("/srv/clawjail/alice/rootfs"))
        #expect(try parse(agent("[rootfs]\npath = \"/srv/rootfs/alpine\"\n")).rootfs == .directory("/srv/rootfs/alpine"))
    }

    @Test("refused rootfs settings", arguments: [
        ("base = \"alpine\"\n", "4:8", "rootfs.base 'alpine' is not known"),
        ("base = \"host\"\npath = \"/srv/rootfs/x\"\n", "5:8", "rootfs has both 'base' and 'path'"),
        ("path = \"../rootfs\"\n", "4:8", "rootfs.path '../rootfs' contains '..'"),
        ("path = \"/var/lib/clawjail/store\"\n", "4:8", "rootfs.path: '/var/lib/clawjail/store' overlaps clawjail's state directory"),
        ("path = \"/proc/1/root\"\n", "4:8", "rootfs.path: '/proc/1/root' is inside /proc"),
        ("path = \"/run\"\n", "4:8", "rootfs.path: '/run' contains /run/clawjail"),
    ])
    func refused(body: String, at: String, message: String) {
        expectOne(agent("[rootfs]\n" + body), at: at, message)
    }

    @Test("etc_show and etc_hide change which host /etc entries a jail sees")
    func etcLists() throws {
        let c = try parse(agent("[rootfs]\netc_show = [\"npmrc\", \"/etc/environment\"]\netc_hide = [\"fonts/\", \"ImageMagick-6/policy.xml\"]\n"))
        #expect(c.etcShow == ["npmrc", "environment"])
        #expect(c.etcHide == ["fonts", "ImageMagick-6/policy.xml"])
        let spec = JailSpec.forAgent(c, hostEnvironment: [:])
        #expect(spec.etcHidden.contains("fonts") && spec.etcHidden.contains("ImageMagick-6/policy.xml"))
        #expect(!spec.etcHidden.contains("npmrc") && !spec.etcHidden.contains("environment"))
        #expect(spec.etcHidden.contains("shadow") && spec.etcHidden.contains("ssh") && spec.etcHidden.contains("ssl/private"))
        // The defaults, with no [rootfs] at all.
        let plain = JailSpec.forAgent(try parse(agent("")), hostEnvironment: [:])
        #expect(plain.etcHidden == EtcPolicy.hidden.map(\.path).sorted())
        #expect(plain.etcHidden.contains("npmrc") && !plain.etcHidden.contains("fonts"))
    }

    @Test("refused /etc lists", arguments: [
        ("etc_show = [\"shadow\"]\n", "4:13", "/etc/shadow is never shown in a jail: password hashes"),
        ("etc_show = [\"ssh/ssh_config\"]\n", "4:13", "/etc/ssh is never shown in a jail"),
        ("etc_show = [\"clawjail\"]\n", "4:13", "every tenant's agent.toml"),
        ("etc_show = [\"passwd\"]\n", "4:13", "/etc/passwd is generated by clawjail"),
        ("etc_show = [\"fonts\"]\n", "4:13", "/etc/fonts is not hidden, so there is nothing to show"),
        ("etc_show = [\"systemd/resolved.conf\"]\n", "4:13", "inside /etc/systemd, which is hidden whole"),
        ("etc_hide = [\"resolv.conf\"]\n", "4:13", "/etc/resolv.conf is generated by clawjail"),
        ("etc_hide = [\"hosts/x\"]\n", "4:13", "/etc/hosts is a file generated by clawjail"),
        ("etc_hide = [\"../shadow\"]\n", "4:13", "etc_hide entry '../shadow' is not a path inside /etc"),
        ("etc_hide = [\"\"]\n", "4:13", "is not a path inside /etc"),
        ("etc_hide = [\"a//b\"]\n", "4:13", "is not a path inside /etc"),
        ("etc_hide = [\"fonts\", \"fonts\"]\n", "4:22", "etc_hide names 'fonts' twice"),
        ("etc_show = [\"npmrc\"]\netc_hide = [\"npmrc\"]\n", "5:13", "'npmrc' is in both etc_show and etc_hide"),
        ("etc_hide = \"fonts\"\n", "4:12", "must be an array of strings"),
    ])
    func etcRefused(body: String, at: String, message: String) {
        expectOne(agent("[rootfs]\n" + body), at: at, message)
    }

    @Test("a mount may land on a hidden /etc entry, not inside one or on a generated file")
    func mountsUnderEtc() throws {
        let ok = try parse(agent("[[mount]]\nhost = \"/opt/npmrc\"\npath = \"/etc/npmrc\"\n"))
        #expect(ok.mounts.first?.path == "/etc/npmrc")
        expectOne(agent("[[mount]]\nhost = \"/opt/x\"\npath = \"/etc/ssh/ssh_config\"\n"), at: "3:1",
                  "mount target /etc/ssh/ssh_config is inside /etc/ssh, which jails do not see")
        expectOne(agent("[[mount]]\nhost = \"/opt/x\"\npath = \"/etc/hosts\"\n"), at: "3:1",
                  "would replace the generated /etc/hosts")
        // etc_show makes the inside of an entry hidden by default reachable again.
        _ = try parse(agent("[rootfs]\netc_show = [\"systemd\"]\n[[mount]]\nhost = \"/opt/x\"\npath = \"/etc/systemd/x.conf\"\n"))
    }
}

// MARK: - Targets

@Suite("agent.toml: targets inside the jail")
struct ConfigTargetTests {
    @Test("targets are absolute and normalised", arguments: [
        ("/data", "/data"), ("/opt//tool/./", "/opt/tool"), ("/workspace/", "/workspace"),
        ("/procfs", "/procfs"), ("/devices", "/devices"), ("/system", "/system"), ("/etc/ssl/certs", "/etc/ssl/certs"),
        ("/run/credentials", "/run/credentials"), ("/tmp/x", "/tmp/x"),
    ])
    func accepted(path: String, normalised: String) throws {
        let c = try parse(agent("[[mount]]\nhost = \"/opt/tool\"\npath = \"\(path)\"\n"))
        #expect(c.mounts.first?.path == normalised)
    }

    @Test("targets on or below /proc, /sys or /dev, the jail's base layout, or not absolute are refused", arguments: [
        ("/proc", "'/proc' is inside /proc, which the jail provides itself and no mount may cover"),
        ("/proc/sys/kernel", "'/proc/sys/kernel' is inside /proc"),
        ("//proc/", "'/proc' is inside /proc"),
        ("/proc/./self", "'/proc/self' is inside /proc"),
        ("/sys", "'/sys' is inside /sys"),
        ("/sys/fs/cgroup", "'/sys/fs/cgroup' is inside /sys"),
        ("/dev", "'/dev' is inside /dev"),
        ("/dev/shm", "'/dev/shm' is inside /dev"),
        ("/", "'/' would replace part of the jail's base layout"),
        ("//", "'/' would replace part of the jail's base layout"),
        ("/etc", "'/etc' would replace part of the jail's base layout"),
        ("/usr/", "'/usr' would replace"),
        ("/tmp", "'/tmp' would replace"),
        ("/run/clawjail", "'/run/clawjail' would replace"),
        ("data", "'data' is not an absolute path"),
        ("", "'' is not an absolute path"),
        ("/opt/../proc", "'/opt/../proc' contains '..'"),
    ])
    func refused(path: String, message: String) {
        expectOne(agent("[[mount]]\nhost = \"/opt/tool\"\npath = \"\(path)\"\n"), at: "5:8",
                  "[[mount]] #1 path: " + message, hint: "choose a path such as /workspace")
    }

    @Test("the workspace target defaults to /workspace and follows the same rules")
    func workspaceTarget() throws {
        #expect(try parse(agent("[workspace]\nhost = \"ws\"\n")).workspace?.path == "/workspace")
        #expect(try parse(agent("[workspace]\nhost = \"ws\"\npath = \"/home/agent/\"\n")).workspace?.path == "/home/agent")
        expectOne(agent("[workspace]\nhost = \"ws\"\npath = \"/\"\n"), at: "5:8", "[workspace] path: '/' would replace")
        expectOne(agent("[workspace]\nhost = \"ws\"\npath = \"/proc/self/cwd\"\n"), at: "5:8", "[workspace] path: '/proc/self/cwd' is inside /proc")
        expectOne(agent("[credentials]\nhost = \"c\"\npath = \"/sys/c\"\n"), at: "5:8", "[credentials] path: '/sys/c' is inside /sys")
    }

    @Test("a mount needs a target")
    func mountNeedsPath() {
        expectOne(agent("[[mount]]\nhost = \"/opt/tool\"\n"), at: "3:1", "[[mount]] #1 needs 'path'")
    }

    @Test("two mounts may not share a target, however it is spelled", arguments: [
        // The second one is reported, and points back at the first.
        ("[workspace]\nhost = \"ws\"\n[[mount]]\nhost = \"/opt/t\"\npath = \"/workspace/\"\n", "5:1",
         "mount path '/workspace' is already used by another mount (first used at 3:1)"),
        ("[[mount]]\nhost = \"/opt/a\"\npath = \"/opt/x\"\n[[mount]]\nhost = \"/opt/b\"\npath = \"/opt//x\"\n", "6:1",
         "mount path '/opt/x' is already used by another mount (first used at 3:1)"),
        ("[[mount]]\nhost = \"/opt/a\"\npath = \"/run/credentials\"\n[credentials]\nhost = \"c\"\n", "6:1",
         "credentials path '/run/credentials' is already used by another mount (first used at 3:1)"),
    ])
    func sameTarget(body: String, at: String, message: String) {
        expectOne(agent(body), at: at, message)
    }

    @Test("distinct or nested targets are fine")
    func distinctTargets() throws {
        let c = try parse(agent("""
            [workspace]
            host = "ws"
            [[mount]]
            host = "/opt/a"
            path = "/opt/a"
            [[mount]]
            host = "/opt/a"
            path = "/opt/a2"
            [[mount]]
            host = "/opt/tools"
            path = "/workspace/tools"

            """))
        #expect(c.mounts.map(\.path) == ["/opt/a", "/opt/a2", "/workspace/tools"])
    }
}

// MARK: - cwd

@Suite("agent.toml: cwd")
struct ConfigCwdTests {
    @Test("cwd is absolute and normalised", arguments: [
        ("/workspace", "/workspace"), ("/workspace/./src/", "/workspace/src"), ("/tmp", "/tmp"), ("/procfs", "/procfs"), ("/", "/"),
    ])
    func accepted(cwd: String, normalised: String) throws {
        let c = try parse(agent("cwd = \"\(cwd)\"\n[workspace]\nhost = \"ws\"\n"))
        #expect(c.cwd == normalised)
    }

    @Test("cwd under /proc or /sys is refused (CVE-2024-21626), for agents and tools",
          arguments: ["/proc/self/fd/7", "/proc", "/proc/1/cwd", "//proc/self/cwd", "/sys/fs/cgroup", "/sys"])
    func procCwd(cwd: String) {
        expectOne(agent("cwd = \"\(cwd)\"\n"), at: "3:7", "cwd '\(cwd)' is inside /proc or /sys", hint: "CVE-2024-21626")
        expectOne("cwd = \"\(cwd)\"\n", at: "1:7", "cwd '\(cwd)' is inside /proc or /sys", kind: .tool)
    }

    @Test("cwd must be absolute and free of '..'", arguments: ["workspace", "", "/workspace/../proc", "./src"])
    func relative(cwd: String) {
        expectOne(agent("cwd = \"\(cwd)\"\n"), at: "3:7", "cwd '\(cwd)' must be an absolute path without '..'")
    }
}

// MARK: - Sizes, counts and durations in [limits] and [tools]

@Suite("agent.toml: limits")
struct ConfigLimitTests {
    @Test("sizes: K/M/G/T (binary) or plain bytes", arguments: [
        ("\"512M\"", UInt64(512) << 20), ("\"1G\"", 1 << 30), ("\"2T\"", 2 << 40), ("\"64k\"", 64 << 10),
        ("\"1MiB\"", 1 << 20), ("1048576", 1_048_576), ("\"65536\"", 65536), ("1", 1),
    ] as [(String, UInt64)])
    func sizes(literal: String, bytes: UInt64) throws {
        let c = try parse(agent("[limits]\nmemory = \(literal)\ntmp = \(literal)\nfile_size = \(literal)\n"))
        #expect(c.limits.memory == bytes)
        #expect(c.limits.tmp == bytes)
        #expect(c.limits.fileSize == bytes)
        let t = try parse(agent("[tools]\nmemory = \(literal)\n"))
        #expect(t.tools.limits.memory == bytes)
    }

    @Test("zero, negative, overflowing, fractional and unknown sizes are refused at the value", arguments: [
        ("\"0\"", "memory = 0: must be greater than zero"),
        ("0", "memory = 0: must be greater than zero"),
        ("\"0M\"", "memory = 0M: must be greater than zero"),
        ("-1", "memory = -1: must not be negative"),
        ("\"-512M\"", "memory = -512M: must not be negative"),
        ("\"99999999999999999999\"", "is too large"),
        ("\"16777216T\"", "memory = 16777216T: is too large"),
        ("\"8388608T\"", "is too large"),
        ("\"1.5G\"", "has a fraction"),
        ("\"512X\"", "has an unknown unit 'X'; use K, M, G or T"),
        ("\"1P\"", "has an unknown unit 'P'"),
        ("\"M\"", "'M' is not a size"),
        ("\"\"", "memory = : empty value"),
        ("1.5", "memory must be a size such as \"512M\" or a number of bytes, not float"),
        ("true", "not boolean"),
    ])
    func badSizes(literal: String, message: String) {
        expectOne(agent("[limits]\nmemory = \(literal)\n"), at: "4:10", message)
    }

    @Test("the hint for a bad size shows what to write")
    func sizeHint() {
        expectOne(agent("[limits]\ntmp = \"64Q\"\n"), at: "4:7", "tmp = 64Q: '64Q' has an unknown unit 'Q'", hint: "\"256M\"")
        expectOne(agent("[tools]\nmemory = \"0\"\n"), at: "4:10", "memory = 0: must be greater than zero")
    }

    @Test("counts are positive and bounded", arguments: [
        ("pids = 0", "4:8", "pids = 0 must be greater than zero"),
        ("pids = -5", "4:8", "pids = -5 must be greater than zero"),
        ("pids = 4194305", "4:8", "pids = 4194305 is out of range (1-4194304)"),
        ("open_files = 0", "4:14", "open_files = 0 must be greater than zero"),
        ("open_files = 8", "4:14", "open_files = 8 is out of range (16-1048576)"),
        ("io_weight = 0", "4:13", "io_weight = 0 must be greater than zero"),
        ("io_weight = 10001", "4:13", "io_weight = 10001 is out of range (1-10000)"),
        ("cpu = 0", "4:7", "cpu = 0.0 must be a number of cores greater than 0"),
        ("cpu = -1.5", "4:7", "cpu = -1.5 must be"),
        ("cpu = nan", "4:7", "cpu = nan must be"),
        ("cpu = inf", "4:7", "cpu = inf must be"),
        ("cpu = 2048", "4:7", "cpu = 2048.0 must be"),
    ])
    func badCounts(line: String, at: String, message: String) {
        expectOne(agent("[limits]\n\(line)\n"), at: at, message)
    }

    @Test("counts inside their ranges are kept")
    func goodCounts() throws {
        let c = try parse(agent("[limits]\npids = 1\nopen_files = 16\nio_weight = 10000\ncpu = 2\n"))
        #expect(c.limits.pids == 1)
        #expect(c.limits.openFiles == 16)
        #expect(c.limits.ioWeight == 10000)
        #expect(c.limits.cpu == 2.0)
        let t = try parse(agent("[tools]\npids = 4194304\ncpu = 0.25\nopen_files = 1048576\n"))
        #expect(t.tools.limits.pids == 4_194_304)
        #expect(t.tools.limits.cpu == 0.25)
        #expect(t.tools.limits.openFiles == 1_048_576)
        expectOne(agent("[tools]\npids = 0\n"), at: "4:8", "pids = 0 must be greater than zero")
        expectOne(agent("[tools]\ncpu = 0\n"), at: "4:7", "tools.cpu = 0.0 must be a number of cores greater than 0")
    }

    @Test("durations: ms, s, m, h and sums", arguments: [
        ("\"250ms\"", UInt64(250)), ("\"45s\"", 45_000), ("\"10m\"", 600_000), ("\"2h\"", 7_200_000),
        ("\"1h30m\"", 5_400_000), ("\"1m30s500ms\"", 90_500),
    ] as [(String, UInt64)])
    func durations(literal: String, ms: UInt64) throws {
        let c = try parse(agent("[limits]\nwall_time = \(literal)\n"))
        #expect(c.limits.wallTimeMs == ms)
        let t = try parse(agent("[tools]\nwall_time = \(literal)\n"))
        #expect(t.tools.limits.wallTimeMs == ms)
        let tool = try parse("[limits]\nwall_time = \(literal)\n", kind: .tool)
        #expect(tool.limits.wallTimeMs == ms)
    }

    @Test("\"0\" means no wall-time limit for an agent")
    func agentZero() throws {
        #expect(try parse(agent("[limits]\nwall_time = \"0\"\n")).limits.wallTimeMs == 0)
        #expect(try parse(agent("[limits]\nwall_time = 0\n")).limits.wallTimeMs == 0)
        #expect(try parse(agent("[limits]\nwall_time = \"0s\"\n")).limits.wallTimeMs == 0)
    }

    @Test("a tool run always has a wall-time limit: \"0\" is refused in [tools] and in tool.toml")
    func toolZero() {
        expectOne(agent("[tools]\nwall_time = \"0\"\n"), at: "4:13", "wall_time = \"0\": must be greater than zero")
        expectOne(agent("[tools]\nwall_time = 0\n"), at: "4:13", "wall_time = \"0\": must be greater than zero")
        expectOne(agent("[tools]\nwall_time = \"0m\"\n"), at: "4:13", "must be greater than zero")
        let issue = expectOne("[limits]\nwall_time = \"0\"\n", at: "2:13", "wall_time = \"0\": must be greater than zero",
                              kind: .tool)
        #expect(issue?.hint?.contains("no limit") == false)
    }

    @Test("bare numbers, unknown units, negatives and fractions are refused", arguments: [
        ("30", "wall_time = 30 has no unit"),
        ("\"30\"", "'30' has no unit; write e.g. '30s' or '30m'"),
        ("\"10x\"", "has an unknown unit 'x'; use ms, s, m or h"),
        ("\"10M\"", "has an unknown unit 'M'"),
        ("\"1d\"", "has an unknown unit 'd'"),
        ("\"-5m\"", "must not be negative"),
        ("\"1.5h\"", "'1.5h' has a fraction"),
        ("\"h\"", "'h' is not a duration"),
        ("\"\"", "empty value"),
        ("1.5", "wall_time must be a duration such as \"10m\", not float"),
        ("\"3000000h\"", "is too large"),
    ])
    func badDurations(literal: String, message: String) {
        expectOne(agent("[limits]\nwall_time = \(literal)\n"), at: "4:13", message)
    }

    @Test("the hint for an agent's wall_time says \"0\" means no limit")
    func durationHint() {
        expectOne(agent("[limits]\nwall_time = \"ten\"\n"), at: "4:13", "wall_time = \"ten\"", hint: "\"0\" means no limit")
        expectOne(agent("[limits]\nwall_time = 30\n"), at: "4:13", "has no unit", hint: "\"30s\"")
    }
}

// MARK: - Network and allowlist

@Suite("agent.toml: network")
struct ConfigNetworkTests {
    /// `[network]` in egress mode with `entry` as the second allowlist item, at 5:29.
    private func egress(_ entry: String) -> String {
        agent("[network]\nmode = \"egress\"\nallow = [\"api.example.com\", \"\(entry)\"]\n")
    }

    @Test("entries are stored lower-cased, without a trailing dot", arguments: [
        ("API.Anthropic.COM.", "api.anthropic.com"),
        ("*.Slack.com:443", "*.slack.com:443"),
        ("*.EXAMPLE.org.", "*.example.org"),
        ("Hooks.Slack.com.:8443", "hooks.slack.com:8443"),
    ])
    func normalised(entry: String, stored: String) throws {
        let c = try parse(egress(entry))
        #expect(c.network.mode == .egress)
        #expect(c.network.allow.map(\.description) == ["api.example.com", stored])
    }

    @Test("IP literals are refused in every encoding", arguments: [
        "127.0.0.1", "10.0.0.1:443", "8.8.8.8", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1",
        "[::1]", "::1", "[::ffff:127.0.0.1]:443", "::ffff:7f00:1", "[2001:db8::1]",
    ])
    func ipLiterals(entry: String) {
        expectOne(egress(entry), at: "5:29", "allow entry \"\(entry)\": is an IP address")
    }

    @Test("metadata addresses and names are refused as such", arguments: [
        ("169.254.169.254", "cloud metadata address"),
        ("0xa9fea9fe", "cloud metadata address"),
        ("[::ffff:169.254.169.254]", "cloud metadata address"),
        ("100.100.100.200", "cloud metadata address"),
        ("metadata.google.internal", "cloud metadata name"),
        ("METADATA.google.internal.", "cloud metadata name"),
        ("metadata", "cloud metadata name"),
        ("instance-data", "cloud metadata name"),
        ("*.google.internal", "local or reserved"),
    ])
    func metadata(entry: String, message: String) {
        expectOne(egress(entry), at: "5:29", message)
    }

    @Test("wildcards must cover a registrable domain; local names and empty entries are refused", arguments: [
        ("*", "\"*\" would allow the whole internet"),
        ("*.", "would allow the whole internet"),
        ("*:443", "would allow the whole internet"),
        ("*.com", "\"*.com\" covers a whole top-level domain"),
        ("*.co.uk", "looks like a public suffix"),
        ("*.github.io", "shared hosting suffix"),
        ("api-*.example.com", "a wildcard must be a whole leftmost label"),
        ("localhost", "\"localhost\" names are local or reserved"),
        ("LocalHost.", "\"localhost\" names are local or reserved"),
        ("db.localhost", "\"localhost\" names are local or reserved"),
        ("*.internal", "\"internal\" names are local or reserved"),
        ("build.internal", "\"internal\" names are local or reserved"),
        ("printer.local", "\"local\" names are local or reserved"),
        ("intranet", "\"intranet\" names are local or reserved"),
        ("api", "single-label name"),
        ("", "an empty entry allows nothing"),
        ("api.example.com:0", "invalid port"),
        ("api.example.com:65536", "invalid port"),
        ("api.example.com:080", "invalid port"),
        ("a b.example.com", "whitespace"),
        ("exa!mple.com", "is not a valid host name"),
    ])
    func refused(entry: String, message: String) {
        expectOne(egress(entry), at: "5:29", message)
    }

    @Test("a wildcard that can match no name is refused at its position; the longest that can is accepted")
    func wildcardLengths() throws {
        // A domain of `length` characters: labels of 62 and a last one of the rest.
        func domain(_ length: Int) -> String {
            let whole = (length - 1) / 63
            return String(repeating: String(repeating: "a", count: 62) + ".", count: whole)
                + String(repeating: "b", count: length - 63 * whole)
        }
        for length in [252, 253] {
            expectOne(egress("*." + domain(length)), at: "5:29",
                      "can match no host name: every name under this \(length)-character domain is longer than 253 characters")
        }
        let c = try parse(egress("*." + domain(251)))
        #expect(c.network.allow.last?.description == "*." + domain(251))
    }

    @Test("[tools] allow follows the same rules")
    func toolsAllow() throws {
        let c = try parse(agent("[tools]\nnetwork = \"egress\"\nallow = [\"PyPI.org.\", \"*.pythonhosted.org\"]\n"))
        #expect(c.tools.network == .egress)
        #expect(c.tools.allow?.map(\.description) == ["pypi.org", "*.pythonhosted.org"])
        expectOne(agent("[tools]\nallow = [\"*\"]\n"), at: "4:10", "\"*\" would allow the whole internet")
        expectOne(agent("[tools]\nallow = [\"169.254.169.254\"]\n"), at: "4:10", "cloud metadata address")
    }

    @Test("every bad entry is reported, each at its own position")
    func everyEntry() {
        let found = problems(agent("[network]\nmode = \"egress\"\nallow = [\"*\", \"ok.example.com\", \"localhost\", \"10.1.2.3\"]\n"))
        #expect(found.map(\.location?.description) == ["5:10", "5:33", "5:46"])
    }

    @Test("a repeated entry is a warning")
    func duplicateEntry() throws {
        let c = try parse(agent("[network]\nmode = \"egress\"\nallow = [\"a.example.com\", \"A.example.com.\"]\n"))
        #expect(c.network.allow.map(\.description) == ["a.example.com"])
        #expect(c.warnings.map(\.message) == ["'A.example.com.' is listed twice in the allowlist"])
        #expect(c.warnings.first?.location == loc(5, 27))
    }

    @Test("mode is none or egress; none is the default; egress without names warns")
    func mode() throws {
        #expect(try parse(agent("[network]\n")).network.mode == .none)
        let c = try parse(agent("[network]\nmode = \"egress\"\n"))
        #expect(c.network.mode == .egress)
        #expect(c.warnings.first?.message == "network.mode = \"egress\" with an empty allowlist reaches nothing")
        expectOne(agent("[network]\nmode = \"bridge\"\n"), at: "4:8", "network.mode 'bridge' must be \"none\" or \"egress\"")
        expectOne(agent("[network]\nmode = \"host\"\n"), at: "4:8", "must be \"none\" or \"egress\"")
        expectOne(agent("[tools]\nnetwork = \"host\"\n"), at: "4:11", "tools.network 'host' must be \"none\" or \"egress\"")
    }

    @Test("resolvers are IP addresses with an optional port")
    func resolvers() throws {
        let c = try parse(agent("[network]\nresolvers = [\"192.0.2.53\", \"192.0.2.54:5353\", \"[2001:db8::53]:53\"]\n"))
        #expect(c.network.resolvers == ["192.0.2.53", "192.0.2.54:5353", "[2001:db8::53]:53"])
        expectOne(agent("[network]\nresolvers = [\"dns.example.com\"]\n"), at: "4:14",
                  "resolver 'dns.example.com' must be an IP address, optionally with :PORT")
        expectOne(agent("[network]\nresolvers = [\"192.0.2.53:0\"]\n"), at: "4:14", "must be an IP address")
    }

    @Test("allow_non_tls_443 is a boolean, false by default, and warns while mode = none")
    func allowNonTLS443() throws {
        #expect(try parse(agent("[network]\nmode = \"egress\"\nallow = [\"a.example.com\"]\n")).network.allowNonTLS443 == false)
        let on = try parse(agent("[network]\nmode = \"egress\"\nallow = [\"a.example.com\"]\nallow_non_tls_443 = true\n"))
        #expect(on.network.allowNonTLS443 == true)
        #expect(on.warnings.isEmpty)
        let off = try parse(agent("[network]\nmode = \"egress\"\nallow = [\"a.example.com\"]\nallow_non_tls_443 = false\n"))
        #expect(off.network.allowNonTLS443 == false)
        expectOne(agent("[network]\nallow_non_tls_443 = \"allow\"\n"), at: "4:21",
                  "'allow_non_tls_443' in [network] must be true or false, not string")
        expectOne(agent("[network]\nallow_non_tls_433 = true\n"), at: "4:1", "unknown key 'allow_non_tls_433' in [network]",
                  hint: "did you mean 'allow_non_tls_443'?")
        let idle = try parse(agent("[network]\nallow_non_tls_443 = true\n"))
        #expect(idle.warnings.map(\.message) == ["network.allow_non_tls_443 is ignored while mode = \"none\""])
        #expect(idle.warnings.first?.location == loc(4, 21))
    }
}

// MARK: - env, env_pass

@Suite("agent.toml: environment")
struct ConfigEnvironmentTests {
    @Test("env and env_pass take variable names [A-Za-z_][A-Za-z0-9_]*")
    func accepted() throws {
        let c = try parse(agent("env = { NODE_ENV = \"production\", _x1 = \"\", EMPTY = \"\" }\nenv_pass = [\"TZ\", \"LANG\", \"_A\"]\n"))
        #expect(c.env == ["NODE_ENV": "production", "_x1": "", "EMPTY": ""])
        #expect(c.envPass == ["TZ", "LANG", "_A"])
        let table = try parse(agent("[env]\nLANG = \"C.UTF-8\"\nPATH = \"/opt/bin:/usr/bin\"\n"))
        #expect(table.env == ["LANG": "C.UTF-8", "PATH": "/opt/bin:/usr/bin"])
    }

    @Test("invalid names in env are refused at the key", arguments: ["1X", "A-B", "A B", "A=B", "", "É"])
    func badEnvName(name: String) {
        expectOne(agent("env = { \"\(name)\" = \"v\" }\n"), at: "3:9", "'\(name)' is not a valid environment variable name")
        #expect(!AgentConfig.isValidEnvName(name))
    }

    @Test("invalid names in an [env] table are refused at the key")
    func badEnvTableName() {
        expectOne(agent("[env]\nLANG = \"C\"\n9X = \"v\"\n"), at: "5:1", "'9X' is not a valid environment variable name")
    }

    @Test("env values are strings without NUL")
    func envValues() {
        expectOne(agent("env = { N = 1 }\n"), at: "3:13", "env.N must be a string, not integer")
        expectOne(agent("env = { N = \"a\\u0000b\" }\n"), at: "3:13", "env.N contains a NUL byte")
        expectOne(agent("env = \"N=1\"\n"), at: "3:7", "'env' in the top level must be a table ([env]), not string")
    }

    @Test("invalid names in env_pass are refused at the item")
    func badPass() {
        expectOne(agent("env_pass = [\"TZ\", \"BAD-NAME\"]\n"), at: "3:19", "'BAD-NAME' in env_pass is not a valid environment variable name")
        expectOne(agent("env_pass = [\"TZ\", 5]\n"), at: "3:19", "'env_pass' in the top level must hold strings only, not integer")
    }
}

// MARK: - [[ingress]]

@Suite("agent.toml: ingress")
struct ConfigIngressTests {
    private func ingress(port: String = "18789", socket: String = "\"/run/clawjail/alice/gateway.sock\"",
                         mode: String? = nil, extra: String = "") -> String {
        var body = "[[ingress]]\nport = \(port)\nsocket = \(socket)\n"      // lines 3, 4, 5
        if let mode { body += "socket_mode = \(mode)\n" }                    // line 6
        return agent(body + extra)
    }

    @Test("a socket the owner (and group) may use, default 0600")
    func accepted() throws {
        let c = try parse(ingress())
        #expect(c.ingress.first?.port == 18789)
        #expect(c.ingress.first?.socketMode == 0o600)
        #expect(c.ingress.first?.location == loc(3, 1))
        let g = try parse(ingress(mode: "\"0660\"", extra: "socket_group = 1001\n"))
        #expect(g.ingress.first?.socketMode == 0o660)
        #expect(g.ingress.first?.socketGroup == 1001)
        #expect(try parse(ingress(mode: "\"640\"")).ingress.first?.socketMode == 0o640)
        #expect(try parse(ingress(port: "1")).ingress.first?.port == 1)
        #expect(try parse(ingress(port: "65535")).ingress.first?.port == 65535)
        // A relative socket is next to the config file.
        #expect(try parse(ingress(socket: "\"gateway.sock\"")).ingress.first?.socket == "/srv/clawjail/alice/gateway.sock")
    }

    @Test("socket_mode may not give world access", arguments: ["\"0666\"", "\"0777\"", "\"0661\"", "\"0604\"", "\"0602\"", "\"007\""])
    func worldBits(mode: String) {
        expectOne(ingress(mode: mode), at: "6:15", "lets every local user connect", hint: "use \"0600\" or \"0660\" with socket_group")
    }

    @Test("socket_mode must be 3 or 4 octal digits",
          arguments: ["\"0o660\"", "\"+660\"", "\"0888\"", "\"1777\"", "\"66\"", "\"06600\"", "\"\"", "\"rw\"", "\" 660\"", "\"-660\""])
    func badMode(mode: String) {
        expectOne(ingress(mode: mode), at: "6:15", "must be octal permissions such as \"0660\"")
    }

    @Test("socket_mode is a string")
    func modeType() {
        expectOne(ingress(mode: "0o660"), at: "6:15", "'socket_mode' in [[ingress]] #1 must be a string, not integer")
    }

    @Test("ports are 1-65535", arguments: ["0", "65536", "-1", "99999999"])
    func badPort(port: String) {
        expectOne(ingress(port: port), at: "4:8", "port \(port) is out of range (1-65535)")
    }

    @Test("port and socket are required")
    func required() {
        expectOne(agent("[[ingress]]\nsocket = \"/run/clawjail/alice/g.sock\"\n"), at: "3:1", "[[ingress]] #1 needs 'port'")
        expectOne(agent("[[ingress]]\nport = 80\n"), at: "3:1", "[[ingress]] #1 needs 'socket'")
    }

    @Test("socket paths are absolute after resolution, without '..', and fit sockaddr_un")
    func socketPath() {
        expectOne(ingress(socket: "\"../bob/g.sock\""), at: "5:10", "socket '../bob/g.sock' must be an absolute path without '..'")
        expectOne(ingress(socket: "\"/\""), at: "5:10", "must be an absolute path")
        let long = "/run/clawjail/" + String(repeating: "a", count: 94)    // 108 bytes
        expectOne(ingress(socket: "\"\(long)\""), at: "5:10", "socket path is 108 bytes; Unix socket paths are limited to 107")
    }

    @Test("socket_group is a gid")
    func group() {
        expectOne(ingress(extra: "socket_group = -1\n"), at: "6:16", "socket_group -1 is not a gid")
    }

    @Test("a port has one ingress; the repeat is reported")
    func duplicatePort() {
        let text = ingress(extra: "[[ingress]]\nport = 18789\nsocket = \"/run/clawjail/alice/other.sock\"\n")
        expectOne(text, at: "6:1", "port 18789 has more than one [[ingress]] (first used at 3:1)")
    }
}

// MARK: - Credentials, protect, seccomp

@Suite("agent.toml: credentials and protect")
struct ConfigCredentialsProtectTests {
    @Test("credentials may not overlap the workspace, on the host or in the jail", arguments: [
        ("[workspace]\nhost = \"ws\"\n[credentials]\nhost = \"ws/.creds\"\n", "5:1",
         "the credentials directory /srv/clawjail/alice/ws/.creds overlaps the workspace /srv/clawjail/alice/ws",
         "keep credentials outside the workspace"),
        ("[workspace]\nhost = \"all/ws\"\n[credentials]\nhost = \"all\"\n", "5:1",
         "the credentials directory /srv/clawjail/alice/all overlaps the workspace /srv/clawjail/alice/all/ws", "tool runs see it"),
        ("[workspace]\nhost = \"ws\"\n[credentials]\nhost = \"ws\"\npath = \"/creds\"\n", "5:1",
         "overlaps the workspace", "keep credentials outside"),
    ])
    func overlapHost(body: String, at: String, message: String, hint: String) {
        expectOne(agent(body), at: at, message, hint: hint)
    }

    @Test("credentials path inside the workspace path is refused")
    func overlapTarget() {
        expectOne(agent("[workspace]\nhost = \"ws\"\n[credentials]\nhost = \"creds\"\npath = \"/workspace/.creds\"\n"), at: "5:1",
                  "credentials path /workspace/.creds is inside the workspace path /workspace")
    }

    @Test("a mount may not carry the credentials directory along")
    func mountContainsCredentials() {
        expectOne(agent("[credentials]\nhost = \"/srv/clawjail/alice/credentials\"\n[[mount]]\nhost = \"/srv/clawjail/alice\"\npath = \"/alice\"\n"),
                  at: "5:1", "mount /srv/clawjail/alice contains the credentials directory /srv/clawjail/alice/credentials")
    }

    @Test("credentials next to the workspace are fine")
    func separate() throws {
        let c = try parse(agent("[workspace]\nhost = \"workspace\"\n[credentials]\nhost = \"credentials\"\n"))
        #expect(c.workspace?.host == "/srv/clawjail/alice/workspace")
        #expect(c.credentials?.host == "/srv/clawjail/alice/credentials")
    }

    @Test("protect paths are relative to the workspace and normalised", arguments: [
        ("AGENTS.md", "AGENTS.md"), ("skills/", "skills/"), ("./memory//MEMORY.md", "memory/MEMORY.md"),
        ("a/./b/", "a/b/"), (".hidden", ".hidden"), ("...", "..."),
    ])
    func protect(path: String, stored: String) throws {
        let c = try parse(agent("[workspace]\nhost = \"ws\"\n[protect]\npaths = [\"\(path)\"]\n"))
        #expect(c.protect == [stored])
    }

    @Test("protect paths that are absolute, climb with '..' or name nothing are refused",
          arguments: ["/etc/passwd", "/workspace/SOUL.md", "../x", "a/../../b", "skills/..", "", ".", "./", "//"])
    func badProtect(path: String) {
        expectOne(agent("[workspace]\nhost = \"ws\"\n[protect]\npaths = [\"\(path)\"]\n"), at: "6:10",
                  "protect path '\(path)' must be relative to the workspace, without '..'", hint: "\"SOUL.md\"")
    }

    @Test("protect needs a workspace")
    func protectNeedsWorkspace() {
        expectOne(agent("[protect]\npaths = [\"SOUL.md\"]\n"), at: nil, "[protect] needs a [workspace]")
    }

    @Test("seccomp and tool profiles are non-empty names")
    func profiles() throws {
        #expect(try parse(agent("[seccomp]\nprofile = \"tool\"\n")).seccompProfile == "tool")
        #expect(try parse(agent("[tools]\nprofile = \"agent\"\n")).tools.profile == "agent")
        expectOne(agent("[seccomp]\nprofile = \"\"\n"), at: "4:11", "seccomp.profile is empty")
        expectOne(agent("[tools]\nprofile = \"\"\n"), at: "4:11", "tools.profile is empty")
    }
}

// MARK: - All problems at once

@Suite("agent.toml: reporting")
struct ConfigReportingTests {
    @Test("every problem in a file is reported in one error, each at its position")
    func allAtOnce() {
        let text = """
            name = "Alice"
            command = ["/bin/true"]
            user = "01"
            hostnme = "x"
            [workspace]
            host = "/"
            [[mount]]
            host = "/opt/a"
            path = "/proc/x"
            [limits]
            memory = "0"
            wall_time = "5"
            [network]
            mode = "egress"
            allow = ["*", "localhost", "ok.example.com", "169.254.169.254"]
            """
        let found = problems(text)
        let positions = found.compactMap { $0.location?.description }
        #expect(found.count == 10, "\(ConfigError(found))")
        #expect(Set(positions) == ["1:8", "3:8", "4:1", "6:8", "9:8", "11:10", "12:13", "15:10", "15:15", "15:46"])
        #expect(found.allSatisfy { $0.file == configFile })
        // The printed error has one line per problem (plus hints).
        let printed = ConfigError(found).description
        for p in positions { #expect(printed.contains("\(configFile):\(p): ")) }
    }

    @Test("warnings do not make a config invalid")
    func warnings() throws {
        let c = try parse(agent("cwd = \"/srv/data\"\n[workspace]\nhost = \"ws\"\n[[mount]]\nhost = \"ws/shared\"\npath = \"/shared\"\nmode = \"rw\"\n"))
        #expect(c.warnings.map(\.message) == ["rw mount /srv/clawjail/alice/ws/shared overlaps the workspace /srv/clawjail/alice/ws"])
        let noWorkspace = try parse(agent("cwd = \"/srv/data\"\n"))
        #expect(noWorkspace.warnings.first?.message.contains("cwd /srv/data is not inside the workspace or a mount") == true)
    }
}

@Suite("agent.toml: encoding")
struct ConfigEncodingTests {
    @Test("a file that is not UTF-8 is refused at the bad byte, before any validation")
    func notUTF8() {
        // "café" written by a Latin-1 editor, in a comment on line 3.
        let text = Array(agent("# caf").utf8) + [0xE9] + Array("\nuser = 0\n".utf8)
        do {
            _ = try AgentConfig.parse(utf8: text, file: configFile, kind: .agent)
            Issue.record("accepted a file that is not UTF-8")
        } catch {
            #expect(error.issues.count == 1, "\(error)")
            #expect(error.description.hasPrefix("\(configFile):3:6: invalid UTF-8: the sequence 0xE9 is cut short"), "\(error)")
            #expect(error.description.contains("save the file as UTF-8"))
        }
    }

    @Test("the same file in UTF-8 is read as text")
    func utf8() throws {
        let c = try AgentConfig.parse(utf8: Array(agent("# café\nhostname = \"alice\"\n").utf8), file: configFile, kind: .agent)
        #expect(c.hostname == "alice")
    }
}

// MARK: - isolation = "vm" and [vm]

@Suite("agent.toml: isolation and [vm]")
struct VMConfigTests {
    @Test func namespaceIsTheDefault() throws {
        let c = try parse(agent(""))
        #expect(c.isolation == .namespace)
        #expect(c.vm == nil)
        #expect(JailSpec.forAgent(c, hostEnvironment: [:]).isolation == .namespace)
    }

    @Test func vmWithoutATableTakesTheDefaults() throws {
        let c = try parse(agent("isolation = \"vm\"\n"))
        let vm = try #require(c.vm)
        #expect(vm.kernel == "/var/lib/clawjail/vm/vmlinuz")
        #expect(vm.initrd == "/var/lib/clawjail/vm/initramfs.cpio.gz")
        #expect(vm.accel == .kvm && !vm.allowTCG)
        let spec = try #require(JailSpec.forAgent(c, hostEnvironment: [:]).vm)
        #expect(spec.vcpus == 1)
        #expect(spec.memory == 512 << 20)
        #expect(spec.accel == .kvm)
    }

    @Test func defaultsFollowLimitsAndTheStateDirectory() throws {
        let c = try parse(agent("isolation = \"vm\"\n[limits]\ncpu = 1.5\nmemory = \"1500K\"\n"), state: "/srv/state")
        #expect(c.vm?.kernel == "/srv/state/vm/vmlinuz")
        let spec = try #require(JailSpec.forAgent(c, hostEnvironment: [:]).vm)
        #expect(spec.vcpus == 2)
        // Rounded up to whole MiB, and at least the guest minimum.
        #expect(spec.memory == 64 << 20)
        let d = try parse(agent("isolation = \"vm\"\n[limits]\nmemory = \"2G\"\n"))
        #expect(JailSpec.forAgent(d, hostEnvironment: [:]).vm?.memory == 2 << 30)
    }

    @Test func everyKey() throws {
        let pin = String(repeating: "AB", count: 32)
        let c = try parse(agent("""
            isolation = "vm"
            [vm]
            kernel = "boot/vmlinuz"
            initrd = "/opt/vm/init.cpio.gz"
            kernel_sha256 = "\(pin)"
            initrd_sha256 = "\(String(repeating: "0", count: 64))"
            vcpus = 4
            memory = "1G"
            accel = "tcg"
            allow_tcg = true
            """))
        let vm = try #require(c.vm)
        #expect(vm.kernel == configDirectory + "/boot/vmlinuz")
        #expect(vm.initrd == "/opt/vm/init.cpio.gz")
        #expect(vm.kernelSHA256 == pin.lowercased())
        #expect(vm.vcpus == 4 && vm.memory == 1 << 30)
        #expect(vm.accel == .tcg && vm.allowTCG)
        let spec = try #require(JailSpec.forAgent(c, hostEnvironment: [:]).vm)
        #expect(spec.vcpus == 4 && spec.memory == 1 << 30 && spec.accel == .tcg)
    }

    @Test func tcgNeedsAllowTCG() {
        let issue = expectOne(agent("isolation = \"vm\"\n[vm]\naccel = \"tcg\"\n"), at: "5:9",
                              "software emulation, not a security boundary", hint: "allow_tcg = true")
        #expect(issue?.hint?.contains("kvm") == true)
        expectOne(agent("isolation = \"vm\"\n[vm]\naccel = \"tcg\"\nallow_tcg = false\n"), at: "5:9", "not a security boundary")
    }

    @Test func vmTableNeedsIsolationVM() {
        expectOne(agent("[vm]\nvcpus = 2\n"), at: "3:1", "[vm] is set but isolation is not \"vm\"", hint: "isolation = \"vm\"")
        expectOne(agent("isolation = \"namespace\"\n[vm]\n"), at: "4:1", "isolation is not \"vm\"")
    }

    @Test func badValues() {
        expectOne(agent("isolation = \"kvm\"\n"), at: "3:13", "isolation 'kvm' must be \"namespace\" or \"vm\"")
        // A bad isolation is one problem, not two.
        expectOne(agent("isolation = \"VM\"\n[vm]\n"), at: "3:13", "must be \"namespace\" or \"vm\"")
        expectOne(agent("isolation = \"vm\"\n[vm]\naccel = \"hvf\"\n"), at: "5:9", "vm.accel 'hvf' must be \"kvm\" or \"tcg\"")
        expectOne(agent("isolation = \"vm\"\n[vm]\nvcpus = 0\n"), at: "5:9", "vcpus = 0 is out of range")
        expectOne(agent("isolation = \"vm\"\n[vm]\nvcpus = 65\n"), at: "5:9", "out of range (1-64)")
        expectOne(agent("isolation = \"vm\"\n[vm]\nvcpus = \"2\"\n"), at: "5:9", "'vcpus' in [vm] must be an integer")
        expectOne(agent("isolation = \"vm\"\n[vm]\nmemory = \"32M\"\n"), at: "5:10", "too small for a guest", hint: "at least 64M")
        expectOne(agent("isolation = \"vm\"\n[vm]\nmemory = \"100000K\"\n"), at: "5:10", "not a whole number of MiB")
        expectOne(agent("isolation = \"vm\"\n[vm]\nmemory = \"0\"\n"), at: "5:10", "memory = 0")
        expectOne(agent("isolation = \"vm\"\n[vm]\nkernel_sha256 = \"abc\"\n"), at: "5:17", "must be a SHA-256 as 64 hex digits")
        expectOne(agent("isolation = \"vm\"\n[vm]\ninitrd_sha256 = \"\(String(repeating: "g", count: 64))\"\n"), at: "5:17",
                  "vm.initrd_sha256 must be a SHA-256")
        expectOne(agent("isolation = \"vm\"\n[vm]\nkernel = \"../vmlinuz\"\n"), at: "5:10", "vm.kernel '../vmlinuz' contains '..'")
        expectOne(agent("isolation = \"vm\"\n[vm]\ninitrd = \"/var/lib/clawjail/clawjail.db\"\n"), at: "5:10",
                  "overlaps clawjail's state directory")
        expectOne(agent("isolation = \"vm\"\n[vm]\nallow_tcg = \"yes\"\n"), at: "5:13", "must be true or false")
        expectOne(agent("isolation = \"vm\"\n[vm]\nvcpu = 2\n"), at: "5:1", "unknown key 'vcpu' in [vm]", hint: "did you mean 'vcpus'?")
    }

    @Test func aToolConfigHasNoIsolation() {
        expectOne("isolation = \"vm\"\n", at: "1:1", "unknown key 'isolation' in the top level", kind: .tool)
        expectOne("[vm]\nvcpus = 1\n", at: "1:2", "unknown key 'vm' in the top level", kind: .tool)
    }
}
