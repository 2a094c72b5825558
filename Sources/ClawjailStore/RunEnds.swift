import ClawjailCore
import ClawjailSystem

// A full state directory must not make the record lie: when the end of a run cannot
// be written, `ps` and `logs` must not later call its supervisor dead.
//
// The database cannot hold that fact itself. A transaction that meets SQLITE_FULL
// rolls back whole, and in WAL mode every page a transaction changes is appended to
// the -wal file, so space reserved inside the database (a pre-written "pending end"
// row, free pages) saves nothing: the end still needs new bytes in the WAL. What
// needs no new bytes is overwriting bytes a file already has. So every run gets an
// end marker when it begins, created in beginRun's transaction (no marker, no run):
//
//   <state>/run-ends/<run id>, 0600 in a 0700 directory
//   [0, 4096)            "clawjail-run-end 1\n" + one JSON line, zero-padded: who
//                        the run is, and, once recording fails, why and since when;
//                        once the run has ended unrecorded, its outcome
//   [4096, 4096 + N)     a reserve of N bytes (fallocate): when the end cannot be
//                        written, the supervisor first puts the outcome in the marker,
//                        then gives these bytes back to the filesystem and retries,
//                        so that a disk that filled up and stays full still takes
//                        the end (about 10 WAL frames of 4 KiB)
//
// The marker is rewritten in place with one pwrite of the whole page, never
// extended, so writing it needs no free space on ext4, xfs or tmpfs (a copy-on-write
// filesystem such as btrfs may still refuse; then the run reads as lost, as before).
// It is not fsynced: it guards against a full disk, not a power loss, and page-cache
// contents are what every reader sees at once; after a power loss the run reads as
// lost, as it did before.
//
// Readers trust a marker only when its run id, supervisor (pid and start time) and
// the run's start time match the row. The next clawjail process that can write
// (`ps`, `logs`, a later `run`) records the outcome from an ended marker as the run's
// end, in the audit chain, and removes the marker; a running row with a marker that
// never ended is an ordinary lost run. After a successful end the supervisor removes
// the marker itself.

/// Why the records of a run could not be written.
public struct RecordingFailure: Sendable, Hashable {
    /// `StoreError.cause`: "disk full: ENOSPC (errno 28: No space left on device), SQLITE_FULL".
    public var cause: String
    public var errno: Int32?
    /// When recording first failed (unix milliseconds).
    public var sinceMs: Int64

    public init(cause: String, errno: Int32?, sinceMs: Int64) {
        self.cause = cause
        self.errno = errno
        self.sinceMs = sinceMs
    }

    public init(_ error: StoreError, sinceMs: Int64) {
        self.init(cause: error.cause, errno: error.errno, sinceMs: sinceMs)
    }
}

/// A run that ended while its end could not be recorded: the outcome kept in its
/// end marker instead.
public struct UnrecordedEnd: Sendable, Hashable {
    public var outcome: RunOutcome
    /// When the run ended (unix milliseconds).
    public var endedMs: Int64
    public var failure: RecordingFailure
    /// When the supervisor stopped retrying; nil while it still retries.
    public var gaveUpMs: Int64?
    /// Audit events of the run that were never written (the supervisor gave up on them).
    public var eventsNotRecorded: Int

    public init(outcome: RunOutcome, endedMs: Int64, failure: RecordingFailure, gaveUpMs: Int64? = nil,
                eventsNotRecorded: Int = 0) {
        self.outcome = outcome
        self.endedMs = endedMs
        self.failure = failure
        self.gaveUpMs = gaveUpMs
        self.eventsNotRecorded = eventsNotRecorded
    }
}

/// The contents of a run's end marker.
struct EndMarker: Equatable {
    var runID: RunID
    var supervisorPid: Int32
    var supervisorStart: UInt64
    var startedMs: Int64
    var failure: RecordingFailure?
    var end: UnrecordedEnd?

    static let magic = "clawjail-run-end 1\n"
    static let size = 4096

