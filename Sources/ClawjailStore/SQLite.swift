import CSQLite
import ClawjailSystem

// The store's own thin layer over the system SQLite (libsqlite3).
//
// It replaced GRDB, whose dependency on Foundation put ICU's 34 MB of data,
// CoreFoundation's start-up constructor and about 3,000 protocol conformances into the
// one binary that `clawjail exec` starts for every tool run: the Swift runtime scans
// every conformance record on each uncached lookup, several times per start. The
// store uses little of GRDB (one connection, fixed SQL, rows read by column name), so
// this layer keeps GRDB's names for what it does use (`DatabaseQueue`, `Row`,
// `DatabaseMigrator` with its `grdb_migrations` table), and databases written by
// earlier versions open unchanged.

/// SQLite's result code. Compared by primary code: SQLITE_BUSY matches
/// SQLITE_BUSY_RECOVERY too, as `case .SQLITE_BUSY:` in a switch expects.
struct ResultCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    let rawValue: Int32
    init(rawValue: Int32) { self.rawValue = rawValue }

    var primary: ResultCode { ResultCode(rawValue: rawValue & 0xFF) }
    var description: String { "\(rawValue) (\(String(cString: sqlite3_errstr(rawValue))))" }

    static func == (a: ResultCode, b: ResultCode) -> Bool { a.rawValue & 0xFF == b.rawValue & 0xFF }
    func hash(into h: inout Hasher) { h.combine(rawValue & 0xFF) }

    static let SQLITE_OK = ResultCode(rawValue: CSQLite.SQLITE_OK)
    static let SQLITE_BUSY = ResultCode(rawValue: CSQLite.SQLITE_BUSY)
    static let SQLITE_LOCKED = ResultCode(rawValue: CSQLite.SQLITE_LOCKED)
    static let SQLITE_CORRUPT = ResultCode(rawValue: CSQLite.SQLITE_CORRUPT)
    static let SQLITE_NOTADB = ResultCode(rawValue: CSQLite.SQLITE_NOTADB)
    static let SQLITE_FULL = ResultCode(rawValue: CSQLite.SQLITE_FULL)
    static let SQLITE_IOERR = ResultCode(rawValue: CSQLite.SQLITE_IOERR)
    static let SQLITE_READONLY = ResultCode(rawValue: CSQLite.SQLITE_READONLY)
    static let SQLITE_CANTOPEN = ResultCode(rawValue: CSQLite.SQLITE_CANTOPEN)
    static let SQLITE_PERM = ResultCode(rawValue: CSQLite.SQLITE_PERM)
    static let SQLITE_AUTH = ResultCode(rawValue: CSQLite.SQLITE_AUTH)
    static let SQLITE_CONSTRAINT = ResultCode(rawValue: CSQLite.SQLITE_CONSTRAINT)
    static let SQLITE_MISUSE = ResultCode(rawValue: CSQLite.SQLITE_MISUSE)
    static let SQLITE_ERROR = ResultCode(rawValue: CSQLite.SQLITE_ERROR)
}

/// An error SQLite reported, with its message and the statement that failed.
struct DatabaseError: Error, CustomStringConvertible, Sendable {
    /// The full (extended) code; compares equal to its primary code.
    let resultCode: ResultCode
    let message: String?
    let sql: String?
    /// The OS errno of the failed system call behind an I/O error (sqlite3_system_errno),
    /// 0 when there was none. SQLite resets it to 0 when it reports SQLITE_FULL.
    let systemErrno: Int32

    init(resultCode: ResultCode, message: String? = nil, sql: String? = nil, systemErrno: Int32 = 0) {
        self.resultCode = resultCode
        self.message = message
        self.sql = sql
        self.systemErrno = systemErrno
    }

    var description: String {
        var text = "SQLite error \(resultCode.rawValue)"
        if let message { text += ": \(message)" }
        if systemErrno != 0 { text += " (errno \(systemErrno))" }
        if let sql { text += " - while executing `\(sql)`" }
        return text
    }
}

/// A row's column is missing or holds a value of another type.
struct RowDecodingError: Error, CustomStringConvertible, Sendable {
    let description: String
}

/// One column value as SQLite stores it.
enum DatabaseValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// A Swift type that binds to and reads from a column.
protocol DatabaseValueConvertible {
    var databaseValue: DatabaseValue { get }
    /// nil when the value does not convert (a NULL into a non-optional, text into an Int).
    static func fromDatabaseValue(_ value: DatabaseValue) -> Self?
}

