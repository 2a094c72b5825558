/// Which /etc a jail sees. Programs keep their configuration in /etc and point to it
/// from /usr (Java's conf/security, fontconfig, chromium.d, ca-certificates,
/// alternatives), so a jail sees the host's /etc, read-only, except:
///   - the files clawjail generates for the jail (its own users, hosts, resolver);
///   - the entries below, which hold secrets, describe the host's users and tenants,
///     or identify the host. `[rootfs] etc_hide` adds entries, `etc_show` gives back
///     the ones marked showable.
/// Permissions are a second wall: the jail's users are unprivileged outside, so a host
/// file that is not world-readable stays unreadable even if it is not listed here.
public enum EtcPolicy {
    public struct Entry: Sendable, Hashable {
        /// A path relative to /etc ("shadow", "ssl/private").
        public var path: String
        public var reason: String
        /// False: no config can show it (`etc_show` is refused).
        public var showable: Bool
    }

    /// Written by clawjail for every jail; the host's are never seen.
    public static let generated: [(name: String, reason: String)] = [
        ("passwd", "the jail's own users: root, the jail's user, nobody"),
        ("group", "the jail's own groups"),
        ("hosts", "localhost and the jail's hostname"),
        ("hostname", "the jail's hostname"),
        ("resolv.conf", "empty without a network, the egress proxy's DNS responder with one"),
        ("nsswitch.conf", "files, and DNS where the jail has a network"),
        ("machine-id", "one of the jail's own, derived from the host's by a one-way hash, so the host's cannot be read back"),
    ]

    static func never(_ path: String, _ reason: String) -> Entry { Entry(path: path, reason: reason, showable: false) }
    static func byDefault(_ path: String, _ reason: String) -> Entry { Entry(path: path, reason: reason, showable: true) }

    /// Hidden from every jail unless a config shows a showable one.
    public static let hidden: [Entry] = [
        never("shadow", "password hashes"), never("shadow-", "password hashes (backup)"),
        never("gshadow", "group password hashes"), never("gshadow-", "group password hashes (backup)"),
        never("passwd-", "the host's users (backup)"), never("group-", "the host's groups (backup)"),
        never("subuid", "the host's uid ranges, the tenants' among them"), never("subuid-", "uid ranges (backup)"),
        never("subgid", "the host's gid ranges, the tenants' among them"), never("subgid-", "gid ranges (backup)"),
        never(".pwd.lock", "the host's password-file lock"),
        never("sudoers", "who may become root on the host"), never("sudoers.d", "who may become root on the host"),
        never("ssh", "the host's SSH keys (private and public: the public ones identify the host) and sshd's config"),
        never("ssl/private", "TLS private keys"),
        never("security/opasswd", "old password hashes"),
        never("krb5.keytab", "the host's Kerberos keys"),
        never("clawjail", "clawjail's own configs: every tenant's agent.toml"),
        never("credstore", "systemd credentials"), never("credstore.encrypted", "systemd credentials"),
        never("ipsec.secrets", "IPsec keys"),
        byDefault("environment", "system-wide environment: where admins put proxy passwords and API keys"),
        byDefault("npmrc", "npm's global config: registry tokens"),
        byDefault("pip.conf", "pip's global config: index URLs with credentials"),
        byDefault("apt/auth.conf", "apt repository credentials"), byDefault("apt/auth.conf.d", "apt repository credentials"),
        byDefault("wireguard", "VPN keys"), byDefault("openvpn", "VPN keys and credentials"),
        byDefault("ppp", "dial-up and PPPoE passwords"), byDefault("ipsec.d", "IPsec keys and certificates"),
        byDefault("NetworkManager", "Wi-Fi and VPN passwords"), byDefault("netplan", "the host's addresses and Wi-Fi passwords"),
        byDefault("wpa_supplicant", "Wi-Fi passwords"), byDefault("network", "the host's addresses"),
        byDefault("letsencrypt", "TLS keys, and the host's domain names"), byDefault("pki", "keys and certificates"),
        byDefault("docker", "the Docker daemon's config and keys"), byDefault("containerd", "the container runtime's config"),
        byDefault("kubernetes", "cluster admin credentials"), byDefault("rancher", "k3s cluster credentials"),
        byDefault("cloud", "cloud-init's config: user data and passwords"),
        byDefault("iscsi", "iSCSI CHAP secrets"), byDefault("sssd", "directory service credentials"),
        byDefault("ldap.secret", "the LDAP admin password"), byDefault("samba", "the host's shares"),
        byDefault("libvirt", "the host's VMs and their secrets"),
        byDefault("postfix", "mail relay passwords"), byDefault("mysql", "database maintenance passwords"),
        byDefault("msmtprc", "mail passwords"), byDefault("ssmtp", "mail passwords"),
        byDefault("boto.cfg", "AWS credentials"), byDefault("rclone", "cloud storage credentials"),
        byDefault("fstab", "the host's disks"), byDefault("crypttab", "the host's encrypted disks"),
        byDefault("exports", "the host's NFS exports"),
        byDefault("systemd", "the host's units: every tenant's clawjail@ instance"),
        byDefault("cron.d", "the host's scheduled jobs"), byDefault("crontab", "the host's scheduled jobs"),
        byDefault("hosts.allow", "the host's access rules"), byDefault("hosts.deny", "the host's access rules"),
    ]

