import ClawjailCore
import ClawjailEgress
import ClawjailStore
import ClawjailSystem
import Glibc

/// Egress and ingress decisions as audit events in the store's chain.
enum NetworkAudit {
    static func event(_ d: EgressDecision, agent: String, runID: RunID?) -> AuditEventInput {
        var payload: [String: JSONValue] = [
            "mode": .string(d.mode.rawValue), "host": .string(d.host), "port": .int(Int64(d.port)),
            "rule": .string(d.rule), "bytes_up": .int(Int64(clamping: d.bytesUp)),
            "bytes_down": .int(Int64(clamping: d.bytesDown)), "duration_ms": .int(Int64(clamping: d.durationMs)),
        ]
        if let ip = d.upstreamIP { payload["upstream_ip"] = .string(ip) }
        if let ip = d.dstIP { payload["dst_ip"] = .string(ip) }
        if d.suppressed > 0 { payload["suppressed"] = .int(Int64(d.suppressed)) }
        if let reason = d.reason { payload["reason"] = .string(reason) }
        return AuditEventInput(agent: agent, kind: "egress.\(d.verdict.rawValue)", runID: runID, payload: payload)
    }

    static func event(_ e: IngressEvent, agent: String, runID: RunID?) -> AuditEventInput {
        AuditEventInput(agent: agent, kind: "ingress.\(e.verdict)", runID: runID, payload: [
            "port": .int(Int64(e.port)), "reason": .string(e.reason), "bytes_in": .int(Int64(clamping: e.bytesIn)),
            "bytes_out": .int(Int64(clamping: e.bytesOut)), "duration_ms": .int(Int64(clamping: e.durationMs)),
        ])
    }

    /// A hook that records into `store` (when there is one) and logs denials on stderr.
    /// The proxy's event loop only queues its events; a writer thread commits them.
    static func hook(spec: JailSpec, store: Store?, runID: RunID?) -> NetworkHook {
        let agent = spec.agent ?? ""
        let name = spec.name
        let queue = store.flatMap { AuditQueue(store: $0) }
        return NetworkHook(spec: spec, onEgress: { d in
            if d.verdict == .deny {
                Log.info("\(name): egress denied (\(d.rule)): \(d.host):\(d.port) [\(d.mode.rawValue)]"
                         + (d.reason.map { ": " + $0 } ?? ""))
            }
            queue?.enqueue(event(d, agent: agent, runID: runID))
        }, onIngress: { e in
            if e.verdict != "allow" { Log.info("\(name): \(e)") }
            queue?.enqueue(event(e, agent: agent, runID: runID))
        }, onTeardown: { queue?.close() })
    }
}

/// Audit events written off the caller's thread, in the order they were queued.
///
/// Each plain HTTP request through the proxy is one event. Committing it on the
/// event loop put a SQLite transaction (and a WAL write) in front of every
/// response, and at thousands of requests a second the commits alone took a
/// good part of a core. Here a writer thread commits whatever is queued as one
/// transaction. An event after a quiet spell is committed at once; under load
/// commits are at least `coalesceNs` apart, so they carry many events each.
/// What a SIGKILL of the supervisor can lose is the queue of that moment: at
/// most the events of the last 2 ms. `close()` (at teardown, before the run's
/// own end is recorded) writes everything still queued.
final class AuditQueue: @unchecked Sendable {
    static let coalesceNs: UInt64 = 2_000_000

    private let store: Store
    private var pending: [AuditEventInput] = []
    private var closed = false
    private var lock = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var thread: pthread_t?

    init?(store: Store) {
        self.store = store
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&wake, nil)
        guard let t = try? PosixThread.spawn({ [self] in run() }) else { return nil }
        thread = t
    }

    deinit {
        pthread_cond_destroy(&wake)
        pthread_mutex_destroy(&lock)
    }

    func enqueue(_ event: AuditEventInput) {
        pthread_mutex_lock(&lock)
        if closed {
            pthread_mutex_unlock(&lock)
            _ = try? store.append(event)  // late: write it here rather than lose it
            return
        }
        pending.append(event)
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&lock)
    }

    /// Writes what is queued and stops the writer; later events are written inline.
    func close() {
        pthread_mutex_lock(&lock)
        closed = true
        let t = thread
        thread = nil
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&lock)
        if let t { PosixThread.join(t) }
    }

    private func run() {
        var lastCommit: UInt64 = 0
        while true {
            pthread_mutex_lock(&lock)
            while pending.isEmpty && !closed { pthread_cond_wait(&wake, &lock) }
            let closing = closed
            pthread_mutex_unlock(&lock)
            // Busy: let the queue fill until coalesceNs after the last commit.
            let now = ProcessInfoLite.monotonicNanoseconds
            let due = lastCommit &+ AuditQueue.coalesceNs
            if !closing && now < due { ProcessInfoLite.sleep(nanoseconds: due - now) }
            pthread_mutex_lock(&lock)
            let batch = pending
            pending = []
            let done = closed
            pthread_mutex_unlock(&lock)
            if !batch.isEmpty {
                _ = try? store.append(contentsOf: batch)
                lastCommit = ProcessInfoLite.monotonicNanoseconds
            }
            if done && batch.isEmpty { return }
        }
    }
}
