//! Versioned schema migrations. The SQL is portable between SQLite and
//! PostgreSQL (standard types, `$N` placeholders, `ON CONFLICT`), so the
//! same list serves both stores.
//!
//! The model is stored as documents: one row per object with its kind, id,
//! owner, a second unique key (a public IP, an account's group name, ...)
//! and a JSON body. Every transaction bumps `meta.revision` and records the
//! objects it touched in `changelog`, which is how other processes (the
//! admin CLI, other nodes) learn what changed.

/// The migrations, in order; each runs once, in its own transaction.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "objects, revision counter and change log",
        "CREATE TABLE meta (
        id INTEGER PRIMARY KEY,
        revision BIGINT NOT NULL
    );
    INSERT INTO meta (id, revision) VALUES (1, 0);
    CREATE TABLE objects (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        account_id TEXT,
        unique_key TEXT,
        body TEXT NOT NULL,
        revision BIGINT NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE UNIQUE INDEX objects_unique_key ON objects (kind, unique_key);
    CREATE INDEX objects_account ON objects (account_id);
    CREATE TABLE changelog (
        revision BIGINT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (revision, seq)
    );",
    ),
    (
        2,
        "the leader election's epoch",
        // Nodes on PostgreSQL elect the switches' OpenFlow master
        // (crate::election); each election bumps the epoch, which the new
        // master claims its role with. Unused on SQLite (one node).
        "CREATE TABLE leader (
        id INTEGER PRIMARY KEY,
        epoch BIGINT NOT NULL,
        node TEXT NOT NULL,
        elected_ms BIGINT NOT NULL
    );
    INSERT INTO leader (id, epoch, node, elected_ms) VALUES (1, 0, '', 0);",
    ),
];
