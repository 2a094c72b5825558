import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// `clawjail guest-jail FILE`, run by a VM agent's guest init (never by a person): the
/// agent's namespace jail inside its guest, from the spec the host sent
/// (`JailSpec.guestJSON`). The same planner and executor as on a host: seccomp, cgroup
/// v2 limits, a read-only root, masked /proc, its own pid, mount, ipc, uts and cgroup
/// namespaces. Only the network namespace is the guest's, and ids map one to one onto
/// the guest's (the file servers map them onto the agent's range on the host).
/// Its stdio is the session's; its exit status the jail's, as `exec` returns it.
public enum GuestJail {
    /// The guest's ids: one to one (the guest is the agent's alone), short of 65534.
    /// Files of the host's root reach the guest as 65534 (unmapped in the VMM's jail);
    /// were it mapped here, the jail's root would own them, overlayfs would open them
    /// O_NOATIME, and the file server on the host, which does not own them, would get
    /// EPERM for every read of /etc through the jail's overlay.
    static let ids = IdMap(base: 0, count: 65534)

    public static func run(specPath: String) throws(ClawjailError) -> Int32 {
        guard (try? FileSystem.readlink("/proc/1/exe")) == "/init" else {
            throw ClawjailError(.usage, "guest-jail runs only inside a VM agent's guest (its PID 1 is clawjail as /init)",
                                hint: "on a host, use `clawjail run agent.toml` or `clawjail exec`")
        }
        let spec: JailSpec
        do {
            let bytes = try FileSystem.readFile(specPath, limit: 1 << 20)
            spec = try JailSpec(guestJSON: try JSONValue.parse(String(decoding: bytes, as: UTF8.self)))
        } catch {
            throw ClawjailError(.config, "cannot read the guest jail's spec \(specPath): \(error)")
        }
        var layout = HostLayout(environment: [:])
        layout.profileSearchPath = [Paths.dirname(spec.seccompProfile)]
        let seccompWork = BackgroundWork.start { () throws(ClawjailError) in try SeccompSetup.choose(spec, layout: layout) }
        let cgroups = try Cgroups.detect()
        let facts = HostProbe.facts(for: spec, layout: layout, cgroup: cgroups.facts)
        let plan = LaunchPlan.make(spec, facts: facts, ids: (ids.base, ids.count), seccompContentHash: nil)
        var request = LaunchRequest(spec: spec, plan: plan, ids: ids, layout: layout, cgroups: cgroups)
        request.pendingSeccomp = seccompWork
        let jail = try Launcher.start(request)
        let seccomp: SeccompChoice
        do { seccomp = try seccompWork.join() } catch {
            try? jail.tearDown()
            throw error
        }
        let name = spec.name
        let notifier = SeccompSetup.startNotifier(jail, seccomp) { v in Log.error(SeccompSetup.logLine(v, jail: name)) }
        let result = Supervisor.supervise(jail, options: SuperviseOptions())
        notifier?.stop()
        do { try jail.tearDown() } catch { Log.warning(error.description) }
        // A plain exit is the host's to report; what only the guest saw is said here.
        switch result.end {
        case .exited, .signaled: break
        default: Log.error("in the guest: \(spec.kind.rawValue) \(spec.agent ?? spec.name) \(result.summary(limits: spec.limits))")
        }
        return result.exitStatus
    }
}
