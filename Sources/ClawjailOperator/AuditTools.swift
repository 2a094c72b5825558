import ClawjailCore
import ClawjailStore
import ClawjailSystem
import ClawjailRuntime

/// `clawjail audit verify` and `clawjail audit export`.
///
/// The chain can be checked on the box (verify), but whoever owns the box can rewrite
/// it consistently; only a copy taken off the box earlier catches that. Export is that
/// copy: JSON Lines to a pipe, an append-only file or syslog. A file export resumes
/// after its own last line and first checks that this line's row still has the same
/// hash here, so a rewritten chain shows at the next export.
public enum AuditTools {
    /// Where exports were sent, for `doctor` and `--since-last`: <state>/audit-export.json.
    public static func markerPath(_ layout: HostLayout) -> String { layout.stateDirectory + "/audit-export.json" }

    static func requireStore(_ layout: HostLayout) throws(ClawjailError) -> Store {
        guard let store = try JailStatus.existingStore(layout) else {
            throw ClawjailError(.notFound, "no state database in \(layout.stateDirectory)",
                                hint: "pass --state-dir (or set CLAWJAIL_STATE_DIR) if clawjail keeps its state elsewhere")
        }
        return store
    }

    // MARK: - verify

    public struct Verification: Sendable {
        public var result: AuditVerification
        /// The last row, as exported (ok), or the first bad row as it is stored now (broken).
        public var row: JSONValue?
    }

    /// Thrown from an export callback to stop the scan early.
    struct StopScan: Error {}

    public static func verify(layout: HostLayout) throws(ClawjailError) -> Verification {
        let store = try requireStore(layout)
        let result: AuditVerification
        do { result = try store.verifyAudit() } catch { throw StoreAccess.wrap(error, "verifying the audit chain") }
        var row: JSONValue?
        switch result {
        case .ok(let count):
            if count > 0 { row = try? lastRow(store) }
        case .broken(let seq, _, _):
            row = try? findRow(store, seq: seq)
        }
        return Verification(result: result, row: row)
    }

    static func lastRow(_ store: Store) throws -> JSONValue? {
        var last: String?
        try store.exportAudit { last = $0 }
        return try last.map(JSONValue.parse)
    }

    static func findRow(_ store: Store, seq: Int64) throws -> JSONValue? {
        var found: JSONValue?
        do {
            try store.exportAudit { line in
                if let v = try? JSONValue.parse(line), v["seq"]?.intValue == seq {
                    found = v
                    throw StopScan()
                }
            }
        } catch is StopScan {}
        return found
    }

    public static func renderVerify(_ v: Verification) -> String {
        switch v.result {
        case .ok(let count):
            var out = "audit chain ok: \(count) event\(count == 1 ? "" : "s")"
            if let r = v.row, let seq = r["seq"]?.intValue, let hash = r["hash"]?.stringValue {
                out += ", last row #\(seq) at \(r["ts"]?.stringValue ?? "?")\n  hash \(hash)\n"
                out += "  compare it with the same row in a copy kept off this box: only that catches a rewrite of the whole chain\n"
            } else {
                out += "\n"
            }
            return out
        case .broken(let seq, let reason, let detail):
            var out = "audit chain BROKEN at row #\(seq) (\(reason.rawValue)): \(OperatorText.safeLine(detail))\n"
            if let r = v.row {
                out += "  row #\(seq) as stored now: " + OperatorText.safeLine((try? r.canonicalText()) ?? "?") + "\n"
            }
            out += (seq > 1 ? "  rows before #\(seq) verify; nothing from #\(seq) on can be trusted. " : "  nothing in the chain can be trusted. ")
                + "Compare with your off-box export (`clawjail audit export`).\n"
            return out
        }
    }

    public static func verifyJSON(_ v: Verification) -> JSONValue {
        switch v.result {
        case .ok(let count):
            return .object(["ok": .bool(true), "count": .int(count), "last_seq": v.row?["seq"] ?? .null,
                            "last_hash": v.row?["hash"] ?? .null])
        case .broken(let seq, let reason, let detail):
            return .object(["ok": .bool(false), "seq": .int(seq), "reason": .string(reason.rawValue),
                            "detail": .string(detail), "row": v.row ?? .null])
        }
    }

