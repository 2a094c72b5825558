import ClawjailCore
import ClawjailStore
import ClawjailSystem

/// Everything a supervisor writes about one run, in order: its audit events while the
/// jail runs (egress and ingress decisions, seccomp violations), then its end.
///
/// Writes go off the caller's thread. Each plain HTTP request through the proxy is one
/// event, and committing it on the event loop put a SQLite transaction in front of
/// every response; here a writer thread, started with the first event, commits what
/// is queued as one transaction, at least `coalesceNs` after the previous commit. What
/// a SIGKILL of the supervisor can lose is the queue of that moment.
///
/// When the state directory is full (or the disk fails, or another process holds the
/// lock too long: `StoreError.isRetryable`), nothing is dropped and nothing lies:
/// - one line on stderr says what could not be recorded, where, the errno and SQLite
///   code, and to free space there; the run's end marker says so too (RunEnds.swift);
/// - the events stay queued in memory, in order (at most `maxPendingEvents`; beyond
///   that they are counted, not kept), and the writer retries with a backoff from
///   0.1 s to 5 s for as long as the jail runs. The first commit that succeeds writes a
///   `record.delayed` event (since when, why, how many) before them, in the same
///   transaction;
/// - at the end, `finish` writes the held events and the end in one transaction. When
///   that fails it first puts the outcome into the end marker (a SIGKILL from then
///   on loses nothing), then releases the run's reserved space and retries at once,
///   then with a backoff up to 1 s, for `retryFor` after the jail ended. That bound
///   is there because a supervisor under systemd must exit: the default for `run`
///   (30 s) stays well inside systemd's default stop timeout of 90 s, the one of
///   `exec` (5 s) keeps an agent runtime that waits for a tool short of a hang, and
///   a SIGTERM, SIGINT, SIGHUP or SIGQUIT ends the wait at once. At the bound it
///   records the end alone if it can (the held events counted in it as not recorded);
///   if it cannot, it marks the end marker "gave up", and the next clawjail process
///   that can write records the outcome from there (`Store.markLostRuns`).
///
/// The exit status of `clawjail run` and `exec` stays the jailed command's whatever
/// happens here: systemd's Restart= and an agent runtime read it as the agent's or
/// the tool's, and a clean exit turned into a failure would restart an agent into the
/// same full disk. The recording failure goes to stderr (and `--json-status`).
final class RunRecorder: @unchecked Sendable {
    static let coalesceNs: UInt64 = 2_000_000
    static let maxPendingEvents = 10_000
    static let firstRetryNs: UInt64 = 100_000_000
    static let maxRetryNsWhileRunning: UInt64 = 5_000_000_000
    static let maxRetryNsAfterEnd: UInt64 = 1_000_000_000

    let store: Store
    let runID: RunID?
    let agent: String
    /// "run 7 of agent mail", for messages.
    let label: String

    /// How finishing went, for `--json-status` and the caller.
    struct EndRecord {
        var recorded: Bool
        /// Why not, when it was not.
        var problem: String?
    }

    private struct Outage {
        var error: StoreError
        var failure: RecordingFailure
    }

    private let lock = PosixMutex()
    // Timed waits on the monotonic clock: a clock step must not stretch a backoff.
    private let wake = PosixCondition()
    // Under `lock`:
    private var pending: [AuditEventInput] = []
    private var dropped = 0
    private var droppedReported = false
    private var closed = false
    private var thread: pthread_t?
    // Only the thread that writes touches it: the writer thread until `finish` has
    // joined it, then the thread in `finish`.
    private var outage: Outage?

    init(store: Store, runID: RunID?, agent: String, label: String) {
        self.store = store
        self.runID = runID
        self.agent = agent
        self.label = label
    }

    // MARK: - While the jail runs

    /// Queues an event of the run. Never blocks on the database.
    func enqueue(_ event: AuditEventInput) {
        lock.lock()
        defer { lock.unlock() }
        if pending.count >= Self.maxPendingEvents {
            dropped += 1
            if !droppedReported {
                droppedReported = true
                Log.error("\(Self.maxPendingEvents) audit events of \(label) are waiting to be recorded in "
                          + "\(store.directory); further ones are counted but not kept: free space in \(store.directory)")
            }
            return
        }
        pending.append(event)
        if thread == nil && !closed {
            // Without a thread (spawn failed) the queue waits for `finish`.
            thread = try? PosixThread.spawn { [self] in writerLoop() }
        }
        wake.signal()
    }

