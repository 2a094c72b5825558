import ClawjailCore
/// A range of outside uids (and the same gids) that one agent's jails map to.
public struct UidRange: Sendable, Hashable, Codable {
    public static let firstBase: UInt32 = 0x7000_0000
    public static let size: UInt32 = 65536
    /// Slots 1...4093 go to agents. The last range ends at 0x7FFD_FFFF, below
    /// 0x7FFF_FFFF and far from (uid_t)-1, which tools treat specially.
    public static let agentSlots: ClosedRange<Int> = 1...4093
    /// Slot 0: anonymous `clawjail exec` tool runs. Never allocated to an agent.
    public static let anonymous = UidRange(slot: 0)

    public let slot: Int
    public let base: UInt32
    public let count: UInt32

    private init(slot: Int) {
        self.slot = slot
        self.base = Self.firstBase + UInt32(slot) * Self.size
        self.count = Self.size
    }

    /// The range of an agent slot read back from the database.
    static func agent(slot: Int) throws -> UidRange {
        guard agentSlots.contains(slot) else {
            throw StoreError(.corrupt, "the database holds uid slot \(slot), outside \(agentSlots); "
                             + "it was edited by hand: run `clawjail audit verify`")
        }
        return UidRange(slot: slot)
    }
}

public struct AgentRecord: Sendable, Hashable {
    public let name: String
    public let configPath: String
    public let createdMs: Int64
    public let updatedMs: Int64
}

extension Store {
    // MARK: - Agents

    /// Registers an agent or updates the path of its config.
    public func upsertAgent(name: String, configPath: String) throws {
        try Self.requireAgentName(name)
        try writeImmediate("registering agent '\(name)'") { db in
            let now = Self.nowMs()
            try db.execute(sql: """
                INSERT OR IGNORE INTO agent (name, config_path, created_ms, updated_ms) VALUES (?, ?, ?, ?)
                """, arguments: [name, configPath, now, now])
            if db.changesCount == 0 {
                try db.execute(sql: "UPDATE agent SET config_path = ?, updated_ms = ? WHERE name = ?",
                               arguments: [configPath, now, name])
            }
        }
    }

    public func agent(name: String) throws -> AgentRecord? {
        try readSnapshot("reading agent '\(name)'") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM agent WHERE name = ?", arguments: [name]).map(Self.agentRecord)
        }
    }

    public func agents() throws -> [AgentRecord] {
        try readSnapshot("listing agents") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM agent ORDER BY name").map(Self.agentRecord)
        }
    }

    private static func agentRecord(_ row: Row) throws -> AgentRecord {
        AgentRecord(name: try row.decode(forColumn: "name"), configPath: try row.decode(forColumn: "config_path"),
                    createdMs: try row.decode(forColumn: "created_ms"), updatedMs: try row.decode(forColumn: "updated_ms"))
    }

    // MARK: - uid ranges

    /// The agent's uid range: the one it already has, or the lowest free slot. The
    /// allocation is one IMMEDIATE transaction, so concurrent processes never hand
    /// out the same slot (the slot is also the primary key), and it lasts until
    /// `releaseUidRange(agent:)`.
    public func uidRange(forAgent agent: String) throws -> UidRange {
        try Self.requireAgentName(agent)
        return try writeImmediate("allocating a uid range for agent '\(agent)'") { db in
            let now = Self.nowMs()
            if let slot = try Int.fetchOne(db.cachedStatement(sql: "SELECT slot FROM uid_range WHERE agent = ?"),
                                           arguments: [agent]) {
                return try UidRange.agent(slot: slot)
            }
            var candidate = UidRange.agentSlots.lowerBound
            let taken = try Int.fetchCursor(db.cachedStatement(sql: "SELECT slot FROM uid_range ORDER BY slot"))
            while let slot = try taken.next() {
                if slot > candidate { break }
                if slot == candidate { candidate += 1 }
            }
            guard UidRange.agentSlots.contains(candidate) else {
                throw StoreError(.uidRangesExhausted,
                                 "all \(UidRange.agentSlots.count) agent uid ranges are allocated; "
                                 + "release the ranges of agents that no longer exist with `clawjail gc`")
            }
            try db.run("INSERT INTO uid_range (slot, agent, allocated_ms) VALUES (?, ?, ?)", [candidate, agent, now])
            let range = try UidRange.agent(slot: candidate)
            try appendEvent(db, AuditEventInput(agent: agent, kind: "uid.allocate", payload: Self.payload(range)),
                            ts: now)
            return range
        }
    }

    /// Frees the agent's uid range for reuse. Returns the range that was freed, if any.
    /// The caller must first make sure that no file on the host is still owned by it.
    @discardableResult
    public func releaseUidRange(agent: String) throws -> UidRange? {
        return try writeImmediate("releasing the uid range of agent '\(agent)'") { db in
            let now = Self.nowMs()
            guard let slot = try Int.fetchOne(db, sql: "SELECT slot FROM uid_range WHERE agent = ?",
                                              arguments: [agent]) else { return nil }
            try db.execute(sql: "DELETE FROM uid_range WHERE slot = ?", arguments: [slot])
            let range = try UidRange.agent(slot: slot)
            try appendEvent(db, AuditEventInput(agent: agent, kind: "uid.release", payload: Self.payload(range)),
                            ts: now)
            return range
        }
    }

    /// Every allocation, by agent name.
    public func uidRanges() throws -> [String: UidRange] {
        try readSnapshot("listing uid ranges") { db in
            var result: [String: UidRange] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT agent, slot FROM uid_range") {
                let agent: String = try row.decode(forColumn: "agent")
                result[agent] = try UidRange.agent(slot: row.decode(forColumn: "slot"))
            }
            return result
        }
    }

    private static func payload(_ range: UidRange) -> [String: JSONValue] {
        ["slot": .int(Int64(range.slot)), "base": .int(Int64(range.base)), "count": .int(Int64(range.count))]
    }

    static func requireAgentName(_ name: String) throws {
        guard !name.isEmpty else {
            throw StoreError(.invalidArgument, "the agent name is empty; name the agent in its config")
        }
    }
}