    // MARK: - export

    public enum Target: Sendable, Equatable {
        case standardOutput
        case file(String)
        case syslog(socket: String)

        var key: String {
            switch self {
            case .standardOutput: return "stdout"
            case .file(let p): return "file:" + p
            case .syslog(let s): return "syslog:" + s
            }
        }
    }

    public struct ExportOptions: Sendable {
        public var target: Target
        public var sinceMs: Int64?
        public var agent: String?
        /// Only rows after the last one sent to this target (syslog; files always resume).
        public var sinceLast = false
        public init(target: Target) { self.target = target }
    }

    public struct ExportReport: Sendable {
        public var count = 0
        public var lastSeq: Int64?
        /// Rows up to this seq were already in the target.
        public var resumedAfter: Int64?
        public var notices: [String] = []
        /// The target's last row no longer matches the database: nothing was written.
        public var mismatch: String?
        /// The reader went away (`| head`).
        public var closed = false
    }

    public static func export(_ o: ExportOptions, layout: HostLayout) throws(ClawjailError) -> ExportReport {
        let store = try requireStore(layout)
        var report = ExportReport()
        var resume: (seq: Int64, hash: String)?
        var sink: any ExportSink
        switch o.target {
        case .standardOutput:
            sink = BufferedSink(fd: .standardOutput, owned: false)
        case .file(let path):
            let opened = try openExportFile(path)
            report.notices += opened.notices
            resume = opened.last
            sink = opened.sink
        case .syslog(let socket):
            sink = try SyslogSink(socketPath: socket)
        }
        defer { sink.close() }
        if o.sinceLast, resume == nil, let t = readMarker(layout)[o.target.key],
           let seq = t["last_seq"]?.intValue, let hash = t["last_hash"]?.stringValue {
            resume = (seq, hash)
        }
        if let resume {
            report.resumedAfter = resume.seq
            let row: JSONValue?
            do { row = try findRow(store, seq: resume.seq) } catch { throw StoreAccess.wrap(error, "reading audit row \(resume.seq)") }
            guard let stored = row?["hash"]?.stringValue else {
                report.mismatch = "row #\(resume.seq), the last one the target already has, is missing from the database"
                return report
            }
            if stored != resume.hash {
                report.mismatch = "row #\(resume.seq) has hash \(stored) in the database but \(resume.hash) in the target: "
                    + "the chain was rewritten after the earlier export"
                return report
            }
        }
        var writeError: ClawjailError?
        var lastHash: String?
        do {
            try store.exportAudit(since: o.sinceMs, agent: o.agent) { line in
                guard let v = try? JSONValue.parse(line), let seq = v["seq"]?.intValue else { return }
                if let r = resume, seq <= r.seq { return }
                do {
                    try sink.write(line: line, event: v)
                } catch is SinkClosed {
                    report.closed = true
                    throw StopScan()
                } catch let e as ClawjailError {
                    writeError = e
                    throw StopScan()
                }
                report.count += 1
                report.lastSeq = seq
                lastHash = v["hash"]?.stringValue
            }
        } catch is StopScan {
        } catch {
            throw StoreAccess.wrap(error, "exporting the audit log")
        }
        if let writeError { throw writeError }
        do { try sink.finish() } catch is SinkClosed { report.closed = true } catch let e as ClawjailError { throw e } catch {
            throw ClawjailError(.setup, "cannot finish the export", cause: error)
        }
        if o.target != .standardOutput {
            recordMarker(layout, key: o.target.key, lastSeq: report.lastSeq ?? resume?.seq,
                         lastHash: report.lastSeq != nil ? lastHash : resume?.hash, count: report.count)
        }
        return report
    }

    // MARK: - marker

    public static func readMarker(_ layout: HostLayout) -> [String: JSONValue] {
        guard let text = try? FileSystem.readText(markerPath(layout), limit: 1 << 20),
              let v = try? JSONValue.parse(text) else { return [:] }
        return v["targets"]?.objectValue ?? [:]
    }

