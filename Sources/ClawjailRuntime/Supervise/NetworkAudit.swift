import ClawjailCore
import ClawjailEgress
import ClawjailStore
import ClawjailSystem

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

    /// A hook that records through the run's recorder (when there is a store) and logs
    /// denials on stderr. The proxy's event loop only queues its events; the recorder's
    /// writer thread commits them, and `RunRecorder.finish` (after teardown, before the
    /// run's own end) writes whatever is still queued.
    static func hook(spec: JailSpec, recorder: RunRecorder?) -> NetworkHook {
        let name = spec.name
        let agent = recorder?.agent ?? ""
        let runID = recorder?.runID
        return NetworkHook(spec: spec, onEgress: { d in
            if d.verdict == .deny {
                Log.info("\(name): egress denied (\(d.rule)): \(d.host):\(d.port) [\(d.mode.rawValue)]"
                         + (d.reason.map { ": " + $0 } ?? ""))
            }
            recorder?.enqueue(event(d, agent: agent, runID: runID))
        }, onIngress: { e in
            if e.verdict != "allow" { Log.info("\(name): \(e)") }
            recorder?.enqueue(event(e, agent: agent, runID: runID))
        })
    }
}