    private func writerLoop() {
        var lastCommit: UInt64 = 0
        var backoff = Self.firstRetryNs
        lock.lock()
        while true {
            while pending.isEmpty && !closed { wake.wait(lock) }
            if closed { break }
            if outage == nil {
                // Busy: let the queue fill until coalesceNs after the last commit.
                let now = ProcessInfoLite.monotonicNanoseconds
                let due = lastCommit &+ Self.coalesceNs
                if now < due {
                    lock.unlock()
                    ProcessInfoLite.sleep(nanoseconds: due - now)
                    lock.lock()
                    if closed { break }
                }
            }
            let batch = pending
            let droppedSoFar = dropped
            lock.unlock()
            let result = write(batch, dropped: droppedSoFar, retrying: "they are kept in memory and retried while the run lasts")
            lock.lock()
            switch result {
            case .written, .refused:
                pending.removeFirst(batch.count)
                dropped -= droppedSoFar
                backoff = Self.firstRetryNs
                lastCommit = ProcessInfoLite.monotonicNanoseconds
            case .retry:
                waitLocked(nanoseconds: backoff)
                backoff = min(backoff * 2, Self.maxRetryNsWhileRunning)
            }
        }
        lock.unlock()
    }

    /// Sleeps up to `ns` with `lock` held across, woken early by `finish`.
    private func waitLocked(nanoseconds ns: UInt64) {
        let deadline = ProcessInfoLite.monotonicNanoseconds + ns
        while !closed {
            if !wake.wait(lock, until: deadline) { break }
        }
    }

    private enum WriteResult { case written, retry, refused }

    /// One commit of `batch`, behind a `record.delayed` event after an outage.
    private func write(_ batch: [AuditEventInput], dropped: Int, retrying: String) -> WriteResult {
        guard !batch.isEmpty || dropped > 0 else { return .written }
        do {
            if let outage {
                try store.append(contentsOf: [delayedEvent(outage, events: batch.count, dropped: dropped)] + batch)
                recovered(outage, events: batch.count)
            } else {
                try store.append(contentsOf: batch)
            }
            return .written
        } catch let error as StoreError where error.isRetryable {
            failed(error, what: "audit events", detail: retrying)
            return .retry
        } catch {
            // Waiting will not help (a bug, a damaged database): say so and go on.
            Log.warning("could not record \(batch.count) audit events of \(label): \(error)")
            return .refused
        }
    }

    private func delayedEvent(_ outage: Outage, events: Int, dropped: Int) -> AuditEventInput {
        var payload: [String: JSONValue] = [
            "since_ms": .int(outage.failure.sinceMs), "cause": .string(outage.failure.cause),
            "errno": outage.failure.errno.map { .int(Int64($0)) } ?? .null, "events": .int(Int64(events)),
        ]
        if dropped > 0 { payload["events_dropped"] = .int(Int64(dropped)) }
        return AuditEventInput(agent: agent, kind: "record.delayed", runID: runID, payload: payload)
    }

    /// The first failure of an outage: one line on stderr and a note in the end marker.
    private func failed(_ error: StoreError, what: String, detail: String) {
        guard outage == nil else { return }
        let failure = RecordingFailure(error, sinceMs: ProcessInfoLite.wallClockMilliseconds)
        outage = Outage(error: error, failure: failure)
        Log.error("cannot record the \(what) of \(label) in \(store.directory): \(error.cause); \(detail): "
                  + "free space in \(store.directory)")
        if let runID { try? store.noteRecordingFailure(run: runID, failure) }
    }

    private func recovered(_ outage: Outage, events: Int) {
        self.outage = nil
        let delay = ProcessInfoLite.wallClockMilliseconds - outage.failure.sinceMs
        Log.info("recording works again in \(store.directory): wrote \(events) audit events of \(label) "
                 + "that waited \(Units.formatDuration(UInt64(max(0, delay))))")
        if let runID { try? store.noteRecordingFailure(run: runID, nil) }
    }

