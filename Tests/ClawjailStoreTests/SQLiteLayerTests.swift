import Testing
@testable import ClawjailStore

/// The store's own layer over libsqlite3 (SQLite.swift), on a real database file.
@Suite("SQLite layer")
struct SQLiteLayerTests {
    private func queue(_ temp: TempDir) throws -> DatabaseQueue {
        var config = Configuration()
        config.journalMode = .wal
        config.busyMode = .timeout(2)
        return try DatabaseQueue(path: temp.path + "/t.db", configuration: config)
    }

    @Test func executeRunsEveryStatementAndSpreadsTheArguments() throws {
        let temp = try TempDir()
        let q = try queue(temp)
        try q.write { db in
            try db.execute(sql: """
                CREATE TABLE t (a INTEGER, b TEXT);
                INSERT INTO t VALUES (?, ?);
                -- a comment between statements
                INSERT INTO t VALUES (?, NULL);
                """, arguments: [1, "one", 2])
        }
        let rows = try q.read { db in try Row.fetchAll(db, sql: "SELECT a, b FROM t ORDER BY a") }
        #expect(rows.count == 2)
        #expect(try rows[0].decode(Int.self, forColumn: "a") == 1)
        #expect(try rows[0].decode(String.self, forColumn: "b") == "one")
        #expect(try rows[1].decode(String?.self, forColumn: "b") == nil)
        #expect(try q.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") } == "wal")

        // Too many or too few arguments fail instead of binding NULLs or dropping values.
        #expect(throws: DatabaseError.self) {
            try q.write { db in try db.execute(sql: "INSERT INTO t VALUES (?, ?)", arguments: [3, "x", 4]) }
        }
        #expect(throws: DatabaseError.self) {
            try q.write { db in try db.execute(sql: "INSERT INTO t VALUES (?, ?)", arguments: [3]) }
        }
        #expect(try q.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") } == 2)
    }

    @Test func decodingFailuresAreRowDecodingErrors() throws {
        let temp = try TempDir()
        let q = try queue(temp)
        let row = try #require(try q.read { db in try Row.fetchOne(db, sql: "SELECT 'text' AS s, NULL AS n, 7 AS i") })
        #expect(throws: RowDecodingError.self) { try row.decode(Int64.self, forColumn: "s") }
        #expect(throws: RowDecodingError.self) { try row.decode(Int64.self, forColumn: "n") }
        #expect(throws: RowDecodingError.self) { try row.decode(Int64.self, forColumn: "missing") }
        #expect(try row.decode(Int64?.self, forColumn: "n") == nil)
        #expect(try row.decode(Int32.self, forColumn: "I") == 7)  // column names match without case
    }

    @Test func extendedResultCodesMatchTheirPrimaryCode() throws {
        let temp = try TempDir()
        let q = try queue(temp)
        try q.write { db in try db.execute(sql: "CREATE TABLE k (id INTEGER PRIMARY KEY); INSERT INTO k VALUES (1)") }
        let error = try #require(throws: DatabaseError.self) {
            try q.write { db in try db.execute(sql: "INSERT INTO k VALUES (1)") }
        }
        #expect(error.resultCode.rawValue == 1555)  // SQLITE_CONSTRAINT_PRIMARYKEY
        #expect(error.resultCode == .SQLITE_CONSTRAINT)
        #expect(error.resultCode != .SQLITE_BUSY)
        #expect(error.description.contains("INSERT INTO k VALUES (1)"))
    }

    @Test func aThrowingWriteRollsBack() throws {
        struct Stop: Error {}
        let temp = try TempDir()
        let q = try queue(temp)
        try q.write { db in try db.execute(sql: "CREATE TABLE t (a INTEGER)") }
        #expect(throws: Stop.self) {
            try q.write { db in
                try db.execute(sql: "INSERT INTO t VALUES (1)")
                throw Stop()
            }
        }
        #expect(try q.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") } == 0)
        // The connection is usable afterwards: no transaction was left open.
        try q.write { db in try db.execute(sql: "INSERT INTO t VALUES (2)") }
        #expect(try q.read { db in try Int64.fetchAll(db, sql: "SELECT a FROM t") } == [2])
    }

    @Test func cachedStatementsRebindAndCursorsStream() throws {
        let temp = try TempDir()
        let q = try queue(temp)
        try q.write { db in
            try db.execute(sql: "CREATE TABLE t (a INTEGER)")
            for i in 0..<50 { try db.cachedStatement(sql: "INSERT INTO t VALUES (?)").execute(arguments: [i]) }
        }
        let (sum, evens) = try q.read { db in
            var sum = 0
            let all = try Int.fetchCursor(db.cachedStatement(sql: "SELECT a FROM t ORDER BY a"))
            while let v = try all.next() { sum += v }
            let rows = try Row.fetchCursor(db, sql: "SELECT a FROM t WHERE a % 2 = ?", arguments: [0])
            var evens = 0
            while try rows.next() != nil { evens += 1 }
            return (sum, evens)
        }
        #expect(sum == (0..<50).reduce(0, +))
        #expect(evens == 25)
    }

    @Test func migrationsRunOnceAndAreRecordedInGRDBsTable() throws {
        let temp = try TempDir()
        let q = try queue(temp)
        var runs = 0
        var migrator = DatabaseMigrator()
        migrator.registerMigration("m1") { db in
            runs += 1
            try db.execute(sql: "CREATE TABLE m (x INTEGER)")
        }
        #expect(try q.read { db in try migrator.hasCompletedMigrations(db) } == false)
        try migrator.migrate(q)
        try migrator.migrate(q)
        #expect(runs == 1)
        #expect(try q.read { db in try migrator.hasCompletedMigrations(db) })
        #expect(try q.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") } == ["m1"])
    }
}