extension Int64: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { .integer(self) }
    static func fromDatabaseValue(_ value: DatabaseValue) -> Int64? {
        switch value {
        case .integer(let v): return v
        case .real(let d): return Int64(exactly: d)
        default: return nil
        }
    }
}

extension Int: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { .integer(Int64(self)) }
    static func fromDatabaseValue(_ value: DatabaseValue) -> Int? { Int64.fromDatabaseValue(value).flatMap { Int(exactly: $0) } }
}

extension Int32: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { .integer(Int64(self)) }
    static func fromDatabaseValue(_ value: DatabaseValue) -> Int32? { Int64.fromDatabaseValue(value).flatMap { Int32(exactly: $0) } }
}

extension UInt32: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { .integer(Int64(self)) }
    static func fromDatabaseValue(_ value: DatabaseValue) -> UInt32? { Int64.fromDatabaseValue(value).flatMap { UInt32(exactly: $0) } }
}

extension Bool: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { .integer(self ? 1 : 0) }
    static func fromDatabaseValue(_ value: DatabaseValue) -> Bool? { Int64.fromDatabaseValue(value).map { $0 != 0 } }
}

extension Double: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { .real(self) }
    static func fromDatabaseValue(_ value: DatabaseValue) -> Double? {
        switch value {
        case .real(let d): return d
        case .integer(let v): return Double(v)
        default: return nil
        }
    }
}

extension String: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { .text(self) }
    static func fromDatabaseValue(_ value: DatabaseValue) -> String? {
        if case .text(let s) = value { return s }
        return nil
    }
}

extension Optional: DatabaseValueConvertible where Wrapped: DatabaseValueConvertible {
    var databaseValue: DatabaseValue { self?.databaseValue ?? .null }
    static func fromDatabaseValue(_ value: DatabaseValue) -> Wrapped?? {
        if case .null = value { return .some(nil) }
        return Wrapped.fromDatabaseValue(value).map { .some($0) }
    }
}

/// The values bound to a statement's `?` placeholders, in order.
struct StatementArguments: ExpressibleByArrayLiteral, Sendable {
    var values: [DatabaseValue]

    init(arrayLiteral elements: (any DatabaseValueConvertible)?...) {
        values = elements.map { $0?.databaseValue ?? .null }
    }

    static func += (lhs: inout StatementArguments, rhs: StatementArguments) {
        lhs.values += rhs.values
    }
}

/// One result row: column names and values.
struct Row: Sendable {
    let columnNames: [String]
    let values: [DatabaseValue]

    private func index(of column: String) -> Int? {
        if let i = columnNames.firstIndex(of: column) { return i }
        let lower = column.lowercased()
        return columnNames.firstIndex { $0.lowercased() == lower }
    }

    /// The column's value as `T`; throws `RowDecodingError` when the column is missing
    /// or its value does not convert (a hand-edited row, for the audit verifier).
    func decode<T: DatabaseValueConvertible>(_ type: T.Type = T.self, forColumn column: String) throws -> T {
        guard let i = index(of: column) else {
            throw RowDecodingError(description: "no column \(column) in the row (columns: \(columnNames.joined(separator: ", ")))")
        }
        guard let v = T.fromDatabaseValue(values[i]) else {
            throw RowDecodingError(description: "column \(column) holds \(values[i]), not a \(T.self)")
        }
        return v
    }

    /// The column's value as `T`, for tests and fixed queries: traps on a mismatch.
    subscript<T: DatabaseValueConvertible>(_ column: String) -> T {
        do { return try decode(T.self, forColumn: column) } catch { fatalError("\(error)") }
    }

