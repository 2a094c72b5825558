import ClawjailCore

extension LaunchPlan {
    /// The plan's steps for people, in the order they run: what `clawjail check` prints
    /// below its summary (`check --json` has the same plan, complete).
    public var stepsText: String {
        var out = "  plan         namespaces " + namespaces.map(\.rawValue).joined(separator: ", ")
        if let ids { out += "; uids 0-\(ids.count - 1) -> \(ids.base)-\(ids.base + ids.count - 1), setgroups deny" }
        out += "\n"
        out += "    root: tmpfs (\(root.tmpfsOptions)) at \(root.staging), read-only after the steps\n"
        for (i, step) in mounts.enumerated() {
            out += "    " + pad(String(i + 1), 3) + " " + pad(step.kindName, 14) + " /" + step.target
            let detail = step.detail
            if !detail.isEmpty { out += "  " + detail }
            if step.optional { out += "  (if present)" }
            out += "\n"
        }
        for r in rlimits {
            out += "    rlimit " + r.resource.rawValue + " " + Self.limitText(r.soft) + "/" + Self.limitText(r.hard) + "\n"
        }
        for w in cgroup.writes {
            out += "    cgroup " + (w.controller.map { $0 + ":" } ?? "") + w.file + " = " + w.value
                + (w.optional ? "  (if the kernel has it)" : "") + "\n"
        }
        let caps = process.keptCapabilities.isEmpty ? "no capabilities"
            : "capabilities " + process.keptCapabilities.map(\.rawValue).joined(separator: ",") + " (ambient, in the user namespace)"
        out += "    process uid \(process.uid) gid \(process.gid), \(caps), no_new_privs, seccomp \(seccomp.profile)"
            + ", cwd \(process.cwd)\n"
        if let vm { out += vm.text }
        return out
    }

    static func limitText(_ v: UInt64) -> String { v == .max ? "unlimited" : String(v) }

    func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }
}

extension VMPlan {
    /// The VM layer for people: what `clawjail check` prints after the jail's steps.
    public var text: String {
        var out = "  vm           \(vmm.rawValue), accel \(accel.rawValue)"
            + (accel == .tcg ? " (software emulation: NOT a security boundary, allowed by allow_tcg)" : "") + "\n"
        out += "    guest memory \(Units.formatSize(guestMemory)), \(vcpus) vcpu\(vcpus == 1 ? "" : "s"); cgroup memory.max "
            + "\(Units.formatSize(cgroupMemory)) (guest + \(Units.formatSize(vmmOverhead)) VMM overhead), pids.max \(vmmPids), "
            + "open files \(vmmOpenFiles)\n"
        func boot(_ name: String, _ b: BootFile) -> String {
            var line = "    \(name) \(b.path)"
            line += b.sha256.map { " sha256 \($0)" } ?? " (not read)"
            if let pin = b.pinnedSHA256 { line += b.sha256 == pin ? " (matches the pin)" : " (pinned \(pin))" }
            return line + "\n"
        }
        out += boot("kernel", kernel) + boot("initrd", initrd)
        out += "    append \"\(kernelCommandLine)\"\n"
        out += "    boot files   \(kernel.jailPath), \(initrd.jailPath) in the jail (read-only binds)\n"
        out += "    vmm command (jailed, seccomp \(seccompProfile), uid \(vmmUser), no capabilities):\n      "
            + command.map(Self.quote).joined(separator: " ") + "\n"
        out += "    shares (virtiofsd from the jail's own mount view, read-only enforced on the host):\n"
        for s in shares {
            out += "      \(s.tag.padding(12)) \(s.guestPath) <- jail \(s.source)  \(s.readOnly ? "ro" : "rw") (\(s.role.rawValue))\n"
            for p in s.readOnlyPaths { out += "        ro \(p) (protected, a read-only bind in the jail)\n" }
            if let name = s.fileName, let host = s.fileHost {
                out += "        holds only \(host) as \(name) (a single file: the agent's jail in the guest binds it at its target)\n"
            }
        }
        for l in guestLinks { out += "      symlink      \(l.path) -> \(l.target)\n" }
        if let first = fileServers.first {
            out += "    file server (one per share): " + first.argv.map(Self.quote).joined(separator: " ") + "\n"
        }
        out += "    launch       /bin/sh -c (in the jail):\n"
        for line in launchScript.split(separator: "\n") { out += "      | \(line)\n" }
        out += "    control      virtio-serial port \(control.portName) <- the VMM's fd \(control.fd) (the jail's stdin: a socketpair with the supervisor)\n"
        out += "    guest runs   " + guest.argv.map(Self.quote).joined(separator: " ") + " (uid \(guest.uid), cwd \(guest.cwd))\n"
        let j = guestJail
        out += "    guest jail   built by the guest's clawjail (guest-jail): user, mount, pid, ipc, uts and cgroup namespaces "
            + "(ids 0-65533 one to one), the guest's network; seccomp profile \(guestProfileFile) (its files sent from "
            + "the host); memory.max \(Units.formatSize(j.limits.memory)), pids.max \(j.limits.pids); read-only root\n"
        if let c = j.mounts.first(where: { $0.role == .credentials }) {
            out += "                 credentials at \(c.target) in the agent's jail only\n"
        }
        if let tap = network.tap, let guest = network.guestAddress, let prefix = network.prefixLength {
            let gw = network.gateway ?? "no default route (ingress only)"
            out += "    network      tap \(tap) (the VMM's fd \(network.tapFD ?? -1), opened by the supervisor) tied to the veth by tc redirects; "
                + "guest \(guest)/\(prefix) via \(gw)\n"
        } else {
            out += "    network      none: the guest has no NIC\n"
        }
        return out
    }

