import ArgumentParser
import ClawjailCore
import ClawjailOperator
import ClawjailRuntime

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check the tamper-evident audit log, and ship it off the box.",
        discussion: """
        Every security-relevant event (run start with the effective plan, run end, \
        seccomp violations, OOM kills and timeouts, emergency and operator stops, \
        egress decisions, protect snapshots and restores) is a row of one hash chain: \
        each row holds the SHA-256 of the row before it and of its own content.

        `verify` finds the first row that was edited, deleted, reordered or added. \
        But root on this box can rewrite the whole chain consistently: only a copy kept \
        elsewhere catches that. `export` makes that copy.

        Examples:
          clawjail audit verify
          clawjail audit export --since 24h | ssh logs.example.com 'cat >> clawjail.jsonl'
          clawjail audit export --output /mnt/audit/clawjail.jsonl
          clawjail audit export --syslog --since-last
        """,
        subcommands: [Verify.self, Export.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk the audit chain and report the first bad row.",
            discussion: """
            Exit status 0 when every row verifies, 1 when the chain is broken: the message \
            names the first row that was edited, deleted, reordered or inserted, and shows \
            that row as it is stored now. Rows before it can be trusted; nothing from it on.

            When it verifies, the hash of the last row is printed: compare it with the same \
            row in an export kept off this box.
            """)

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print one JSON object: {\"ok\": true, \"count\": N, ...} or the first bad row.")
        var json = false

        func run() throws {
            try runOrExit {
                let v = try AuditTools.verify(layout: global.layout)
                OperatorText.out(json ? OperatorText.json(AuditTools.verifyJSON(v)) : AuditTools.renderVerify(v))
                if case .ok = v.result { return 0 }
                return 1
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write audit events as JSON Lines: to stdout, a file, or syslog.",
            discussion: """
            One JSON object per event, oldest first, with its seq, time (ts, RFC 3339 UTC, \
            and ts_ms), agent, kind, run id, payload, and both hashes (prev_hash, hash), \
            so a copy can be verified on its own (a full export) and compared row by row.

            Targets:
              (default)        stdout, for a pipe
              --output FILE    appended to FILE (created 0600, never through a symlink).
                               The export resumes after the last row FILE already has, and
                               first checks that this row's hash still matches the database:
                               a chain rewritten since the last export is reported (exit 1)
                               and nothing is appended.
              --syslog         one RFC 5424 message per event to /dev/log (facility authpriv),
                               for a syslog daemon that forwards off the box. With
                               --since-last, only the events after the last ones sent.

            Each export to a file or syslog is recorded in <state dir>/audit-export.json, \
            which `clawjail doctor` reads to tell whether exports happen.

            TIME is RFC 3339 (2026-03-01T12:00:00Z, 2026-03-01T14:00:00+02:00, 2026-03-01) \
            or an age: 30m, 24h, 7d, 1d12h.

            Examples:
              clawjail audit export --since 24h --agent alice
              clawjail audit export --output /mnt/audit/clawjail.jsonl
              clawjail audit export --syslog --since-last
            """)

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("Only events at or after TIME.", valueName: "TIME"))
        var since: String?

        @Option(help: ArgumentHelp("Only the events of this agent (\"\" for host-wide events such as kill --all).", valueName: "NAME"))
        var agent: String?

        @Option(help: ArgumentHelp("Output format: jsonl (the only one).", valueName: "FORMAT"))
        var format: String = "jsonl"

        @Option(help: ArgumentHelp("Append to this file instead of stdout.", valueName: "FILE"))
        var output: String?

        @Flag(help: "Send each event to the local syslog socket instead of stdout.")
        var syslog = false

        @Option(name: .customLong("syslog-socket"), help: ArgumentHelp("The syslog datagram socket (default /dev/log).", valueName: "PATH"))
        var syslogSocket: String?

        @Flag(name: .customLong("since-last"), help: "With --syslog: only the events after the last ones sent to this socket.")
        var sinceLast = false

        func validate() throws {
            if format != "jsonl" { throw ValidationError("--format \(format): the only format is jsonl") }
            if output != nil && (syslog || syslogSocket != nil) { throw ValidationError("choose one target: --output FILE or --syslog") }
            if sinceLast && output != nil { throw ValidationError("--since-last is for --syslog: a file export always resumes after its last line") }
            if sinceLast && !syslog && syslogSocket == nil { throw ValidationError("--since-last needs --syslog: a pipe keeps no record of what it got") }
        }

        func run() throws {
            try runOrExit {
                let target: AuditTools.Target
                if let output {
                    target = .file(output)
                } else if syslog || syslogSocket != nil {
                    target = .syslog(socket: syslogSocket ?? "/dev/log")
                } else {
                    target = .standardOutput
                }
                var o = AuditTools.ExportOptions(target: target)
                o.agent = agent
                o.sinceLast = sinceLast
                if let since { o.sinceMs = try TimeSpec.parse(since) }
                let report = try AuditTools.export(o, layout: global.layout)
                for n in report.notices { Log.info(n) }
                if let m = report.mismatch {
                    Log.error("export refused: " + m)
                    Log.error("  run `clawjail audit verify`, and compare the copy you exported with this database")
                    return 1
                }
                if target != .standardOutput {
                    let after = report.resumedAfter.map { " (after row #\($0), already there)" } ?? ""
                    let last = report.lastSeq.map { ", up to row #\($0)" } ?? ""
                    Log.info("exported \(report.count) event\(report.count == 1 ? "" : "s")\(last)\(after)")
                }
                return 0
            }
        }
    }
}
