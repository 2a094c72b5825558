import ArgumentParser
import ClawjailCore
import ClawjailOperator
import ClawjailRuntime

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host against the agent-gateway hardening checklist.",
        discussion: """
        A checklist, each line with a severity (ok, info, warning, CRITICAL) and the fix:
          cgroups           v2 or the v1 fallback; delegation (Delegate=yes) under systemd
          user namespaces   available; user.max_user_namespaces; unprivileged_userns_clone;
                            AppArmor's userns restriction
          kernel            known-bad releases (Dirty Pipe, Dirty COW, CVE-2022-0185,
                            CVE-2021-22555, CVE-2024-1086), by the upstream version
          state             permissions of the state directory, database, snapshots,
                            /run/clawjail, the seccomp filter cache
          agents            each agent's config (who can rewrite it) and credentials
                            directory (0700, files 0600)
          network           TCP listeners outside loopback on the gateway ports 18789,
                            3000 and 8080: exposed to the network
          audit             exports happening (or declared in /etc/clawjail/audit-export.conf),
                            and the chain verifying

        Nothing is changed without --fix; --fix changes only what is safe to change: \
        permissions (never owners, never through a symlink) and the state directory \
        layout. The listener check reads /proc/net/tcp of the network namespace doctor \
        runs in.

        Exit status: 0 all ok, 1 warnings, 2 a critical finding.
        """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Fix permissions and the state directory layout, then check again.")
    var fix = false

    @Flag(help: "Print one JSON object with every finding.")
    var json = false

    func run() throws {
        try runOrExit {
            let report = Doctor.run(layout: global.layout, fix: fix)
            OperatorText.out(json ? OperatorText.json(Doctor.json(report)) : Doctor.render(report))
            return Doctor.exitStatus(report)
        }
    }
}
