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
        out += "    process uid \(process.uid) gid \(process.gid), no capabilities, no_new_privs, seccomp \(seccomp.profile)"
            + ", cwd \(process.cwd)\n"
        return out
    }

    static func limitText(_ v: UInt64) -> String { v == .max ? "unlimited" : String(v) }

    func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
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
