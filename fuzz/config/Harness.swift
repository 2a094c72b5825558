// agent.toml and tool.toml validation (Sources/ClawjailCore/AgentConfig.swift and the
// readers it uses), through AgentConfig.parse(utf8:), the function `clawjail check`,
// `run` and `exec` call on a config file's bytes.
//
// Properties:
// - no crash, no hang, for any bytes, as an agent or a tool config;
// - deterministic: the same problems (or the same warnings) twice;
// - every problem and warning names the file, and its line:column, when it has one,
//   lies inside the input;
// - an accepted agent config turns into a JailSpec without crashing.

import ClawjailCore

private let file = "/srv/clawjail/fuzz/agent.toml"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    for kind in [AgentConfig.Kind.agent, .tool] {
        checkConfig(bytes, kind: kind)
    }
    return 0
}

func parse(_ bytes: [UInt8], kind: AgentConfig.Kind) -> Result<AgentConfig, ConfigError> {
    do {
        return .success(try AgentConfig.parse(utf8: bytes, file: file, kind: kind, stateDirectory: "/var/lib/clawjail"))
    } catch {
        return .failure(error)
    }
}

func checkConfig(_ bytes: [UInt8], kind: AgentConfig.Kind) {
    let first = parse(bytes, kind: kind)
    let again = parse(bytes, kind: kind)
    switch (first, again) {
    case (.success(let a), .success(let b)):
        require(a.warnings == b.warnings, "two parses of the same bytes give different warnings")
        for w in a.warnings { requireIssue(w, bytes) }
        if kind == .agent {
            _ = JailSpec.forAgent(a, hostEnvironment: ["PATH": "/usr/bin:/bin", "TZ": "UTC"])
        }
    case (.failure(let a), .failure(let b)):
        require(a.issues == b.issues, "two parses of the same bytes give different problems")
        require(!a.issues.isEmpty, "refused without a problem")
        for issue in a.issues { requireIssue(issue, bytes) }
    default:
        propertyFailed("accepted once and refused once")
    }
}

func requireIssue(_ issue: ConfigIssue, _ bytes: [UInt8]) {
    require(issue.file == file, "a problem names another file: \(issue)")
    require(!issue.message.isEmpty, "a problem without a message")
    guard let location = issue.location else { return }
    var lines: [ArraySlice<UInt8>] = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
    if lines.isEmpty { lines = [[]] }
    require(location.line >= 1 && location.line <= lines.count, "line outside the input: \(issue)")
    var line = lines[location.line - 1]
    if location.line == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
    let characters = line.filter { $0 & 0xC0 != 0x80 }.count
    require(location.column >= 1 && location.column <= characters + 1, "column outside the line: \(issue)")
}
