import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailStore
import ClawjailSystem

/// The run's effective policy, recorded with it in the store: what could this agent do?
struct Manifest {
    var json: String
    var hash: String

    static func make(spec: JailSpec, plan: LaunchPlan, ids: IdMap, cgroups: any CgroupManager) -> Manifest {
        let seccompHash = plan.seccomp.contentHash
        var mounts: [JSONValue] = []
        for m in spec.mounts {
            mounts.append(.object(["role": .string(m.role.rawValue), "host": .string(m.host), "target": .string(m.target),
                                   "mode": .string(m.writable ? "rw" : "ro")]))
        }
        let l = spec.limits
        var limits: [String: JSONValue] = ["memory": .int(Int64(l.memory)), "pids": .int(Int64(l.pids)),
                                           "tmp": .int(Int64(l.tmp)), "open_files": .int(Int64(l.openFiles)),
                                           "wall_time_ms": .int(Int64(l.wallTimeMs))]
        if let c = l.cpu { limits["cpu"] = .double(c) }
        if let w = l.ioWeight { limits["io_weight"] = .int(Int64(w)) }
        if let f = l.fileSize { limits["file_size"] = .int(Int64(f)) }
        var seccomp: [String: JSONValue] = ["profile": .string(plan.seccomp.profile)]
        if let h = seccompHash { seccomp["hash"] = .string(h) }
        let rootfs: JSONValue
        switch spec.rootfs {
        case .host: rootfs = .string("host")
        case .directory(let p): rootfs = .string(p)
        }
        let value: JSONValue = .object([
            "kind": .string(spec.kind.rawValue),
            "name": .string(spec.name),
            "agent": spec.agent.map { .string($0) } ?? .null,
            "argv": .array(spec.argv.map { .string($0) }),
            "cwd": .string(spec.cwd),
            "hostname": .string(spec.hostname),
            "uid_map": .object(["inside": .int(0), "outside": .int(Int64(ids.base)), "count": .int(Int64(ids.count)),
                                "user_inside": .int(Int64(spec.user)), "user_outside": .int(Int64(ids.outside(spec.user)))]),
            "rootfs": rootfs,
            "isolation": plan.vm.map { vm in
                // The VMM jail's own limits: the guest's RAM plus the VMM's overhead.
                .object(["kind": .string("vm"), "accel": .string(vm.accel.rawValue), "vcpus": .int(Int64(vm.vcpus)),
                         "guest_memory": .int(Int64(vm.guestMemory)), "vmm_memory_limit": .int(Int64(vm.cgroupMemory)),
                         "vmm_pids_limit": .int(Int64(vm.vmmPids)),
                         "kernel_sha256": vm.kernel.sha256.map { .string($0) } ?? .null,
                         "initrd_sha256": vm.initrd.sha256.map { .string($0) } ?? .null])
            } ?? .object(["kind": .string("namespace")]),
            "mounts": .array(mounts),
            "limits": .object(limits),
            "cgroup": .string(cgroups.summary),
            "seccomp": .object(seccomp),
            "network": .object(["mode": .string(spec.network.mode.rawValue),
                                "allow": .array(spec.network.allow.map { .string($0.description) }),
                                "resolvers": .array(spec.network.resolvers.map { .string($0) }),
                                "allow_non_tls_443": .bool(spec.network.allowNonTLS443),
                                "ingress": .array(spec.network.ingress.map { .object(["port": .int(Int64($0.port)), "socket": .string($0.socket)]) })]),
            // Names only: values may be secrets.
            "environment": .array(spec.environment.map { .string($0.name) }),
            "protect": .array(spec.protect.map { .string($0) }),
            // BEGIN protect hashes (operator commands: Operator/ProtectTree.swift)
            // SHA-256 of each protected file at run start: which SOUL.md did this run have?
            "protect_hashes": ProtectHashes.manifestValue(spec: spec),
            // END protect hashes
            // Every step the executor took (LaunchPlan): `clawjail check --json` of the
            // same config on the same host prints the same.
            "plan": plan.json,
        ])
        let text = (try? value.canonicalText()) ?? "{}"
        return Manifest(json: text, hash: SHA256.hexDigest(of: text))
    }
}
