#if canImport(Glibc)
import Glibc
#endif
import CClawjailChild
import ClawjailCgroup
import ClawjailCore
import ClawjailSeccomp
import ClawjailSystem

/// Uid ranges: slot N owns outside ids base + N * 65536 ..< base + (N + 1) * 65536.
/// Slot 0 belongs to anonymous tool runs (`clawjail exec` without --agent); agents get
/// their own slot from the store, for good.
public enum IdRanges {
    public static let base: UInt32 = 0x7000_0000
    public static let size: UInt32 = 65536
    public static let maxSlot = 4093

    public static func slot(_ n: Int) -> IdMap { IdMap(base: base + UInt32(n) * size, count: size) }
    public static let anonymousTools = slot(0)
}

public struct ToolRunRequest {
    public var options: ToolRunOptions
    public var toolConfigPath: String?
    public var agentName: String?
    public var quiet = false
    public var graceMs: UInt64 = 10_000
    public var layout: HostLayout
    public init(options: ToolRunOptions, layout: HostLayout) {
        self.options = options
        self.layout = layout
    }
}

public enum ToolRun {
    /// A short random id for a tool run: names its cgroup (exec-<id>) and its row.
    public static func newRunID() -> String {
        var bytes = [UInt8](repeating: 0, count: 6)
        _ = bytes.withUnsafeMutableBytes { cj_sys_getrandom($0.baseAddress, $0.count) }
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
    }

    /// Loads and validates a tool.toml.
    public static func loadToolConfig(_ given: String, layout: HostLayout) throws(ClawjailError) -> AgentConfig {
        let path = Paths.normalizeAbsolute(AgentRun.absolutePath(given)) ?? given
        let text: String
        do { text = try FileSystem.readText(path, limit: 1 << 20) } catch {
            throw ClawjailError(.notFound, "cannot read \(path)", cause: error)
        }
        do {
            let c = try AgentConfig.parse(text, file: path, kind: .tool, stateDirectory: layout.stateDirectory)
            for w in c.warnings { Log.warning(w.description) }
            return c
        } catch {
            throw ClawjailError(.config, error.description)
        }
    }
}

extension ToolRun {
    /// `clawjail exec`: one command in a fresh jail. Returns the exit status.
    public static func run(_ r: ToolRunRequest) throws(ClawjailError) -> Int32 {
        let toolConfig = try r.toolConfigPath.map { (p) throws(ClawjailError) in try loadToolConfig(p, layout: r.layout) }
        let runID = newRunID()
        let spec: JailSpec
        do {
            spec = try JailSpec.forTool(r.options, toolConfig: toolConfig, agentConfig: nil, runID: runID,
                                        hostEnvironment: ProcessInfoLite.environment(),
                                        stateDirectory: r.layout.stateDirectory)
        } catch {
            throw ClawjailError(.usage, error.description)
        }
        let cgroups = try Cgroups.detect()
        let seccomp = try SeccompSetup.choose(spec, layout: r.layout)
        var request = LaunchRequest(spec: spec, ids: IdRanges.anonymousTools, layout: r.layout, cgroups: cgroups)
        request.seccompBPF = seccomp.filter.bpf
        request.seccompFlags = seccomp.flags
        if NetworkHook.isNeeded(for: spec) {
            // Egress decisions are audit events: a tool run with a network opens the store.
            let store = try StoreAccess.open(r.layout)
            request.hooks.append(NetworkAudit.hook(spec: spec, store: store, runID: nil))
            request.resolvConf = NetworkHook.resolvConf(for: spec)
        }
        let jail = try Launcher.start(request)
        let name = spec.name
        let notifier = SeccompSetup.startNotifier(jail, seccomp) { v in Log.error(SeccompSetup.logLine(v, jail: name)) }
        var options = SuperviseOptions()
        options.graceMs = r.graceMs
        let result = Supervisor.supervise(jail, options: options)
        notifier?.stop()
        do { try jail.tearDown() } catch { Log.warning(error.description) }
        if !r.quiet {
            Log.info("\(spec.name) \(result.summary(limits: spec.limits)) (\(result.durationMs) ms)")
        }
        return result.exitStatus
    }
}
