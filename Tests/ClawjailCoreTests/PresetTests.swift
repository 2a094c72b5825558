@testable import ClawjailCore
import Testing

@Suite("presets")
struct PresetTests {
    func parse(_ text: String) throws -> AgentConfig {
        try AgentConfig.parse(text, file: "/etc/clawjail/a.toml", kind: .agent)
    }

    @Test("openclaw: its profile, egress allowlist, gateway ingress and limits, as defaults")
    func openclaw() throws {
        let c = try parse("name = \"oc\"\ncommand = [\"/usr/bin/node\", \"gw.js\"]\npreset = \"openclaw\"\n")
        #expect(c.seccompProfile == "openclaw")
        #expect(c.network.mode == .egress)
        #expect(c.network.allow.map(\.description).contains("api.anthropic.com"))
        #expect(c.ingress.count == 1 && c.ingress[0].port == 18789 && c.ingress[0].socket == "/run/clawjail/oc/gateway.sock")
        #expect(c.ingress[0].socketMode == 0o660)
        #expect(c.limits.memory == 2 << 30)
        #expect(c.limits.pids == 512)
        // The browser tool's headless Chromium keeps its shared memory in /dev/shm or /tmp.
        #expect(c.limits.tmp == 512 << 20)
        #expect(c.env["NODE_ENV"] == "production")
    }

    @Test("keys written in the file win over the preset")
    func overrides() throws {
        let c = try parse("""
            name = "oc"
            command = ["/usr/bin/node"]
            preset = "openclaw"
            [network]
            mode = "none"
            [seccomp]
            profile = "tool"
            [limits]
            memory = "512M"
            tmp = "32M"
            """)
        #expect(c.network.mode == .none && c.network.allow.isEmpty)
        #expect(c.seccompProfile == "tool")
        #expect(c.limits.memory == 512 << 20)
        #expect(c.limits.tmp == 32 << 20)
    }

    @Test("nanoclaw has no ingress; an unknown preset is an error with its position")
    func nanoclawAndUnknown() throws {
        let n = try parse("name = \"nc\"\ncommand = [\"/usr/bin/node\"]\npreset = \"nanoclaw\"\n")
        #expect(n.ingress.isEmpty && n.seccompProfile == "nanoclaw" && n.network.mode == .egress)
        #expect(throws: ConfigError.self) { try parse("name = \"x\"\ncommand = [\"/bin/true\"]\npreset = \"openclw\"\n") }
        do {
            _ = try parse("name = \"x\"\ncommand = [\"/bin/true\"]\npreset = \"openclw\"\n")
        } catch let error as ConfigError {
            #expect(error.description.contains("a.toml:3:10: preset 'openclw' is not known"), "\(error)")
        }
    }

    @Test("check warns when an ingress target looks loopback-only")
    func loopbackWarning() throws {
        let c = try parse("""
            name = "gw"
            command = ["/usr/bin/node", "gw.js", "--bind", "127.0.0.1"]
            [[ingress]]
            port = 18789
            socket = "/run/clawjail/gw/gateway.sock"
            """)
        #expect(c.warnings.contains { $0.message.contains("not from loopback") })
    }
}
