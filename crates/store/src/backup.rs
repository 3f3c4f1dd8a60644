//! Backups of the SQLite store: a consistent copy taken while `flowgate
//! serve` keeps writing, the checks that a file is a store this build can
//! run on, and putting such a file back in place without losing the
//! database it replaces.
//!
//! * **Backup** runs `VACUUM INTO` on a connection of its own: SQLite copies
//!   one read transaction's snapshot (WAL readers never block the writer),
//!   so the copy holds every commit made before it started and none half
//!   made. The copy is written next to its destination, checked, synced and
//!   renamed into place, so the destination is never a partial file.
//! * **Restore** refuses unless the file passes [`inspect_sqlite`], and
//!   unless it can lock the data directory exclusively: every process that
//!   opens the store holds the directory's lock file shared (see
//!   [`lock_data_dir`]), so a running `flowgate serve` or `flowgate admin`
//!   makes it refuse. The database it replaces is checkpointed (its WAL
//!   folded in) and renamed aside, never deleted.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};
use thiserror::Error;

use crate::StoreError;
use crate::schema::MIGRATIONS;

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The tables every flowgate store has had since its first migration.
const FLOWGATE_TABLES: [&str; 4] = ["schema_migrations", "meta", "objects", "changelog"];

/// What a store file holds, as far as backup and restore need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFileInfo {
    /// The newest migration applied to it.
    pub schema_version: i64,
    /// The store's revision when the file was written.
    pub revision: u64,
    /// How many objects (accounts, addresses, groups, ...) it holds.
    pub objects: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// What the restored database holds.
    pub info: StoreFileInfo,
    /// Where the database it replaced now is (`None`: there was none).
    pub previous: Option<PathBuf>,
}

/// Why a backup or restore did not happen. In every case nothing in the
/// data directory was changed (a restore that failed half way leaves the
/// replaced database where [`BackupError::Interrupted`] says).
#[derive(Debug, Error)]
pub enum BackupError {
    /// The data directory holds no store.
    #[error("there is no flowgate store in {0} (no flowgate.db)")]
    NoStore(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an SQLite database at all.
    #[error("{0} is not a flowgate backup: it is not an SQLite database")]
    NotSqlite(PathBuf),
    /// The file is shorter than its own header says.
    #[error("{path} is truncated: its header describes {expected} bytes but it has {actual}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The length its header implies.
        expected: u64,
        /// Its length.
        actual: u64,
    },
    /// SQLite's integrity check found damage.
    #[error("{path} is damaged: {report}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The first lines of `PRAGMA integrity_check`.
        report: String,
    },
    /// An SQLite database, but not a flowgate store.
    #[error("{path} is an SQLite database but not a flowgate store: {reason}")]
    NotFlowgate {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A store written by a newer flowgate, which this build cannot run on.
    #[error(
        "{path} has schema version {found}, newer than this flowgate knows ({known}): \
         restore it with the flowgate that made it"
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A live database (with a write-ahead log beside it) instead of a backup.
    #[error(
        "{0} has a non-empty write-ahead log beside it: it is a live database, not a backup; \
         make a backup of it with `flowgate admin backup`"
    )]
    LiveDatabase(PathBuf),
    /// The destination of a backup is the store itself.
    #[error("{0} is the store's own database; choose another file for the backup")]
    SameFile(PathBuf),
    /// Another process uses the data directory.
    #[error(
        "{0} is in use by a running flowgate (serve or admin holds its flowgate.lock); \
         stop it first (e.g. systemctl stop flowgate)"
    )]
    InUse(PathBuf),
    /// The database being replaced could not be set aside.
    #[error(
        "cannot checkpoint the current database {path} before setting it aside ({reason}); \
         nothing was changed: move flowgate.db and its -wal file away by hand, then restore again"
    )]
    Checkpoint {
        /// The current database.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The restore stopped after the old database was set aside.
    #[error(
        "restore failed after the previous database was moved to {previous}: {source}; \
         move it back to flowgate.db to undo"
    )]
    Interrupted {
        /// Where the previous database is.
        previous: PathBuf,
        /// What failed.
        source: Box<BackupError>,
    },
    /// The database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sql_error(err: sqlx::Error) -> BackupError {
    BackupError::Store(StoreError::Database(err))
}

/// The lock file in a data directory: held shared by every process that
/// opens the store there, exclusively by a restore.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("flowgate.lock")
}