    static func quote(_ s: String) -> String { PlanQuote.shell(s) }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

extension MountStep {
    /// Source, fstype, data and flags on one line.
    var detail: String {
        func f(_ o: MountOptions) -> String { o.names.isEmpty ? "" : " [" + o.names.joined(separator: ",") + "]" }
        switch action {
        case .mkdir(let mode): return "mode " + Self.octal(mode)
        case .symlink(let t): return "-> " + t
        case .writeFile(let content, let mode): return "\(content.count) bytes, mode " + Self.octal(mode)
        case .bindHost(let source, let o): return "<- " + source + f(o)
        case .attach(let source, let o):
            switch source {
            case .hostPath(let p, let role, let create, let give, _):
                return "<- " + p + f(o) + " (" + role.rawValue + (create ? ", created if missing" : "")
                    + (give.map { ", tree given to the jail's uid" + ($0 == .onlyFromRoot ? " where root's" : "") } ?? "") + ")"
            case .credentials(let p): return "<- " + p + f(o) + " (credentials: 0700 dir, 0600 files, the jail's uid)"
            case .protected(let ws, let rel, _, let pin): return "<- " + ws + "/" + rel + f(o) + (pin ? " (pinned)" : " (protected)")
            case .rootfsEntry(let root, let name): return "<- " + root + "/" + name + f(o)
            }
        case .tmpfs(let data, let o): return "tmpfs " + data + f(o)
        case .proc: return "proc"
        case .devpts(let data): return "devpts " + data
        case .mask: return ""
        case .readOnly(let o): return f(o).trimmingLeadingSpace
        case .writeExisting(let content): return "\"" + content + "\""
        case .whiteout: return ""
        case .overlay(let lower, let o): return "overlay lowerdir=" + lower.joined(separator: ":") + f(o)
        }
    }
}

extension String {
    fileprivate var trimmingLeadingSpace: String { hasPrefix(" ") ? String(dropFirst()) : self }
}

/// Words for /bin/sh: a plain word as it is, anything else single-quoted.
public enum PlanQuote {
    public static func shell(_ s: String) -> String {
        if !s.isEmpty && s.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || "/._-=:,+@".utf8.contains($0) }) {
            return s
        }
        return "'" + s.replacingAll("'", with: "'\\''") + "'"
    }
}
