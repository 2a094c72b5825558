import Foundation
import Testing
@testable import ClawjailStore

#if canImport(Glibc)
import Glibc
#endif

/// A small tmpfs of its own, to fill for real: what the store sees is the kernel's
/// ENOSPC, not a fake. Mounting needs root (CI is root).
final class SmallTmpfs {
    let path: String
    private var fillers: [String] = []
    private var mounted = false

    init(size: String = "2m") throws {
        path = "/tmp/cjt-diskfull-store-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        guard mkdir(path, 0o700) == 0 else { throw StoreError(.io, "mkdir \(path): errno \(errno)") }
        guard mount("tmpfs", path, "tmpfs", 0, "size=\(size),mode=0700") == 0 else {
            let e = errno
            rmdir(path)
            throw StoreError(.io, "mount tmpfs on \(path): errno \(e)")
        }
        mounted = true
    }

    /// A state directory inside the tmpfs, not yet created.
    var state: String { path + "/state" }

    var freeBytes: UInt64 {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return 0 }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Writes a new file until the filesystem says ENOSPC; returns the bytes written.
    @discardableResult
    func fill() throws -> Int {
        let file = path + "/filler-\(fillers.count)"
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError(.io, "create \(file): errno \(errno)") }
        defer { close(fd) }
        fillers.append(file)
        let chunk = [UInt8](repeating: 0x5a, count: 65536)
        var total = 0
        while true {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { total += n; continue }
            if n < 0 && errno == EINTR { continue }
            guard n < 0 && errno == ENOSPC else { throw StoreError(.io, "fill \(file): errno \(errno)") }
            return total
        }
    }

    /// Removes what `fill` wrote.
    func free() {
        for f in fillers { unlink(f) }
        fillers = []
    }

    /// Unmounts (lazily if something still holds it) and removes the mount point.
    func remove() {
        free()
        if mounted, umount2(path, 0) != 0 { umount2(path, Int32(MNT_DETACH)) }
        mounted = false
        rmdir(path)
    }
}

extension Trait where Self == ConditionTrait {
    static var mountsTmpfs: Self { .enabled(if: getuid() == 0, "needs root: mounts a small tmpfs to fill up") }
}

/// A full state directory must not make the record lie (issue 20 part 6): an end that
/// cannot be written is kept in the run's end marker, readers say "end not recorded",
/// not "lost", and the next writer records it; what was recorded stays intact.
@Suite("a full state directory", .serialized)
struct DiskFullTests {
    /// A pid that certainly has no process: a child that has exited and been reaped.
    private func deadPid() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    private static let outcome = RunOutcome(status: .exited(code: 7), exitCode: 7, durationMs: 1500, peakMemoryBytes: 4096)