/// How a data directory is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Using the store (serve, admin, backup): many may share it.
    Shared,
    /// Replacing the store (restore): nobody else may use it.
    Exclusive,
}

/// Locks `data_dir` (which must exist) and returns the open lock file; the
/// lock lasts until it is dropped or the process ends, however it ends.
/// `Ok(None)` means another process holds a conflicting lock.
pub fn lock_data_dir(data_dir: &Path, mode: LockMode) -> Result<Option<File>, std::io::Error> {
    let path = lock_path(data_dir);
    // Read-only is enough for flock, and lets a service user lock a file
    // that root created (0644: it holds nothing).
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&path)?;
            // Best effort: only root can give it away, and 0644 already
            // lets the directory's owner open it for locking.
            let _ = give_to_owner_of(&path, data_dir);
            File::open(&path)?
        }
        Err(err) => return Err(err),
    };
    let locked = match mode {
        LockMode::Shared => file.try_lock_shared(),
        LockMode::Exclusive => file.try_lock(),
    };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(err)) => Err(err),
    }
}

/// Makes `path` belong to whoever owns `dir`, when that is someone else
/// (root running `flowgate admin` on a service user's data directory):
/// otherwise the service could no longer open what root wrote there.
fn give_to_owner_of(path: &Path, dir: &Path) -> Result<(), std::io::Error> {
    let owner = std::fs::metadata(dir)?;
    let file = std::fs::metadata(path)?;
    if (file.uid(), file.gid()) != (owner.uid(), owner.gid()) {
        std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))?;
    }
    Ok(())
}

/// Checks the SQLite header of `path` against its length; returns the length.
fn check_header(path: &Path) -> Result<u64, BackupError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    let mut header = [0u8; 100];
    let read = file.read(&mut header).map_err(io_error(path))?;
    let prefix = read.min(SQLITE_MAGIC.len());
    if read == 0 || header[..prefix] != SQLITE_MAGIC[..prefix] {
        return Err(BackupError::NotSqlite(path.to_path_buf()));
    }
    if len < 100 {
        return Err(BackupError::Truncated {
            path: path.to_path_buf(),
            expected: 100,
            actual: len,
        });
    }
    let raw_page_size = u16::from_be_bytes([header[16], header[17]]);
    let page_size = if raw_page_size == 1 {
        65536
    } else {
        u64::from(raw_page_size)
    };
    if page_size < 512 || !page_size.is_power_of_two() {
        return Err(BackupError::NotSqlite(path.to_path_buf()));
    }
    // The header's page count is only meaningful when its "valid for"
    // counter matches the change counter (SQLite's own rule); every
    // database a current SQLite wrote has it so.
    let pages = u32::from_be_bytes([header[28], header[29], header[30], header[31]]);
    let header_valid = header[24..28] == header[92..96] && pages > 0;
    let expected = if header_valid {
        page_size * u64::from(pages)
    } else {
        len.div_ceil(page_size) * page_size
    };
    if len < expected || len % page_size != 0 {
        return Err(BackupError::Truncated {
            path: path.to_path_buf(),
            expected: expected.max(len.div_ceil(page_size) * page_size),
            actual: len,
        });
    }
    Ok(len)
}

/// Checks that `path` is a whole, undamaged flowgate store whose schema
/// this build can run on (older versions are migrated when the store is
/// opened), without changing it, and says what it holds.
pub async fn inspect_sqlite(path: &Path) -> Result<StoreFileInfo, BackupError> {
    let bytes = check_header(path)?;
    // Immutable: no locks, no WAL or shared-memory files beside it, no
    // writes; the file may sit in a read-only place.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(sql_error)?;
    let result = inspect_open(path, &mut conn, bytes).await;
    let _ = conn.close().await;
    result
}