    func matches(id: RunID, supervisorPid pid: Int32, supervisorStart start: UInt64, startedMs started: Int64) -> Bool {
        runID == id && supervisorPid == pid && supervisorStart == start && startedMs == started
    }

    /// The page as written: magic, one JSON line, zeros. A long setup-failure message
    /// is shortened to fit.
    func page() throws -> [UInt8] {
        var value = json(detailLimit: nil)
        var text = try StoreError.json { try value.canonicalText() }
        if Self.magic.utf8.count + text.utf8.count + 1 > Self.size {
            value = json(detailLimit: 512)
            text = try StoreError.json { try value.canonicalText() }
        }
        var bytes = Array((Self.magic + text + "\n").utf8)
        guard bytes.count <= Self.size else {
            throw StoreError(.invalidArgument, "the end marker of run \(runID) does not fit in \(Self.size) bytes")
        }
        bytes += [UInt8](repeating: 0, count: Self.size - bytes.count)
        return bytes
    }

    private func json(detailLimit: Int?) -> JSONValue {
        var o: [String: JSONValue] = [
            "run_id": .int(runID.rawValue), "supervisor_pid": .int(Int64(supervisorPid)),
            "supervisor_start": .int(Int64(bitPattern: supervisorStart)), "started_ms": .int(startedMs),
            "state": .string(end == nil ? "running" : "ended"),
        ]
        if let failure { o["failure"] = Self.json(failure) }
        if let end {
            let columns = Store.columns(end.outcome.status)
            var detail = columns.detail
            if let limit = detailLimit, let d = detail, d.utf8.count > limit { detail = String(d.prefix(limit / 4)) + "…" }
            var outcome: [String: JSONValue] = [
                "status": .string(columns.name), "exit_code": .int(Int64(end.outcome.exitCode)),
                "duration_ms": .int(end.outcome.durationMs),
            ]
            if let code = columns.code { outcome["status_code"] = .int(Int64(code)) }
            if let detail { outcome["status_detail"] = .string(detail) }
            if let peak = end.outcome.peakMemoryBytes { outcome["peak_memory_bytes"] = .int(peak) }
            if let cpu = end.outcome.cpuUsec { outcome["cpu_usec"] = .int(cpu) }
            o["outcome"] = .object(outcome)
            o["ended_ms"] = .int(end.endedMs)
            o["end_failure"] = Self.json(end.failure)
            o["gave_up_ms"] = end.gaveUpMs.map { .int($0) } ?? .null
            o["events_not_recorded"] = .int(Int64(end.eventsNotRecorded))
        }
        return .object(o)
    }

    private static func json(_ f: RecordingFailure) -> JSONValue {
        .object(["cause": .string(f.cause), "errno": f.errno.map { .int(Int64($0)) } ?? .null, "since_ms": .int(f.sinceMs)])
    }

    /// nil for anything that is not a whole marker of this version (a torn or foreign file).
    static func parse(_ bytes: [UInt8]) -> EndMarker? {
        let magic = Array(Self.magic.utf8)
        guard bytes.count > magic.count, Array(bytes[..<magic.count]) == magic else { return nil }
        let rest = bytes[magic.count...]
        guard let newline = rest.firstIndex(of: UInt8(ascii: "\n")),
              case .object(let o)? = try? JSONValue.parse(String(decoding: rest[..<newline], as: UTF8.self)),
              let id = int(o["run_id"]), let pid = int(o["supervisor_pid"]).flatMap({ Int32(exactly: $0) }),
              let start = int(o["supervisor_start"]), let started = int(o["started_ms"]) else { return nil }
        var marker = EndMarker(runID: RunID(rawValue: id), supervisorPid: pid,
                               supervisorStart: UInt64(bitPattern: start), startedMs: started)
        marker.failure = failure(o["failure"])
        if case .string("ended")? = o["state"] {
            guard case .object(let out)? = o["outcome"], case .string(let name)? = out["status"],
                  let exit = int(out["exit_code"]).flatMap({ Int32(exactly: $0) }), let duration = int(out["duration_ms"]),
                  let ended = int(o["ended_ms"]), let endFailure = failure(o["end_failure"]) else { return nil }
            var detail: String?
            if case .string(let d)? = out["status_detail"] { detail = d }
            guard let status = Store.status(name: name, code: int(out["status_code"]).flatMap { Int32(exactly: $0) },
                                            detail: detail) else { return nil }
            let outcome = RunOutcome(status: status, exitCode: exit, durationMs: duration,
                                     peakMemoryBytes: int(out["peak_memory_bytes"]), cpuUsec: int(out["cpu_usec"]))
            marker.end = UnrecordedEnd(outcome: outcome, endedMs: ended, failure: endFailure, gaveUpMs: int(o["gave_up_ms"]),
                                       eventsNotRecorded: Int(int(o["events_not_recorded"]) ?? 0))
        }
        return marker
    }

