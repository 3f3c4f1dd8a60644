//! flowgate's store: the model persisted in a database (SQLite by default,
//! PostgreSQL for several nodes), mirrored in memory, with a change feed.
//!
//! * **Reads** come from memory: [`Store::read`] lends the committed
//!   [`State`]; nothing there waits for the database.
//! * **Writes** are closures over the model ([`Store::mutate`]) run by one
//!   writer task on its own working copy. The writer takes every request
//!   that is waiting, runs them one after the other, and persists all their
//!   changes in one transaction (group commit). Only after that commit is
//!   durable does it apply the changes to the committed state, publish them
//!   on the feed, and answer the callers: a success means durable, and no
//!   reader ever sees what is not yet committed.
//! * **Other processes** (`flowgate admin`, other nodes on PostgreSQL)
//!   write through the same code; every transaction bumps a revision
//!   counter and logs what it touched. Bumping the counter locks it until
//!   commit, so writers of every process are serialised and each catches up
//!   with what others committed at the start of its transaction, before
//!   running its operations: no node decides on a stale model.
//! * **Between writes** the writer catches up as soon as PostgreSQL
//!   notifies a commit (LISTEN/NOTIFY on channel `flowgate_changes`, sent by the
//!   committing transaction itself), and on both backends by polling the
//!   counter every [`StoreOptions::poll_interval`] (SQLite has no
//!   notifications; on PostgreSQL it covers a listener reconnecting).
//! * **The change feed** ([`Store::subscribe`]) carries every committed
//!   change, before and after, with a revision that only grows; a
//!   subscriber starts from a snapshot taken at a known revision.
//! * **Nodes on PostgreSQL elect a leader** ([`election`]), the switches'
//!   OpenFlow master, with an epoch that grows at every election.

pub mod backup;
mod db;
pub mod election;
mod location;
mod metrics;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use model::{Change, Kind, Object, State};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use db::Database;
pub use location::StoreLocation;

use db::{Heard, Stored};
use metrics::StoreMetrics;

/// What went wrong in the storage layer.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row could not be read back.
    #[error("stored object {kind}/{id} is unreadable: {reason}")]
    Corrupt {
        /// Its kind.
        kind: String,
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The database was written by a newer flowgate.
    #[error("the database has schema version {found}, newer than this flowgate knows ({known})")]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A restore holds the data directory.
    #[error(
        "data directory {0} is being restored (`flowgate admin restore` holds its flowgate.lock); \
         try again when it has finished"
    )]
    Restoring(PathBuf),
    /// The store's URL is not one flowgate can use.
    #[error("store URL {url:?}: {reason}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The transaction that carried a mutation failed (as told to each of
    /// the callers whose mutations it carried); nothing of it was kept.
    #[error("the transaction failed: {0}")]
    TransactionFailed(String),
    /// The writer task has stopped (the store is shutting down).
    #[error("the store is shut down")]
    Closed,
    /// The leader election cannot run as configured.
    #[error("leader election: {0}")]
    Election(String),
}

/// Why a mutation did not take effect.
#[derive(Debug, Error)]
pub enum MutateError<E> {
    /// The operation refused (EC2 or admin rules); nothing changed.
    #[error(transparent)]
    Rejected(E),
    /// The change could not be made durable; nothing changed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Committed changes: one transaction of the store (or, when catching up
/// with another process, everything it committed since the last look).
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// The store's revision after these changes.
    pub revision: u64,
    /// The changes, in the order they were made.
    pub changes: Arc<[Change]>,
}

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How often an idle store looks for changes made by other processes
    /// (on PostgreSQL a notification usually brings them much sooner).
    pub poll_interval: Duration,
    /// The most mutations persisted in one transaction.
    pub max_batch: usize,
    /// How many change log entries to keep (older ones are pruned).
    pub changelog_retention: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            poll_interval: Duration::from_millis(250),
            max_batch: 512,
            changelog_retention: 100_000,
        }
    }
}

/// The file of the SQLite store inside a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("flowgate.db")
}

/// A job for the writer: runs on the working state and says whether it
/// changed anything worth keeping, and how to answer once the commit is known.
type Job = Box<dyn FnOnce(&mut State) -> Outcome + Send>;

