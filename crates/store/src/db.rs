//! The database behind the store, SQLite or PostgreSQL: connections,
//! migrations and the handful of statements the writer needs.
//!
//! The SQL is the same for both backends (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`, standard types); the only statement of one backend alone is
//! PostgreSQL's revision bump, which also queues the notification that
//! tells other nodes about the commit. Each statement is written once and
//! compiled for both connection types by [`on_tx!`].
//!
//! Concurrency: every write transaction starts by incrementing the one row
//! of `meta`. That takes the database's write lock on SQLite and a row lock
//! on PostgreSQL, held until commit, so writers from every process and node
//! are serialised: a transaction reads what all earlier ones committed
//! (READ COMMITTED takes a fresh snapshot per statement, after the lock is
//! granted) and its revision is exactly one more than theirs.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use model::{Change, Kind, Object};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

use crate::StoreError;
use crate::schema::MIGRATIONS;

/// The channel PostgreSQL notifies on every commit; the payload is the
/// revision committed.
pub(crate) const CHANNEL: &str = "flowgate_changes";

/// The advisory lock nodes take while migrating, so that several starting
/// at once on a new database migrate it once ("flowgate" in ASCII).
const MIGRATION_LOCK: i64 = 0x666c_6f77_6761_7465;

/// An open, migrated database.
pub struct Database {
    conn: Conn,
}

enum Conn {
    Sqlite(SqliteConnection),
    /// `None` after the connection broke; the next transaction reconnects.
    Postgres {
        conn: Option<PgConnection>,
        /// Boxed: one per store, and it would triple the enum's size.
        options: Box<PgConnectOptions>,
    },
}

/// One transaction (the writer's, or a read of a consistent snapshot).
pub(crate) enum Tx<'a> {
    Sqlite(sqlx::Transaction<'a, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'a, sqlx::Postgres>),
}

/// Runs the same code on either backend's transaction: each arm is compiled
/// for its concrete connection type (`&mut **$c` is the connection), so the
/// statements are written once without generic bounds over sqlx's traits.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            Tx::Sqlite($c) => $body,
            Tx::Postgres($c) => $body,
        }
    };
}

/// What others committed in a range of revisions, as it is now.
pub(crate) enum Stored {
    /// The objects touched, in the order first touched (`None` = deleted).
    Touched(Vec<(Kind, String, Option<Object>)>),
    /// Part of the change log was pruned: every stored object, to compare
    /// with what is in memory.
    Everything(Vec<Object>),
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Database {
    /// Opens the SQLite file at `path` (WAL, fully synchronous commits) and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Database, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before we answer (NORMAL could lose
            // the last commits on power failure).
            .synchronous(SqliteSynchronous::Full)
            // Another process (flowgate admin) may hold the write lock briefly.
            .busy_timeout(Duration::from_secs(10))
            // Checkpoints run on their own connection (`checkpoint_sqlite`),
            // off the commit path: done inline they stall one commit in a
            // thousand for milliseconds.
            .pragma("wal_autocheckpoint", "0");
        let conn = SqliteConnection::connect_with(&options).await?;
        let mut database = Database {
            conn: Conn::Sqlite(conn),
        };
        database.migrate().await?;
        Ok(database)
    }