async fn inspect_open(
    path: &Path,
    conn: &mut SqliteConnection,
    bytes: u64,
) -> Result<StoreFileInfo, BackupError> {
    let damaged = |err: sqlx::Error| BackupError::Damaged {
        path: path.to_path_buf(),
        report: err.to_string(),
    };
    let report: Vec<String> = sqlx::query("PRAGMA integrity_check(5)")
        .fetch_all(&mut *conn)
        .await
        .map_err(damaged)?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(damaged)?;
    if report != ["ok"] {
        return Err(BackupError::Damaged {
            path: path.to_path_buf(),
            report: report.join("; "),
        });
    }
    let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut *conn)
        .await
        .map_err(damaged)?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(damaged)?;
    let missing: Vec<&str> = FLOWGATE_TABLES
        .iter()
        .copied()
        .filter(|t| !tables.iter().any(|have| have == t))
        .collect();
    if !missing.is_empty() {
        return Err(BackupError::NotFlowgate {
            path: path.to_path_buf(),
            reason: format!("it has no table {}", missing.join(", ")),
        });
    }
    let found: Option<i64> = sqlx::query("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_error)?
        .try_get(0)
        .map_err(sql_error)?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    let schema_version = match found {
        Some(version) if version > 0 => version,
        _ => {
            return Err(BackupError::NotFlowgate {
                path: path.to_path_buf(),
                reason: "no migration was ever applied to it".into(),
            });
        }
    };
    if schema_version > known {
        return Err(BackupError::SchemaTooNew {
            path: path.to_path_buf(),
            found: schema_version,
            known,
        });
    }
    let revision: Option<i64> = sqlx::query("SELECT revision FROM meta WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_error)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(sql_error)?;
    let Some(revision) = revision else {
        return Err(BackupError::NotFlowgate {
            path: path.to_path_buf(),
            reason: "its meta table has no revision".into(),
        });
    };
    let objects = if schema_version == known {
        // Every object must read back as this build's model, or serve would
        // refuse to start on the restored store.
        let rows = sqlx::query("SELECT kind, id, body FROM objects")
            .fetch_all(&mut *conn)
            .await
            .map_err(sql_error)?;
        for row in &rows {
            let kind: String = row.try_get(0).map_err(sql_error)?;
            let id: String = row.try_get(1).map_err(sql_error)?;
            let body: String = row.try_get(2).map_err(sql_error)?;
            crate::db::decode(&kind, &id, &body)?;
        }
        rows.len() as u64
    } else {
        // An older schema: the migrations bring it up to date when the
        // store is opened; its rows need not read as today's model yet.
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM objects")
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_error)?
            .try_get(0)
            .map_err(sql_error)?;
        u64::try_from(count).unwrap_or(0)
    };
    Ok(StoreFileInfo {
        schema_version,
        revision: u64::try_from(revision).unwrap_or(0),
        objects,
        bytes,
    })
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Syncs a directory so that renames and creations in it are durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error(path))
}

/// Creates `path` empty, for flowgate's user only (a store holds secret keys).
fn create_private(path: &Path) -> Result<File, BackupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))
}

/// A file removed on drop unless it was kept.
struct Scratch(Option<PathBuf>);

impl Scratch {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes a consistent copy of the store in `data_dir` to `dest` (replacing
/// it if it exists), while other processes may keep writing to the store.
/// The copy holds every transaction committed before the backup started.
pub async fn backup_sqlite(data_dir: &Path, dest: &Path) -> Result<StoreFileInfo, BackupError> {
    let db = crate::sqlite_path(data_dir);
    if !db.exists() {
        return Err(BackupError::NoStore(data_dir.to_path_buf()));
    }
    let dest_dir = parent_of(dest);
    let Some(dest_name) = dest.file_name() else {
        return Err(BackupError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        });
    };
    let dest_dir = dest_dir.canonicalize().map_err(io_error(&dest_dir))?;
    let dest = dest_dir.join(dest_name);
    let live = db.canonicalize().map_err(io_error(&db))?;
    if [
        live.clone(),
        with_suffix(&live, "-wal"),
        with_suffix(&live, "-shm"),
    ]
    .contains(&dest)
    {
        return Err(BackupError::SameFile(dest));
    }
    // Shared: backups run beside serve and admin, but not during a restore.
    let _lock = lock_data_dir(data_dir, LockMode::Shared)
        .map_err(io_error(&lock_path(data_dir)))?
        .ok_or_else(|| BackupError::InUse(data_dir.to_path_buf()))?;

    let tmp = with_suffix(&dest, &format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp); // left by a crashed backup of the same pid
    // VACUUM INTO accepts an existing empty file: creating it first makes
    // the copy private from its first byte.
    create_private(&tmp)?;
    let scratch = Scratch(Some(tmp.clone()));
    let Some(tmp_text) = tmp.to_str() else {
        return Err(BackupError::Io {
            path: tmp,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
        });
    };
    // Not read-only: reading a WAL database needs its shared-memory file,
    // which a read-only connection may not be able to create.
    let options = SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(10));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(sql_error)?;
    let vacuum = sqlx::query("VACUUM INTO $1")
        .bind(tmp_text)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    vacuum.map_err(sql_error)?;
    sync_file(&tmp)?;
    let info = inspect_sqlite(&tmp).await?;
    std::fs::rename(&tmp, &dest).map_err(io_error(&dest))?;
    scratch.keep();
    sync_dir(&dest_dir)?;
    Ok(StoreFileInfo {
        bytes: std::fs::metadata(&dest).map_err(io_error(&dest))?.len(),
        ..info
    })
}