    private static func int(_ v: JSONValue?) -> Int64? {
        if case .int(let i)? = v { return i }
        return nil
    }

    private static func failure(_ v: JSONValue?) -> RecordingFailure? {
        guard case .object(let f)? = v, case .string(let cause)? = f["cause"], let since = int(f["since_ms"]) else { return nil }
        return RecordingFailure(cause: cause, errno: int(f["errno"]).flatMap { Int32(exactly: $0) }, sinceMs: since)
    }
}

extension Store {
    /// Bytes reserved per run for its end record by default (see above).
    public static let defaultEndReserveBytes: Int64 = 128 * 1024
    public static let endMarkerDirectoryName = "run-ends"

    public var endMarkerDirectory: String { directory + "/" + Self.endMarkerDirectoryName }

    public func endMarkerPath(_ id: RunID) -> String { endMarkerDirectory + "/" + String(id.rawValue) }

    // MARK: - What a supervisor calls when it cannot write

    /// Notes in the run's end marker that its records cannot be written (or, with nil,
    /// that they can again), so that a reader can tell. Writes no new bytes.
    public func noteRecordingFailure(run id: RunID, _ failure: RecordingFailure?) throws {
        var marker = try existingMarker(id)
        marker.failure = failure
        try writeEndMarker(marker)
    }

    /// Puts the outcome of a run whose end could not be recorded into its end marker.
    /// Call it before retrying (a SIGKILL during the retries then loses nothing) and
    /// again with `gaveUpMs` when giving up. Writes no new bytes.
    public func noteUnrecordedEnd(run id: RunID, _ end: UnrecordedEnd) throws {
        var marker = try existingMarker(id)
        marker.failure = marker.failure ?? end.failure
        marker.end = end
        try writeEndMarker(marker)
    }

    /// Gives the run's reserved bytes back to the filesystem, so that the retry that
    /// follows can use them. False when there was nothing left to release.
    @discardableResult
    public func releaseEndReserve(run id: RunID) -> Bool {
        guard let fd = try? FileSystem.open(endMarkerPath(id), [.writeOnly, .noFollow]) else { return false }
        defer { fd.close() }
        guard let info = try? fd.stat(), info.size > EndMarker.size else { return false }
        return (try? fd.truncate(to: Int64(EndMarker.size))) != nil
    }

    // MARK: - Internals

