import ClawjailEgress
import ClawjailStore
import Testing
@testable import ClawjailOperator
@testable import ClawjailRuntime

/// Egress decisions as audit events, and as `clawjail logs` shows them.
@Suite("NetworkAudit")
struct NetworkAuditTests {
    @Test("a denial's reason is in the event payload and on its `clawjail logs` line; none, no key")
    func reason() {
        let d = EgressDecision(agent: "alice", mode: .connect, verdict: .deny, rule: "sni-mismatch", denyRule: .sniMismatch,
                               host: "allowed.example", port: 443, reason: "sni mismatch: evil.example for allowed.example")
        let e = NetworkAudit.event(d, agent: "alice", runID: nil)
        #expect(e.kind == "egress.deny")
        #expect(e.payload["reason"] == .string("sni mismatch: evil.example for allowed.example"))
        let line = AgentLogs.eventLine(.object([
            "ts": .string("2026-01-01T00:00:00.000Z"), "seq": .int(7), "kind": .string(e.kind), "payload": .object(e.payload),
        ]))
        #expect(line.contains("reason=\"sni mismatch: evil.example for allowed.example\""), "\(line)")
        #expect(line.contains("rule=sni-mismatch") && line.contains("host=allowed.example"), "\(line)")

        var plain = d
        plain.reason = nil
        #expect(NetworkAudit.event(plain, agent: "alice", runID: nil).payload["reason"] == nil)
    }

    @Test("the reason is sanitised: printable ASCII, no quotes, bounded")
    func sanitised() {
        let d = EgressDecision(agent: "a", mode: .connect, verdict: .deny, rule: "x", host: "h", port: 1,
                               reason: "sni mismatch: \"ev\u{1b}[31mil\"\\ for h" + String(repeating: "y", count: 500))
        #expect(d.reason?.hasPrefix("sni mismatch: ?ev?[31mil?? for h") == true, "\(d.reason ?? "-")")
        #expect(d.reason?.count == 300)
        #expect(d.description.contains(" reason=\"sni mismatch: ?ev?[31mil?? for h"))
    }
}
