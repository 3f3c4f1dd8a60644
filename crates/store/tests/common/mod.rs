//! The databases the store's tests run on: an SQLite file in a temporary
//! directory, or a private PostgreSQL server (crates/pgtest) with its
//! `postgres` database. Both are removed when the test ends.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use store::{Database, Store, StoreLocation, StoreOptions};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "flowgate-store-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One database that any number of stores may open, as processes do.
pub enum Db {
    Sqlite(TempDir),
    Postgres(pgtest::Postgres),
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(TempDir::new())
    }

    pub fn postgres() -> Db {
        Db::Postgres(pgtest::Postgres::start().unwrap())
    }

    pub fn location(&self) -> StoreLocation {
        match self {
            Db::Sqlite(dir) => StoreLocation::Sqlite(dir.0.clone()),
            Db::Postgres(server) => StoreLocation::Postgres(server.url()),
        }
    }

    /// A new store on the database, as another process would open it.
    pub async fn open(&self, options: StoreOptions) -> Store {
        Store::open(&self.location(), options).await.unwrap()
    }

    /// The bare database (no listener, no checkpointing).
    pub async fn database(&self) -> Database {
        match self {
            Db::Sqlite(dir) => Database::open_sqlite(&store::sqlite_path(&dir.0)).await.unwrap(),
            Db::Postgres(server) => Database::open_postgres(&server.url()).await.unwrap(),
        }
    }

    pub fn server(&self) -> &pgtest::Postgres {
        match self {
            Db::Postgres(server) => server,
            Db::Sqlite(_) => panic!("not a PostgreSQL database"),
        }
    }
}

pub fn options() -> StoreOptions {
    StoreOptions {
        poll_interval: Duration::from_millis(20),
        ..StoreOptions::default()
    }
}

/// A runtime for one test; dropped (stopping every store's tasks) before
/// the database it ran on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Account `alice` and a public pool of `cidr` with its `gateway`,
/// committed in one mutation; returns the account.
pub async fn account_with_pool(store: &Store, cidr: &'static str, gateway: &'static str) -> model::AccountId {
    store
        .mutate(move |s: &mut model::State| {
            let mut e = model::SeededEntropy(42);
            let (account, _) = s.create_account("alice", 0, &mut e)?;
            s.add_pool(cidr.parse().unwrap(), gateway.parse().unwrap(), None, &mut e)?;
            Ok::<_, model::AdminError>(account.id)
        })
        .await
        .unwrap()
}

/// The first event of `feed` at or past `revision`, waited for at most
/// 30 s (a node hears of another's commits through its feed).
pub async fn event_reaching(
    feed: &mut tokio::sync::broadcast::Receiver<store::ChangeEvent>,
    revision: u64,
) -> store::ChangeEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), feed.recv())
            .await
            .expect("no event of that revision within 30 s")
            .unwrap();
        if event.revision >= revision {
            return event;
        }
    }
}
