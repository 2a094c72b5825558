/// clone3's namespace flags (linux/sched.h). Glibc's module does not export them
/// without _GNU_SOURCE; the values are the kernel ABI.
public enum CloneFlags {
    public static let newNS: UInt64 = 0x0002_0000
    public static let newCgroup: UInt64 = 0x0200_0000
    public static let newUTS: UInt64 = 0x0400_0000
    public static let newIPC: UInt64 = 0x0800_0000
    public static let newUser: UInt64 = 0x1000_0000
    public static let newPID: UInt64 = 0x2000_0000
    public static let newNet: UInt64 = 0x4000_0000
}
