import Testing
@testable import ClawjailCore

// Plan building: AgentConfig (+ exec options) -> JailSpec, with no side effects.

private let configFile = "/srv/clawjail/alice/agent.toml"

private func agentConfig(_ body: String = "") throws -> AgentConfig {
    try AgentConfig.parse("name = \"alice\"\ncommand = [\"/usr/bin/node\", \"gateway.js\"]\n" + body,
                          file: configFile, kind: .agent)
}

private func toolConfig(_ text: String) throws -> AgentConfig {
    try AgentConfig.parse(text, file: "/srv/tools/tool.toml", kind: .tool)
}

/// A host environment full of things that must never reach a jail.
private let hostEnvironment: [String: String] = [
    "PATH": "/root/bin:/usr/bin", "HOME": "/root", "USER": "root", "SHELL": "/bin/bash", "TZ": "Europe/Berlin",
    "SSH_AUTH_SOCK": "/tmp/ssh-XXXX/agent.1", "DISPLAY": ":0", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/0/bus",
    "XDG_RUNTIME_DIR": "/run/user/0", "LD_PRELOAD": "/tmp/evil.so", "AWS_SECRET_ACCESS_KEY": "secret",
    "ANTHROPIC_API_KEY": "sk-host", "HTTP_PROXY": "http://corp-proxy:8080", "TERM": "xterm",
]

private func env(_ spec: JailSpec) -> [String: String] {
    Dictionary(uniqueKeysWithValues: spec.environment.map { ($0.name, $0.value) })
}

private func tool(_ o: ToolRunOptions, toolConfig: AgentConfig? = nil, agentConfig: AgentConfig? = nil) throws(ConfigError) -> JailSpec {
    try JailSpec.forTool(o, toolConfig: toolConfig, agentConfig: agentConfig, runID: "0123abcd",
                         hostEnvironment: hostEnvironment)
}

