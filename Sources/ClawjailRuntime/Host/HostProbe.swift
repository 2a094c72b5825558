import ClawjailCgroup
import ClawjailCore
import ClawjailPlan
import ClawjailSystem

/// The executor's look at the host before planning: what exists, once, so that the
/// plan (LaunchPlan.make) needs no syscalls of its own.
public enum HostProbe {
    static func facts(for spec: JailSpec, layout: HostLayout, cgroup: CgroupFacts) -> HostFacts {
        var f = HostFacts(cgroup: cgroup, stagingRoot: layout.stagingRoot, emptyDirectory: layout.emptyDirectory)
        f.capLastCap = capLastCap
        switch spec.rootfs {
        case .host:
            for name in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
                if let e = entry("/" + name) { f.baseEntries.append(.init(name, e)) }
            }
            let top = Set((try? FileSystem.listDirectory("/etc")) ?? [])
            for path in spec.etcHidden where path.contains("/") ? FileSystem.exists("/etc/" + path) : top.contains(path) {
                f.etcHiddenPresent.insert(path)
            }
            f.hostMachineID = (try? FileSystem.readFile("/etc/machine-id", limit: 256)) ?? []
        case .directory(let root):
            f.rootfsEntries = listing(root)
            f.rootfsEtcEntries = listing(root + "/etc")
            for path in spec.etcHidden where path.contains("/") && FileSystem.exists(root + "/etc/" + path) {
                f.etcHiddenPresent.insert(path)
            }
        }
        // The jail's procfs shows the same kernel's files as the host's: what this kernel
        // lacks needs no step, and a file only host root may read (0400, root) already
        // reads as EACCES inside, where nobody is root outside. Every mount less is
        // cheaper to set up and to tear down.
        f.procToMask = LaunchPlan.maskedProc.filter(needsMask)
        f.procToMakeReadOnly = LaunchPlan.readOnlyProc.filter { (try? FileSystem.stat("/proc/" + $0)) != nil }
        for m in spec.mounts where m.role == .workspace || m.role == .mount {
            if let e = entry(m.host) { f.mountSources[m.host] = e }
        }
        if let vm = spec.vm { f.vm = vmFacts(vm, layout: layout) }
        return f
    }

    /// The VMM, the file server and the boot files of a VM agent, hashed here so that
    /// the plan records what will boot (and a pin can be checked before it does).
    public static func vmFacts(_ vm: JailSpec.VMSpec, layout: HostLayout) -> VMFacts {
        VMFacts(kernel: bootFile(vm.kernel), initrd: bootFile(vm.initrd), tscKHz: tscKHz,
                openFilesHardLimit: ResourceLimit.hardLimit(ResourceLimit.openFiles))
    }

    /// A regular file's sha256 and size, read without following a symlink at its end;
    /// nil hash when it is missing or unreadable.
    static func bootFile(_ path: String) -> VMFacts.BootFile {
        guard let fd = try? FileSystem.open(path, [.readOnly, .closeOnExec, .noFollow]) else { return .init(path: path) }
        defer { fd.close() }
        guard let st = try? FileSystem.stat(fd), st.isRegular else { return .init(path: path) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: UInt64 = 0
        while true {
            guard let n = try? fd.read(into: &buffer) else { return .init(path: path) }
            if n == 0 { break }
            hasher.update(data: Array(buffer[0..<n]))
            total += UInt64(n)
        }
        return .init(path: path, sha256: SHA256.lowercaseHex(hasher.finalize()), size: total)
    }

    /// The TSC frequency the guest is told (tsc_early_khz): the kernel's own figure
    /// where it exports one, else cpu0's "cpu MHz" from /proc/cpuinfo.
    static let tscKHz: UInt64? = {
        if let text = try? FileSystem.readText("/sys/devices/system/cpu/cpu0/tsc_freq_khz", limit: 32),
           let v = UInt64(text.split(separator: "\n").first ?? "") { return v }
        guard let info = try? FileSystem.readText("/proc/cpuinfo", limit: 1 << 16) else { return nil }
        for line in info.split(separator: "\n") where line.hasPrefix("cpu MHz") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].split(separator: " ").first ?? ""
            if let mhz = Double(value), mhz > 0 { return UInt64((mhz * 1000).rounded()) }
        }
        return nil
    }()

    /// What `path` is, without following a symlink at its end; nil when it is absent.
    static func entry(_ path: String) -> HostFacts.Entry? {
        guard let st = try? FileSystem.stat(path) else { return nil }
        if st.isSymlink { return .symlink(target: (try? FileSystem.readlink(path)) ?? "") }
        if st.isDirectory { return .directory }
        if st.isRegular { return .file }
        return .other
    }

    static func listing(_ dir: String) -> [HostFacts.NamedEntry] {
        let names = ((try? FileSystem.listDirectory(dir)) ?? []).sorted()
        return names.compactMap { n in entry(dir + "/" + n).map { HostFacts.NamedEntry(n, $0) } }
    }

    static func needsMask(_ name: String) -> Bool {
        do {
            let st = try FileSystem.stat("/proc/" + name)
            return !(st.isRegular && st.uid == 0 && st.permissions & 0o066 == 0)
        } catch {
            return error != .ENOENT
        }
    }

    /// The highest capability this kernel knows; the bounding set is emptied up to it.
    static let capLastCap: Int32 = {
        let text = (try? FileSystem.readText("/proc/sys/kernel/cap_last_cap", limit: 16)) ?? ""
        return Int32(text.split(separator: "\n").first ?? "") ?? 63
    }()
}
