import ClawjailParsers

/// `preset = "openclaw"` / `"nanoclaw"` in agent.toml: the seccomp profile, egress
/// allowlist, ingress and limits those runtimes need, as defaults that the config's
/// own keys replace (a key written in agent.toml wins over the preset's whole value).
public struct Preset: Sendable {
    public var name: String
    public var summary: String
    public var seccompProfile: String
    public var allow: [String]
    /// Ports the runtime serves inside the jail, reached through a host Unix socket at
    /// /run/clawjail/<agent>/<socket name>.
    public var ingress: [(port: UInt16, socket: String)]
    public var memory: UInt64
    public var pids: UInt64
    /// /tmp and /dev/shm (nil: the default).
    public var tmp: UInt64? = nil
    public var env: [String: String]

    public static let all: [String: Preset] = [
        "openclaw": Preset(
            name: "openclaw",
            summary: "OpenClaw (Clawdbot) gateway: Node.js, gateway port 18789 via a Unix socket, model and chat APIs",
            seccompProfile: "openclaw",
            allow: ["api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com", "openrouter.ai",
                    "slack.com", "*.slack.com:443", "discord.com", "gateway.discord.gg", "api.telegram.org",
                    "registry.npmjs.org"],
            ingress: [(18789, "gateway.sock")],
            // Its browser tool starts headless Chromium, whose shared memory lives in
            // /dev/shm or (with --disable-dev-shm-usage, which OpenClaw passes) /tmp.
            memory: 2 << 30, pids: 512, tmp: 512 << 20,
            env: ["NODE_ENV": "production"]),
        "nanoclaw": Preset(
            name: "nanoclaw",
            summary: "NanoClaw: Node.js with the Claude Agent SDK and SQLite, outbound only (model API and WhatsApp)",
            seccompProfile: "nanoclaw",
            allow: ["api.anthropic.com", "statsig.anthropic.com", "web.whatsapp.com", "*.whatsapp.net:443",
                    "registry.npmjs.org"],
            ingress: [],
            memory: 2 << 30, pids: 512,
            env: ["NODE_ENV": "production"]),
    ]
}

extension ConfigDecoder {
    /// Fills what the config left unset from the preset. `explicit` says which keys the
    /// file wrote itself.
    func apply(_ p: Preset, explicit: Set<String>, to c: inout AgentConfig, location: SourceLocation?) {
        if c.seccompProfile == nil { c.seccompProfile = p.seccompProfile }
        if !explicit.contains("network") {
            c.network.mode = .egress
            for entry in p.allow {
                if case .success(let rule) = AllowRule.parse(entry) { c.network.allow.append(rule) }
            }
        }
        if !explicit.contains("ingress"), let name = c.name {
            for i in p.ingress {
                c.ingress.append(AgentConfig.Ingress(port: i.port, socket: "/run/clawjail/\(name)/\(i.socket)",
                                                     socketMode: 0o660, socketGroup: nil, location: location))
            }
        }
        if c.limits.memory == nil { c.limits.memory = p.memory }
        if c.limits.pids == nil { c.limits.pids = p.pids }
        if c.limits.tmp == nil, let tmp = p.tmp { c.limits.tmp = tmp }
        for (k, v) in p.env where c.env[k] == nil { c.env[k] = v }
    }
}