/// The messages of the problems `forTool` reports; records an issue when it succeeds.
private func toolProblems(_ o: ToolRunOptions, toolConfig: AgentConfig? = nil, agentConfig: AgentConfig? = nil,
                          sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [String] {
    do {
        _ = try tool(o, toolConfig: toolConfig, agentConfig: agentConfig)
        Issue.record("accepted, but should fail", sourceLocation: sourceLocation)
        return []
    } catch {
        #expect(error.issues.allSatisfy { $0.file == "command line" && $0.location == nil }, sourceLocation: sourceLocation)
        return error.issues.map(\.message)
    }
}

private let proxyVariables = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"]

@Suite("JailSpec: agent runs")
struct AgentSpecTests {
    @Test("defaults for a minimal agent")
    func defaults() throws {
        let spec = JailSpec.forAgent(try agentConfig(), hostEnvironment: hostEnvironment)
        #expect(spec.kind == .agent)
        #expect(spec.agent == "alice")
        #expect(spec.name == "alice")
        #expect(spec.argv == ["/usr/bin/node", "gateway.js"])
        #expect(spec.cwd == "/")
        #expect(spec.hostname == "alice")
        #expect(spec.user == Defaults.toolUser)
        #expect(spec.user == 1000)
        #expect(spec.rootfs == .host)
        #expect(spec.mounts.isEmpty)
        #expect(spec.workspace == nil)
        #expect(spec.limits == Defaults.agentLimits)
        #expect(spec.limits.memory == 1 << 30)
        #expect(spec.limits.pids == 512)
        #expect(spec.limits.cpu == 1.0)
        #expect(spec.limits.tmp == 64 << 20)
        #expect(spec.limits.openFiles == 1024)
        #expect(spec.limits.fileSize == nil)
        #expect(spec.limits.wallTimeMs == 0)     // agents run until stopped
        #expect(spec.seccompProfile == "agent")
        #expect(spec.network == JailSpec.Network(mode: .none, allow: [], resolvers: [], ingress: []))
        #expect(spec.protect.isEmpty)
    }

    @Test("the environment holds PATH and HOME only: nothing of the host leaks")
    func cleanEnvironment() throws {
        let spec = JailSpec.forAgent(try agentConfig(), hostEnvironment: hostEnvironment)
        #expect(env(spec) == ["PATH": Defaults.path, "HOME": "/tmp"])
        #expect(spec.environment.map(\.name) == ["HOME", "PATH"])   // sorted
    }

    @Test("with a workspace, it is the cwd and HOME, mounted read-write")
    func workspace() throws {
        let spec = JailSpec.forAgent(try agentConfig("[workspace]\nhost = \"workspace\"\n"), hostEnvironment: [:])
        #expect(spec.cwd == "/workspace")
        #expect(env(spec)["HOME"] == "/workspace")
        #expect(spec.workspace == JailSpec.MountSpec(role: .workspace, host: "/srv/clawjail/alice/workspace",
                                                    target: "/workspace", writable: true, isDirectoryHint: true))
    }

    @Test("env and env_pass are all that reach the jail; env wins over env_pass and the defaults")
    func environment() throws {
        let c = try agentConfig("env = { NODE_ENV = \"production\", TERM = \"dumb\", PATH = \"/opt/node/bin:/usr/bin\" }\n"
                                + "env_pass = [\"TZ\", \"LANG\", \"TERM\"]\n")
        let e = env(JailSpec.forAgent(c, hostEnvironment: hostEnvironment))
        #expect(e == ["PATH": "/opt/node/bin:/usr/bin", "HOME": "/tmp", "NODE_ENV": "production",
                      "TZ": "Europe/Berlin", "TERM": "dumb"])
        // LANG is not set on the host, so it is simply absent.
        #expect(e["LANG"] == nil)
        for leak in ["SSH_AUTH_SOCK", "DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "LD_PRELOAD",
                     "AWS_SECRET_ACCESS_KEY", "ANTHROPIC_API_KEY", "USER", "SHELL"] {
            #expect(e[leak] == nil, "\(leak) leaked")
        }
        // The host's proxy settings are not inherited either.
        #expect(e["HTTP_PROXY"] == nil)
    }

    @Test("proxy variables appear only in egress mode, pointing at the jail's proxy")
    func proxyVariablesOnlyInEgress() throws {
        let none = JailSpec.forAgent(try agentConfig(), hostEnvironment: hostEnvironment)
        for k in proxyVariables { #expect(env(none)[k] == nil) }

        let egress = JailSpec.forAgent(try agentConfig("[network]\nmode = \"egress\"\nallow = [\"api.anthropic.com\"]\n"),
                                       hostEnvironment: hostEnvironment)
        let e = env(egress)
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            #expect(e[k] == "http://10.200.0.1:3128")
        }
        #expect(e["NO_PROXY"] == NetworkLayout.noProxy)
        #expect(e["no_proxy"] == NetworkLayout.noProxy)
        #expect(egress.network.mode == .egress)
        #expect(egress.network.allow == [AllowRule(pattern: .exact("api.anthropic.com"))])
    }

    @Test("configured limits override the defaults one by one")
    func limits() throws {
        let c = try agentConfig("[limits]\nmemory = \"512M\"\npids = 256\nwall_time = \"1h\"\nfile_size = \"1G\"\n")
        let l = JailSpec.forAgent(c, hostEnvironment: [:]).limits
        #expect(l.memory == 512 << 20)
        #expect(l.pids == 256)
        #expect(l.wallTimeMs == 3_600_000)
        #expect(l.fileSize == 1 << 30)
        // The rest keep their defaults.
        #expect(l.cpu == Defaults.agentLimits.cpu)
        #expect(l.tmp == Defaults.agentLimits.tmp)
        #expect(l.openFiles == Defaults.agentLimits.openFiles)
    }

    @Test("explicit settings carry through")
    func explicit() throws {
        let c = try agentConfig("cwd = \"/workspace/src\"\nhostname = \"box\"\nuser = \"1\"\n[seccomp]\nprofile = \"custom\"\n"
                                + "[rootfs]\npath = \"/var/lib/clawjail/rootfs/bookworm\"\n[workspace]\nhost = \"ws\"\n")
        let spec = JailSpec.forAgent(c, hostEnvironment: [:])
        #expect(spec.cwd == "/workspace/src")
        #expect(spec.hostname == "box")
        #expect(spec.user == 1)
        #expect(spec.seccompProfile == "custom")
        #expect(spec.rootfs == .directory("/var/lib/clawjail/rootfs/bookworm"))
    }

    @Test("mounts in order: workspace, extra mounts, credentials (read-only), then protect paths (read-only)")
    func mounts() throws {
        let c = try agentConfig("""
            [workspace]
            host = "workspace"
            path = "/home/agent"
            [[mount]]
            host = "/opt/openclaw"
            path = "/opt/openclaw"
            [[mount]]
            host = "/srv/shared/alice"
            path = "/shared"
            mode = "rw"
            [credentials]
            host = "credentials"
            [protect]
            paths = ["SOUL.md", "skills/", "./memory//MEMORY.md"]

            """)
        let spec = JailSpec.forAgent(c, hostEnvironment: [:])
        #expect(spec.mounts == [
            .init(role: .workspace, host: "/srv/clawjail/alice/workspace", target: "/home/agent", writable: true, isDirectoryHint: true),
            .init(role: .mount, host: "/opt/openclaw", target: "/opt/openclaw", writable: false, isDirectoryHint: false),
            .init(role: .mount, host: "/srv/shared/alice", target: "/shared", writable: true, isDirectoryHint: false),
            .init(role: .credentials, host: "/srv/clawjail/alice/credentials", target: "/run/credentials", writable: false,
                  isDirectoryHint: true),
            .init(role: .protect, host: "SOUL.md", target: "/home/agent/SOUL.md", writable: false, isDirectoryHint: false),
            .init(role: .protect, host: "skills", target: "/home/agent/skills", writable: false, isDirectoryHint: true),
            .init(role: .protect, host: "memory/MEMORY.md", target: "/home/agent/memory/MEMORY.md", writable: false,
                  isDirectoryHint: false),
        ])
        #expect(spec.protect == ["SOUL.md", "skills/", "memory/MEMORY.md"])
        // Every protect mount is read-only and lies under the workspace target.
        for m in spec.mounts where m.role == .protect {
            #expect(!m.writable)
            #expect(Paths.isWithin(m.target, "/home/agent") && m.target != "/home/agent")
        }
    }

    @Test("ingress sockets are part of the plan")
    func ingress() throws {
        let c = try agentConfig("[[ingress]]\nport = 18789\nsocket = \"/run/clawjail/alice/gateway.sock\"\n")
        let spec = JailSpec.forAgent(c, hostEnvironment: [:])
        #expect(spec.network.ingress.map(\.port) == [18789])
        #expect(spec.network.ingress.first?.socketMode == 0o600)
    }

    @Test("buildEnvironment: defaults, proxies, pass-through, config, sorted")
    func buildEnvironment() {
        let vars = JailSpec.buildEnvironment(config: ["B": "2", "HOME": "/home/x"], pass: ["TZ", "MISSING"],
                                             host: ["TZ": "UTC", "SECRET": "s"], home: "/workspace", network: .none)
        #expect(vars.map(\.name) == ["B", "HOME", "PATH", "TZ"])
        #expect(vars.first { $0.name == "HOME" }?.value == "/home/x")
        let egress = JailSpec.buildEnvironment(config: [:], pass: [], host: [:], home: "/tmp", network: .egress)
        #expect(Set(egress.map(\.name)) == Set(["HOME", "PATH"] + proxyVariables))
    }
}