    static func recordMarker(_ layout: HostLayout, key: String, lastSeq: Int64?, lastHash: String?, count: Int) {
        var targets = readMarker(layout)
        targets[key] = .object([
            "last_seq": lastSeq.map { .int($0) } ?? .null, "last_hash": lastHash.map { .string($0) } ?? .null,
            "at_ms": .int(ProcessInfoLite.wallClockMilliseconds), "count": .int(Int64(count)),
        ])
        let text = OperatorText.json(.object(["targets": .object(targets)]))
        do { try FileSystem.writeAtomically(markerPath(layout), Array(text.utf8), mode: 0o600) } catch {
            Log.warning("could not record the export in \(markerPath(layout)): \(error)")
        }
    }

    // MARK: - file target

    struct OpenedFile {
        var sink: BufferedSink
        var last: (seq: Int64, hash: String)?
        var notices: [String]
    }

    /// Opens FILE for appending (created 0600, never through a symlink) and reads the
    /// last complete line it holds, if any.
    static func openExportFile(_ path: String) throws(ClawjailError) -> OpenedFile {
        let fd: FD
        do {
            fd = try FileSystem.open(path, [.readWrite, .append, .create, .noFollow], mode: 0o600)
        } catch {
            throw ClawjailError(.setup, "cannot open \(path) for appending", hint: error == .ELOOP ? "it is a symlink; name the file itself" : nil,
                                cause: error)
        }
        var notices: [String] = []
        do {
            let st = try fd.stat()
            guard st.isRegular else {
                fd.close()
                throw ClawjailError(.usage, "\(path) is not a regular file")
            }
            if st.uid == ProcessInfoLite.effectiveUserID && st.permissions & 0o077 != 0 {
                try fd.setMode(0o600)
                notices.append("changed the permissions of \(path) from \(String(st.permissions, radix: 8)) to 600")
            }
            var last: (Int64, String)?
            var needsNewline = false
            if st.size > 0 {
                let tailSize = Int(min(st.size, 4 << 20))
                var buf = [UInt8](repeating: 0, count: tailSize)
                let n = try fd.read(into: &buf, at: st.size - Int64(tailSize))
                if n != tailSize { throw Errno.current }
                needsNewline = buf.last != 0x0a
                // The end of the last complete line (its newline included).
                let completeEnd = needsNewline ? (buf.lastIndex(of: 0x0a).map { $0 + 1 } ?? 0) : buf.count
                if completeEnd > 0 {
                    let content = buf[..<(completeEnd - 1)]
                    let start = content.lastIndex(of: 0x0a).map { $0 + 1 } ?? 0
                    let text = String(decoding: content[start...], as: UTF8.self)
                    guard let v = try? JSONValue.parse(text), let seq = v["seq"]?.intValue, let hash = v["hash"]?.stringValue else {
                        fd.close()
                        throw ClawjailError(.usage, "\(path) does not end with a clawjail audit line, so the export cannot resume in it",
                                            hint: "export to a new file")
                    }
                    last = (seq, hash)
                }
                if needsNewline {
                    notices.append("\(path) ended with a partial line (an interrupted export); it is left as it is and the export continues on a new line")
                }
            }
            var sink = BufferedSink(fd: fd, owned: true)
            sink.syncOnFinish = true
            if needsNewline { sink.pending = [0x0a] }
            return OpenedFile(sink: sink, last: last.map { (seq: $0.0, hash: $0.1) }, notices: notices)
        } catch let e as ClawjailError {
            throw e
        } catch {
            fd.close()
            throw ClawjailError(.setup, "cannot read \(path)", cause: error)
        }
    }
}

/// The reader of stdout went away.
struct SinkClosed: Error {}

protocol ExportSink {
    mutating func write(line: String, event: JSONValue) throws
    mutating func finish() throws
    func close()
}

/// Lines to an fd, in 64 KiB writes.
struct BufferedSink: ExportSink {
    let fd: FD
    let owned: Bool
    var pending: [UInt8] = []
    var syncOnFinish = false

    init(fd: FD, owned: Bool) {
        self.fd = fd
        self.owned = owned
    }

    mutating func write(line: String, event: JSONValue) throws {
        pending += Array(line.utf8)
        pending.append(0x0a)
        if pending.count >= 65536 { try flush() }
    }

