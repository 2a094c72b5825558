import ClawjailCore

extension LaunchPlan {
    /// The plan as JSON: what `check --json` and `exec --print-plan` print and what a
    /// run records in its manifest. Environment values whose names look secret are
    /// given as their SHA-256, so a plan can be shown and stored without them.
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "kind": .string(kind.rawValue),
            "name": .string(name),
            "agent": agent.map { .string($0) } ?? .null,
            "namespaces": .array(namespaces.map { .string($0.rawValue) }),
            "root": ["staging": .string(root.staging), "empty_directory": .string(root.emptyDirectory), "tmpfs": .string(root.tmpfsOptions), "read_only": .bool(root.readOnly)],
            "mounts": .array(mounts.map(\.json)),
            "rlimits": .array(rlimits.map { r in
                ["resource": .string(r.resource.rawValue), "soft": Self.limit(r.soft), "hard": Self.limit(r.hard)]
            }),
            "cgroup": [
                "mode": .string(cgroup.mode.rawValue),
                "location": .string(cgroup.location),
                "hierarchies": .array(cgroup.hierarchies.map { .string($0.joined(separator: ",")) }),
                "writes": .array(cgroup.writes.map { w in
                    ["controller": w.controller.map { .string($0) } ?? .null, "file": .string(w.file),
                     "value": .string(w.value), "optional": .bool(w.optional)]
                }),
            ],
            "network": network.json,
            "seccomp": ["profile": .string(seccomp.profile),
                        "on_violation": seccomp.onViolation.map { .string($0) } ?? .null,
                        "content_hash": seccomp.contentHash.map { .string($0) } ?? .null],
            "process": [
                "argv": .array(process.argv.map { .string($0) }),
                "environment": .array(process.environment.map { v in
                    v.looksSecret ? ["name": .string(v.name), "sha256": .string(SHA256.hexDigest(of: v.value))]
                                  : ["name": .string(v.name), "value": .string(v.value)]
                }),
                "path": .string(process.pathSearch),
                "cwd": .string(process.cwd),
                "hostname": .string(process.hostname),
                "uid": .int(Int64(process.uid)),
                "gid": .int(Int64(process.gid)),
                "capabilities": process.keptCapabilities.isEmpty ? .string("none (bounding set emptied up to \(process.capLastCap))")
                    : .array(process.keptCapabilities.map { .string($0.rawValue) }),
                "no_new_privileges": .bool(process.noNewPrivileges),
                "loopback_up": .bool(process.loopbackUp),
                "forwarded_signals": .array(process.forwardedSignals.map { .string($0) }),
            ],
        ]
        if let ids {
            o["ids"] = ["inside": 0, "outside": .int(Int64(ids.base)), "count": .int(Int64(ids.count)),
                        "user_inside": .int(Int64(ids.userInside)), "user_outside": .int(Int64(ids.userOutside)),
                        "setgroups": "deny"]
        } else {
            o["ids"] = .null
        }
        // Only VM plans have the key, so a namespace plan reads as it always did.
        if let vm { o["vm"] = vm.json }
        return .object(o)
    }

    /// Canonical JSON text (JSONValue's canonical form: sorted keys, no whitespace).
    public var jsonText: String { (try? json.canonicalText()) ?? "{}" }

    static func limit(_ v: UInt64) -> JSONValue { v == .max ? .string("unlimited") : .int(Int64(clamping: v)) }
}

extension MountStep {
    public var json: JSONValue {
        var o: [String: JSONValue] = ["step": .string(kindName), "target": .string("/" + target), "label": .string(label)]
        if optional { o["optional"] = .bool(true) }
        func flags(_ f: MountOptions) { o["flags"] = .array(f.names.map { .string($0) }) }
        switch action {
        case .mkdir(let mode): o["mode"] = .string(Self.octal(mode))
        case .symlink(let t): o["link"] = .string(t)
        case .writeFile(let content, let mode):
            o["mode"] = .string(Self.octal(mode))
            o["bytes"] = .int(Int64(content.count))
            if let text = String(validating: content, as: UTF8.self), content.count <= 4096 {
                o["content"] = .string(text)
            } else {
                o["sha256"] = .string(SHA256.lowercaseHex(SHA256.hash(data: content)))
            }
        case .bindHost(let source, let options):
            o["source"] = .string(source)
            flags(options)
        case .attach(let source, let options):
            o["source"] = source.json
            flags(options)
        case .tmpfs(let data, let options):
            o["fstype"] = "tmpfs"
            o["data"] = .string(data)
            flags(options)
        case .proc: o["fstype"] = "proc"
        case .devpts(let data):
            o["fstype"] = "devpts"
            o["data"] = .string(data)
        case .mask: break
        case .readOnly(let options): flags(options)
        case .writeExisting(let content): o["content"] = .string(content)
        case .whiteout: break
        case .overlay(let lower, let options):
            o["fstype"] = "overlay"
            o["data"] = .string("lowerdir=" + lower.joined(separator: ":"))
            flags(options)
        }
        return .object(o)
    }

