import ClawjailCore
import ClawjailPlan
import ClawjailSeccomp
import ClawjailSystem

/// The jail's seccomp filter: the profile named by the spec, compiled once and cached,
/// and (for log and kill modes) the notifier that reports violations.
struct SeccompChoice {
    let filter: CompiledFilter
    let policy: SeccompViolationPolicy
    let profileName: String

    /// SECCOMP_FILTER_FLAG_NEW_LISTENER: the jail's init hands the listener to us.
    var flags: UInt32 { filter.needsNotify ? 8 : 0 }
}

enum SeccompSetup {
    static func choose(_ spec: JailSpec, layout: HostLayout) throws(ClawjailError) -> SeccompChoice {
        Trace.mark("seccomp: begins")
        defer { Trace.mark("seccomp: chosen") }
        do {
            // The index answers a repeated start from file fingerprints, without parsing
            // any TOML; a changed profile falls back to parsing (and the compiled-filter
            // cache, keyed by content).
            let selection = try SeccompCache(directory: layout.cacheDirectory + "/seccomp")
                .select(nameOrPath: jailProfile(spec), searchPaths: layout.profileSearchPath,
                        violationMode: jailViolationMode(spec))
            Log.debug("seccomp: profile \(selection.profileName) (\(selection.filter.instructionCount) instructions, "
                      + (selection.fromIndex ? "from the index" : "parsed") + ", hash \(selection.contentHash.prefix(12)))")
            return SeccompChoice(filter: selection.filter, policy: selection.policy, profileName: selection.profileName)
        } catch let e as ClawjailError {
            throw e
        } catch let e as ConfigError {
            throw ClawjailError(.config, "invalid seccomp profile:\n" + e.description)
        } catch {
            throw ClawjailError(.seccomp, "cannot prepare the seccomp profile \(jailProfile(spec))", cause: error)
        }
    }

    /// The profile the jail itself runs under: a VM agent's jail runs the VMM (the
    /// agent's own profile applies in the guest).
    static func jailProfile(_ spec: JailSpec) -> String {
        spec.vm != nil ? VMPlan.vmmSeccompProfile : spec.seccompProfile
    }

    static func jailViolationMode(_ spec: JailSpec) -> ViolationMode? {
        if spec.vm != nil {
            return ProcessInfoLite.environment()["CLAWJAIL_VMM_SECCOMP"].flatMap(ViolationMode.init(rawValue:))
        }
        return spec.seccompOnViolation.flatMap(ViolationMode.init(rawValue:))
    }

    /// Takes the listener out of the jail's init (pidfd_getfd) and starts reporting.
    static func startNotifier(_ jail: RunningJail, _ choice: SeccompChoice,
                              report: @escaping @Sendable (SeccompViolation) -> Void) -> SeccompNotifier? {
        guard let remote = jail.listenerFD else { return nil }
        do {
            let fd = try jail.initProcess.getFD(remote)
            let notifier = try SeccompNotifier(listener: fd.rawValue, policy: choice.policy, handler: report)
            try notifier.start()
            return notifier
        } catch {
            Log.warning("seccomp violations of \(jail.spec.name) will not be reported: \(error)")
            return nil
        }
    }

    /// The operator-visible line for a violation.
    static func logLine(_ v: SeccompViolation, jail: String) -> String {
        "\(jail): \(v.description)"
    }
}

extension SeccompSetup {
    /// The content hash of the profile the spec names, as a run's filter records it
    /// (`on_violation` applied), without compiling or caching anything: for `check`.
    static func contentHash(_ spec: JailSpec, layout: HostLayout) -> String? {
        guard var profile = try? ProfileLocator.load(nameOrPath: jailProfile(spec), searchPaths: layout.profileSearchPath) else {
            return nil
        }
        if let mode = jailViolationMode(spec) { profile = profile.withViolationMode(mode) }
        return profile.contentHash
    }
}
