//! Backup and restore of the SQLite store against real files: a backup
//! taken during a stream of writes holds every write acknowledged before
//! it started, a restore brings it back in a fresh or used data directory
//! (setting the old database aside), and files that are not whole flowgate
//! stores of a known schema are refused with nothing changed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::{Domain, SeededEntropy};
use sqlx::{Connection, SqliteConnection};
use store::backup::{self, BackupError, LockMode};
use store::{Store, StoreError, StoreOptions};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "flowgate-backup-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        poll_interval: Duration::from_millis(20),
        ..StoreOptions::default()
    }
}

/// A store in `dir` with an account, a pool and `addresses` Elastic IPs;
/// returns the store and its public IPs.
async fn populated(dir: &Path, addresses: u64) -> (Store, model::AccountId) {
    let store = Store::open_sqlite(dir, options()).await.unwrap();
    let account = common::account_with_pool(&store, "100.64.0.0/16", "100.64.0.1").await;
    for n in 0..addresses {
        let a = account.clone();
        store
            .mutate(move |s| s.allocate_address(&a, Domain::Vpc, 100_000, &mut SeededEntropy(n)))
            .await
            .unwrap();
    }
    (store, account)
}

/// Waits (at most 10 s) until no store of this process holds `dir`'s lock:
/// a dropped store's writer lets go of it when it notices.
async fn wait_unlocked(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if backup::lock_data_dir(dir, LockMode::Exclusive).unwrap().is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "{} stayed locked", dir.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether an error is the kind a case expects.
type Expected = fn(&BackupError) -> bool;

fn public_ips(store: &Store) -> HashSet<std::net::Ipv4Addr> {
    store
        .read()
        .tenants()
        .flat_map(|t| t.addresses.values().map(|a| a.public_ip))
        .collect()
}

/// Every file in `dir` with its bytes, but SQLite's `-shm` wal-index: an
/// open store's readers write their read marks there, so it changes while
/// the data stays the same.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with("-shm"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_writes_holds_every_write_acknowledged_before_it_started() {
    let live = TempDir::new();
    let (store, account) = populated(&live.0, 10).await;
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, acknowledged, stop) = (store.clone(), acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 1000;
            // Bounded: stops when told, or after 20,000 writes.
            while !stop.load(Ordering::SeqCst) && n < 21_000 {
                n += 1;
                let a = account.clone();
                let address = store
                    .mutate(move |s| s.allocate_address(&a, Domain::Vpc, 100_000, &mut SeededEntropy(n)))
                    .await
                    .unwrap();
                acknowledged.lock().unwrap().insert(address.public_ip);
            }
        })
    };
    // Let the stream get going before the backup starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "the writes did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before: HashSet<_> = acknowledged.lock().unwrap().clone();
    let copies = TempDir::new();
    let file = copies.0.join("flowgate.backup");
    let info = backup::backup_sqlite(&live.0, &file).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a backup holds secret keys");
    assert_eq!(info.bytes, std::fs::metadata(&file).unwrap().len());
    assert_eq!(backup::inspect_sqlite(&file).await.unwrap(), info);

    let fresh = TempDir::new();
    let data = fresh.0.join("data");
    let restored = backup::restore_sqlite(&data, &file, "t1").await.unwrap();
    assert!(restored.previous.is_none());
    assert_eq!(restored.info.revision, info.revision);
    let reopened = Store::open_sqlite(&data, options()).await.unwrap();
    let ips = public_ips(&reopened);
    let missing: Vec<_> = before.difference(&ips).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing after restore: {missing:?}"
    );
    assert!(ips.len() >= 10 + before.len());
    assert_eq!(reopened.revision(), info.revision);
    drop(store);
}

#[tokio::test]
async fn a_restore_over_a_used_store_sets_it_aside_and_refuses_while_it_is_open() {
    let old = TempDir::new();
    let (store, _) = populated(&old.0, 3).await;
    let old_ips = public_ips(&store);
    let other = TempDir::new();
    let (other_store, _) = populated(&other.0, 5).await;
    let new_ips = public_ips(&other_store);
    let copies = TempDir::new();
    let file = copies.0.join("other.db");
    backup::backup_sqlite(&other.0, &file).await.unwrap();

    // While a store is open on the directory, a restore must not touch it.
    let before = snapshot(&old.0);
    let err = backup::restore_sqlite(&old.0, &file, "t2").await.unwrap_err();
    assert!(matches!(err, BackupError::InUse(_)), "{err}");
    assert!(err.to_string().contains("stop it first"), "{err}");
    assert_eq!(snapshot(&old.0), before);

    drop(store);
    wait_unlocked(&old.0).await;
    let restored = backup::restore_sqlite(&old.0, &file, "t2").await.unwrap();
    let previous = restored.previous.unwrap();
    assert_eq!(previous, old.0.join("flowgate.db.before-restore-t2"));
    // The database set aside is whole on its own (its WAL was folded in).
    let aside = TempDir::new();
    std::fs::copy(&previous, aside.0.join("flowgate.db")).unwrap();
    let aside_store = Store::open_sqlite(&aside.0, options()).await.unwrap();
    assert_eq!(public_ips(&aside_store), old_ips);
    let reopened = Store::open_sqlite(&old.0, options()).await.unwrap();
    assert_eq!(public_ips(&reopened), new_ips);

    // While a restore holds the directory, the store does not open.
    drop(reopened);
    wait_unlocked(&old.0).await;
    let held = backup::lock_data_dir(&old.0, LockMode::Exclusive)
        .unwrap()
        .unwrap();
    let err = Store::open_sqlite(&old.0, options()).await.err().unwrap();
    assert!(matches!(err, StoreError::Restoring(_)), "{err}");
    drop(held);
    drop(other_store);
}

