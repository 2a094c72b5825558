/// Versioned schema. Never edit a registered migration: add the next one.
enum Schema {
    static let zeroHash = String(repeating: "0", count: 64)

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial") { db in
            try db.execute(sql: v1)
            try db.execute(sql: "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", arguments: [zeroHash])
        }
        return migrator
    }

    // Timestamps are unix milliseconds. Text enums carry CHECKs so a bad write
    // fails loudly instead of producing a row no reader understands. No STRICT
    // tables and no RETURNING: the system libsqlite3 of hosts we support (Ubuntu
    // 20.04 ships 3.31) predates them.
    private static let v1 = """
        CREATE TABLE agent (
            name        TEXT PRIMARY KEY NOT NULL CHECK (name <> ''),
            config_path TEXT NOT NULL,
            created_ms  INTEGER NOT NULL,
            updated_ms  INTEGER NOT NULL
        );

        -- A slot is a 65536-uid range; slot 0 (anonymous tool runs) is never stored.
        CREATE TABLE uid_range (
            slot         INTEGER PRIMARY KEY CHECK (slot BETWEEN 1 AND 4093),
            agent        TEXT NOT NULL UNIQUE CHECK (agent <> ''),
            allocated_ms INTEGER NOT NULL
        );

        -- Effective policies, content-addressed: hundreds of tool runs share one.
        CREATE TABLE manifest (
            sha256     TEXT PRIMARY KEY NOT NULL,
            json       TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        );

        CREATE TABLE run (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            agent             TEXT NOT NULL,
            kind              TEXT NOT NULL CHECK (kind IN ('agent', 'tool')),
            state             TEXT NOT NULL CHECK (state IN ('running', 'finished', 'lost')),
            supervisor_pid    INTEGER NOT NULL,
            supervisor_start  INTEGER NOT NULL,
            plan_hash         TEXT NOT NULL,
            manifest_sha256   TEXT NOT NULL REFERENCES manifest(sha256),
            started_ms        INTEGER NOT NULL,
            ended_ms          INTEGER,
            status            TEXT CHECK (status IN ('exited', 'signaled', 'oom_killed', 'timed_out',
                                                     'setup_failed', 'killed')),
            status_code       INTEGER,
            status_detail     TEXT,
            exit_code         INTEGER,
            duration_ms       INTEGER,
            peak_memory_bytes INTEGER,
            cpu_usec          INTEGER
        );
        CREATE INDEX run_by_agent ON run (agent, id);
        CREATE INDEX run_running ON run (agent) WHERE state = 'running';

        -- The audit chain: one global sequence so that a deleted row leaves a gap.
        CREATE TABLE event (
            seq       INTEGER PRIMARY KEY,
            ts        INTEGER NOT NULL,
            agent     TEXT NOT NULL,
            kind      TEXT NOT NULL,
            run_id    INTEGER,
            payload   TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash      TEXT NOT NULL
        );
        CREATE INDEX event_by_ts ON event (ts);
        CREATE INDEX event_by_agent ON event (agent, seq);
        -- Guards against our own bugs; an attacker with the file can drop these, which
        -- is what the hash chain is for.
        CREATE TRIGGER event_append_only_update BEFORE UPDATE ON event
            BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
        CREATE TRIGGER event_append_only_delete BEFORE DELETE ON event
            BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

        -- The chain head, updated in the same transaction as each append, so that
        -- cutting rows off the end is detected too.
        CREATE TABLE audit_head (
            id   INTEGER PRIMARY KEY CHECK (id = 1),
            seq  INTEGER NOT NULL,
            hash TEXT NOT NULL
        );

        CREATE TABLE snapshot (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            agent      TEXT NOT NULL CHECK (agent <> ''),
            created_ms INTEGER NOT NULL,
            files      TEXT NOT NULL,
            total_hash TEXT NOT NULL
        );
        CREATE INDEX snapshot_by_agent ON snapshot (agent, id);
        """
}