    private func events(_ store: Store) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        try store.exportAudit { line in
            out.append(try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]))
        }
        return out
    }

    @Test("on a full tmpfs the end fails with .full and ENOSPC, is kept in the marker, reads as not recorded, and the next writer records it",
          .mountsTmpfs)
    func endKeptThroughAFullDisk() throws {
        let disk = try SmallTmpfs()
        defer { disk.remove() }
        let store = try Store.open(directory: disk.state)
        defer { try? store.close() }
        let supervisor = try deadPid()
        let id = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: supervisor, supervisorStart: 1,
                                    planHash: "h", manifestJSON: testPlanJSON, endReserveBytes: 0)
        #expect(FileManager.default.fileExists(atPath: store.endMarkerPath(id)))
        try disk.fill()
        #expect(disk.freeBytes == 0)

        let error = try #require(throws: StoreError.self) { try store.endRun(id: id, outcome: Self.outcome) }
        #expect(error.code == .full, "\(error)")
        #expect(error.errno == ENOSPC)
        #expect(error.isRetryable)
        #expect(error.cause == "disk full: ENOSPC (errno 28: No space left on device), SQLITE_FULL", "\(error.cause)")
        #expect(error.message.contains("free space in \(disk.state)"), "\(error.message)")

        // Overwriting the marker's page needs no new bytes: it works on the full disk.
        let failure = RecordingFailure(error, sinceMs: 1_000)
        try store.noteUnrecordedEnd(run: id, UnrecordedEnd(outcome: Self.outcome, endedMs: 2_000, failure: failure,
                                                           gaveUpMs: 3_000))
        let run = try #require(try store.run(id: id))
        #expect(run.state == .endNotRecorded, "not lost: its supervisor knew how it ended")
        #expect(run.unrecordedEnd?.outcome == Self.outcome)
        #expect(run.unrecordedEnd?.failure.errno == ENOSPC)
        #expect(run.outcome == nil)

        // Still full: settling cannot write either, and the run stays "not recorded".
        let settle = try #require(throws: StoreError.self) { try store.markLostRuns() }
        #expect(settle.code == .full)
        #expect(try store.run(id: id)?.state == .endNotRecorded)

        disk.free()
        #expect(try store.markLostRuns() == [], "an unrecorded end is not a lost run")
        let ended = try #require(try store.run(id: id))
        #expect(ended.state == .finished)
        #expect(ended.outcome == Self.outcome)
        #expect(ended.endedMs == 2_000, "when the run really ended, not when it was written")
        #expect(!FileManager.default.fileExists(atPath: store.endMarkerPath(id)), "removed once recorded")
        let end = try #require(try events(store).last)
        #expect(end["kind"] as? String == "run.end")
        let payload = try #require(end["payload"] as? [String: Any])
        #expect(payload["exit_code"] as? Int == 7)
        let late = try #require(payload["recorded_late"] as? [String: Any])
        #expect(late["from_end_marker"] as? Bool == true)
        #expect(late["errno"] as? Int == Int(ENOSPC))
        #expect(try store.verifyAudit() == .ok(count: 2), "run.start and run.end")
        #expect(try integrityCheck(store) == ["ok"])
    }

    @Test("the space reserved at the start takes the end when the disk stays full", .mountsTmpfs)
    func reserveTakesTheEnd() throws {
        let disk = try SmallTmpfs()
        defer { disk.remove() }
        let store = try Store.open(directory: disk.state)
        defer { try? store.close() }
        let pid = getpid()
        let id = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid,
                                    supervisorStart: try #require(ProcessIdentity.startTime(pid: pid)),
                                    planHash: "h", manifestJSON: testPlanJSON)
        try disk.fill()
        #expect(try #require(throws: StoreError.self) { try store.endRun(id: id, outcome: Self.outcome) }.code == .full)
        #expect(store.releaseEndReserve(run: id))
        #expect(!store.releaseEndReserve(run: id), "nothing left to give back")
        try store.endRun(id: id, outcome: Self.outcome)
        #expect(try store.run(id: id)?.state == .finished)
        #expect(try store.run(id: id)?.outcome == Self.outcome)
        #expect(try store.verifyAudit() == .ok(count: 2))
    }

    @Test("a run whose end has no room does not begin, and leaves neither a row nor a marker", .mountsTmpfs)
    func noRoomNoRun() throws {
        let disk = try SmallTmpfs()
        defer { disk.remove() }
        let store = try Store.open(directory: disk.state)
        defer { try? store.close() }
        try disk.fill()
        let pid = getpid()
        let error = try #require(throws: StoreError.self) {
            try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid,
                               supervisorStart: try #require(ProcessIdentity.startTime(pid: pid)),
                               planHash: "h", manifestJSON: testPlanJSON)
        }
        #expect(error.code == .full, "\(error)")
        #expect(error.errno == ENOSPC)
        #expect(try store.runs(agent: "mail").isEmpty)
        let markers = (try? FileManager.default.contentsOfDirectory(atPath: store.endMarkerDirectory)) ?? []
        #expect(markers.isEmpty, "\(markers)")
        #expect(try store.verifyAudit() == .ok(count: 0))
    }

    @Test("a dead supervisor whose marker holds no end is lost, and its lost event says recording had failed")
    func failureWithoutEndIsLost() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let id = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: try deadPid(), supervisorStart: 1,
                                    planHash: "h", manifestJSON: testPlanJSON, endReserveBytes: 0)
        let failure = RecordingFailure(cause: "disk full: ENOSPC", errno: ENOSPC, sinceMs: 1_000)
        try store.noteRecordingFailure(run: id, failure)
        let run = try #require(try store.run(id: id))
        #expect(run.state == .lost, "it died before its end: nothing says how it ended")
        #expect(run.recordingFailure == failure)
        #expect(try store.markLostRuns() == [id])
        let lost = try #require(try events(store).last)
        #expect(lost["kind"] as? String == "run.lost")
        let note = try #require((lost["payload"] as? [String: Any])?["recording_failure"] as? [String: Any])
        #expect(note["cause"] as? String == "disk full: ENOSPC")
        #expect(!FileManager.default.fileExists(atPath: store.endMarkerPath(id)))
        #expect(try store.verifyAudit() == .ok(count: 2))
    }

    @Test("a marker is trusted only for its own run: another supervisor's, or a torn page, reads as lost")
    func markerMustMatch() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let dead = try deadPid()
        let id = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: dead, supervisorStart: 1,
                                    planHash: "h", manifestJSON: testPlanJSON, endReserveBytes: 0)
        let row = try #require(try store.run(id: id))
        let failure = RecordingFailure(cause: "disk full", errno: ENOSPC, sinceMs: 1)
        var other = EndMarker(runID: id, supervisorPid: dead &+ 1, supervisorStart: 1, startedMs: row.startedMs)
        other.end = UnrecordedEnd(outcome: Self.outcome, endedMs: 2, failure: failure)
        try store.writeEndMarker(other)
        #expect(try store.run(id: id)?.state == .lost)

        var own = other
        own.supervisorPid = dead
        try store.writeEndMarker(own)
        #expect(EndMarker.parse(try own.page()) == own, "the page reads back as written")
        #expect(try store.run(id: id)?.state == .endNotRecorded)
        let page = try own.page()
        try Data(page.prefix(60)).write(to: URL(fileURLWithPath: store.endMarkerPath(id)))
        #expect(try store.run(id: id)?.state == .lost, "a torn marker is no evidence")
    }

    @Test("SQLITE_FULL without an errno still means ENOSPC; EDQUOT is full too; EIO is an I/O error")
    func errorMapping() {
        let path = "/var/lib/clawjail/state.db"
        let full = StoreError.wrap(DatabaseError(resultCode: .SQLITE_FULL), while: "x", path: path)
        #expect(full.code == .full)
        #expect(full.errno == ENOSPC)
        #expect(full.message.contains("free space in /var/lib/clawjail"), "\(full.message)")
        let quota = StoreError.wrap(DatabaseError(resultCode: ResultCode(rawValue: 778), systemErrno: EDQUOT),
                                    while: "x", path: path)
        #expect(quota.code == .full, "\(quota)")
        #expect(quota.errno == EDQUOT)
        let io = StoreError.wrap(DatabaseError(resultCode: ResultCode(rawValue: 778), systemErrno: EIO),
                                 while: "x", path: path)
        #expect(io.code == .io)
        #expect(io.isRetryable)
        let corrupt = StoreError.wrap(DatabaseError(resultCode: .SQLITE_CORRUPT), while: "x", path: path)
        #expect(!corrupt.isRetryable, "waiting does not mend a damaged database")
    }
}