@Suite("JailSpec: tool runs")
struct ToolSpecTests {
    @Test("defaults for a bare `clawjail exec -- CMD`")
    func defaults() throws {
        let spec = try tool(ToolRunOptions(argv: ["/bin/true"]))
        #expect(spec.kind == .tool)
        #expect(spec.agent == nil)
        #expect(spec.name == "exec-0123abcd")
        #expect(spec.argv == ["/bin/true"])
        #expect(spec.cwd == "/tmp")
        #expect(spec.hostname == "tool")
        #expect(spec.user == 1000)
        #expect(spec.rootfs == .host)
        #expect(spec.mounts.isEmpty)
        #expect(spec.limits == Defaults.toolLimits)
        #expect(spec.limits.memory == 256 << 20)
        #expect(spec.limits.pids == 64)
        #expect(spec.limits.openFiles == 256)
        #expect(spec.limits.wallTimeMs == 10 * 60_000)   // tool runs are always bounded
        #expect(spec.seccompProfile == "tool")
        #expect(spec.network == JailSpec.Network(mode: .none, allow: [], resolvers: [], ingress: []))
        #expect(env(spec) == ["PATH": Defaults.path, "HOME": "/tmp"])
    }

    @Test("--workspace is mounted read-write at /workspace, which becomes cwd and HOME")
    func workspaceOption() throws {
        var o = ToolRunOptions(argv: ["make"])
        o.workspace = "/srv/builds/42/"
        let spec = try tool(o)
        #expect(spec.mounts == [.init(role: .workspace, host: "/srv/builds/42", target: "/workspace", writable: true,
                                      isDirectoryHint: true)])
        #expect(spec.cwd == "/workspace")
        #expect(env(spec)["HOME"] == "/workspace")
    }

    @Test("--ro and --rw mounts, with and without a target")
    func mountOptions() throws {
        var o = ToolRunOptions(argv: ["ls"])
        o.readOnly = [(host: "/opt/sdk", target: nil), (host: "/etc/ssl/certs", target: "/certs/")]
        o.readWrite = [(host: "/srv/cache/tool", target: "/cache")]
        let spec = try tool(o)
        #expect(spec.mounts == [
            .init(role: .mount, host: "/opt/sdk", target: "/opt/sdk", writable: false, isDirectoryHint: false),
            .init(role: .mount, host: "/etc/ssl/certs", target: "/certs", writable: false, isDirectoryHint: false),
            .init(role: .mount, host: "/srv/cache/tool", target: "/cache", writable: true, isDirectoryHint: false),
        ])
    }

    @Test("precedence: command line > tool.toml > the agent's [tools] > defaults")
    func precedence() throws {
        let agent = try agentConfig("""
            [network]
            mode = "egress"
            allow = ["api.anthropic.com"]
            [tools]
            profile = "agent-tools"
            memory = "128M"
            pids = 32
            cpu = 0.5
            wall_time = "5m"
            network = "egress"
            allow = ["pypi.org"]

            """)
        let tc = try toolConfig("""
            [seccomp]
            profile = "from-tool-toml"
            [limits]
            memory = "200M"
            wall_time = "2m"
            [network]
            mode = "egress"
            allow = ["registry.npmjs.org"]

            """)
        let bare = ToolRunOptions(argv: ["x"])
        var cli = bare
        cli.memory = 300 << 20
        cli.timeoutMs = 30_000
        cli.profile = "from-cli"
        cli.network = AgentConfig.NetworkMode.none
        cli.pids = 16
        cli.cpu = 2

        // The agent's [tools] over the defaults.
        let a = try tool(bare, agentConfig: agent)
        #expect(a.limits.memory == 128 << 20)
        #expect(a.limits.pids == 32)
        #expect(a.limits.cpu == 0.5)
        #expect(a.limits.wallTimeMs == 5 * 60_000)
        #expect(a.limits.openFiles == Defaults.toolLimits.openFiles)
        #expect(a.seccompProfile == "agent-tools")
        #expect(a.network.mode == .egress)
        #expect(a.network.allow.map(\.description) == ["pypi.org"])
        #expect(a.agent == "alice")

        // tool.toml over the agent's [tools]; what it does not set falls through.
        let t = try tool(bare, toolConfig: tc, agentConfig: agent)
        #expect(t.limits.memory == 200 << 20)
        #expect(t.limits.wallTimeMs == 2 * 60_000)
        #expect(t.limits.pids == 32)
        #expect(t.limits.cpu == 0.5)
        #expect(t.seccompProfile == "from-tool-toml")
        #expect(t.network.allow.map(\.description) == ["registry.npmjs.org"])

        // tool.toml alone over the defaults.
        let t2 = try tool(bare, toolConfig: tc)
        #expect(t2.limits.memory == 200 << 20)
        #expect(t2.limits.pids == Defaults.toolLimits.pids)
        #expect(t2.seccompProfile == "from-tool-toml")

        // The command line over everything.
        let c = try tool(cli, toolConfig: tc, agentConfig: agent)
        #expect(c.limits.memory == 300 << 20)
        #expect(c.limits.wallTimeMs == 30_000)
        #expect(c.limits.pids == 16)
        #expect(c.limits.cpu == 2)
        #expect(c.seccompProfile == "from-cli")
        #expect(c.network.mode == .none)
        #expect(!env(c).keys.contains("HTTP_PROXY"))

        var allowCLI = bare
        allowCLI.allow = [AllowRule(pattern: .exact("example.org"))]
        #expect(try tool(allowCLI, toolConfig: tc, agentConfig: agent).network.allow.map(\.description) == ["example.org"])
    }

    @Test("without [tools] allow, an egress tool run inherits the agent's allowlist")
    func inheritedAllowlist() throws {
        let agent = try agentConfig("[network]\nmode = \"egress\"\nallow = [\"api.anthropic.com\"]\n[tools]\nnetwork = \"egress\"\n")
        let spec = try tool(ToolRunOptions(argv: ["x"]), agentConfig: agent)
        #expect(spec.network.mode == .egress)
        #expect(spec.network.allow.map(\.description) == ["api.anthropic.com"])
        #expect(env(spec)["HTTPS_PROXY"] == NetworkLayout.proxyURL)
    }

    @Test("allow_non_tls_443 reaches the plan: the agent's for its tool runs, unless tool.toml says")
    func allowNonTLS443() throws {
        let net = "[network]\nmode = \"egress\"\nallow = [\"api.anthropic.com\"]\n"
        let agent = try agentConfig(net + "allow_non_tls_443 = true\n[tools]\nnetwork = \"egress\"\n")
        #expect(JailSpec.forAgent(agent, hostEnvironment: [:]).network.allowNonTLS443)
        #expect(!JailSpec.forAgent(try agentConfig(net), hostEnvironment: [:]).network.allowNonTLS443)
        #expect(try tool(ToolRunOptions(argv: ["x"]), agentConfig: agent).network.allowNonTLS443)
        let strict = try toolConfig(net)
        #expect(!(try tool(ToolRunOptions(argv: ["x"]), toolConfig: strict, agentConfig: agent).network.allowNonTLS443))
        let loose = try toolConfig(net + "allow_non_tls_443 = true\n")
        #expect(try tool(ToolRunOptions(argv: ["x"]), toolConfig: loose).network.allowNonTLS443)
        #expect(!(try tool(ToolRunOptions(argv: ["x"])).network.allowNonTLS443))
    }

    @Test("a tool run never gets the agent's credentials or environment")
    func noCredentials() throws {
        let agent = try agentConfig("""
            env = { ANTHROPIC_API_KEY = "sk-agent" }
            env_pass = ["TZ"]
            [workspace]
            host = "workspace"
            [credentials]
            host = "credentials"
            [protect]
            paths = ["SOUL.md", "skills/"]

            """)
        #expect(agent.credentials != nil)
        let spec = try tool(ToolRunOptions(argv: ["python3", "tool.py"]), agentConfig: agent)
        #expect(!spec.mounts.contains { $0.role == .credentials })
        #expect(!spec.mounts.contains { Paths.isWithin($0.host, "/srv/clawjail/alice/credentials") })
        #expect(!spec.mounts.contains { $0.target == "/run/credentials" })
        #expect(env(spec)["ANTHROPIC_API_KEY"] == nil)
        #expect(env(spec)["TZ"] == nil)
        // It does get the agent's workspace, with the protect paths read-only on top.
        #expect(spec.mounts == [
            .init(role: .workspace, host: "/srv/clawjail/alice/workspace", target: "/workspace", writable: true, isDirectoryHint: true),
            .init(role: .protect, host: "SOUL.md", target: "/workspace/SOUL.md", writable: false, isDirectoryHint: false),
            .init(role: .protect, host: "skills", target: "/workspace/skills", writable: false, isDirectoryHint: true),
        ])
        #expect(spec.protect == ["SOUL.md", "skills/"])
        #expect(spec.cwd == "/workspace")
        #expect(spec.user == 1000)
        #expect(spec.seccompProfile == "tool")
    }

    @Test("a mount that contains or lies inside the agent's credentials is refused for tool runs")
    func credentialsThroughMounts() throws {
        let agent = try agentConfig("[workspace]\nhost = \"workspace\"\n[credentials]\nhost = \"credentials\"\n")
        for (host, target) in [("/srv/clawjail/alice", "/alice"), ("/srv/clawjail/alice/credentials", "/c"),
                               ("/srv/clawjail/alice/credentials/token", "/token")] {
            var o = ToolRunOptions(argv: ["x"])
            o.readOnly = [(host: host, target: target)]
            #expect(toolProblems(o, agentConfig: agent)
                    == ["\(host) overlaps the agent's credentials directory /srv/clawjail/alice/credentials"])
        }
        var w = ToolRunOptions(argv: ["x"])
        w.workspace = "/srv/clawjail/alice"
        #expect(toolProblems(w, agentConfig: agent)
                == ["/srv/clawjail/alice overlaps the agent's credentials directory /srv/clawjail/alice/credentials"])
        // Next to it is fine.
        var ok = ToolRunOptions(argv: ["x"])
        ok.readOnly = [(host: "/srv/clawjail/alice/credentials2", target: "/c2")]
        #expect(try tool(ok, agentConfig: agent).mounts.contains { $0.target == "/c2" })
    }

    @Test("tool.toml [protect] applies too, on top of the agent's")
    func toolProtect() throws {
        let tc = try toolConfig("[workspace]\nhost = \"/srv/builds/7\"\n[protect]\npaths = [\"Makefile\", \"ci/\"]\n")
        let spec = try tool(ToolRunOptions(argv: ["make"]), toolConfig: tc)
        #expect(spec.protect == ["Makefile", "ci/"])
        #expect(spec.mounts.filter { $0.role == .protect } == [
            .init(role: .protect, host: "Makefile", target: "/workspace/Makefile", writable: false, isDirectoryHint: false),
            .init(role: .protect, host: "ci", target: "/workspace/ci", writable: false, isDirectoryHint: true),
        ])
        let agent = try agentConfig("[workspace]\nhost = \"workspace\"\n[protect]\npaths = [\"SOUL.md\", \"ci/\"]\n")
        let both = try tool(ToolRunOptions(argv: ["make"]), toolConfig: tc, agentConfig: agent)
        #expect(both.protect == ["SOUL.md", "ci/", "Makefile"])
    }

    @Test("protect paths follow the workspace the tool run gets, wherever it is mounted")
    func protectFollowsWorkspace() throws {
        let agent = try agentConfig("[workspace]\nhost = \"workspace\"\npath = \"/home/agent\"\n[protect]\npaths = [\"MEMORY.md\"]\n")
        let spec = try tool(ToolRunOptions(argv: ["x"]), agentConfig: agent)
        #expect(spec.mounts.last == .init(role: .protect, host: "MEMORY.md", target: "/home/agent/MEMORY.md", writable: false,
                                          isDirectoryHint: false))
        var o = ToolRunOptions(argv: ["x"])
        o.workspace = "/srv/clawjail/alice/workspace"
        let cli = try tool(o, agentConfig: agent)
        #expect(cli.mounts.last?.target == "/workspace/MEMORY.md")
    }

    @Test("tool.toml settings: env, env_pass, cwd, user, mounts, workspace")
    func toolToml() throws {
        let tc = try toolConfig("""
            cwd = "/workspace/src"
            env = { CI = "1" }
            env_pass = ["TZ", "LANG"]
            user = "1"
            hostname = "builder"
            [workspace]
            host = "/srv/builds/7"
            [[mount]]
            host = "/opt/sdk"
            path = "/sdk"

            """)
        let spec = try tool(ToolRunOptions(argv: ["make"]), toolConfig: tc)
        #expect(spec.cwd == "/workspace/src")
        #expect(spec.user == 1)
        #expect(spec.hostname == "builder")
        #expect(env(spec) == ["PATH": Defaults.path, "HOME": "/workspace", "CI": "1", "TZ": "Europe/Berlin"])
        #expect(spec.mounts.map(\.target) == ["/workspace", "/sdk"])
        var o = ToolRunOptions(argv: ["make"])
        o.cwd = "/tmp/./x/"
        o.env = [("CI", "0"), ("EXTRA", "y")]
        o.user = 2000
        let cli = try tool(o, toolConfig: tc)
        #expect(cli.cwd == "/tmp/x")
        #expect(cli.user == 2000)
        #expect(env(cli)["CI"] == "0")
        #expect(env(cli)["EXTRA"] == "y")
    }

    @Test("bad command lines are refused with every problem listed")
    func refused() throws {
        var o = ToolRunOptions(argv: [])
        o.readOnly = [(host: "/proc", target: nil), (host: "relative", target: nil), (host: "/opt/a", target: "/sys/x"),
                      (host: "/opt/b", target: "/data"), (host: "/opt/c", target: "/data/")]
        o.readWrite = [(host: "/etc", target: "/e"), (host: "/", target: "/host")]
        o.cwd = "/proc/self/cwd"
        o.env = [("BAD-NAME", "x"), ("OK", "a\0b")]
        o.network = .egress
        let found = toolProblems(o)
        #expect(found == [
            "no command given",
            "--ro /proc: '/proc' is inside /proc, which is never mounted into a jail",
            "--ro host 'relative' must be an absolute path without '..'",
            "--ro target: '/sys/x' is inside /sys, which the jail provides itself and no mount may cover",
            "--rw /etc: '/etc' is inside the system tree /etc; a writable mount is chowned to the agent's uid",
            "--rw /: '/' is the whole host",
            "two mounts want the same path /data",
            "network egress for this tool run has an empty allowlist",
            "--cwd /proc/self/cwd is inside /proc or /sys",
            "--env BAD-NAME=...: 'BAD-NAME' is not a valid variable name",
            "--env OK: value contains a NUL byte",
        ])
    }

    @Test("zero limits from the command line are refused like in tool.toml")
    func zeroLimits() {
        var o = ToolRunOptions(argv: ["x"])
        o.timeoutMs = 0
        o.memory = 0
        o.pids = 0
        o.cpu = 0
        #expect(toolProblems(o) == [
            "--timeout must be greater than zero", "--memory must be greater than zero", "--pids must be greater than zero",
            "--cpu 0.0 must be a number of cores greater than 0 (e.g. 0.5 or 2)",
        ])
        for c in [-1, Double.nan, Double.infinity, 2048] {
            var bad = ToolRunOptions(argv: ["x"])
            bad.cpu = c
            #expect(toolProblems(bad).count == 1)
        }
    }

    @Test("bad workspaces are refused", arguments: [
        ("/", "--workspace: '/' is the whole host"),
        ("/home", "--workspace: '/home' is too broad to give to one agent"),
        ("/etc/x", "--workspace: '/etc/x' is inside the system tree /etc"),
        ("/var/lib/clawjail/x", "overlaps clawjail's state directory"),
        ("relative", "--workspace 'relative' must be an absolute path without '..'"),
        ("/srv/a/../../etc", "must be an absolute path without '..'"),
    ])
    func badWorkspace(workspace: String, message: String) {
        var o = ToolRunOptions(argv: ["x"])
        o.workspace = workspace
        let found = toolProblems(o)
        #expect(found.count == 1)
        #expect(found.first?.contains(message) == true, "\(found)")
    }

    @Test("a --ro or --rw over the workspace target is refused")
    func mountOverWorkspace() {
        var o = ToolRunOptions(argv: ["x"])
        o.workspace = "/srv/builds/1"
        o.readOnly = [(host: "/opt/x", target: "/workspace/")]
        #expect(toolProblems(o) == ["two mounts want the same path /workspace"])
    }

    @Test("--cwd must be absolute; under /proc it is refused (CVE-2024-21626)")
    func cwd() {
        for c in ["/proc/self/fd/3", "/proc", "/sys/fs"] {
            var o = ToolRunOptions(argv: ["x"])
            o.cwd = c
            #expect(toolProblems(o) == ["--cwd \(c) is inside /proc or /sys"])
        }
        var o = ToolRunOptions(argv: ["x"])
        o.cwd = "src"
        #expect(toolProblems(o) == ["--cwd 'src' must be an absolute path without '..'"])
    }
}
