#if canImport(Glibc)
import Glibc
#endif
import CClawjailChild
import CClawjailShims

/// The new mount API, used by the parent to prepare detached mount trees before clone:
/// the child only has to attach them.
public enum Mount {
    public struct Attributes: OptionSet, Sendable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let readOnly = Attributes(rawValue: 0x0000_0001)   // MOUNT_ATTR_RDONLY
        public static let noSuid = Attributes(rawValue: 0x0000_0002)     // MOUNT_ATTR_NOSUID
        public static let noDev = Attributes(rawValue: 0x0000_0004)      // MOUNT_ATTR_NODEV
        public static let noExec = Attributes(rawValue: 0x0000_0008)     // MOUNT_ATTR_NOEXEC
        public static let noSymfollow = Attributes(rawValue: 0x0020_0000) // MOUNT_ATTR_NOSYMFOLLOW
    }

    static let openTreeClone: UInt32 = 1          // OPEN_TREE_CLONE
    static let openTreeCloexec: UInt32 = 0o2000000 // OPEN_TREE_CLOEXEC == O_CLOEXEC
    static let atRecursive: UInt32 = 0x8000       // AT_RECURSIVE
    static let msPrivate: UInt64 = 1 << 18        // MS_PRIVATE

    /// Clones the mount tree at `fd` (an O_PATH fd opened without following symlinks)
    /// into a detached tree, applies `attributes` and private propagation to all of it,
    /// and returns the tree's fd. Nothing is visible anywhere until it is attached.
    public static func detachedClone(of fd: FD, attributes: Attributes, recursive: Bool) throws(Errno) -> FD {
        var flags = openTreeClone | openTreeCloexec | UInt32(AT_EMPTY_PATH)
        if recursive { flags |= atRecursive }
        let tree = FD(try syscallRetrying { cj_sys_open_tree(fd.rawValue, "", flags) })
        do {
            _ = try syscallRetrying {
                cj_sys_mount_setattr(tree.rawValue, "", UInt32(AT_EMPTY_PATH) | atRecursive,
                                     attributes.rawValue, 0, msPrivate)
            }
        } catch {
            tree.close()
            throw error
        }
        return tree
    }
}