    // MARK: - At the end

    /// Stops the writer thread, then writes what is still queued and the end (nil for
    /// a run without a row), retrying for up to `retryForNs` when the store cannot be
    /// written. `summary` ("exited 0") is for messages.
    func finish(end: RunOutcome?, summary: String, retryForNs: UInt64) -> EndRecord {
        lock.lock()
        closed = true
        let t = thread
        thread = nil
        wake.broadcast()
        lock.unlock()
        if let t { PosixThread.join(t) }
        // From here on only this thread writes.
        let endedMs = ProcessInfoLite.wallClockMilliseconds
        let started = ProcessInfoLite.monotonicNanoseconds
        let deadline = started + retryForNs
        var backoff = Self.firstRetryNs
        var reserveReleased = false
        // True only for the attempt right after the reserve was given back.
        var onReserve = false
        var endFailure: StoreError?
        var signals: FD?
        defer { signals?.close() }
        var interrupted = false
        while true {
            let (events, droppedSoFar) = queued()
            switch finalWrite(events, dropped: droppedSoFar, end: end, endedMs: endedMs, summary: summary,
                              retryForNs: retryForNs, endFailure: &endFailure) {
            case .written:
                consumed(events.count, dropped: droppedSoFar)
                if !queued().0.isEmpty { continue }   // events that came during the last write
                if let endFailure, end != nil {
                    let after = Units.formatDuration((ProcessInfoLite.monotonicNanoseconds - started) / 1_000_000)
                    Log.info("recorded the end of \(label) in \(store.directory) after \(after) "
                             + (onReserve ? "(in the space reserved for it at the start)" : "(space was freed)")
                             + "; it had failed with \(endFailure.cause)")
                }
                return EndRecord(recorded: true, problem: nil)
            case .refused(let problem):
                consumed(events.count, dropped: droppedSoFar)
                if end == nil, !queued().0.isEmpty { continue }
                return EndRecord(recorded: end == nil, problem: problem)
            case .retry:
                break
            }
            onReserve = false
            if !reserveReleased, let runID, end != nil {
                reserveReleased = true
                if store.releaseEndReserve(run: runID) {
                    onReserve = true
                    continue
                }
            }
            let now = ProcessInfoLite.monotonicNanoseconds
            if now >= deadline || interrupted { break }
            if signals == nil { signals = SupervisorSignals.makeSignalFD() }
            interrupted = waitForStop(signals, nanoseconds: min(backoff, deadline - now))
            backoff = min(backoff * 2, Self.maxRetryNsAfterEnd)
        }
        return giveUp(end: end, endedMs: endedMs, summary: summary, retryForNs: retryForNs,
                      interrupted: interrupted)
    }

    private enum FinalResult {
        case written, retry
        case refused(String)
    }

    private func finalWrite(_ events: [AuditEventInput], dropped: Int, end: RunOutcome?, endedMs: Int64,
                            summary: String, retryForNs: UInt64, endFailure: inout StoreError?) -> FinalResult {
        guard let end, let runID else {
            switch write(events, dropped: dropped,
                         retrying: "retrying for up to \(Units.formatDuration(retryForNs / 1_000_000))") {
            case .written: return .written
            case .retry: return .retry
            case .refused: return .refused("audit events refused by the store")
            }
        }
        var held = events
        if let outage, !events.isEmpty || dropped > 0 {
            held.insert(delayedEvent(outage, events: events.count, dropped: dropped), at: 0)
        }
        do {
            // Late only when the end's own write failed; held events have their record.delayed.
            try store.endRun(id: runID, outcome: end, endedMs: endedMs, late: endFailure.map { failure(of: $0) },
                             precededBy: held)
            if let outage, !events.isEmpty { recovered(outage, events: events.count) }
            outage = nil
            return .written
        } catch let error as StoreError where error.isRetryable {
            if endFailure == nil {
                endFailure = error
                let failure = outage?.failure ?? RecordingFailure(error, sinceMs: ProcessInfoLite.wallClockMilliseconds)
                if outage == nil { outage = Outage(error: error, failure: failure) }
                // Before anything else: from now on a SIGKILL loses nothing.
                let kept = (try? store.noteUnrecordedEnd(run: runID, UnrecordedEnd(outcome: end, endedMs: endedMs,
                                                                                     failure: failure))) != nil
                Log.error("cannot record the end of \(label) (\(summary)) in \(store.directory): \(error.cause); "
                          + "retrying for up to \(Units.formatDuration(retryForNs / 1_000_000)) "
                          + (kept ? "(the outcome is kept in \(store.endMarkerPath(runID)) meanwhile)" : "(the outcome is kept in memory)")
                          + ": free space in \(store.directory)")
            }
            return .retry
        } catch {
            Log.warning("could not record the end of \(label): \(error)")
            return .refused("\(error)")
        }
    }

