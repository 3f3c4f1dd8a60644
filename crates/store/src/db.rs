//! The database behind the store: connection, migrations and the handful
//! of statements the writer needs. Portable SQL only (`$N` placeholders,
//! `ON CONFLICT`, `RETURNING`), so PostgreSQL can join behind the same type.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use model::{Change, Kind, Object};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

use crate::StoreError;
use crate::schema::MIGRATIONS;

/// An open, migrated database.
pub struct Database {
    conn: SqliteConnection,
}

/// One transaction of the writer.
pub(crate) struct Tx<'a> {
    tx: sqlx::Transaction<'a, sqlx::Sqlite>,
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
        let mut database = Database { conn };
        database.migrate().await?;
        Ok(database)
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

    /// Applies the migrations this database lacks, each in its own transaction.
    async fn migrate(&mut self) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL
            )",
        )
        .execute(&mut self.conn)
        .await?;
        let current: Option<i64> = sqlx::query("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut self.conn)
            .await?
            .try_get(0)?;
        let current = current.unwrap_or(0);
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let mut tx = self.conn.begin().await?;
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)")
                .bind(version)
                .bind(description)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, description, "store migrated");
        }
        Ok(())
    }

    /// Every stored object and the current revision.
    pub async fn load_all(&mut self) -> Result<(Vec<Object>, u64), StoreError> {
        let mut tx = self.conn.begin().await?;
        let revision: i64 = sqlx::query("SELECT revision FROM meta WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let rows = sqlx::query("SELECT kind, id, body FROM objects")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut objects = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get(0)?;
            let id: String = row.try_get(1)?;
            let body: String = row.try_get(2)?;
            objects.push(decode(&kind, &id, &body)?);
        }
        Ok((objects, to_u64(revision)))
    }

    /// The revision last committed by anyone.
    pub async fn current_revision(&mut self) -> Result<u64, StoreError> {
        let revision: i64 = sqlx::query("SELECT revision FROM meta WHERE id = 1")
            .fetch_one(&mut self.conn)
            .await?
            .try_get(0)?;
        Ok(to_u64(revision))
    }

    pub(crate) async fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(Tx {
            tx: self.conn.begin().await?,
        })
    }
}

/// Reads a stored object's JSON body back as the model's object.
pub(crate) fn decode(kind: &str, id: &str, body: &str) -> Result<Object, StoreError> {
    serde_json::from_str(body).map_err(|err| StoreError::Corrupt {
        kind: kind.to_string(),
        id: id.to_string(),
        reason: err.to_string(),
    })
}

impl Tx<'_> {
    /// Bumps the revision, taking the database's write lock first thing so
    /// that no other writer can commit between our reads and our writes.
    pub(crate) async fn bump_revision(&mut self) -> Result<u64, StoreError> {
        let revision: i64 =
            sqlx::query("UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision")
                .fetch_one(&mut *self.tx)
                .await?
                .try_get(0)?;
        Ok(to_u64(revision))
    }

    /// The objects others changed after revision `after` and before
    /// `before`, as they are now (`None` = deleted).
    pub(crate) async fn changed_since(
        &mut self,
        after: u64,
        before: u64,
    ) -> Result<Vec<(Kind, String, Option<Object>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, id, MIN(revision) AS first FROM changelog
             WHERE revision > $1 AND revision < $2 GROUP BY kind, id ORDER BY first",
        )
        .bind(to_i64(after))
        .bind(to_i64(before))
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind_name: String = row.try_get(0)?;
            let id: String = row.try_get(1)?;
            let Some(kind) = Kind::from_name(&kind_name) else {
                return Err(StoreError::Corrupt {
                    kind: kind_name,
                    id,
                    reason: "unknown kind".into(),
                });
            };
            let body: Option<String> = sqlx::query("SELECT body FROM objects WHERE kind = $1 AND id = $2")
                .bind(&kind_name)
                .bind(&id)
                .fetch_optional(&mut *self.tx)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            let object = body.map(|body| decode(&kind_name, &id, &body)).transpose()?;
            out.push((kind, id, object));
        }
        // Owners first, so that an account arrives before what it owns.
        out.sort_by_key(|(kind, _, object)| (object.is_none(), *kind));
        Ok(out)
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
        let mut upserts: Vec<(Kind, &str, &Object)> = order
            .iter()
            .filter_map(|k| last[k].map(|object| (k.0, k.1, object)))
            .collect();
        upserts.sort_by_key(|(_, _, object)| object.unique_key().is_some());

        for chunk in deletes.chunks(400) {
            let mut sql = String::from("DELETE FROM objects WHERE ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                sql.push_str(&format!("(kind = ${} AND id = ${})", 2 * i + 1, 2 * i + 2));
            }
            // Only placeholders are generated here; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (kind, id) in chunk {
                query = query.bind(kind.as_str()).bind(*id);
            }
            query.execute(&mut *self.tx).await?;
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
            // Only placeholders are generated here; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (kind, id, object) in chunk {
                let body = serde_json::to_string(object).map_err(|err| StoreError::Corrupt {
                    kind: kind.as_str().into(),
                    id: (*id).to_string(),
                    reason: err.to_string(),
                })?;
                query = query
                    .bind(kind.as_str())
                    .bind(*id)
                    .bind(object.account_id().map(|a| a.as_str().to_string()))
                    .bind(object.unique_key())
                    .bind(body)
                    .bind(revision);
            }
            query.execute(&mut *self.tx).await?;
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
            // Only placeholders are generated here; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, (kind, id)) in chunk.iter().enumerate() {
                let seq = i64::try_from(n * 500 + i).unwrap_or(i64::MAX);
                query = query.bind(revision).bind(seq).bind(kind.as_str()).bind(*id);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Forgets change log entries at or below `revision`.
    pub(crate) async fn prune_changelog(&mut self, revision: u64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM changelog WHERE revision <= $1")
            .bind(to_i64(revision))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }

    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        Ok(self.tx.rollback().await?)
    }
}
