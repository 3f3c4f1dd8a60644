//! flowgate's store: the model persisted in a database, mirrored in memory,
//! with a change feed.
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
//! * **Other processes** (`flowgate admin`, later other nodes on
//!   PostgreSQL) write through the same code; every transaction bumps a
//!   revision counter and logs what it touched, and the writer catches up
//!   with what others committed at the start of each transaction and, when
//!   idle, by polling the counter.
//! * **The change feed** ([`Store::subscribe`]) carries every committed
//!   change, before and after, with a revision that only grows; a
//!   subscriber starts from a snapshot taken at a known revision.

pub mod backup;
mod db;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use model::{Change, State};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use db::Database;

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
    /// The writer task has stopped (the store is shutting down).
    #[error("the store is shut down")]
    Closed,
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
    /// How often an idle store looks for changes made by other processes.
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
struct Job {
    run: Box<dyn FnOnce(&mut State) -> Outcome + Send>,
}

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
    revision: std::sync::atomic::AtomicU64,
    feed: broadcast::Sender<ChangeEvent>,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl Store {
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
        let store = Store::start_locked(database, options, Some(lock)).await?;
        tokio::spawn(Database::checkpoint_sqlite(path, Duration::from_secs(1)));
        Ok(store)
    }

    /// Starts a store over an open, migrated database.
    pub async fn start(database: Database, options: StoreOptions) -> Result<Store, StoreError> {
        Store::start_locked(database, options, None).await
    }

    /// Starts a store, holding `lock` (the data directory's) while it runs.
    async fn start_locked(
        mut database: Database,
        options: StoreOptions,
        lock: Option<std::fs::File>,
    ) -> Result<Store, StoreError> {
        let (objects, revision) = database.load_all().await?;
        let state = State::from_objects(objects);
        let (feed, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            _lock: lock,
            committed: RwLock::new(state.clone()),
            revision: std::sync::atomic::AtomicU64::new(revision),
            feed,
        });
        let (jobs, inbox) = mpsc::channel(4096);
        let writer = Writer {
            database,
            working: state,
            applied: revision,
            shared: shared.clone(),
            options,
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
        self.shared.revision.load(std::sync::atomic::Ordering::Acquire)
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
        let job = Job {
            run: Box::new(move |state: &mut State| match operation(state) {
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
                Err(err) => {
                    let _ = reply.send(Err(MutateError::Rejected(err)));
                    Outcome {
                        accepted: false,
                        complete: Box::new(|_| {}),
                    }
                }
            }),
        };
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
        other => StoreError::Corrupt {
            kind: "commit".into(),
            id: String::new(),
            reason: other.to_string(),
        },
    }
}

/// The single writer: owns the database connection and the working copy.
struct Writer {
    database: Database,
    working: State,
    applied: u64,
    shared: Arc<Shared>,
    options: StoreOptions,
}

impl Writer {
    async fn run(mut self, mut inbox: mpsc::Receiver<Job>) {
        let mut poll = tokio::time::interval(self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = inbox.recv() => {
                    let Some(job) = job else { break };
                    let mut batch = vec![job];
                    while batch.len() < self.options.max_batch {
                        match inbox.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    self.commit_batch(batch).await;
                }
                _ = poll.tick() => {
                    match self.database.current_revision().await {
                        Ok(revision) if revision > self.applied => self.commit_batch(Vec::new()).await,
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "cannot poll the store's revision"),
                    }
                }
            }
        }
        tracing::debug!("store writer stopped");
    }

    async fn commit_batch(&mut self, batch: Vec<Job>) {
        let started = std::time::Instant::now();
        let jobs = batch.len();
        let result = self.try_commit_batch(batch).await;
        tracing::trace!(jobs, micros = started.elapsed().as_micros() as u64, "store batch");
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
        }
    }

    async fn try_commit_batch(&mut self, batch: Vec<Job>) -> Result<(), (StoreError, Vec<Completion>)> {
        let mut tx = match self.database.begin().await {
            Ok(tx) => tx,
            Err(err) => return Err((err, run_and_collect(batch, &mut self.working))),
        };
        let revision = match tx.bump_revision().await {
            Ok(revision) => revision,
            Err(err) => return Err((err, run_and_collect(batch, &mut self.working))),
        };
        // What others committed since we last looked comes first.
        let outside = if revision > self.applied + 1 {
            match tx.changed_since(self.applied, revision).await {
                Ok(objects) => objects,
                Err(err) => return Err((err, run_and_collect(batch, &mut self.working))),
            }
        } else {
            Vec::new()
        };
        let mut external = Vec::new();
        for (kind, id, object) in outside {
            let before = self.working.get(kind, &id);
            if before != object {
                self.working.apply_stored(kind, &id, object.clone());
                external.push(Change {
                    kind,
                    id,
                    before,
                    after: object,
                });
            }
        }
        self.working.take_journal();
        let completions = run_and_collect(batch, &mut self.working);
        let changes = self.working.take_journal();
        if changes.is_empty() {
            // Nothing of ours to persist: release the lock without a write.
            if let Err(err) = tx.rollback().await {
                tracing::warn!(error = %err, "rollback of an empty transaction failed");
            }
            if !external.is_empty() {
                self.publish(revision - 1, external);
            } else {
                self.applied = self.applied.max(revision - 1);
            }
            for complete in completions {
                complete(Ok(revision - 1));
            }
            return Ok(());
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
        let mut all = external;
        all.extend(changes);
        self.publish(revision, all);
        for complete in completions {
            complete(Ok(revision));
        }
        Ok(())
    }

    fn publish(&mut self, revision: u64, changes: Vec<Change>) {
        let changes: Arc<[Change]> = changes.into();
        {
            let mut committed = self.shared.committed.write().unwrap_or_else(|p| p.into_inner());
            for change in changes.iter() {
                committed.apply(change);
            }
            self.shared
                .revision
                .store(revision, std::sync::atomic::Ordering::Release);
            // Sent under the write lock so that `subscribe` sees either the
            // state before this event and the event, or the state after it.
            let _ = self.shared.feed.send(ChangeEvent { revision, changes });
        }
        self.applied = revision;
    }
}

/// Runs each job on the working state; a rejected job's partial changes are rolled back.
fn run_and_collect(batch: Vec<Job>, working: &mut State) -> Vec<Completion> {
    let mut completions = Vec::with_capacity(batch.len());
    for job in batch {
        let mark = working.journal_len();
        let outcome = (job.run)(working);
        if outcome.accepted {
            completions.push(outcome.complete);
        } else {
            working.rollback_to(mark);
        }
    }
    completions
}
