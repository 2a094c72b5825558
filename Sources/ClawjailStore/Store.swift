import CSQLite
import ClawjailSystem

/// clawjail's state: agents, uid-range allocations, runs, the audit chain and
/// protected-file snapshot metadata, in one SQLite database.
///
/// One `DatabaseQueue` (a single connection) per process, not a pool:
/// most users are short-lived CLI processes that make one or two statements, and a
/// pool would add reader connections and their setup to every `clawjail exec`. The
/// concurrency that matters is between processes; WAL lets readers in other
/// processes run beside the one writer, and every write is a `BEGIN IMMEDIATE`
/// transaction with a 10 s busy timeout, so writers queue on SQLite's lock instead
/// of failing with SQLITE_BUSY_SNAPSHOT half-way through.
///
/// Durability: WAL with `synchronous = NORMAL` (SQLite.swift). A SIGKILL of the
/// writer loses no committed transaction and never leaves a torn one; only a power
/// loss can drop the last commits, and then as whole transactions, so the audit
/// chain stays consistent.
public final class Store: Sendable {
    public static let defaultDirectory = "/var/lib/clawjail"
    public static let databaseFileName = "state.db"
    static let busyTimeoutSeconds: Double = 10

    /// The state directory, as given (without trailing slashes).
    public let directory: String
    /// The database file inside `directory`.
    public let databasePath: String
    /// What `open` changed on its way, such as permissions it tightened. The CLI
    /// prints these as warnings.
    public let notices: [String]

    let dbQueue: DatabaseQueue

    private init(directory: String, databasePath: String, notices: [String], dbQueue: DatabaseQueue) {
        self.directory = directory
        self.databasePath = databasePath
        self.notices = notices
        self.dbQueue = dbQueue
    }

    /// Opens (creating if needed) `<directory>/state.db` and brings its schema up to
    /// date. The directory is made 0700 and the database file 0600.
    public static func open(directory: String = Store.defaultDirectory) throws -> Store {
        let state = try StateDirectory(path: directory, databaseName: databaseFileName)
        let path = state.databasePath
        do {
            var config = Configuration()
            config.label = "clawjail.store"
            config.journalMode = .wal
            config.busyMode = .timeout(busyTimeoutSeconds)
            config.foreignKeysEnabled = true
            config.prepareDatabase { db in
                // Schema objects never run functions with side effects from a crafted file.
                try db.execute(sql: "PRAGMA trusted_schema = OFF")
                try Self.persistWAL(db)
            }
            let dbQueue = try openQueue(path: path, configuration: config)
            let migrator = Schema.migrator
            // Fast path without the lock. It can fail while another process is half-way
            // through creating the schema; then the locked path below decides.
            let upToDate = (try? dbQueue.read { db in try migrator.hasCompletedMigrations(db) }) ?? false
            if !upToDate {
                try state.withExclusiveLock { try migrator.migrate(dbQueue) }
            }
            return Store(directory: state.path, databasePath: path, notices: state.notices, dbQueue: dbQueue)
        } catch {
            throw StoreError.wrap(error, while: "opening the state database", path: path)
        }
    }

    // BEGIN read-only open (added for `clawjail doctor`, Operator/Doctor.swift)
    /// Opens an existing database for reading only: no directory or file is created,
    /// no permission is changed and no migration runs, so a check can inspect a state
    /// directory exactly as it is. Fails when the database does not exist.
    public static func openReadOnly(directory: String = Store.defaultDirectory) throws -> Store {
        var dir = directory
        while dir.count > 1, dir.hasSuffix("/") { dir.removeLast() }
        let path = dir + "/" + databaseFileName
        do {
            var config = Configuration()
            config.label = "clawjail.store.readonly"
            config.readonly = true
            config.busyMode = .timeout(busyTimeoutSeconds)
            config.prepareDatabase { db in
                try db.execute(sql: "PRAGMA trusted_schema = OFF")
                // Without it, closing the last connection removes and recreates the -wal file.
                try Self.persistWAL(db)
            }
            return Store(directory: dir, databasePath: path, notices: [],
                         dbQueue: try DatabaseQueue(path: path, configuration: config))
        } catch {
            throw StoreError.wrap(error, while: "opening the state database read-only", path: path)
        }
    }
    // END read-only open

    /// Closes the connection now rather than when the store is released.
    public func close() throws {
        do {
            try dbQueue.close()
        } catch {
            throw StoreError.wrap(error, while: "closing the state database", path: databasePath)
        }
    }

    // MARK: - Internal helpers

    /// Switching a new database to WAL needs an exclusive lock, and SQLite answers
    /// SQLITE_BUSY at once, without the busy handler, when another process has the
    /// file open at that moment. The mode is persistent, so this only happens when
    /// several processes create the database together: retry within the busy timeout.
    private static func openQueue(path: String, configuration: Configuration) throws -> DatabaseQueue {
        let deadline = monotonicSeconds() + busyTimeoutSeconds
        var pause: UInt32 = 1_000
        while true {
            do {
                return try DatabaseQueue(path: path, configuration: configuration)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && monotonicSeconds() < deadline {
                ProcessInfoLite.sleep(nanoseconds: UInt64(pause) * 1000)
                pause = min(pause * 2, 50_000)
            }
        }
    }

    private static func monotonicSeconds() -> Double {
        Double(ProcessInfoLite.monotonicNanoseconds) / 1e9
    }

    /// Keeps the -wal and -shm files when the last connection closes. Without it each
    /// short-lived CLI process that is the only user of the database deletes both on
    /// exit and the next one creates and recovers them again (measured: ~8 ms more
    /// per open, ~6 ms more per close). The checkpoint on close still runs, so the
    /// data is in the main file as before; the size limit stops a one-off large
    /// transaction from leaving a large -wal behind.
    private static func persistWAL(_ db: Database) throws {
        var persist: Int32 = 1
        let code = sqlite3_file_control(db.sqliteConnection, "main", SQLITE_FCNTL_PERSIST_WAL, &persist)
        guard code == SQLITE_OK else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: "SQLITE_FCNTL_PERSIST_WAL failed")
        }
        try db.execute(sql: "PRAGMA journal_size_limit = 8388608")
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction: the write lock is taken
    /// before the first read, so a read-then-write (allocate a slot, extend the
    /// chain) cannot race another process. Bodies read the clock inside, after the
    /// lock, so that timestamps follow the chain order (as far as the clock does).
    func writeImmediate<T>(_ what: @autoclosure () -> String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try dbQueue.write(body)
        } catch {
            throw StoreError.wrap(error, while: what(), path: databasePath)
        }
    }

    /// Runs `body` in a read transaction (one consistent snapshot).
    func readSnapshot<T>(_ what: @autoclosure () -> String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try dbQueue.read(body)
        } catch {
            throw StoreError.wrap(error, while: what(), path: databasePath)
        }
    }

    /// Wall-clock time in unix milliseconds.
    static func nowMs() -> Int64 {
        ProcessInfoLite.wallClockMilliseconds
    }
}

extension Database {
    // Fixed statements go through the connection's statement cache: compiling one
    // costs more than running a small statement, and a supervisor appends an audit
    // row for every egress decision.

    func run(_ sql: String, _ arguments: StatementArguments = []) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }

    func row(_ sql: String, _ arguments: StatementArguments = []) throws -> Row? {
        try Row.fetchOne(cachedStatement(sql: sql), arguments: arguments)
    }

    func rows(_ sql: String, _ arguments: StatementArguments = []) throws -> [Row] {
        try Row.fetchAll(cachedStatement(sql: sql), arguments: arguments)
    }
}