    /// Connects to the PostgreSQL database at `url` and migrates it.
    pub async fn open_postgres(url: &str) -> Result<Database, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?
            // The writer's statements differ only in their number of rows;
            // keeping more of them prepared saves a round trip each.
            .statement_cache_capacity(1024)
            .options([
                // The write path relies on READ COMMITTED (a fresh snapshot
                // after waiting for the revision lock), whatever the
                // database's default.
                ("default_transaction_isolation", "read committed"),
                // A node frozen inside a transaction (SIGSTOP, a paused VM)
                // must not hold the revision lock, and so every other
                // node's writes, for long: the server ends its session.
                ("idle_in_transaction_session_timeout", "10s"),
                // And a write waits for the lock at most this long before
                // failing (nothing of it is kept; the caller gets an error).
                ("lock_timeout", "30s"),
            ]);
        if options.get_application_name().is_none() {
            options = options.application_name("flowgate");
        }
        let conn = connect_postgres(&options).await?;
        let mut database = Database {
            conn: Conn::Postgres {
                conn: Some(conn),
                options: Box::new(options),
            },
        };
        database.migrate().await?;
        Ok(database)
    }

    /// For PostgreSQL, a connection listening for commits on [`CHANNEL`].
    pub(crate) async fn listener(&self) -> Result<Option<Listener>, StoreError> {
        let Conn::Postgres { options, .. } = &self.conn else {
            return Ok(None);
        };
        let listener = Listener::connect(options).await?;
        Ok(Some(Listener {
            options: options.as_ref().clone(),
            listener: Some(listener),
        }))
    }

    /// Copies the WAL back into the database file every `interval`, on a
    /// connection of its own, so that commits never wait for it; runs until
    /// the connection fails.
    pub async fn checkpoint_sqlite(path: std::path::PathBuf, interval: Duration) {
        let options = match SqliteConnectOptions::from_str("sqlite:") {
            Ok(o) => o.filename(&path).busy_timeout(Duration::from_secs(10)),
            Err(_) => return,
        };
        let mut conn = match SqliteConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open a checkpoint connection");
                return;
            }
        };
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut conn)
                .await
            {
                tracing::warn!(error = %err, "WAL checkpoint failed");
            }
        }
    }

    /// Applies the migrations this database lacks, all in one transaction
    /// that excludes other migrating processes (SQLite's write lock taken
    /// up front, an advisory lock on PostgreSQL), which then find nothing
    /// left to do.
    async fn migrate(&mut self) -> Result<(), StoreError> {
        let mut tx = match &mut self.conn {
            Conn::Sqlite(conn) => Tx::Sqlite(conn.begin_with("BEGIN IMMEDIATE").await?),
            Conn::Postgres { conn, options } => {
                let conn = reconnect_if_needed(conn, options).await?;
                let mut tx = conn.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Tx::Postgres(tx)
            }
        };
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL
            )",
        )
        .await?;
        let current: Option<i64> = on_tx!(&mut tx, c => sqlx::query("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut **c)
            .await?
            .try_get(0)?);
        let current = current.unwrap_or(0);
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                tx.execute(statement).await?;
            }
            on_tx!(&mut tx, c => sqlx::query(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            )
            .bind(version)
            .bind(description)
            .execute(&mut **c)
            .await
            .map(drop)?);
            tracing::info!(version, description, "store migrated");
        }
        tx.commit().await
    }

    /// Every stored object and the current revision, from one snapshot.
    pub async fn load_all(&mut self) -> Result<(Vec<Object>, u64), StoreError> {
        let mut tx = self.begin_read().await?;
        let revision = tx.revision().await?;
        let objects = tx.all_objects().await?;
        tx.commit().await?;
        Ok((objects, revision))
    }

    /// The revision last committed by anyone.
    pub async fn current_revision(&mut self) -> Result<u64, StoreError> {
        let mut tx = self.begin_read().await?;
        let revision = tx.revision().await?;
        tx.commit().await?;
        Ok(revision)
    }

    /// What was committed after revision `after`, from one snapshot:
    /// `None` if nothing, else the revision now and what changed up to it.
    pub(crate) async fn read_since(&mut self, after: u64) -> Result<Option<(u64, Stored)>, StoreError> {
        let mut tx = self.begin_read().await?;
        let revision = tx.revision().await?;
        let result = if revision > after {
            Some((revision, tx.changed(after, revision).await?))
        } else {
            None
        };
        tx.commit().await?;
        Ok(result)
    }

    /// Starts a write transaction (READ COMMITTED on PostgreSQL; SQLite
    /// takes its write lock at the first write).
    pub(crate) async fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match &mut self.conn {
            Conn::Sqlite(conn) => Tx::Sqlite(conn.begin().await?),
            Conn::Postgres { conn, options } => Tx::Postgres(
                reconnect_if_needed(conn, options)
                    .await?
                    .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
                    .await?,
            ),
        })
    }

    /// Starts a read-only transaction on one consistent snapshot, which
    /// takes no lock that writers wait for.
    async fn begin_read(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match &mut self.conn {
            // A deferred transaction in WAL mode reads one snapshot.
            Conn::Sqlite(conn) => Tx::Sqlite(conn.begin().await?),
            Conn::Postgres { conn, options } => Tx::Postgres(
                reconnect_if_needed(conn, options)
                    .await?
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// After a failed transaction: drops a PostgreSQL connection that no
    /// longer answers, so that the next transaction opens a new one.
    pub(crate) async fn recover(&mut self) {
        if let Conn::Postgres { conn, .. } = &mut self.conn {
            let alive = match conn.as_mut() {
                Some(c) => tokio::time::timeout(Duration::from_secs(5), c.ping())
                    .await
                    .is_ok_and(|ping| ping.is_ok()),
                None => false,
            };
            if !alive && conn.take().is_some() {
                tracing::warn!("lost the connection to PostgreSQL; reconnecting at the next transaction");
            }
        }
    }
}

/// What a [`Listener`] heard.
pub(crate) enum Heard {
    /// A commit of this revision.
    Revision(u64),
    /// The connection dropped (and was made again, or will be at the next
    /// call): commits in between may have gone unheard.
    MaybeMissed,
}

/// A connection that hears every commit on the database (LISTEN), made
/// again whenever it breaks.
pub(crate) struct Listener {
    options: PgConnectOptions,
    listener: Option<PgListener>,
}

impl Listener {
    async fn connect(options: &PgConnectOptions) -> Result<PgListener, StoreError> {
        // PgListener keeps its connection in a pool of one.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }

    /// The next thing heard. While the server cannot be reached it retries
    /// every second; cancelling the call loses nothing.
    pub(crate) async fn next(&mut self) -> Heard {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match Listener::connect(&self.options).await {
                    Ok(listener) => {
                        tracing::info!("store listener reconnected");
                        self.listener = Some(listener);
                        return Heard::MaybeMissed;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "store listener cannot reconnect; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            return match listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse() {
                    Ok(revision) => Heard::Revision(revision),
                    Err(_) => Heard::MaybeMissed,
                },
                // sqlx noticed the connection drop and made a new one.
                Ok(None) => Heard::MaybeMissed,
                // Other failures (a reset connection, the server shutting
                // down) leave PgListener on a dead connection: drop it.
                Err(err) => {
                    tracing::warn!(error = %err, "store listener lost its connection");
                    self.listener = None;
                    Heard::MaybeMissed
                }
            };
        }
    }
}

pub(crate) async fn connect_postgres(options: &PgConnectOptions) -> Result<PgConnection, StoreError> {
    let mut conn = PgConnection::connect_with(options).await?;
    // A success must mean durable. `on` (the default) and the replication
    // levels above it are kept; only `off` (or `local` where a standby is
    // expected) would acknowledge what a crash can lose.
    let level: String = sqlx::query("SHOW synchronous_commit")
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
    if level == "off" {
        tracing::warn!("synchronous_commit is off on the database; flowgate's sessions turn it on");
        sqlx::query("SET synchronous_commit = on")
            .execute(&mut conn)
            .await?;
    }
    Ok(conn)
}

async fn reconnect_if_needed<'a>(
    conn: &'a mut Option<PgConnection>,
    options: &PgConnectOptions,
) -> Result<&'a mut PgConnection, StoreError> {
    if conn.is_none() {
        *conn = Some(connect_postgres(options).await?);
        tracing::info!("reconnected to PostgreSQL");
    }
    conn.as_mut().ok_or(StoreError::Closed)
}