    /// The step's verb, as the plan prints it.
    public var kindName: String {
        switch action {
        case .mkdir: return "mkdir"
        case .symlink: return "symlink"
        case .writeFile: return "write"
        case .bindHost: return "bind"
        case .attach: return "attach"
        case .tmpfs, .proc, .devpts, .overlay: return "mount"
        case .mask: return "mask"
        case .readOnly: return "remount-ro"
        case .writeExisting: return "write-existing"
        case .whiteout: return "whiteout"
        }
    }

    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

extension AttachSource {
    public var json: JSONValue {
        switch self {
        case .hostPath(let path, let role, let create, let give, _):
            var o: [String: JSONValue] = ["path": .string(path), "role": .string(role.rawValue)]
            if create { o["create"] = .bool(true) }
            if let give { o["give_tree"] = .string(give.rawValue) }
            return .object(o)
        case .credentials(let path):
            return ["path": .string(path), "role": "credentials", "fix": "0700 directory, 0600 files, the jail's outside uid"]
        case .protected(let ws, let rel, let isDirectory, let pin):
            return ["path": .string(ws + "/" + rel), "role": .string(pin ? "pin" : "protect"),
                    "directory": .bool(isDirectory)]
        case .rootfsEntry(let root, let name):
            return ["path": .string(root + "/" + name), "role": "rootfs"]
        }
    }
}

extension NetworkPlan {
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "mode": .string(mode.rawValue),
            "allow": .array(allow.map { .string($0) }),
            "resolvers": .array(resolvers.map { .string($0) }),
            "allow_non_tls_443": .bool(allowNonTLS443),
            "ingress": .array(ingress.map { ["port": .int(Int64($0.port)), "socket": .string($0.socket)] }),
            "resolv_conf": .string(resolvConf),
        ]
        if let jailAddress, let peerAddress, let prefixLength, let proxyPort {
            o["veth"] = ["jail": .string("\(jailAddress)/\(prefixLength)"), "peer": .string("\(peerAddress)/\(prefixLength)"),
                         "proxy": .string("\(peerAddress):\(proxyPort)")]
        }
        return .object(o)
    }
}

extension VMPlan {
    public var json: JSONValue {
        func str(_ v: String?) -> JSONValue { v.map { .string($0) } ?? .null }
        func boot(_ b: BootFile) -> JSONValue {
            ["path": .string(b.path), "jail_path": .string(b.jailPath), "sha256": str(b.sha256), "pinned_sha256": str(b.pinnedSHA256),
             "size": b.size.map { .int(Int64(clamping: $0)) } ?? .null]
        }
        var net: [String: JSONValue] = ["mode": .string(network.mode.rawValue)]
        if let tap = network.tap, let fd = network.tapFD, let mac = network.mac, let guest = network.guestAddress,
           let prefix = network.prefixLength {
            let gateway = network.gateway ?? "none"
            net["tap"] = .string(tap)
            net["tap_fd"] = .int(Int64(fd))
            net["mac"] = .string(mac)
            net["guest_address"] = .string("\(guest)/\(prefix)")
            net["gateway"] = .string(gateway)
        } else {
            net["nic"] = "none"
        }
        return [
            "vmm": .string(vmm.rawValue),
            "accel": .string(accel.rawValue),
            "security_boundary": .bool(accel == .kvm),
            "vcpus": .int(Int64(vcpus)),
            "guest_memory": .int(Int64(clamping: guestMemory)),
            "vmm_overhead": .int(Int64(clamping: vmmOverhead)),
            "cgroup_memory": .int(Int64(clamping: cgroupMemory)),
            "vmm_pids": .int(Int64(clamping: vmmPids)),
            "vmm_open_files": .int(Int64(clamping: vmmOpenFiles)),
            "kernel": boot(kernel),
            "initrd": boot(initrd),
            "kernel_command_line": .string(kernelCommandLine),
            "command": .array(command.map { .string($0) }),
            "shares": .array(shares.map { s in
                var o: [String: JSONValue] = [
                    "tag": .string(s.tag), "role": .string(s.role.rawValue), "source": .string(s.source),
                    "guest_path": .string(s.guestPath), "read_only": .bool(s.readOnly), "socket": .string(s.socket),
                    "read_only_paths": .array(s.readOnlyPaths.map { .string($0) })]
                if let name = s.fileName, let host = s.fileHost { o["file"] = ["name": .string(name), "host": .string(host)] }
                return .object(o)
            }),
            "file_servers": .array(fileServers.map { ["tag": .string($0.tag), "argv": .array($0.argv.map { .string($0) })] }),
            "control": ["fd": .int(Int64(control.fd)), "port": .string(control.portName)],
            "network": .object(net),
            "vmm_user": .int(Int64(vmmUser)),
            "guest_links": .array(guestLinks.map { ["path": .string($0.path), "target": .string($0.target)] }),
            "guest": ["argv": .array(guest.argv.map { .string($0) }), "cwd": .string(guest.cwd),
                      "uid": .int(Int64(guest.uid)), "gid": .int(Int64(guest.gid)),
                      "environment": .array(guest.environment.map { v in
                          v.looksSecret ? ["name": .string(v.name), "sha256": .string(SHA256.hexDigest(of: v.value))]
                                        : ["name": .string(v.name), "value": .string(v.value)]
                      })],
            "guest_jail": ["command": .array(guestJailCommand.argv.map { .string($0) }),
                           "seccomp_profile_file": .string(guestProfileFile),
                           "memory_max": .int(Int64(clamping: guestJail.limits.memory)),
                           "pids_max": .int(Int64(clamping: guestJail.limits.pids)),
                           "network": .string((guestJail.guest?.network ?? .none).rawValue),
                           "mounts": .array(guestJail.mounts.map { m in
                               ["role": .string(m.role.rawValue), "source": .string(m.host), "target": .string(m.target)]
                           })],
            "launch_script": .string(launchScript),
            "seccomp_profile": .string(seccompProfile),
        ]
    }
}