    /// The hidden paths of a jail, sorted: the defaults minus `show`, plus `hide`.
    public static func hiddenPaths(show: [String], hide: [String]) -> [String] {
        var paths = Set(hidden.map(\.path)).subtracting(show)
        paths.formUnion(hide)
        return paths.sorted()
    }

    public static func entry(_ path: String) -> Entry? { hidden.first { $0.path == path } }

    public static func isGenerated(_ path: String) -> Bool { generated.contains { $0.name == path } }

    /// A normalised path relative to /etc, or nil: "fonts", "ssl/private"; no "..",
    /// no leading or trailing "/", no empty components, at most 255 bytes.
    public static func normalize(_ text: String) -> String? {
        var t = Substring(text)
        if t.hasPrefix("/etc/") { t = t.dropFirst(5) }
        while t.hasSuffix("/") { t = t.dropLast() }
        let parts = t.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.isEmpty, t.utf8.count <= 255, !t.utf8.contains(0) else { return nil }
        for p in parts where p.isEmpty || p == "." || p == ".." { return nil }
        return String(t)
    }

    /// Why `etc_show` may not name `path`, or nil when it may.
    public static func showProblem(_ path: String) -> (message: String, hint: String)? {
        if isGenerated(path) {
            return ("/etc/\(path) is generated by clawjail for each jail; the host's is never shown",
                    "drop it from etc_show")
        }
        if let e = hidden.first(where: { !$0.showable && (path == $0.path || path.hasPrefix($0.path + "/")) }) {
            return ("/etc/\(e.path) is never shown in a jail: \(e.reason)", "drop it from etc_show; mount what the agent needs with [[mount]]")
        }
        if entry(path) == nil {
            if let parent = hidden.first(where: { path.hasPrefix($0.path + "/") }) {
                return ("/etc/\(path) is inside /etc/\(parent.path), which is hidden whole", "show \"\(parent.path)\" instead")
            }
            return ("/etc/\(path) is not hidden, so there is nothing to show",
                    "hidden by default: " + hidden.filter(\.showable).map(\.path).joined(separator: ", "))
        }
        return nil
    }

    /// Why `etc_hide` may not name `path`, or nil when it may.
    public static func hideProblem(_ path: String) -> (message: String, hint: String)? {
        if isGenerated(path) {
            return ("/etc/\(path) is generated by clawjail; programs need it", "drop it from etc_hide")
        }
        if let g = generated.first(where: { path.hasPrefix($0.name + "/") }) {
            return ("/etc/\(g.name) is a file generated by clawjail; nothing is inside it", "drop it from etc_hide")
        }
        return nil
    }

    /// Why a mount may not land at `target` (absolute, normalised), or nil. A mount
    /// onto a generated file would replace what clawjail wrote; one inside a hidden
    /// entry would need that entry's directory, which is the host's.
    public static func mountProblem(_ target: String, hidden: [String]) -> (message: String, hint: String)? {
        guard target.hasPrefix("/etc/") else { return nil }
        let path = String(target.dropFirst(5))
        if let g = generated.first(where: { path == $0.name || path.hasPrefix($0.name + "/") }) {
            return ("mount target \(target) would replace the generated /etc/\(g.name) (\(g.reason))",
                    "mount it elsewhere and point the program to it")
        }
        if let h = hidden.first(where: { path.hasPrefix($0 + "/") }) {
            return ("mount target \(target) is inside /etc/\(h), which jails do not see",
                    "mount at /etc/\(h) itself, or elsewhere")
        }
        return nil
    }
}