    static func fetchOne(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> Row? {
        try fetchOne(db.makeStatement(sql: sql), arguments: arguments)
    }

    static func fetchAll(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> [Row] {
        try fetchAll(db.makeStatement(sql: sql), arguments: arguments)
    }

    static func fetchCursor(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> RowCursor {
        let statement = try db.makeStatement(sql: sql)
        try statement.bind(arguments)
        return RowCursor(statement)
    }

    static func fetchOne(_ statement: Statement, arguments: StatementArguments = []) throws -> Row? {
        try statement.bind(arguments)
        defer { statement.reset() }
        return try statement.step() ? statement.row() : nil
    }

    static func fetchAll(_ statement: Statement, arguments: StatementArguments = []) throws -> [Row] {
        try statement.bind(arguments)
        defer { statement.reset() }
        var rows: [Row] = []
        while try statement.step() { rows.append(statement.row()) }
        return rows
    }
}

/// Rows read one at a time, for results too long to hold at once.
final class RowCursor {
    private let statement: Statement
    private var done = false

    init(_ statement: Statement) { self.statement = statement }

    func next() throws -> Row? {
        guard !done else { return nil }
        if try statement.step() { return statement.row() }
        done = true
        statement.reset()
        return nil
    }
}

/// Values of one column read one at a time.
final class ValueCursor<T: DatabaseValueConvertible> {
    private let rows: RowCursor
    init(_ rows: RowCursor) { self.rows = rows }

    func next() throws -> T? {
        while let row = try rows.next() {
            if let v = T.fromDatabaseValue(row.values.first ?? .null) { return v }
        }
        return nil
    }
}

extension DatabaseValueConvertible {
    /// The first column of the first row; nil when there is no row or the value is NULL.
    static func fetchOne(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> Self? {
        try fetchOne(db.makeStatement(sql: sql), arguments: arguments)
    }

    static func fetchOne(_ statement: Statement, arguments: StatementArguments = []) throws -> Self? {
        guard let row = try Row.fetchOne(statement, arguments: arguments) else { return nil }
        return fromDatabaseValue(row.values.first ?? .null)
    }

    /// The first column of every row, skipping NULLs.
    static func fetchAll(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> [Self] {
        try Row.fetchAll(db, sql: sql, arguments: arguments).compactMap { fromDatabaseValue($0.values.first ?? .null) }
    }

    static func fetchCursor(_ statement: Statement, arguments: StatementArguments = []) throws -> ValueCursor<Self> {
        try statement.bind(arguments)
        return ValueCursor(RowCursor(statement))
    }
}

extension DatabaseValueConvertible where Self: Hashable {
    static func fetchSet(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> Set<Self> {
        Set(try fetchAll(db, sql: sql, arguments: arguments))
    }
}

/// A prepared statement of one connection.
final class Statement {
    let sql: String
    private let handle: OpaquePointer
    private unowned let db: Database

    fileprivate init(db: Database, sql: String, handle: OpaquePointer) {
        self.db = db
        self.sql = sql
        self.handle = handle
    }

    deinit { sqlite3_finalize(handle) }

    func reset() {
        sqlite3_reset(handle)
    }

    /// Resets the statement and binds `arguments` to its placeholders.
    func bind(_ arguments: StatementArguments) throws {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        let expected = Int(sqlite3_bind_parameter_count(handle))
        guard arguments.values.count == expected else {
            throw DatabaseError(resultCode: .SQLITE_MISUSE,
                                message: "\(arguments.values.count) arguments for \(expected) placeholders", sql: sql)
        }
        for (i, value) in arguments.values.enumerated() {
            let position = Int32(i + 1)
            let code: Int32
            switch value {
            case .null: code = sqlite3_bind_null(handle, position)
            case .integer(let v): code = sqlite3_bind_int64(handle, position, v)
            case .real(let d): code = sqlite3_bind_double(handle, position, d)
            case .text(let s): code = sqlite3_bind_text(handle, position, s, -1, cj_sqlite_transient())
            case .blob(let b):
                code = b.withUnsafeBytes { sqlite3_bind_blob(handle, position, $0.baseAddress, Int32($0.count), cj_sqlite_transient()) }
            }
            guard code == CSQLite.SQLITE_OK else { throw db.error(code, sql: sql) }
        }
    }

    /// One step: true when a row is ready, false when the statement is done.
    func step() throws -> Bool {
        let code = sqlite3_step(handle)
        switch code {
        case CSQLite.SQLITE_ROW: return true
        case CSQLite.SQLITE_DONE: return false
        default:
            let error = db.error(code, sql: sql)
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Binds and runs to completion.
    func execute(arguments: StatementArguments = []) throws {
        try bind(arguments)
        defer { sqlite3_reset(handle) }
        while try step() {}
    }

    func row() -> Row {
        let n = sqlite3_column_count(handle)
        var names: [String] = []
        var values: [DatabaseValue] = []
        names.reserveCapacity(Int(n))
        values.reserveCapacity(Int(n))
        for i in 0..<n {
            names.append(sqlite3_column_name(handle, i).map { String(cString: $0) } ?? "")
            switch sqlite3_column_type(handle, i) {
            case SQLITE_INTEGER: values.append(.integer(sqlite3_column_int64(handle, i)))
            case SQLITE_FLOAT: values.append(.real(sqlite3_column_double(handle, i)))
            case SQLITE_TEXT:
                let bytes = sqlite3_column_text(handle, i)
                let count = Int(sqlite3_column_bytes(handle, i))
                values.append(.text(bytes.map { String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self) } ?? ""))
            case SQLITE_BLOB:
                let count = Int(sqlite3_column_bytes(handle, i))
                let base = sqlite3_column_blob(handle, i)
                values.append(.blob(base.map { Array(UnsafeRawBufferPointer(start: $0, count: count)) } ?? []))
            default: values.append(.null)
            }
        }
        return Row(columnNames: names, values: values)
    }
}

enum TransactionKind: String { case deferred = "DEFERRED", immediate = "IMMEDIATE", exclusive = "EXCLUSIVE" }
enum TransactionCompletion { case commit, rollback }

/// One SQLite connection. Used only inside its `DatabaseQueue`'s lock.
final class Database {
    let sqliteConnection: OpaquePointer
    private var cache: [String: Statement] = [:]
    private var closed = false

    fileprivate init(connection: OpaquePointer) {
        self.sqliteConnection = connection
    }

    deinit { close() }

    fileprivate func close() {
        guard !closed else { return }
        closed = true
        cache.removeAll()
        sqlite3_close_v2(sqliteConnection)
    }

    func error(_ code: Int32, sql: String? = nil) -> DatabaseError {
        let message = sqlite3_errmsg(sqliteConnection).map { String(cString: $0) }
        return DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sql,
                             systemErrno: sqlite3_system_errno(sqliteConnection))
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changesCount: Int { Int(sqlite3_changes(sqliteConnection)) }
    var lastInsertedRowID: Int64 { sqlite3_last_insert_rowid(sqliteConnection) }

    func makeStatement(sql: String) throws -> Statement {
        var handle: OpaquePointer?
        let code = sqlite3_prepare_v2(sqliteConnection, sql, -1, &handle, nil)
        guard code == CSQLite.SQLITE_OK, let handle else { throw error(code, sql: sql) }
        return Statement(db: self, sql: sql, handle: handle)
    }

    /// A statement prepared once per connection and reused: the store's fixed SQL.
    func cachedStatement(sql: String) throws -> Statement {
        if let s = cache[sql] { return s }
        let s = try makeStatement(sql: sql)
        cache[sql] = s
        return s
    }

    /// Runs every statement in `sql`, the arguments consumed in placeholder order.
    func execute(sql: String, arguments: StatementArguments = []) throws {
        var remaining = arguments.values[...]
        try sql.withCString { start in
            var cursor: UnsafePointer<CChar>? = start
            while let current = cursor, current.pointee != 0 {
                var handle: OpaquePointer?
                var tail: UnsafePointer<CChar>?
                let code = sqlite3_prepare_v2(sqliteConnection, current, -1, &handle, &tail)
                guard code == CSQLite.SQLITE_OK else { throw error(code, sql: sql) }
                cursor = tail
                guard let handle else { continue }  // whitespace or a comment
                let statement = Statement(db: self, sql: String(cString: sqlite3_sql(handle)), handle: handle)
                let n = Int(sqlite3_bind_parameter_count(handle))
                guard remaining.count >= n else {
                    throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "too few arguments", sql: sql)
                }
                try statement.execute(arguments: StatementArguments(values: Array(remaining.prefix(n))))
                remaining = remaining.dropFirst(n)
            }
        }
        guard remaining.isEmpty else {
            throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "\(remaining.count) arguments left over", sql: sql)
        }
    }

    /// Runs `body` in a transaction; an error or `.rollback` rolls it back.
    func inTransaction(_ kind: TransactionKind = .deferred, _ body: () throws -> TransactionCompletion) throws {
        try execute(sql: "BEGIN \(kind.rawValue) TRANSACTION")
        let completion: TransactionCompletion
        do { completion = try body() } catch {
            try? execute(sql: "ROLLBACK TRANSACTION")
            throw error
        }
        switch completion {
        case .commit:
            do { try execute(sql: "COMMIT TRANSACTION") } catch {
                try? execute(sql: "ROLLBACK TRANSACTION")
                throw error
            }
        case .rollback:
            try execute(sql: "ROLLBACK TRANSACTION")
        }
    }
}

extension Database {
    /// `body`'s value, from inside one transaction that commits when it returns and
    /// rolls back when it throws.
    func transaction<T>(_ kind: TransactionKind, _ body: () throws -> T) throws -> T {
        var result: T?
        try inTransaction(kind) {
            result = try body()
            return .commit
        }
        guard let result else { throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "the transaction committed without a result") }
        return result
    }
}

extension StatementArguments {
    init(values: [DatabaseValue]) { self.values = values }
}

/// How a `DatabaseQueue` opens its connection.
struct Configuration {
    enum JournalMode { case `default`, wal }
    enum BusyMode { case immediateError, timeout(Double) }

    var label: String?
    var journalMode: JournalMode = .default
    var busyMode: BusyMode = .immediateError
    var foreignKeysEnabled = true
    var readonly = false
    fileprivate var preparations: [(Database) throws -> Void] = []

    /// Runs on the new connection before anything else (pragmas, file controls).
    mutating func prepareDatabase(_ body: @escaping (Database) throws -> Void) {
        preparations.append(body)
    }
}

/// One connection, serialized by a lock: the store is used from a supervisor's main
/// thread and from the egress proxy's threads. Not reentrant: a body must not call
/// back into its queue.
final class DatabaseQueue: @unchecked Sendable {
    private let db: Database
    private let lock = PosixMutex()

    init(path: String, configuration: Configuration = Configuration()) throws {
        var handle: OpaquePointer?
        let flags = configuration.readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let code = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard code == CSQLite.SQLITE_OK, let handle else {
            let message = handle.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
            if let handle { sqlite3_close_v2(handle) }
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message ?? "cannot open \(path)")
        }
        let db = Database(connection: handle)
        sqlite3_extended_result_codes(handle, 1)
        if case .timeout(let seconds) = configuration.busyMode {
            sqlite3_busy_timeout(handle, Int32(seconds * 1000))
        }
        try db.execute(sql: "PRAGMA foreign_keys = \(configuration.foreignKeysEnabled ? "ON" : "OFF")")
        for prepare in configuration.preparations { try prepare(db) }
        if case .wal = configuration.journalMode, !configuration.readonly {
            let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
            guard mode?.lowercased() == "wal" else {
                throw DatabaseError(resultCode: .SQLITE_ERROR, message: "could not switch to WAL (journal_mode is \(mode ?? "unknown"))")
            }
            // Commits survive a crash of the process; only a power loss can drop the last ones.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        self.db = db
    }

    private func locked<T>(_ body: (Database) throws -> T) rethrows -> T {
        try lock.withLock { try body(db) }
    }

    /// `body` in a read transaction: one consistent snapshot.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        try locked { db in try db.transaction(.deferred) { try body(db) } }
    }

    /// `body` in an IMMEDIATE transaction (the write lock taken before the first read),
    /// committed when it returns.
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        try locked { db in try db.transaction(.immediate) { try body(db) } }
    }

    /// Closes the connection; the queue must not be used afterwards.
    func close() throws {
        locked { db in db.close() }
    }
}

/// Versioned schema changes, applied once each, recorded in `grdb_migrations` (the
/// table GRDB used, so that databases it created are recognised).
struct DatabaseMigrator {
    private var migrations: [(identifier: String, body: (Database) throws -> Void)] = []

    mutating func registerMigration(_ identifier: String, migrate: @escaping (Database) throws -> Void) {
        migrations.append((identifier, migrate))
    }

    private static let createTable = "CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)"

    private func applied(_ db: Database) throws -> Set<String> {
        let exists = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'grdb_migrations'") ?? 0
        guard exists > 0 else { return [] }
        return try String.fetchSet(db, sql: "SELECT identifier FROM grdb_migrations")
    }

    func hasCompletedMigrations(_ db: Database) throws -> Bool {
        let done = try applied(db)
        return migrations.allSatisfy { done.contains($0.identifier) }
    }

    /// Applies the missing migrations, all in one IMMEDIATE transaction.
    func migrate(_ queue: DatabaseQueue) throws {
        try queue.write { db in
            try db.execute(sql: Self.createTable)
            let done = try applied(db)
            for m in migrations where !done.contains(m.identifier) {
                try m.body(db)
                try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES (?)", arguments: [m.identifier])
            }
        }
    }
}