    /// Creates the marker with its reserve; called inside beginRun's transaction, so a
    /// run whose end has no place to go does not begin.
    func createEndMarker(_ marker: EndMarker, reserveBytes: Int64) throws {
        let dir = endMarkerDirectory
        do {
            try FileSystem.mkdir(dir, mode: 0o700)
        } catch where error != .EEXIST {
            throw StateDirectory.ioError("create \(dir) for the end markers of runs", errno: error.rawValue)
        } catch {}
        let path = endMarkerPath(marker.runID)
        // O_TRUNC: a marker left with this id by an earlier database is not this run's.
        let fd: FD
        do {
            fd = try FileSystem.open(path, [.writeOnly, .create, .truncate, .noFollow], mode: 0o600)
        } catch {
            throw StateDirectory.ioError("create the end marker \(path)", errno: error.rawValue)
        }
        defer { fd.close() }
        do {
            let total = Int64(EndMarker.size) + max(0, reserveBytes)
            do {
                try fd.allocate(length: total)
            } catch where error == .EOPNOTSUPP || error == .EINVAL {
                // No fallocate on this filesystem: written zeros hold the blocks as well.
                let zeros = [UInt8](repeating: 0, count: 65536)
                var offset: Int64 = 0
                while offset < total {
                    let n = Int(min(Int64(zeros.count), total - offset))
                    let written = try zeros.withUnsafeBytes { raw in
                        try fd.write(UnsafeRawBufferPointer(rebasing: raw[..<n]), at: offset)
                    }
                    offset += Int64(written)
                }
            } catch {
                throw StateDirectory.ioError("reserve \(total) bytes for the end of run \(marker.runID) in \(path)",
                                             errno: error.rawValue)
            }
            try writeMarkerPage(fd: fd, marker, path: path)
        } catch let error as Errno {
            try? FileSystem.unlink(path)
            throw StateDirectory.ioError("write the end marker \(path)", errno: error.rawValue)
        } catch {
            try? FileSystem.unlink(path)
            throw error
        }
    }

    func writeEndMarker(_ marker: EndMarker) throws {
        let path = endMarkerPath(marker.runID)
        // No O_CREAT: a marker is only ever rewritten where it was reserved.
        let fd: FD
        do {
            fd = try FileSystem.open(path, [.writeOnly, .noFollow])
        } catch {
            throw StateDirectory.ioError("open the end marker \(path)", errno: error.rawValue)
        }
        defer { fd.close() }
        do {
            try writeMarkerPage(fd: fd, marker, path: path)
        } catch let error as Errno {
            throw StateDirectory.ioError("write the end marker \(path)", errno: error.rawValue)
        }
    }

    private func writeMarkerPage(fd: FD, _ marker: EndMarker, path: String) throws {
        let page = try marker.page()
        let written = try page.withUnsafeBytes { raw in try fd.write(raw, at: 0) }
        guard written == page.count else {
            throw StateDirectory.ioError("write the end marker \(path) (short write)", errno: Errno.EIO.rawValue)
        }
    }

    private func existingMarker(_ id: RunID) throws -> EndMarker {
        guard let marker = readEndMarker(id), marker.runID == id else {
            throw StoreError(.notFound, "run \(id) has no end marker in \(endMarkerDirectory); it was begun by an "
                             + "older clawjail or the marker was removed")
        }
        return marker
    }

    /// nil when there is none or it is not a whole marker.
    func readEndMarker(_ id: RunID) -> EndMarker? {
        guard let fd = try? FileSystem.open(endMarkerPath(id), [.readOnly, .noFollow]) else { return nil }
        defer { fd.close() }
        var page = [UInt8](repeating: 0, count: EndMarker.size)
        guard let n = try? page.withUnsafeMutableBytes({ raw in try fd.read(into: raw, at: 0) }),
              n > 0 else { return nil }
        return EndMarker.parse(Array(page[..<n]))
    }

    func removeEndMarker(_ id: RunID) {
        try? FileSystem.unlink(endMarkerPath(id))
    }

    /// Markers whose run is not running any more (a supervisor that ended its run but
    /// could not unlink, a run begun in a database since moved aside).
    func removeStaleEndMarkers(runningIDs: Set<Int64>) {
        guard let names = try? FileSystem.listDirectory(endMarkerDirectory, followSymlinks: true) else { return }
        let stale = names.filter { name in Int64(name).map { !runningIDs.contains($0) } ?? false }
        for name in stale { try? FileSystem.unlink(endMarkerDirectory + "/" + name) }
    }
}
