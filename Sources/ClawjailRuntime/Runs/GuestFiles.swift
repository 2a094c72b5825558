import ClawjailCore
import ClawjailPlan
import ClawjailSeccomp
import ClawjailSystem

/// The files a VM agent's guest is sent before it starts the agent's jail: the guest
/// jail's spec and the agent's seccomp profile with every file it is built from (the
/// profiles it extends, groups.toml), so that the guest compiles the same profile the
/// host resolved. Each is one `file` frame; all are made, and checked, before the VM
/// exists.
enum GuestFiles {
    /// The agent's: its profile under `vm.guestProfileFile`, its spec as `jail.json`.
    static func make(_ vm: VMPlan, spec: JailSpec, layout: HostLayout) throws(ClawjailError) -> [ControlFrame] {
        try make(guestSpec: vm.guestJail, profile: spec.seccompProfile, profileFile: vm.guestProfileFile, directory: nil,
                 name: spec.name, layout: layout)
    }

    /// `guestSpec`'s files: the profile `profile` (as the host resolves it) and its
    /// chain, then the spec, each named `directory/name` when a directory is given (a
    /// tool run's files stay apart from the agent's).
    static func make(guestSpec: JailSpec, profile: String, profileFile: String, directory: String?, name: String,
                     layout: HostLayout) throws(ClawjailError) -> [ControlFrame] {
        func named(_ n: String) -> String { directory.map { $0 + "/" + n } ?? n }
        let read: [(path: String, content: [UInt8])]
        do {
            read = try ProfileLocator.files(nameOrPath: profile, searchPaths: layout.profileSearchPath)
        } catch let e as ClawjailError {
            throw e
        } catch {
            throw ClawjailError(.config, "cannot read the seccomp profile \(profile) for the guest: \(error)")
        }
        var frames: [ControlFrame] = []
        var names: [String: String] = [:]
        for (i, f) in read.enumerated() {
            // The profile itself under the name the guest's spec gives it; the rest by
            // their own names, which is where `extends` and groups.toml look first.
            let file = i == 0 ? profileFile : Paths.basename(f.path)
            if let other = names[file] {
                throw ClawjailError(.config, "the seccomp profile \(profile) is built from two files named \(file) (\(other) and \(f.path))",
                                    hint: "a VM agent's guest gets the profile's files in one directory: rename one of them")
            }
            names[file] = f.path
            frames.append(.file(name: named(file), mode: 0o600, content: f.content))
        }
        let json: String
        do { json = try guestSpec.guestJSON.canonicalText() } catch {
            throw ClawjailError(.internalError, "cannot encode the guest jail's spec: \(error)")
        }
        frames.append(.file(name: named(VMPlan.guestJailFile), mode: 0o600, content: Array(json.utf8)))
        for f in frames {
            guard case .file(let file, _, let content) = f, (try? f.encoded()) == nil else { continue }
            throw ClawjailError(.config, "\(name): the guest's \(file) is \(content.count) bytes, more than one control frame carries (\(ControlFrame.maxBody / 1024) KiB)",
                                hint: file.hasSuffix(VMPlan.guestJailFile) ? "the environment and command are sent in it: keep them smaller" : "use a smaller seccomp profile")
        }
        return frames
    }
}