    mutating func flush() throws {
        defer { pending.removeAll(keepingCapacity: true) }
        do { try fd.writeAll(pending) } catch {
            if error == .EPIPE { throw SinkClosed() }
            throw ClawjailError(.setup, "cannot write the export", cause: error)
        }
    }

    mutating func finish() throws {
        try flush()
        if syncOnFinish { try? fd.sync() }
    }

    func close() { if owned { fd.close() } }
}

/// RFC 5424 datagrams to the local syslog socket, one event per message.
struct SyslogSink: ExportSink {
    let fd: FD
    let socketPath: String
    let hostname: String
    let pid = ProcessInfoLite.pid

    init(socketPath: String) throws(ClawjailError) {
        self.socketPath = socketPath
        guard socketPath.utf8.count < 108 else { throw ClawjailError(.usage, "the syslog socket path is too long: \(socketPath)") }
        let fd: FD
        do {
            fd = try Sockets.unixDatagramSocket()
        } catch {
            throw ClawjailError(.setup, "cannot create a datagram socket", cause: error)
        }
        do {
            try Sockets.connect(fd, unixPath: socketPath)
        } catch {
            fd.close()
            throw ClawjailError(.setup, "cannot connect to the syslog socket \(socketPath)",
                                hint: error == .ENOENT || error == .ECONNREFUSED ? "no syslog daemon listens there; install rsyslog or use --output FILE" : nil,
                                cause: error)
        }
        // A stuck syslog daemon must not hang the export for ever.
        try? Sockets.setSendTimeout(fd, seconds: 5)
        self.fd = fd
        let host = ProcessInfoLite.hostName
        self.hostname = host.isEmpty ? "-" : String(host.unicodeScalars.filter { $0.value > 32 && $0.value < 127 }.map(Character.init))
    }

    static let warningKinds: Set<String> = ["seccomp.violation", "egress.deny", "emergency.stop", "run.lost", "run.oom", "run.timeout"]
    static let noticeKinds: Set<String> = ["operator.stop", "protect.restore", "protect.snapshot", "uid.allocate", "uid.release"]

    /// `<86>1 2026-03-01T12:00:00.000Z host clawjail 4242 run.end [clawjail@32473 seq="12" agent="alice"] {json}`
    /// Facility authpriv (10): audit records go where the host keeps security logs.
    static func message(line: String, event: JSONValue, hostname: String, pid: Int32) -> String {
        let kind = event["kind"]?.stringValue ?? "-"
        let severity = warningKinds.contains(kind) ? 4 : noticeKinds.contains(kind) ? 5 : 6
        let msgid = String(kind.unicodeScalars.filter { $0.value > 32 && $0.value < 127 }.prefix(32).map(Character.init))
        var sd = "[clawjail@32473 seq=\"\(event["seq"]?.intValue ?? 0)\""
        sd += " agent=\"" + sdEscape(event["agent"]?.stringValue ?? "") + "\""
        if let run = event["run_id"]?.intValue { sd += " run=\"\(run)\"" }
        sd += "]"
        return "<\(10 * 8 + severity)>1 \(event["ts"]?.stringValue ?? "-") \(hostname) clawjail \(pid) \(msgid.isEmpty ? "-" : msgid) \(sd) \(line)"
    }

    static func sdEscape(_ s: String) -> String {
        var out = ""
        for c in s {
            if c == "\"" || c == "\\" || c == "]" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    mutating func write(line: String, event: JSONValue) throws {
        let bytes = Array(Self.message(line: line, event: event, hostname: hostname, pid: pid).utf8)
        do {
            _ = try Sockets.send(fd, bytes)
        } catch {
            let hint: String?
            switch error {
            case .EMSGSIZE: hint = "the event is \(bytes.count) bytes, more than the socket takes; use --output FILE for this one"
            case .EAGAIN: hint = "syslog did not take a message for 5 s; is the daemon stuck?"
            default: hint = nil
            }
            throw ClawjailError(.setup, "cannot send event #\(event["seq"]?.intValue ?? 0) to \(socketPath)", hint: hint, cause: error)
        }
    }

    mutating func finish() throws {}

    func close() { fd.close() }
}