    private func failure(of error: StoreError) -> RecordingFailure {
        outage?.failure ?? RecordingFailure(error, sinceMs: ProcessInfoLite.wallClockMilliseconds)
    }

    /// At the bound: the end alone if it fits (held events counted as not recorded),
    /// else the outcome left in the end marker for the next clawjail that can write.
    private func giveUp(end: RunOutcome?, endedMs: Int64, summary: String, retryForNs: UInt64,
                        interrupted: Bool) -> EndRecord {
        let (events, droppedSoFar) = queued()
        let notRecorded = events.count + droppedSoFar
        let cause = outage?.error.cause ?? "unknown"
        let why = interrupted ? "on a signal" : "after \(Units.formatDuration(retryForNs / 1_000_000))"
        guard let end, let runID else {
            Log.error("gave up recording \(notRecorded) audit events of \(label) \(why): \(cause): "
                      + "free space in \(store.directory)")
            return EndRecord(recorded: false, problem: cause)
        }
        let failure = outage?.failure ?? RecordingFailure(cause: cause, errno: nil, sinceMs: endedMs)
        if notRecorded > 0 {
            do {
                try store.endRun(id: runID, outcome: end, endedMs: endedMs, late: failure, eventsNotRecorded: notRecorded)
                Log.error("recorded the end of \(label), but gave up on \(notRecorded) of its audit events \(why): "
                          + "\(cause): free space in \(store.directory)")
                return EndRecord(recorded: true, problem: "\(notRecorded) audit events not recorded: \(cause)")
            } catch {}
        }
        let marked = (try? store.noteUnrecordedEnd(run: runID, UnrecordedEnd(
            outcome: end, endedMs: endedMs, failure: failure, gaveUpMs: ProcessInfoLite.wallClockMilliseconds,
            eventsNotRecorded: notRecorded))) != nil
        if marked {
            Log.error("gave up recording the end of \(label) \(why): \(cause); its outcome (\(summary)) is kept in "
                      + "\(store.endMarkerPath(runID)), and the next `clawjail ps` or `clawjail logs` that can write "
                      + "records it: free space in \(store.directory)")
        } else {
            Log.error("gave up recording the end of \(label) (\(summary)) \(why): \(cause); not even its end marker "
                      + "could be written, so it will read as lost: free space in \(store.directory)")
        }
        return EndRecord(recorded: false, problem: cause)
    }

    private func queued() -> ([AuditEventInput], Int) {
        lock.lock()
        defer { lock.unlock() }
        return (pending, dropped)
    }

    private func consumed(_ count: Int, dropped done: Int) {
        lock.lock()
        pending.removeFirst(count)
        dropped -= done
        lock.unlock()
    }

    /// Waits up to `ns`; true when a stop signal (TERM, INT, HUP, QUIT) came meanwhile.
    private func waitForStop(_ signals: FD?, nanoseconds ns: UInt64) -> Bool {
        guard let signals else {
            ProcessInfoLite.sleep(nanoseconds: ns)
            return false
        }
        var fds = [Poll.Entry(fd: signals, events: .readable)]
        let ms = Int32(min(ns / 1_000_000 + 1, 60_000))
        guard let n = try? Poll.waitOnce(&fds, timeoutMs: ms), n > 0 else { return false }
        return SignalFD.pending(signals).contains { SupervisorSignals.stopping.contains($0) }
    }
}
