import Foundation
import Testing
@testable import ClawjailStore
import ClawjailCore

#if canImport(Glibc)
import Glibc
#endif

@Suite("runs")
struct RunTests {
    /// A pid that certainly has no process: a child that has exited and been reaped.
    /// (It could be reused by the time it is checked; then its start time differs.)
    private func deadPid() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    private func exportedKinds(_ store: Store) throws -> [String] {
        var kinds: [String] = []
        try store.exportAudit { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            kinds.append(try #require(object["kind"] as? String))
        }
        return kinds
    }

    @Test func secondAgentRunWithLiveSupervisorFailsClearly() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let pid = getpid()
        let start = try #require(ProcessIdentity.startTime(pid: pid))
        let first = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid, supervisorStart: start,
                                       planHash: "h1", manifestJSON: testPlanJSON)
        let error = try #require(throws: StoreError.self) {
            try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid, supervisorStart: start,
                               planHash: "h1", manifestJSON: testPlanJSON)
        }
        #expect(error.code == .alreadyRunning(agent: "mail", pid: pid))
        #expect(error.message.contains("clawjail stop mail"))
        // Tool runs of the same agent and runs of other agents are not blocked.
        _ = try store.beginRun(agent: "mail", kind: .tool, supervisorPid: pid, supervisorStart: start,
                               planHash: "h2", manifestJSON: "{}")
        _ = try store.beginRun(agent: "calendar", kind: .agent, supervisorPid: pid, supervisorStart: start,
                               planHash: "h1", manifestJSON: testPlanJSON)
        #expect(try store.runningRuns().count == 3)
        #expect(try store.run(id: first)?.state == .running)
        #expect(try store.run(id: first)?.supervisorIsAlive == true)
        // The refused attempt left nothing behind.
        #expect(try exportedKinds(store) == ["run.start", "run.start", "run.start"])
    }

    @Test func concurrentStartsOfOneAgentLetExactlyOneThrough() throws {
        // Four connections race to start the same agent; IMMEDIATE transactions
        // serialize them, so one wins and the others see its live row.
        let temp = try TempDir()
        _ = try Store.open(directory: temp.state)
        let state = temp.state
        let pid = getpid()
        let start = try #require(ProcessIdentity.startTime(pid: pid))
        let outcomes = Locked<[String]>([])
        onThreads(4) { _ in
            do {
                let store = try Store.open(directory: state)
                _ = try store.beginRun(agent: "same", kind: .agent, supervisorPid: pid, supervisorStart: start,
                                       planHash: "h", manifestJSON: "{}")
                outcomes.withLock { $0.append("started") }
            } catch let error as StoreError where error.code == .alreadyRunning(agent: "same", pid: pid) {
                outcomes.withLock { $0.append("refused") }
            } catch {
                outcomes.withLock { $0.append("\(error)") }
            }
        }
        #expect(outcomes.withLock { $0 }.sorted() == ["refused", "refused", "refused", "started"])
        let store = try Store.open(directory: temp.state)
        #expect(try store.runningRuns().count == 1)
    }

    @Test func staleRunOfDeadSupervisorIsMarkedLost() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let stale = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: try deadPid(),
                                       supervisorStart: 12345, planHash: "h1", manifestJSON: testPlanJSON)
        let pid = getpid()
        let start = try #require(ProcessIdentity.startTime(pid: pid))
        let fresh = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid, supervisorStart: start,
                                       planHash: "h1", manifestJSON: testPlanJSON)
        let lostRun = try #require(try store.run(id: stale))
        #expect(lostRun.state == .lost)
        #expect(lostRun.endedMs != nil)
        #expect(lostRun.outcome == nil)
        #expect(try store.runningRuns().map(\.id) == [fresh])
        #expect(try exportedKinds(store) == ["run.start", "run.lost", "run.start"])
        #expect(try store.verifyAudit() == .ok(count: 3))
    }

    @Test func reusedPidWithAnotherStartTimeIsNotTheSupervisor() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let pid = getpid()
        let start = try #require(ProcessIdentity.startTime(pid: pid))
        // Same pid, different start time: the original supervisor is gone and the pid reused.
        let old = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid, supervisorStart: start + 7,
                                     planHash: "h", manifestJSON: "{}")
        _ = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid, supervisorStart: start,
                               planHash: "h", manifestJSON: "{}")
        #expect(try store.run(id: old)?.state == .lost)
    }

    @Test func markLostRunsSweepsEveryAgent() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let dead = try deadPid()
        let pid = getpid()
        let start = try #require(ProcessIdentity.startTime(pid: pid))
        let a = try store.beginRun(agent: "a", kind: .agent, supervisorPid: dead, supervisorStart: 1,
                                   planHash: "h", manifestJSON: "{}")
        let b = try store.beginRun(agent: "b", kind: .tool, supervisorPid: dead, supervisorStart: 1,
                                   planHash: "h", manifestJSON: "{}")
        let live = try store.beginRun(agent: "c", kind: .agent, supervisorPid: pid, supervisorStart: start,
                                      planHash: "h", manifestJSON: "{}")
        #expect(try store.markLostRuns() == [a, b])
        #expect(try store.runningRuns().map(\.id) == [live])
        #expect(try store.markLostRuns() == [])
    }

    @Test func endRunRecordsOutcomeAndAuditEvents() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let pid = getpid()
        let start = try #require(ProcessIdentity.startTime(pid: pid))
        func begin(_ agent: String) throws -> RunID {
            try store.beginRun(agent: agent, kind: .agent, supervisorPid: pid, supervisorStart: start,
                               planHash: "h-\(agent)", manifestJSON: testPlanJSON)
        }
        let outcomes: [(String, RunOutcome)] = [
            ("exit", RunOutcome(status: .exited(code: 3), exitCode: 3, durationMs: 1500, peakMemoryBytes: 1 << 20,
                                cpuUsec: 4200)),
            ("signal", RunOutcome(status: .signaled(signal: 9), exitCode: 137, durationMs: 10)),
            ("oom", RunOutcome(status: .oomKilled, exitCode: 137, durationMs: 20, peakMemoryBytes: 512 << 20)),
            ("timeout", RunOutcome(status: .timedOut, exitCode: 124, durationMs: 60_000)),
            ("setup", RunOutcome(status: .setupFailed(message: "pivot_root: EINVAL"), exitCode: 125, durationMs: 2)),
            ("killed", RunOutcome(status: .killed(by: "clawjail kill --all (uid 0)"), exitCode: 137, durationMs: 5)),
        ]
        for (agent, outcome) in outcomes {
            let id = try begin(agent)
            try store.endRun(id: id, outcome: outcome)
            let record = try #require(try store.run(id: id))
            #expect(record.state == .finished)
            #expect(record.outcome == outcome)
            #expect(record.agent == agent)
            #expect(record.kind == .agent)
            #expect(record.planHash == "h-\(agent)")
            #expect(record.supervisorPid == pid)
            #expect(record.supervisorStart == start)
            #expect(try JSONValue.parse(record.manifestJSON) == JSONValue.parse(testPlanJSON))
            #expect(record.endedMs.map { $0 >= record.startedMs } == true)
        }
        #expect(try exportedKinds(store) == [
            "run.start", "run.end",
            "run.start", "run.end",
            "run.start", "run.end", "run.oom",
            "run.start", "run.end", "run.timeout",
            "run.start", "run.end",
            "run.start", "run.end",
        ])
        // Six runs of one manifest keep one copy of it.
        #expect(try store.dbQueue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM manifest") } == 1)
        #expect(try store.runs(agent: "oom").first?.outcome?.status == .oomKilled)
        #expect(try store.verifyAudit() == .ok(count: 14))
    }

    @Test func runStartCarriesThePlanAndRunEndTheDetails() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let pid = getpid()
        let start = try #require(ProcessIdentity.startTime(pid: pid))
        let id = try store.beginRun(agent: "mail", kind: .agent, supervisorPid: pid, supervisorStart: start,
                                    planHash: "abc123", manifestJSON: testPlanJSON)
        try store.endRun(id: id, outcome: RunOutcome(status: .killed(by: "operator"), exitCode: 137,
                                                     durationMs: 42, cpuUsec: 7))
        var payloads: [[String: Any]] = []
        try store.exportAudit { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["run_id"] as? Int == Int(id.rawValue))
            payloads.append(try #require(object["payload"] as? [String: Any]))
        }
        #expect(payloads.count == 2)
        #expect(payloads[0]["plan_hash"] as? String == "abc123")
        #expect(payloads[0]["run_kind"] as? String == "agent")
        let plan = try #require(payloads[0]["plan"] as? [String: Any])
        #expect((plan["limits"] as? [String: Any])?["pids"] as? Int == 256)
        #expect(payloads[1]["status"] as? String == "killed")
        #expect(payloads[1]["killed_by"] as? String == "operator")
        #expect(payloads[1]["exit_code"] as? Int == 137)
        #expect(payloads[1]["cpu_usec"] as? Int == 7)
        #expect(payloads[1]["peak_memory_bytes"] == nil)
    }

    @Test func endRunErrors() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        let outcome = RunOutcome(status: .exited(code: 0), exitCode: 0, durationMs: 1)
        let missing = try #require(throws: StoreError.self) { try store.endRun(id: RunID(rawValue: 99), outcome: outcome) }
        #expect(missing.code == .notFound)
        let id = try store.beginRun(agent: "", kind: .tool, supervisorPid: getpid(), supervisorStart: 0,
                                    planHash: "h", manifestJSON: "{}")
        try store.endRun(id: id, outcome: outcome)
        let twice = try #require(throws: StoreError.self) { try store.endRun(id: id, outcome: outcome) }
        #expect(twice.code == .invalidState)
        // An agent run needs a name; the plan must be JSON.
        let unnamed = try #require(throws: StoreError.self) {
            try store.beginRun(agent: "", kind: .agent, supervisorPid: 1, supervisorStart: 1, planHash: "h",
                               manifestJSON: "{}")
        }
        #expect(unnamed.code == .invalidArgument)
        let badPlan = try #require(throws: StoreError.self) {
            try store.beginRun(agent: "x", kind: .agent, supervisorPid: 1, supervisorStart: 1, planHash: "h",
                               manifestJSON: "{not json")
        }
        #expect(badPlan.code == .invalidArgument)
    }

    @Test func runsListsNewestFirstWithLimit() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        var ids: [RunID] = []
        for index in 0..<5 {
            ids.append(try store.beginRun(agent: "tools", kind: .tool, supervisorPid: getpid(), supervisorStart: 0,
                                          planHash: "h\(index)", manifestJSON: #"{"n":\#(index)}"#))
        }
        #expect(try store.runs(agent: "tools", limit: 3).map(\.id) == Array(ids.reversed().prefix(3)))
        #expect(try store.runs(agent: "nobody").isEmpty)
        #expect(try store.run(id: RunID(rawValue: 1000)) == nil)
    }

    @Test func agentsUpsert() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        try store.upsertAgent(name: "mail", configPath: "/etc/clawjail/mail.toml")
        let first = try #require(try store.agent(name: "mail"))
        try store.upsertAgent(name: "mail", configPath: "/srv/mail.toml")
        try store.upsertAgent(name: "calendar", configPath: "/etc/clawjail/calendar.toml")
        let second = try #require(try store.agent(name: "mail"))
        #expect(second.configPath == "/srv/mail.toml")
        #expect(second.createdMs == first.createdMs)
        #expect(try store.agents().map(\.name) == ["calendar", "mail"])
        #expect(try store.agent(name: "none") == nil)
        #expect(throws: StoreError.self) { try store.upsertAgent(name: "", configPath: "/x") }
    }
}