#[tokio::test]
async fn files_that_are_not_whole_flowgate_stores_are_refused_and_nothing_changes() {
    let live = TempDir::new();
    let (store, _) = populated(&live.0, 4).await;
    let copies = TempDir::new();
    let good = copies.0.join("good.db");
    backup::backup_sqlite(&live.0, &good).await.unwrap();
    let bytes = std::fs::read(&good).unwrap();
    drop(store);
    wait_unlocked(&live.0).await;
    let target_before = snapshot(&live.0);

    let text = copies.0.join("notes.txt");
    std::fs::write(&text, "data_dir = \"/var/lib/flowgate\"\n").unwrap();
    let empty = copies.0.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let half = copies.0.join("half.db");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let ragged = copies.0.join("ragged.db");
    std::fs::write(&ragged, &bytes[..bytes.len() - 100]).unwrap();
    let tiny = copies.0.join("tiny.db");
    std::fs::write(&tiny, &bytes[..40]).unwrap();
    let foreign = copies.0.join("foreign.db");
    let newer = copies.0.join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    let damaged = copies.0.join("damaged.db");
    let mut scribbled = bytes.clone();
    // Garbage over the second page (a b-tree page of the schema's tables).
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    scribbled[page..page + 64].fill(0xa5);
    std::fs::write(&damaged, &scribbled).unwrap();
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&foreign)
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE accounts (name TEXT)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&newer);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, description) VALUES (999, 'future')")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    let cases: [(&Path, Expected, &str); 8] = [
        (
            &text,
            |e| matches!(e, BackupError::NotSqlite(_)),
            "not an SQLite database",
        ),
        (
            &empty,
            |e| matches!(e, BackupError::NotSqlite(_)),
            "not an SQLite database",
        ),
        (
            &half,
            |e| matches!(e, BackupError::Truncated { .. }),
            "is truncated",
        ),
        (
            &ragged,
            |e| matches!(e, BackupError::Truncated { .. }),
            "is truncated",
        ),
        (
            &tiny,
            |e| matches!(e, BackupError::Truncated { .. }),
            "is truncated",
        ),
        (
            &foreign,
            |e| matches!(e, BackupError::NotFlowgate { .. }),
            "not a flowgate store",
        ),
        (
            &newer,
            |e| matches!(e, BackupError::SchemaTooNew { found: 999, .. }),
            "schema version 999",
        ),
        (
            &damaged,
            |e| matches!(e, BackupError::Damaged { .. }),
            "is damaged",
        ),
    ];
    for (file, expected, words) in cases {
        let err = backup::restore_sqlite(&live.0, file, "bad").await.unwrap_err();
        assert!(expected(&err), "{}: unexpected {err:?}", file.display());
        assert!(err.to_string().contains(words), "{}: {err}", file.display());
        assert_eq!(
            snapshot(&live.0),
            target_before,
            "{} changed the data directory",
            file.display()
        );
    }
    // A directory that was not there stays absent when the file is refused.
    let nowhere = copies.0.join("nowhere");
    backup::restore_sqlite(&nowhere, &half, "bad").await.unwrap_err();
    assert!(!nowhere.exists());

    // The good one still restores, and the store opens on it.
    backup::restore_sqlite(&live.0, &good, "good").await.unwrap();
    let reopened = Store::open_sqlite(&live.0, options()).await.unwrap();
    assert_eq!(public_ips(&reopened).len(), 4);
}

#[tokio::test]
async fn a_backup_refuses_the_stores_own_file_and_a_missing_store() {
    let live = TempDir::new();
    let (store, _) = populated(&live.0, 1).await;
    let err = backup::backup_sqlite(&live.0, &live.0.join("flowgate.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::SameFile(_)), "{err}");
    let err = backup::backup_sqlite(&live.0, &live.0.join("flowgate.db-wal"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::SameFile(_)), "{err}");
    let empty = TempDir::new();
    let err = backup::backup_sqlite(&empty.0, &empty.0.join("x.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::NoStore(_)), "{err}");
    assert!(
        !empty.0.join("flowgate.db").exists(),
        "a backup must not create a store"
    );
    // A live database is not a backup: its WAL would be left behind.
    let err = backup::restore_sqlite(&empty.0, &live.0.join("flowgate.db"), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::LiveDatabase(_)), "{err}");
    drop(store);
}
