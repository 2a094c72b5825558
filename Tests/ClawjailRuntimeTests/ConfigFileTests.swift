import ClawjailCore
import Foundation
import Testing
@testable import ClawjailRuntime
@testable import ClawjailSeccomp

// Config files read from disk, through the entry points `clawjail check`, `run` and
// `exec` use: the bytes of the file, not a String made from them.

@Suite("config files on disk")
struct ConfigFileTests {
    private static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clawjail-utf8-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        return dir
    }

    private static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// A valid agent.toml whose line 3 is a comment ending in `bad`.
    private static func agentFile(_ bad: [UInt8]) -> [UInt8] {
        Array("name = \"cjt-utf8\"\ncommand = [\"/bin/true\"]\n# caf".utf8) + bad + Array("\nhostname = \"h\"\n".utf8)
    }

    @Test("an agent.toml that is not UTF-8 is refused with file:line:col, as clawjail check reads it",
          arguments: [
              ([0xFF] as [UInt8], "byte 0xFF never appears in UTF-8"),
              ([0xC3], "the sequence 0xC3 is cut short"),
              ([0xC0, 0xAF], "byte 0xC0 only starts overlong encodings"),
              ([0xED, 0xA0, 0x80], "bytes 0xED 0xA0 encode a surrogate"),
          ])
    func agentConfig(bad: [UInt8], detail: String) throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/agent.toml"
        try Self.write(Self.agentFile(bad), to: path)
        let layout = HostLayout(stateDirectory: dir + "/state", environment: [:])
        do {
            _ = try CheckReport.loadAgentConfig(path, layout: layout)
            Issue.record("accepted an agent.toml that is not UTF-8")
        } catch {
            #expect(error.code == .config)
            #expect(error.description.contains("\(path):3:6: invalid UTF-8: \(detail)"), "\(error)")
            #expect(error.description.contains("save the file as UTF-8"), "\(error)")
        }
        // The same file in UTF-8 is fine.
        try Self.write(Self.agentFile(Array("é".utf8)), to: path)
        #expect(try CheckReport.loadAgentConfig(path, layout: layout).hostname == "h")
    }

    @Test("a tool.toml that is not UTF-8 is refused the same way")
    func toolConfig() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/tool.toml"
        try Self.write(Array("[limits]\npids = 10\n# ".utf8) + [0xFF], to: path)
        let layout = HostLayout(stateDirectory: dir + "/state", environment: [:])
        do {
            _ = try ToolRun.loadToolConfig(path, layout: layout)
            Issue.record("accepted a tool.toml that is not UTF-8")
        } catch {
            #expect(error.description.contains("\(path):3:3: invalid UTF-8: byte 0xFF"), "\(error)")
        }
        try Self.write(Array("[limits]\npids = 10\n# ü".utf8), to: path)
        #expect(try ToolRun.loadToolConfig(path, layout: layout).limits.pids == 10)
    }

    @Test("a seccomp profile, or the groups.toml beside it, that is not UTF-8 is refused at the byte")
    func seccompProfile() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let profile = dir + "/mine.toml"
        try Self.write(Array("allow = [\"read\"] # ".utf8) + [0xE2, 0x82] + Array("\n".utf8), to: profile)
        do {
            _ = try ProfileLocator.load(nameOrPath: profile, searchPaths: [dir])
            Issue.record("accepted a profile that is not UTF-8")
        } catch {
            #expect("\(error)".contains("\(profile):1:20: invalid UTF-8: the sequence 0xE2 0x82 is cut short"), "\(error)")
        }

        try Self.write(Array("allow = [\"@mine\"]\n".utf8), to: profile)
        let groups = dir + "/groups.toml"
        try Self.write(Array("[mine]\nsyscalls = [\"read\"]\ndescription = \"".utf8) + [0xFF] + Array("\"\n".utf8), to: groups)
        do {
            _ = try ProfileLocator.load(nameOrPath: profile, searchPaths: [dir])
            Issue.record("accepted a groups.toml that is not UTF-8")
        } catch {
            #expect("\(error)".contains("\(groups):3:16: invalid UTF-8: byte 0xFF"), "\(error)")
        }
    }
}