/// Puts the backup `file` in place as the store of `data_dir` (created if
/// missing), after checking it with [`inspect_sqlite`]. Refuses while any
/// process has the store open. A database already there is checkpointed
/// and renamed to `flowgate.db.before-restore-LABEL` beside it.
pub async fn restore_sqlite(data_dir: &Path, file: &Path, label: &str) -> Result<Restored, BackupError> {
    use std::os::unix::fs::DirBuilderExt;

    let source_wal = with_suffix(file, "-wal");
    if std::fs::metadata(&source_wal).is_ok_and(|m| m.len() > 0) {
        return Err(BackupError::LiveDatabase(file.to_path_buf()));
    }
    inspect_sqlite(file).await?;
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(io_error(data_dir))?;
    }
    let _lock = lock_data_dir(data_dir, LockMode::Exclusive)
        .map_err(io_error(&lock_path(data_dir)))?
        .ok_or_else(|| BackupError::InUse(data_dir.to_path_buf()))?;

    // Copy first, next to the store, and check the copy: what is renamed
    // into place below is exactly what was checked.
    let db = crate::sqlite_path(data_dir);
    let incoming = with_suffix(&db, ".restoring");
    let _ = std::fs::remove_file(&incoming); // left by an interrupted restore
    {
        let mut target = create_private(&incoming)?;
        let mut source = File::open(file).map_err(io_error(file))?;
        std::io::copy(&mut source, &mut target).map_err(io_error(&incoming))?;
        target.sync_all().map_err(io_error(&incoming))?;
    }
    let scratch = Scratch(Some(incoming.clone()));
    give_to_owner_of(&incoming, data_dir).map_err(io_error(&incoming))?;
    let info = inspect_sqlite(&incoming).await?;

    let previous = if db.exists() {
        Some(set_aside(&db, label).await?)
    } else {
        None
    };
    let finish = || -> Result<(), BackupError> {
        // A WAL or shared-memory file left from a crash would be replayed
        // onto the restored database: they must not survive.
        let wal = with_suffix(&db, "-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            let aside = with_suffix(&db, &format!(".before-restore-{label}-orphan-wal"));
            std::fs::rename(&wal, &aside).map_err(io_error(&wal))?;
        }
        for stale in [wal, with_suffix(&db, "-shm")] {
            match std::fs::remove_file(&stale) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error(&stale)(err)),
            }
        }
        std::fs::rename(&incoming, &db).map_err(io_error(&db))?;
        sync_dir(data_dir)
    };
    match (finish(), previous) {
        (Ok(()), previous) => {
            scratch.keep();
            Ok(Restored { info, previous })
        }
        (Err(err), Some(previous)) => Err(BackupError::Interrupted {
            previous,
            source: Box::new(err),
        }),
        (Err(err), None) => Err(err),
    }
}

/// Folds the WAL of the database at `db` into it and renames it aside;
/// returns where it went.
async fn set_aside(db: &Path, label: &str) -> Result<PathBuf, BackupError> {
    let checkpoint_error = |reason: String| BackupError::Checkpoint {
        path: db.to_path_buf(),
        reason,
    };
    let options = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(10));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| checkpoint_error(e.to_string()))?;
    // TRUNCATE: every frame copied into the database and the WAL emptied,
    // or `busy` is 1 (someone outside flowgate's lock reads it).
    let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await
        .and_then(|row| row.try_get::<i64, _>(0));
    let _ = conn.close().await;
    match checkpoint {
        Ok(0) => {}
        Ok(_) => return Err(checkpoint_error("another process is reading it".into())),
        Err(err) => return Err(checkpoint_error(err.to_string())),
    }
    let mut aside = with_suffix(db, &format!(".before-restore-{label}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = with_suffix(db, &format!(".before-restore-{label}-{n}"));
    }
    std::fs::rename(db, &aside).map_err(io_error(db))?;
    Ok(aside)
}
