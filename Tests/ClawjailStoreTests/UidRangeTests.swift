import Foundation
import Testing
@testable import ClawjailStore

@Suite("uid ranges")
struct UidRangeTests {
    @Test func slotArithmetic() throws {
        #expect(UidRange.anonymous.slot == 0)
        #expect(UidRange.anonymous.base == 0x7000_0000)
        #expect(UidRange.anonymous.count == 65536)
        let last = try UidRange.agent(slot: 4093)
        #expect(last.base == 0x7FFD_0000)
        #expect(UInt64(last.base) + UInt64(last.count) - 1 == 0x7FFD_FFFF)
        #expect(throws: StoreError.self) { try UidRange.agent(slot: 0) }
        #expect(throws: StoreError.self) { try UidRange.agent(slot: 4094) }
    }

    @Test func lowestFreeSlotStableAcrossReopenAndReusedAfterRelease() throws {
        let temp = try TempDir()
        var store = try Store.open(directory: temp.state)
        let alpha = try store.uidRange(forAgent: "alpha")
        let beta = try store.uidRange(forAgent: "beta")
        let gamma = try store.uidRange(forAgent: "gamma")
        #expect([alpha, beta, gamma].map(\.slot) == [1, 2, 3])
        #expect(beta.base == 0x7000_0000 + 2 * 65536)
        #expect(try store.uidRange(forAgent: "alpha") == alpha)
        try store.close()

        store = try Store.open(directory: temp.state)
        #expect(try store.uidRange(forAgent: "beta") == beta)
        #expect(try store.uidRanges() == ["alpha": alpha, "beta": beta, "gamma": gamma])
        #expect(try store.releaseUidRange(agent: "beta") == beta)
        #expect(try store.releaseUidRange(agent: "beta") == nil)
        // The freed slot is the lowest free one again.
        #expect(try store.uidRange(forAgent: "delta").slot == 2)
        #expect(try store.uidRange(forAgent: "beta").slot == 4)

        let error = try #require(throws: StoreError.self) { try store.uidRange(forAgent: "") }
        #expect(error.code == .invalidArgument)

        // Allocations and releases are audited.
        var kinds: [String] = []
        try store.exportAudit { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            kinds.append(try #require(object["kind"] as? String))
        }
        #expect(kinds == ["uid.allocate", "uid.allocate", "uid.allocate", "uid.release", "uid.allocate",
                          "uid.allocate"])
        #expect(try store.verifyAudit() == .ok(count: 6))
    }

    @Test func exhaustionIsAClearError() throws {
        let temp = try TempDir()
        let store = try Store.open(directory: temp.state)
        // Fill every slot directly; 4093 allocations through the API would be slow for no gain.
        try store.dbQueue.write { db in
            for slot in UidRange.agentSlots {
                try db.execute(sql: "INSERT INTO uid_range (slot, agent, allocated_ms) VALUES (?, ?, 0)",
                               arguments: [slot, "agent-\(slot)"])
            }
        }
        let error = try #require(throws: StoreError.self) { try store.uidRange(forAgent: "one-too-many") }
        #expect(error.code == .uidRangesExhausted)
        #expect(error.message.contains("clawjail gc"))
        #expect(try store.uidRange(forAgent: "agent-17").slot == 17)
    }

    @Test func distinctUnderConcurrentThreads() throws {
        // 4 threads, each with its own connection (as separate processes would have),
        // each allocating 50 shared agents in a different order plus 25 of its own.
        let temp = try TempDir()
        _ = try Store.open(directory: temp.state)
        let state = temp.state
        let shared = (0..<50).map { "shared-\($0)" }
        let results = Locked<[(agent: String, slot: Int)]>([])
        let failures = Locked<[String]>([])
        onThreads(4) { thread in
            do {
                let store = try Store.open(directory: state)
                let rotated = Array(shared[(thread * 12)...] + shared[..<(thread * 12)])
                let own = (0..<25).map { "thread\(thread)-\($0)" }
                for agent in rotated + own {
                    let range = try store.uidRange(forAgent: agent)
                    results.withLock { $0.append((agent, range.slot)) }
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        try checkAllocations(results.withLock { $0 }, expectedAgents: 50 + 4 * 25, state: state)
    }

    @Test(.timeLimit(.minutes(2)))
    func distinctUnderConcurrentProcesses() throws {
        let temp = try TempDir()
        _ = try Store.open(directory: temp.state)
        let children = try (0..<4).map { index in
            try TestChild.spawn(.allocate, state: temp.state, index: index, scratch: temp.path)
        }
        // Let every child get ready (open the store) before any allocates, so they contend.
        try TestChild.waitForFiles((0..<4).map { temp.path + "/ready-\($0)" }, seconds: 60)
        #expect(FileManager.default.createFile(atPath: temp.path + "/go", contents: nil))
        for child in children {
            child.waitUntilExit()
            #expect(child.terminationReason == .exit)
            #expect(child.terminationStatus == 0)
        }
        var results: [(agent: String, slot: Int)] = []
        for index in 0..<4 {
            let text = try String(contentsOfFile: temp.path + "/result-\(index)", encoding: .utf8)
            let lines = text.split(separator: "\n")
            #expect(lines.count == TestChild.sharedAgents.count + TestChild.ownAgents)
            for line in lines {
                let parts = line.split(separator: " ")
                results.append((String(parts[0]), try #require(Int(parts[1]))))
            }
        }
        try checkAllocations(results, expectedAgents: TestChild.sharedAgents.count + 4 * TestChild.ownAgents,
                             state: temp.state)
    }

    /// Every agent got one slot whatever thread asked, no slot went to two agents, and
    /// with the lowest-free rule the slots are exactly 1...n.
    private func checkAllocations(_ results: [(agent: String, slot: Int)], expectedAgents: Int,
                                  state: String) throws {
        var slotOfAgent: [String: Int] = [:]
        for (agent, slot) in results {
            if let seen = slotOfAgent[agent] {
                #expect(seen == slot, "agent \(agent) got slots \(seen) and \(slot)")
            }
            slotOfAgent[agent] = slot
        }
        #expect(slotOfAgent.count == expectedAgents)
        #expect(Set(slotOfAgent.values).count == expectedAgents)
        #expect(Set(slotOfAgent.values) == Set(1...expectedAgents))
        let store = try Store.open(directory: state)
        #expect(try store.uidRanges().mapValues(\.slot) == slotOfAgent)
        #expect(try store.verifyAudit() == .ok(count: Int64(expectedAgents)))
    }
}