/// Answers a caller once its transaction's fate is known.
type Completion = Box<dyn FnOnce(Result<u64, &StoreError>) + Send>;

struct Outcome {
    accepted: bool,
    complete: Completion,
}

struct Shared {
    /// The data directory's lock, held shared for as long as the store is
    /// in use so that a restore cannot replace the database under it.
    _lock: Option<std::fs::File>,
    committed: RwLock<State>,
    revision: AtomicU64,
    feed: broadcast::Sender<ChangeEvent>,
    metrics: StoreMetrics,
    /// Whether the store is PostgreSQL's, with a listener.
    listening: bool,
}

/// What the PostgreSQL listener tells the writer.
struct Wake {
    /// The highest revision notified so far.
    notified: AtomicU64,
    /// Set when the listener lost its connection: notifications may have
    /// been missed, so the writer must look.
    lost: AtomicBool,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens the store at `location` (see [`StoreLocation`]), migrates it,
    /// loads the model and starts the writer on the current tokio runtime.
    pub async fn open(location: &StoreLocation, options: StoreOptions) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(data_dir) => Store::open_sqlite(data_dir, options).await,
            StoreLocation::Postgres(url) => Store::open_postgres(url, options).await,
        }
    }

    /// Opens (creating if needed) the SQLite store in `data_dir`, migrates
    /// it, loads the model and starts the writer task on the current tokio runtime.
    pub async fn open_sqlite(data_dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir_error = |source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        // The store holds secret access keys: a new data directory and the
        // database file are for flowgate's user only.
        if !data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(dir_error)?;
        }
        let lock = backup::lock_data_dir(data_dir, backup::LockMode::Shared)
            .map_err(dir_error)?
            .ok_or_else(|| StoreError::Restoring(data_dir.to_path_buf()))?;
        let path = sqlite_path(data_dir);
        if !path.exists() {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .and_then(|file| file.set_permissions(std::fs::Permissions::from_mode(0o600)))
                .map_err(dir_error)?;
        }
        let database = Database::open_sqlite(&path).await?;
        let store = Store::launch(database, options, Some(lock), None).await?;
        tokio::spawn(Database::checkpoint_sqlite(path, Duration::from_secs(1)));
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url` (which several nodes
    /// may share), migrates it, loads the model and starts the writer and
    /// the listener for other nodes' commits on the current tokio runtime.
    pub async fn open_postgres(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let database = Database::open_postgres(url).await?;
        // Listening before loading: a commit between the two is then
        // notified, not left to the next poll.
        let Some(listener) = database.listener().await? else {
            return Store::start(database, options).await;
        };
        let wake = Arc::new(Wake {
            notified: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        });
        let (signal, signals) = mpsc::channel(1);
        let store = Store::launch(database, options, None, Some((wake.clone(), signals))).await?;
        tokio::spawn(listen(listener, wake, signal, store.shared.clone()));
        Ok(store)
    }

    /// Starts a store over an open, migrated database.
    pub async fn start(database: Database, options: StoreOptions) -> Result<Store, StoreError> {
        Store::launch(database, options, None, None).await
    }

    /// Starts a store, holding `lock` (the data directory's) while it runs
    /// and, on PostgreSQL, woken by the listener through `wake`.
    async fn launch(
        mut database: Database,
        options: StoreOptions,
        lock: Option<std::fs::File>,
        wake: Option<(Arc<Wake>, mpsc::Receiver<()>)>,
    ) -> Result<Store, StoreError> {
        let (objects, revision) = database.load_all().await?;
        let state = State::from_objects(objects);
        let (feed, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            _lock: lock,
            committed: RwLock::new(state.clone()),
            revision: AtomicU64::new(revision),
            feed,
            metrics: StoreMetrics::default(),
            listening: wake.is_some(),
        });
        let (jobs, inbox) = mpsc::channel(4096);
        let writer = Writer {
            database,
            working: state,
            applied: revision,
            shared: shared.clone(),
            options,
            wake,
        };
        tokio::spawn(writer.run(inbox));
        Ok(Store { shared, jobs })
    }

    /// Lends the committed model for reading. Keep the guard short (no
    /// `.await` while holding it): the writer waits for it to publish.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the model half-changed
        // (changes are applied whole), so a poisoned lock is still usable.
        self.shared
            .committed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The revision of the committed model.
    pub fn revision(&self) -> u64 {
        self.shared.revision.load(Ordering::Acquire)
    }

    /// Writes the store's metrics (transactions, mutations, changes from
    /// other processes, the revision) to `text`.
    pub fn write_metrics(&self, text: &mut ::metrics::Text) {
        let shared = &self.shared;
        shared.metrics.write(text, self.revision(), shared.listening);
    }

    /// A copy of the committed model, its revision, and a receiver of every
    /// change after it. A receiver that falls more than 4096 events behind
    /// gets `Lagged` and must start over from a new snapshot.
    pub fn subscribe(&self) -> (State, u64, broadcast::Receiver<ChangeEvent>) {
        let guard = self.read();
        // Subscribing under the read lock: the writer publishes under the
        // write lock, so no event falls between snapshot and receiver.
        let receiver = self.shared.feed.subscribe();
        (guard.clone(), self.revision(), receiver)
    }

    /// Runs `operation` on the model and makes its changes durable. Returns
    /// its result only once committed; if it fails (or the commit does),
    /// nothing of it remains.
    pub async fn mutate<T, E, F>(&self, operation: F) -> Result<T, MutateError<E>>
    where
        F: FnOnce(&mut State) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, MutateError<E>>>();
        let job: Job = Box::new(move |state: &mut State| match operation(state) {
            Ok(value) => Outcome {
                accepted: true,
                complete: Box::new(move |commit: Result<u64, &StoreError>| {
                    let result = match commit {
                        Ok(_) => Ok(value),
                        Err(err) => Err(MutateError::Storage(clone_error(err))),
                    };
                    let _ = reply.send(result);
                }),
            },
            // Answered by the writer once the refusal is rolled back and
            // counted.
            Err(err) => Outcome {
                accepted: false,
                complete: Box::new(move |_| {
                    let _ = reply.send(Err(MutateError::Rejected(err)));
                }),
            },
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| MutateError::Storage(StoreError::Closed))?;
        answer
            .await
            .map_err(|_| MutateError::Storage(StoreError::Closed))?
    }

    /// Waits until changes committed by other processes up to now are in
    /// the committed model (used by tests and after admin commands).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.mutate(|_| Ok::<(), std::convert::Infallible>(()))
            .await
            .map_err(|err| match err {
                MutateError::Storage(err) => err,
                MutateError::Rejected(never) => match never {},
            })
    }
}

fn clone_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::Closed => StoreError::Closed,
        other => StoreError::TransactionFailed(other.to_string()),
    }
}

/// Runs until the store is dropped: turns PostgreSQL's notifications of
/// commits (by any node, this one included) into wake-ups of the writer.
async fn listen(mut listener: db::Listener, wake: Arc<Wake>, signal: mpsc::Sender<()>, shared: Arc<Shared>) {
    loop {
        let heard = tokio::select! {
            _ = signal.closed() => return,
            heard = listener.next() => heard,
        };
        match heard {
            Heard::Revision(revision) => {
                wake.notified.fetch_max(revision, Ordering::AcqRel);
            }
            Heard::MaybeMissed => {
                shared.metrics.listener_lost.inc();
                wake.lost.store(true, Ordering::Release);
            }
        }
        // Capacity one: a wake-up already pending covers this one too.
        let _ = signal.try_send(());
    }
}

/// What a transaction that did not fail did.
enum Committed {
    /// It wrote changes and committed them.
    Written,
    /// It had nothing to write and was rolled back.
    Nothing,
}

/// The single writer: owns the database connection and the working copy.
struct Writer {
    database: Database,
    working: State,
    applied: u64,
    shared: Arc<Shared>,
    options: StoreOptions,
    /// On PostgreSQL, what the listener notified, and its signal.
    wake: Option<(Arc<Wake>, mpsc::Receiver<()>)>,
}

impl Writer {
    async fn run(mut self, mut inbox: mpsc::Receiver<Job>) {
        let mut poll = tokio::time::interval(self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let woken = async {
                match self.wake.as_mut() {
                    Some((_, signals)) => signals.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Mutations first: a write transaction catches up with
                // other processes anyway, so while mutations wait, a
                // separate catch-up would only cost round trips.
                biased;
                job = inbox.recv() => {
                    let Some(job) = job else { break };
                    let mut batch = vec![job];
                    while batch.len() < self.options.max_batch {
                        match inbox.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    self.commit_batch(batch, &mut inbox).await;
                }
                Some(()) = woken => {
                    let Some((wake, _)) = &self.wake else { continue };
                    let lost = wake.lost.swap(false, Ordering::AcqRel);
                    if lost || wake.notified.load(Ordering::Acquire) > self.applied {
                        self.catch_up().await;
                    }
                }
                _ = poll.tick() => self.catch_up().await,
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Brings in what others committed since we last looked, without
    /// taking the write lock.
    async fn catch_up(&mut self) {
        match self.database.read_since(self.applied).await {
            Ok(Some((revision, stored))) => {
                let external = absorb(&mut self.working, stored);
                self.shared.metrics.external_changes.add(external.len() as u64);
                self.publish(revision, external);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot read what other processes committed");
                self.database.recover().await;
            }
        }
    }

    async fn commit_batch(&mut self, batch: Vec<Job>, inbox: &mut mpsc::Receiver<Job>) {
        let started = std::time::Instant::now();
        let result = self.try_commit_batch(batch, inbox, started).await;
        tracing::trace!(micros = started.elapsed().as_micros() as u64, "store batch");
        let metrics = &self.shared.metrics;
        match &result {
            Ok(_) => {}
            Err((_, completions)) => {
                metrics.transactions_failed.inc();
                metrics.mutations_failed.add(completions.len() as u64);
            }
        }
        if let Err((err, completions)) = result {
            tracing::error!(error = %err, "store transaction failed; nothing of it was kept");
            for complete in completions {
                complete(Err(&err));
            }
            // The working copy ran ahead of the database: start again from
            // what is committed.
            self.working = self
                .shared
                .committed
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            self.working.take_journal();
            self.database.recover().await;
        }
    }

    async fn try_commit_batch(
        &mut self,
        mut batch: Vec<Job>,
        inbox: &mut mpsc::Receiver<Job>,
        started: std::time::Instant,
    ) -> Result<Committed, (StoreError, Vec<Completion>)> {
        let mut tx = match self.database.begin().await {
            Ok(tx) => tx,
            Err(err) => {
                return Err((
                    err,
                    run_and_collect(batch, &mut self.working, &self.shared.metrics),
                ));
            }
        };
        let revision = match tx.bump_revision().await {
            Ok(revision) => revision,
            Err(err) => {
                return Err((
                    err,
                    run_and_collect(batch, &mut self.working, &self.shared.metrics),
                ));
            }
        };
        // What others committed since we last looked comes first.
        let external = if revision > self.applied + 1 {
            match tx.changed(self.applied, revision - 1).await {
                Ok(stored) => absorb(&mut self.working, stored),
                Err(err) => {
                    return Err((
                        err,
                        run_and_collect(batch, &mut self.working, &self.shared.metrics),
                    ));
                }
            }
        } else {
            Vec::new()
        };
        // What arrived while we waited for the lock (another node's
        // transaction) rides along in this one.
        while batch.len() < self.options.max_batch {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let completions = run_and_collect(batch, &mut self.working, &self.shared.metrics);
        let changes = self.working.take_journal();
        if changes.is_empty() {
            // Nothing of ours to persist: release the lock without a write.
            if let Err(err) = tx.rollback().await {
                tracing::warn!(error = %err, "rollback of an empty transaction failed");
            }
            self.count_committed(&external, &completions, None);
            self.publish(revision - 1, external);
            for complete in completions {
                complete(Ok(revision - 1));
            }
            return Ok(Committed::Nothing);
        }
        let written = async {
            tx.write_changes(revision, &changes).await?;
            if revision % 1024 == 0 {
                tx.prune_changelog(revision.saturating_sub(self.options.changelog_retention))
                    .await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(err) = written {
            return Err((err, completions));
        }
        self.count_committed(&external, &completions, Some(started));
        let mut all = external;
        all.extend(changes);
        self.publish(revision, all);
        for complete in completions {
            complete(Ok(revision));
        }
        Ok(Committed::Written)
    }

    /// Counts what a transaction brought in from others and the mutations
    /// it committed, and the transaction itself if it wrote (`started`);
    /// counted once it succeeded, as a failed one is done again, and before
    /// anyone hears of the commit, so that a caller reads counts that
    /// include it.
    fn count_committed(
        &self,
        external: &[Change],
        completions: &[Completion],
        started: Option<std::time::Instant>,
    ) {
        let metrics = &self.shared.metrics;
        if let Some(started) = started {
            metrics.transactions.inc();
            metrics.commit_duration.observe(started.elapsed());
        }
        metrics.external_changes.add(external.len() as u64);
        metrics.mutations_committed.add(completions.len() as u64);
    }

    /// Makes `changes` (committed up to `revision`) visible to readers and
    /// subscribers.
    fn publish(&mut self, revision: u64, changes: Vec<Change>) {
        if revision <= self.applied && changes.is_empty() {
            return;
        }
        let changes: Arc<[Change]> = changes.into();
        {
            let mut committed = self.shared.committed.write().unwrap_or_else(|p| p.into_inner());
            for change in changes.iter() {
                committed.apply(change);
            }
            self.shared.revision.store(revision, Ordering::Release);
            // Sent under the write lock so that `subscribe` sees either the
            // state before this event and the event, or the state after it.
            // Another process's commit that changed nothing here (it stored
            // what we had) moves the revision without an event.
            if !changes.is_empty() {
                let _ = self.shared.feed.send(ChangeEvent { revision, changes });
            }
        }
        self.applied = revision;
    }
}

/// Applies what others stored to the working copy; returns the changes
/// it made there (objects already as stored are left out).
fn absorb(working: &mut State, stored: Stored) -> Vec<Change> {
    let objects = match stored {
        Stored::Touched(objects) => objects,
        Stored::Everything(all) => {
            let mut seen = std::collections::HashSet::new();
            let mut objects: Vec<(Kind, String, Option<Object>)> = all
                .into_iter()
                .map(|object| {
                    let (kind, id) = (object.kind(), object.id());
                    seen.insert((kind, id.clone()));
                    (kind, id, Some(object))
                })
                .collect();
            for object in working.objects() {
                let (kind, id) = (object.kind(), object.id());
                if !seen.contains(&(kind, id.clone())) {
                    objects.push((kind, id, None));
                }
            }
            objects
        }
    };
    // The model's indexes (public IPs, private IPs, names) are kept by
    // applying changes one at a time, and removing an object frees its keys
    // whoever holds them by then. So what frees keys goes before what takes
    // them: deletions first (what an owner owns before the owner), then
    // changes of objects already here, then new objects (owners first, so
    // that an account arrives before what it owns). Applied in another
    // order, a released address whose public IP was allocated again would
    // free the new holder's IP in the index, and it would be handed out twice.
    let mut changes: Vec<Change> = objects
        .into_iter()
        .filter_map(|(kind, id, after)| {
            let before = working.get(kind, &id);
            (before != after).then_some(Change {
                kind,
                id,
                before,
                after,
            })
        })
        .collect();
    changes.sort_by_key(|change| {
        // Kind::ALL lists owners first.
        let rank = Kind::ALL.iter().position(|k| *k == change.kind).unwrap_or(0) as i32;
        match (&change.before, &change.after) {
            (_, None) => (0, -rank),
            (Some(_), Some(_)) => (1, rank),
            (None, Some(_)) => (2, rank),
        }
    });
    for change in &changes {
        working.apply(change);
    }
    changes
}

/// Runs each job on the working state; a rejected job's partial changes
/// are rolled back (and counted in `metrics`).
fn run_and_collect(batch: Vec<Job>, working: &mut State, metrics: &StoreMetrics) -> Vec<Completion> {
    let mut completions = Vec::with_capacity(batch.len());
    for job in batch {
        let mark = working.journal_len();
        let outcome = job(working);
        if outcome.accepted {
            completions.push(outcome.complete);
        } else {
            working.rollback_to(mark);
            metrics.mutations_rejected.inc();
            // The refusal's answer ignores the commit's outcome.
            (outcome.complete)(Ok(0));
        }
    }
    completions
}
