import CSeccomp
import ClawjailSystem

/// Syscall names and numbers as libseccomp knows them for the native arch (x86_64):
/// the same table the compiler uses, so a name that parses also compiles.
enum SyscallTable {
    /// The native syscall number, or nil when libseccomp does not know the name or
    /// it is not a syscall on this arch (libseccomp's negative pseudo numbers).
    static func number(of name: String) -> Int32? {
        numbers[name]
    }

    /// libseccomp resolves a name by a linear scan; a profile names ~300 syscalls, so
    /// build the map once from the other direction.
    private static let numbers: [String: Int32] = {
        var map: [String: Int32] = [:]
        for nr in Int32(0)..<1024 {
            guard let p = seccomp_syscall_resolve_num_arch(cj_scmp_arch_native(), nr) else { continue }
            map[CMemory.takeString(p)] = nr
        }
        return map
    }()

    /// The name of a syscall number on `arch` (an AUDIT_ARCH_* value, as in
    /// seccomp_data.arch), or nil.
    static func name(of number: Int32, arch: UInt32 = cj_scmp_arch_native()) -> String? {
        guard let p = seccomp_syscall_resolve_num_arch(arch, number) else { return nil }
        return CMemory.takeString(p)
    }

    /// "2.5.4"
    static var libseccompVersion: String {
        guard let v = seccomp_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.micro)"
    }

    /// "x86_64" (the arch filters are built for).
    static var nativeArchName: String {
        switch seccomp_arch_native() {
        case cj_scmp_arch_x86_64(): return "x86_64"
        case let other: return "audit-arch-0x" + String(other, radix: 16)
        }
    }
}
