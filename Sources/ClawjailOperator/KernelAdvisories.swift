import ClawjailSystem
import ClawjailRuntime

/// Kernel releases with known privilege escalations that a jailed process can reach
/// (most need only a user namespace, which every jail has). The ranges are upstream
/// versions; a distribution kernel is judged by the upstream version it says it is
/// based on, and is reported as unknown when it does not say.
public enum KernelAdvisories {
    public struct Version: Comparable, Sendable, CustomStringConvertible {
        public var major: Int, minor: Int, patch: Int
        public init(_ major: Int, _ minor: Int, _ patch: Int) {
            self.major = major
            self.minor = minor
            self.patch = patch
        }
        public static func < (a: Version, b: Version) -> Bool {
            (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
        }
        public var description: String { "\(major).\(minor).\(patch)" }
    }

    public struct Advisory: Sendable {
        public var cve: String
        public var name: String
        /// First release with the bug.
        public var introduced: Version
        /// First mainline release with the fix.
        public var fixedMainline: Version
        /// Stable branches (major.minor) that got the fix, and the first fixed release in each.
        public var stableFixes: [Version]
        public var summary: String
    }

    public static let known: [Advisory] = [
        Advisory(cve: "CVE-2016-5195", name: "Dirty COW", introduced: Version(2, 6, 22), fixedMainline: Version(4, 9, 0),
                 stableFixes: [Version(4, 8, 3), Version(4, 7, 9), Version(4, 4, 26)],
                 summary: "copy-on-write race: any user can write to read-only files"),
        Advisory(cve: "CVE-2021-22555", name: "netfilter x_tables heap overflow", introduced: Version(2, 6, 19), fixedMainline: Version(5, 13, 0),
                 stableFixes: [Version(5, 12, 13), Version(5, 10, 46), Version(5, 4, 128), Version(4, 19, 196), Version(4, 14, 238),
                               Version(4, 9, 274), Version(4, 4, 274)],
                 summary: "heap out-of-bounds write reachable from a user namespace: container escape"),
        Advisory(cve: "CVE-2022-0185", name: "fsconfig heap overflow", introduced: Version(5, 1, 0), fixedMainline: Version(5, 17, 0),
                 stableFixes: [Version(5, 16, 2), Version(5, 15, 16), Version(5, 10, 93), Version(5, 4, 173)],
                 summary: "legacy_parse_param overflow reachable from a user namespace: container escape"),
        Advisory(cve: "CVE-2022-0847", name: "Dirty Pipe", introduced: Version(5, 8, 0), fixedMainline: Version(5, 17, 0),
                 stableFixes: [Version(5, 16, 11), Version(5, 15, 25), Version(5, 10, 102)],
                 summary: "pipe page-cache overwrite: any user can write to read-only files, including a read-only bind mount"),
        Advisory(cve: "CVE-2024-1086", name: "nf_tables use-after-free", introduced: Version(3, 15, 0), fixedMainline: Version(6, 8, 0),
                 stableFixes: [Version(6, 7, 3), Version(6, 6, 15), Version(6, 1, 76), Version(5, 15, 149), Version(5, 10, 209),
                               Version(5, 4, 269), Version(4, 19, 307)],
                 summary: "nft_verdict_init double free reachable from a user namespace: root on the host"),
    ]

    public static func affects(_ a: Advisory, _ v: Version) -> Bool {
        guard v >= a.introduced, v < a.fixedMainline else { return false }
        if let fix = a.stableFixes.first(where: { $0.major == v.major && $0.minor == v.minor }) { return v < fix }
        // A branch without a backport (end of life) is vulnerable all along.
        return true
    }

    public enum Identification: Sendable {
        /// The upstream version, and where it was read.
        case upstream(Version, source: String)
        /// A distribution kernel whose upstream patch level is not visible.
        case unknown(release: String)
    }

    /// The upstream version of the running kernel: Ubuntu's /proc/version_signature
    /// ("Ubuntu 5.15.0-91.101-generic 5.15.131"), Debian's "Debian 6.1.76-1" in
    /// /proc/version, else `uname -r` when it carries a real patch level.
    public static func identify(release: String, procVersion: String, signature: String?) -> Identification {
        if let sig = signature, let last = sig.split(separator: " ").last, let v = parse(String(last)) {
            return .upstream(v, source: "/proc/version_signature")
        }
        if let r = procVersion.firstRange(of: "Debian ") {
            let rest = procVersion[r.upperBound...].prefix { $0 != " " && $0 != ")" }
            if let v = parse(String(rest)), v.patch > 0 { return .upstream(v, source: "/proc/version (Debian)") }
        }
        // "5.10.0-28-amd64", "4.18.0-513.el8": the distribution backports fixes without
        // changing the patch level shown here.
        if let v = parse(release), !(v.patch == 0 && release.contains("-")) {
            return .upstream(v, source: "uname -r")
        }
        return .unknown(release: release)
    }

    /// "6.1.76-1", "5.15.131", "6.18.44-fc-v769" -> the leading x.y[.z].
    public static func parse(_ s: String) -> Version? {
        let head = s.prefix { $0.isNumber || $0 == "." }
        let parts = head.split(separator: ".").compactMap { Int($0) }
        guard parts.count >= 2 else { return nil }
        return Version(parts[0], parts[1], parts.count > 2 ? parts[2] : 0)
    }

    public static func running() -> Identification {
        let release = ProcessInfoLite.kernelRelease
        let procVersion = (try? FileSystem.readText("/proc/version", limit: 4096)) ?? ""
        let signature = try? FileSystem.readText("/proc/version_signature", limit: 4096)
        return identify(release: release, procVersion: procVersion, signature: signature.map { String($0.trimming("\n ")) })
    }
}