/// Reads a stored object's JSON body back as the model's object.
pub(crate) fn decode(kind: &str, id: &str, body: &str) -> Result<Object, StoreError> {
    serde_json::from_str(body).map_err(|err| StoreError::Corrupt {
        kind: kind.to_string(),
        id: id.to_string(),
        reason: err.to_string(),
    })
}

fn parse_kind(name: String, id: &str) -> Result<Kind, StoreError> {
    Kind::from_name(&name).ok_or_else(|| StoreError::Corrupt {
        kind: name,
        id: id.to_string(),
        reason: "unknown kind".into(),
    })
}

impl Tx<'_> {
    async fn execute(&mut self, sql: &'static str) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(sql).execute(&mut **c).await.map(drop)?);
        Ok(())
    }

    async fn revision(&mut self) -> Result<u64, StoreError> {
        let revision: i64 = on_tx!(self, c => sqlx::query("SELECT revision FROM meta WHERE id = 1")
            .fetch_one(&mut **c)
            .await?
            .try_get(0)?);
        Ok(to_u64(revision))
    }

    async fn all_objects(&mut self) -> Result<Vec<Object>, StoreError> {
        let rows: Vec<(String, String, String)> = on_tx!(self, c => {
            let rows = sqlx::query("SELECT kind, id, body FROM objects")
                .fetch_all(&mut **c)
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                .collect::<Result<_, sqlx::Error>>()?
        });
        rows.iter()
            .map(|(kind, id, body)| decode(kind, id, body))
            .collect()
    }

    /// Bumps the revision, taking the write lock first thing so that no
    /// other writer can commit between our reads and our writes. On
    /// PostgreSQL the same statement queues the notification of the new
    /// revision, which the server delivers only if this transaction commits.
    pub(crate) async fn bump_revision(&mut self) -> Result<u64, StoreError> {
        let revision: i64 = match self {
            Tx::Sqlite(c) => {
                sqlx::query("UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision")
                    .fetch_one(&mut **c)
                    .await?
                    .try_get(0)?
            }
            Tx::Postgres(c) => sqlx::query(
                "UPDATE meta SET revision = revision + 1 WHERE id = 1 \
                 RETURNING revision, pg_notify('flowgate_changes', revision::text)",
            )
            .fetch_one(&mut **c)
            .await?
            .try_get(0)?,
        };
        Ok(to_u64(revision))
    }

    /// The objects changed after revision `after` up to `upto` (inclusive),
    /// as they are now, in the order they were first touched.
    pub(crate) async fn changed(&mut self, after: u64, upto: u64) -> Result<Stored, StoreError> {
        let rows: Vec<(String, String, Option<String>, i64)> = on_tx!(self, c => {
            let rows = sqlx::query(
                "SELECT t.kind, t.id, o.body, t.first FROM
                    (SELECT kind, id, MIN(revision) AS first FROM changelog
                     WHERE revision > $1 AND revision <= $2 GROUP BY kind, id) t
                 LEFT JOIN objects o ON o.kind = t.kind AND o.id = t.id
                 ORDER BY t.first",
            )
            .bind(to_i64(after))
            .bind(to_i64(upto))
            .fetch_all(&mut **c)
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)))
                .collect::<Result<_, sqlx::Error>>()?
        });
        // Every committed revision logs at least one object, so the first
        // revision after `after` is missing only if it was pruned.
        let oldest = rows.first().map(|row| to_u64(row.3));
        if upto > after && oldest != Some(after + 1) {
            tracing::warn!(
                after,
                upto,
                "change log pruned past this node; comparing every object"
            );
            return Ok(Stored::Everything(self.all_objects().await?));
        }
        let mut out = Vec::with_capacity(rows.len());
        for (kind_name, id, body, _) in rows {
            let object = body.map(|body| decode(&kind_name, &id, &body)).transpose()?;
            out.push((parse_kind(kind_name, &id)?, id, object));
        }
        Ok(Stored::Touched(out))
    }

    /// Writes the net effect of `changes` (the last state of each object)
    /// and logs the objects touched, in a few multi-row statements: one
    /// round trip per statement is what a transaction costs here, not rows.
    /// Deletions go first and objects without a unique key before those
    /// with one, so that a key freed in this transaction can be taken in it.
    pub(crate) async fn write_changes(
        &mut self,
        revision: u64,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        let revision = to_i64(revision);
        let mut order: Vec<(Kind, &str)> = Vec::new();
        let mut last: std::collections::HashMap<(Kind, &str), Option<&Object>> =
            std::collections::HashMap::new();
        for change in changes {
            let key = (change.kind, change.id.as_str());
            if last.insert(key, change.after.as_ref()).is_none() {
                order.push(key);
            }
        }
        let deletes: Vec<(Kind, &str)> = order.iter().copied().filter(|k| last[k].is_none()).collect();
        let mut upserts: Vec<(Kind, &str, &Object, String)> = Vec::new();
        for (kind, id) in &order {
            if let Some(object) = last[&(*kind, *id)] {
                let body = serde_json::to_string(object).map_err(|err| StoreError::Corrupt {
                    kind: kind.as_str().into(),
                    id: (*id).to_string(),
                    reason: err.to_string(),
                })?;
                upserts.push((*kind, id, object, body));
            }
        }
        upserts.sort_by_key(|(_, _, object, _)| object.unique_key().is_some());

        for chunk in deletes.chunks(400) {
            let mut sql = String::from("DELETE FROM objects WHERE ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                sql.push_str(&format!("(kind = ${} AND id = ${})", 2 * i + 1, 2 * i + 2));
            }
            on_tx!(self, c => {
                // Only placeholders are generated here; every value is bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (kind, id) in chunk {
                    query = query.bind(kind.as_str()).bind(*id);
                }
                query.execute(&mut **c).await.map(drop)?
            });
        }
        for chunk in upserts.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO objects (kind, id, account_id, unique_key, body, revision) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let b = 6 * i;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                ));
            }
            sql.push_str(
                " ON CONFLICT (kind, id) DO UPDATE SET account_id = excluded.account_id, \
                 unique_key = excluded.unique_key, body = excluded.body, revision = excluded.revision",
            );
            on_tx!(self, c => {
                // Only placeholders are generated here; every value is bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (kind, id, object, body) in chunk {
                    query = query
                        .bind(kind.as_str())
                        .bind(*id)
                        .bind(object.account_id().map(|a| a.as_str().to_string()))
                        .bind(object.unique_key())
                        .bind(body.as_str())
                        .bind(revision);
                }
                query.execute(&mut **c).await.map(drop)?
            });
        }
        for (n, chunk) in order.chunks(500).enumerate() {
            let mut sql = String::from("INSERT INTO changelog (revision, seq, kind, id) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                ));
            }
            on_tx!(self, c => {
                // Only placeholders are generated here; every value is bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (i, (kind, id)) in chunk.iter().enumerate() {
                    let seq = i64::try_from(n * 500 + i).unwrap_or(i64::MAX);
                    query = query.bind(revision).bind(seq).bind(kind.as_str()).bind(*id);
                }
                query.execute(&mut **c).await.map(drop)?
            });
        }
        Ok(())
    }

    /// Forgets change log entries at or below `revision`.
    pub(crate) async fn prune_changelog(&mut self, revision: u64) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query("DELETE FROM changelog WHERE revision <= $1")
            .bind(to_i64(revision))
            .execute(&mut **c)
            .await
            .map(drop)?);
        Ok(())
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        on_tx!(self, c => c.commit().await?);
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        on_tx!(self, c => c.rollback().await?);
        Ok(())
    }
}
