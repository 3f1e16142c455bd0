//! Embedded SQLite backend: a kine-style revision log in one database file.
//!
//! Start at [`SqliteStorage::open`]. Writes are serialised through one writer connection (one
//! write = one `BEGIN IMMEDIATE` transaction); reads use a small pool of reader connections,
//! which WAL mode lets run beside the writer. Every committed change is also published on an
//! in-process broadcast channel, which feeds live watch events (see [`watch`]). This assumes one
//! process owns the database file: a second process writing to it would not notify our watchers.
//!
//! The WAL is copied back into the database file by a checkpointer thread of its own, never by
//! the writer: SQLite's automatic checkpoint runs inside the commit that crosses its threshold,
//! and after a large compaction (hundreds of MiB of WAL) that held every write for seconds.

mod gate;
mod log;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{broadcast, Semaphore};

use crate::storage::interface::{
    Event, KeyValue, ListOptions, ListResult, Revision, Storage, StorageError,
};
use log::{sql, Append};

/// How many committed events the live broadcast buffers for a slow watcher before that
/// watcher has to catch up from the log.
const EVENT_BUFFER: usize = 4096;

/// Reads that run at once, each on its own pooled connection. Reads beyond it wait for a
/// connection instead of opening one: a fresh connection parses the schema and starts with an
/// empty statement cache, which under a burst of reads cost more than the reads themselves.
const READERS: usize = 8;

/// The SQLite [`Storage`] backend. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStorage {
    shared: Arc<Shared>,
}

/// State shared by the storage handle, its blocking tasks and its watch streams.
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// One permit per concurrent read ([`READERS`]).
    read_slots: Arc<Semaphore>,
    /// Every read passes it; the checkpointer closes it to restart the WAL.
    gate: Arc<gate::ReadGate>,
    /// Queue of the writer thread, which runs writes (and compactions) one after another.
    writes: std::sync::mpsc::Sender<WriteJob>,
    events: broadcast::Sender<Arc<Event>>,
    /// Dropped with the storage, which ends the checkpointer thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StorageError {
    StorageError::Backend("a sqlite connection lock was poisoned by a panic".to_string())
}

impl Shared {
    /// Runs `f` on a pooled reader connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let _reading = self.gate.enter();
        let pooled = self.readers.lock().map_err(poisoned)?.pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => log::open_connection(&self.path)?,
        };
        let result = f(&mut conn);
        let mut readers = self.readers.lock().map_err(poisoned)?;
        if readers.len() < READERS {
            readers.push(conn);
        }
        result
    }
}

/// Runs `f` on a pooled reader connection off the async runtime, once one of the [`READERS`]
/// read slots is free.
async fn read<T: Send + 'static>(
    shared: Arc<Shared>,
    f: impl FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let slot = shared
        .read_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| StorageError::Backend("the sqlite read slots were closed".to_string()))?;
    blocking(move || {
        let _slot = slot;
        shared.read(f)
    })
    .await
}

/// Revisions one compaction step covers. A step holds the writer (at 150,000 pods, 10,000
/// revisions took 300-440 ms, which every write queued behind it waited, and left the
/// checkpointer no moment to restart the WAL); 1,000 take tens of milliseconds.
const COMPACT_STEP: Revision = 1_000;

/// How often the checkpointer copies new WAL pages into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// WAL pages (4 KiB each) beyond which the checkpointer also restarts the WAL. Under steady
/// writes and reads the WAL is never found fully copied and unread at the start of a write,
/// which is when SQLite would start it over, so without this it only grows.
const WAL_RESTART_PAGES: i64 = 16_384;

/// Bytes a restarted WAL file is cut back to.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// How long a restart waits for the reads in progress (new reads waiting meanwhile), and then
/// for the writer's current batch; past it the restart is left to a later pass.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// A checkpoint slower than this is logged (at debug).
const SLOW_CHECKPOINT: Duration = Duration::from_millis(100);

/// Starts the thread that checkpoints the database at `path` every [`CHECKPOINT_INTERVAL`]
/// (passively: neither readers nor the writer wait for it), and restarts the WAL once it has
/// grown past [`WAL_RESTART_PAGES`]: it closes the read gate, waits at most [`RESTART_WAIT`]
/// for the reads inside, then copies the few pages written since the passive pass while new
/// reads and the writer wait. Dropping the returned sender ends the thread.
fn spawn_checkpointer(
    path: &Path,
    gate: Arc<gate::ReadGate>,
) -> Result<std::sync::mpsc::Sender<()>, StorageError> {
    let conn = log::open_connection(path)?;
    conn.busy_timeout(RESTART_WAIT)
        .map_err(log::sql("set the checkpointer's busy timeout"))?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_INTERVAL)
            {
                let started = Instant::now();
                let mut outcome = log::checkpoint(&conn, false);
                let mut mode = "PASSIVE";
                if outcome
                    .as_ref()
                    .is_ok_and(|done| done.wal_pages >= WAL_RESTART_PAGES)
                {
                    if let Some(restarted) =
                        gate.exclusive(RESTART_WAIT, || log::checkpoint(&conn, true))
                    {
                        (mode, outcome) = ("RESTART", restarted);
                    }
                }
                match outcome {
                    // A restart that did not get its turn reports busy and is tried again later.
                    Ok(done) if started.elapsed() >= SLOW_CHECKPOINT => tracing::debug!(
                        mode,
                        wal_pages = done.wal_pages,
                        copied = done.copied,
                        busy = done.busy,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "slow sqlite checkpoint"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(mode, %error, "sqlite checkpoint failed"),
                }
            }
        })
        .map_err(|e| StorageError::Backend(format!("starting the sqlite checkpointer: {e}")))?;
    Ok(stop)
}

/// Writes the writer thread commits together, at most.
const WRITE_BATCH: usize = 128;

/// Hands a queued write its outcome once its batch committed (`Ok`) or failed.
type Deliver = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// A queued write: runs inside the batch's transaction (`None`: the batch failed before it
/// ran) and answers how to deliver its outcome, and whether the transaction is still sound.
type WriteJob = Box<dyn FnOnce(Option<&rusqlite::Transaction<'_>>) -> (Deliver, bool) + Send>;

/// Starts the thread that owns the writer connection and runs writes in arrival order. It
/// takes every write queued while the previous batch committed (up to [`WRITE_BATCH`]) into
/// one transaction, each write in a savepoint of its own (a failed write is rolled back alone),
/// commits once, then answers them and publishes their events in order. A burst of writes
/// waits in the channel instead of parking a blocking thread each on a connection lock (at
/// 1,000 writes/s the apiserver ran 500 threads), and one commit serves many writes. The
/// thread ends when the storage is dropped.
fn spawn_writer(mut conn: Connection) -> Result<std::sync::mpsc::Sender<WriteJob>, StorageError> {
    let (sender, receiver) = std::sync::mpsc::channel::<WriteJob>();
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            while let Ok(first) = receiver.recv() {
                let mut jobs = vec![first];
                while jobs.len() < WRITE_BATCH {
                    match receiver.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                commit_batch(&mut conn, jobs);
            }
        })
        .map_err(|e| StorageError::Backend(format!("starting the sqlite writer thread: {e}")))?;
    Ok(sender)
}

/// Runs `jobs` in one transaction and delivers their outcomes (see [`spawn_writer`]).
fn commit_batch(conn: &mut Connection, jobs: Vec<WriteJob>) {
    let failed = |message: &str| StorageError::Backend(message.to_string());
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let message = format!("begin write: {error}");
            for job in jobs {
                let (deliver, _) = job(None);
                deliver(Err(failed(&message)));
            }
            return;
        }
    };
    let mut delivers = Vec::with_capacity(jobs.len());
    let mut sound = true;
    for job in jobs {
        if !sound {
            delivers.push(job(None).0);
            continue;
        }
        // A panicking write drops its answer (its caller sees an error) and spoils the batch.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(&tx)))) {
            Ok((deliver, ok)) => {
                sound &= ok;
                delivers.push(deliver);
            }
            Err(_) => {
                tracing::error!("a sqlite write panicked");
                sound = false;
            }
        }
    }
    let outcome = if sound {
        tx.commit().map_err(|e| format!("commit write: {e}")).err()
    } else {
        // Dropping the transaction rolls it back.
        drop(tx);
        Some("the write batch was rolled back after a failed write".to_string())
    };
    for deliver in delivers {
        deliver(match &outcome {
            None => Ok(()),
            Some(message) => Err(failed(message)),
        });
    }
}

/// Runs `f` in the writer thread's next batch; once the batch commits, publishes the event
/// `f` returned to live watchers (in revision order: one thread publishes them all) and
/// answers.
async fn write<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, Option<Event>), StorageError>
        + Send
        + 'static,
) -> Result<T, StorageError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let events = shared.events.clone();
    let job: WriteJob = Box::new(move |tx| {
        let fail = |answer: tokio::sync::oneshot::Sender<Result<T, StorageError>>,
                    error: Option<StorageError>|
         -> Deliver {
            Box::new(move |outcome: Result<(), StorageError>| {
                let error = error.or(outcome.err()).unwrap_or_else(|| {
                    StorageError::Backend("the write batch failed before this write".into())
                });
                // The caller may have gone away; nothing was written either way.
                let _ = answer.send(Err(error));
            })
        };
        let Some(tx) = tx else {
            return (fail(answer, None), false);
        };
        if let Err(error) = log::execute_cached(tx, "SAVEPOINT write") {
            return (fail(answer, Some(sql("savepoint")(error))), false);
        }
        match f(tx) {
            Ok((value, event)) => match log::execute_cached(tx, "RELEASE write") {
                Ok(()) => {
                    let deliver: Deliver = Box::new(move |outcome: Result<(), StorageError>| {
                        let answer_value = match outcome {
                            Ok(()) => {
                                // An error only means that no watcher is listening right now.
                                if let Some(event) = event {
                                    if events.send(Arc::new(event)).is_err() {
                                        tracing::trace!("no live watchers for the committed event");
                                    }
                                }
                                Ok(value)
                            }
                            Err(error) => Err(error),
                        };
                        // The caller may have gone away; the write stands either way.
                        let _ = answer.send(answer_value);
                    });
                    (deliver, true)
                }
                Err(error) => (fail(answer, Some(sql("release savepoint")(error))), false),
            },
            Err(error) => {
                let sound = log::execute_cached(tx, "ROLLBACK TO write").is_ok()
                    && log::execute_cached(tx, "RELEASE write").is_ok();
                (fail(answer, Some(error)), sound)
            }
        }
    });
    shared
        .writes
        .send(job)
        .map_err(|_| StorageError::Backend("the sqlite writer thread stopped".to_string()))?;
    answered
        .await
        .map_err(|_| StorageError::Backend("a sqlite write failed without an answer".to_string()))?
}

/// Runs blocking database work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Backend(format!("sqlite worker task failed: {e}")))?
}

impl SqliteStorage {
    /// Compacts to `revision` in steps of at most `step` revisions, each its own write, so
    /// the writes queued meanwhile wait for one step and not the whole compaction (at 150,000
    /// pods every component stalled for tens of seconds at each one-statement compaction). Each
    /// step is a complete compaction to an earlier revision; compaction publishes no event.
    async fn compact_in_steps(
        &self,
        revision: Revision,
        step: Revision,
    ) -> Result<(), StorageError> {
        loop {
            let done = write(&self.shared, move |tx| {
                let current = log::current_revision(tx)?;
                if revision > current {
                    return Err(StorageError::FutureRevision {
                        requested: revision,
                        current,
                    });
                }
                let compacted = log::compacted_revision(tx)?;
                if revision <= compacted {
                    return Ok((true, None));
                }
                let upto = compacted.saturating_add(step.max(1)).min(revision);
                let started = Instant::now();
                let removed = log::compact(tx, compacted, upto)?;
                tracing::debug!(
                    revision = upto,
                    removed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compacted sqlite storage"
                );
                Ok((upto >= revision, None))
            })
            .await?;
            if done {
                return Ok(());
            }
        }
    }

    /// Opens (creating if needed) the database at `path`, its parent directory included.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with_event_buffer(path, EVENT_BUFFER).await
    }

    /// [`Self::open`] with a live-event buffer of `event_buffer` events per watcher.
    async fn open_with_event_buffer(
        path: &Path,
        event_buffer: usize,
    ) -> Result<Self, StorageError> {
        let path = path.to_path_buf();
        blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StorageError::Backend(format!("create directory {}: {e}", dir.display()))
                })?;
            }
            let writer = log::open_connection(&path)?;
            // The checkpointer thread copies the WAL back (see the module docs); a restart
            // cuts the WAL file back to the limit.
            writer
                .execute_batch(&format!(
                    "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
                ))
                .map_err(log::sql("hand checkpoints to the checkpointer"))?;
            log::init_schema(&writer)?;
            let revision = log::current_revision(&writer)?;
            tracing::info!(path = %path.display(), revision, "opened sqlite storage");
            let (events, _) = broadcast::channel(event_buffer);
            let gate = Arc::new(gate::ReadGate::default());
            let checkpointer = spawn_checkpointer(&path, gate.clone())?;
            Ok(SqliteStorage {
                shared: Arc::new(Shared {
                    path,
                    readers: Mutex::new(Vec::new()),
                    read_slots: Arc::new(Semaphore::new(READERS)),
                    gate,
                    writes: spawn_writer(writer)?,
                    events,
                    _checkpointer: checkpointer,
                }),
            })
        })
        .await
    }
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let shared = self.shared.clone();
        let key = key.to_string();
        read(shared, move |conn| {
            Ok(log::latest(conn, &key)?
                .filter(|row| !row.deleted)
                .map(|row| row.key_value()))
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StorageError> {
        let shared = self.shared.clone();
        let prefix = prefix.to_string();
        let opts = opts.clone();
        read(shared, move |conn| log::list(conn, &prefix, &opts)).await
    }

    async fn count(&self, prefix: &str) -> Result<i64, StorageError> {
        let shared = self.shared.clone();
        let prefix = prefix.to_string();
        read(shared, move |conn| log::count(conn, &prefix)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StorageError> {
        let key = key.to_string();
        write(&self.shared, move |tx| {
            let latest = log::latest(tx, &key)?;
            if latest.as_ref().is_some_and(|row| !row.deleted) {
                return Err(StorageError::AlreadyExists { key });
            }
            let row = log::append(
                tx,
                Append {
                    key: &key,
                    created: true,
                    deleted: false,
                    create_revision: None,
                    prev_revision: latest.map_or(0, |row| row.id),
                    value,
                },
            )?;
            Ok((row.id, Some(log::event_of(&row, None))))
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<Revision, StorageError> {
        let key = key.to_string();
        write(&self.shared, move |tx| {
            let current = match log::latest(tx, &key)? {
                Some(row) if !row.deleted => row,
                _ => return Err(StorageError::NotFound { key }),
            };
            if current.id != expected {
                return Err(StorageError::Conflict {
                    key,
                    current: current.id,
                });
            }
            let row = log::append(
                tx,
                Append {
                    key: &key,
                    created: false,
                    deleted: false,
                    create_revision: Some(current.create_revision),
                    prev_revision: current.id,
                    value,
                },
            )?;
            Ok((row.id, Some(log::event_of(&row, Some(current.key_value())))))
        })
        .await
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        let key = key.to_string();
        write(&self.shared, move |tx| {
            let current = match log::latest(tx, &key)? {
                Some(row) if !row.deleted => row,
                _ => return Err(StorageError::NotFound { key }),
            };
            if expected.is_some_and(|expected| expected != current.id) {
                return Err(StorageError::Conflict {
                    key,
                    current: current.id,
                });
            }
            let last = current.key_value();
            let row = log::append(
                tx,
                Append {
                    key: &key,
                    created: false,
                    deleted: true,
                    create_revision: Some(current.create_revision),
                    prev_revision: current.id,
                    value: current.value,
                },
            )?;
            let event = log::event_of(&row, None);
            Ok(((last, row.id), Some(event)))
        })
        .await
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError> {
        watch::start(self.shared.clone(), prefix.to_string(), after).await
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        let shared = self.shared.clone();
        read(shared, |conn| log::current_revision(conn)).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        self.compact_in_steps(revision, COMPACT_STEP).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_committed_together_fail_alone_and_publish_in_order(
    ) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let storage = SqliteStorage::open(&dir.path().join("db")).await?;
        let start = storage.current_revision().await?;
        let mut watch = storage.watch("/registry/", start).await?;
        // Every key is created twice at once: one create of each pair must fail with
        // AlreadyExists, inside whatever batch it lands in, without undoing the others.
        let creates = (0..400).map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let key = format!("/registry/k/{:03}", i % 200);
                (key.clone(), storage.create(&key, vec![1]).await)
            })
        });
        let mut created = Vec::new();
        let mut duplicates = 0;
        for result in futures::future::join_all(creates).await {
            match result? {
                (key, Ok(revision)) => created.push((revision, key)),
                (_, Err(StorageError::AlreadyExists { .. })) => duplicates += 1,
                (key, Err(error)) => anyhow::bail!("create {key}: {error}"),
            }
        }
        assert_eq!((created.len(), duplicates), (200, 200));
        created.sort();
        let mut seen = Vec::new();
        while seen.len() < created.len() {
            let event = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
                .await?
                .expect("stream goes on")?;
            seen.push((event.kv.mod_revision, event.kv.key.clone()));
        }
        assert_eq!(
            seen, created,
            "each committed create once, in revision order"
        );
        for (revision, key) in &created {
            let stored = storage.get(key).await?.expect("stored");
            assert_eq!(stored.mod_revision, *revision);
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_watcher_that_lags_the_live_events_catches_up_from_the_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let storage = SqliteStorage::open_with_event_buffer(&dir.path().join("db"), 4).await?;
        let start = storage.current_revision().await?;
        let mut watch = storage.watch("/registry/", 0).await?;
        let mut written = Vec::new();
        for i in 0..50 {
            written.push(
                storage
                    .create(&format!("/registry/k/{i:02}"), vec![i])
                    .await?,
            );
        }
        let mut seen = Vec::new();
        while seen.len() < written.len() {
            let event = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
                .await?
                .expect("stream goes on")?;
            seen.push(event.kv.mod_revision);
        }
        assert_eq!(seen, written, "every event once, in order, despite the lag");
        assert!(written[0] > start);
        Ok(())
    }

    #[tokio::test]
    async fn a_replay_longer_than_one_chunk_is_delivered_whole_then_live() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let storage = SqliteStorage::open(&dir.path().join("db")).await?;
        let start = storage.current_revision().await?;
        let mut written = Vec::new();
        for i in 0..10 {
            written.push(storage.create(&format!("/registry/a/{i}"), vec![i]).await?);
            // Interleaved keys outside the prefix must not end a chunk early.
            storage.create(&format!("/registry/b/{i}"), vec![i]).await?;
        }
        let mut watch = storage.watch("/registry/a/", start).await?;
        written.push(storage.create("/registry/a/live", Vec::new()).await?);
        let mut seen = Vec::new();
        while seen.len() < written.len() {
            let event = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
                .await?
                .expect("stream goes on")?;
            seen.push(event.kv.mod_revision);
        }
        assert_eq!(seen, written);
        Ok(())
    }

    #[tokio::test]
    async fn a_lagging_watcher_whose_missed_events_were_compacted_gets_compacted(
    ) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let storage = SqliteStorage::open_with_event_buffer(&dir.path().join("db"), 2).await?;
        let mut watch = storage.watch("/registry/", 0).await?;
        let mut rev = storage.create("/registry/k", vec![0]).await?;
        for i in 1..10 {
            rev = storage.update("/registry/k", rev, vec![i]).await?;
        }
        storage.compact(rev).await?;
        match watch.next().await {
            Some(Err(StorageError::Compacted { .. })) => {}
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert!(
            watch.next().await.is_none(),
            "the stream ends after its error"
        );
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_copied_back_and_restarted_beside_the_writer() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("db");
        let storage = SqliteStorage::open(&path).await?;
        let autocheckpoint: i64 = write(&storage.shared, |tx| {
            let pages = tx
                .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
                .map_err(sql("read wal_autocheckpoint"))?;
            Ok((pages, None))
        })
        .await?;
        assert_eq!(
            autocheckpoint, 0,
            "a commit never checkpoints the WAL itself"
        );
        // Well past the restart threshold: without the checkpointer the WAL holds all of it.
        let value = vec![7u8; 1 << 20];
        let writes = (WAL_SIZE_LIMIT >> 20) + 16;
        for i in 0..writes {
            storage
                .create(&format!("/registry/big/{i}"), value.clone())
                .await?;
        }
        // Steady writes and overlapping reads beside it: the WAL is never found fully copied
        // and unread when a write starts, so only the checkpointer's restart starts it over.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rev = storage.create("/registry/steady", vec![0]).await?;
        let writer = tokio::spawn({
            let (storage, stop) = (storage.clone(), stop.clone());
            async move {
                let mut rev = rev;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    rev = storage
                        .update("/registry/steady", rev, vec![1; 512])
                        .await?;
                }
                anyhow::Ok(())
            }
        });
        // Reads of 150 ms each back to back: one is always in progress (as a long sweep or
        // replay reads page after page).
        let readers: Vec<_> = (0..1u64)
            .map(|i| {
                let (shared, stop) = (storage.shared.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20 * i)).await;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        read(shared.clone(), |conn| {
                            let tx = conn.transaction().map_err(sql("begin read"))?;
                            let _: i64 = tx
                                .query_row("SELECT COUNT(*) FROM log", [], |row| row.get(0))
                                .map_err(sql("count rows"))?;
                            std::thread::sleep(Duration::from_millis(150));
                            tx.commit().map_err(sql("end read"))
                        })
                        .await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        let wal = dir.path().join("db-wal");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut size = std::fs::metadata(&wal)?.len();
        while size > WAL_SIZE_LIMIT as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A restarted WAL is cut back when the next write starts it over.
            size = std::fs::metadata(&wal)?.len();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.await??;
        for reader in readers {
            reader.await??;
        }
        assert!(
            size <= WAL_SIZE_LIMIT as u64,
            "WAL still {size} bytes after {writes} MiB written"
        );
        for i in 0..writes {
            let stored = storage.get(&format!("/registry/big/{i}")).await?;
            assert_eq!(stored.map(|kv| kv.value.len()), Some(value.len()));
        }
        Ok(())
    }

    /// Writes the same history to a fresh database at `path` and answers the revision to
    /// compact to (with writes after it).
    async fn history(path: &std::path::Path) -> anyhow::Result<(SqliteStorage, Revision)> {
        let storage = SqliteStorage::open(path).await?;
        let mut revs = std::collections::BTreeMap::new();
        for i in 0..5 {
            let key = format!("/registry/k/{i}");
            revs.insert(key.clone(), storage.create(&key, vec![i]).await?);
        }
        for round in 0..2u8 {
            for (key, rev) in revs.iter_mut() {
                *rev = storage.update(key, *rev, vec![round; 3]).await?;
            }
        }
        storage.delete("/registry/k/1", None).await?;
        storage.create("/registry/k/1", b"again".to_vec()).await?;
        storage.delete("/registry/k/3", None).await?;
        let target = storage
            .update("/registry/k/0", revs["/registry/k/0"], b"last".to_vec())
            .await?;
        storage.delete("/registry/k/4", None).await?;
        storage.create("/registry/k/5", b"after".to_vec()).await?;
        Ok((storage, target))
    }

    fn row_ids(path: &std::path::Path) -> anyhow::Result<Vec<Revision>> {
        let conn = rusqlite::Connection::open(path)?;
        let mut stmt = conn.prepare("SELECT id FROM log ORDER BY id")?;
        let ids = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<Revision>, _>>()?;
        Ok(ids)
    }

    #[tokio::test]
    async fn compaction_in_steps_keeps_what_one_step_keeps() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let one_path = dir.path().join("one.db");
        let steps_path = dir.path().join("steps.db");
        let (whole, target) = history(&one_path).await?;
        let (stepped, stepped_target) = history(&steps_path).await?;
        assert_eq!(target, stepped_target);
        let before = row_ids(&one_path)?;
        whole.compact_in_steps(target, Revision::MAX).await?;
        stepped.compact_in_steps(target, 3).await?;
        let kept = row_ids(&one_path)?;
        assert_eq!(kept, row_ids(&steps_path)?);
        assert!(
            kept.len() < before.len(),
            "history before {target} was dropped"
        );
        for storage in [&whole, &stepped] {
            let at = |revision| ListOptions {
                revision: Some(revision),
                ..Default::default()
            };
            let listed = storage.list("/registry/k/", &at(target)).await?;
            let items: Vec<(String, Vec<u8>)> = listed
                .items
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect();
            assert_eq!(
                items,
                vec![
                    ("/registry/k/0".to_string(), b"last".to_vec()),
                    ("/registry/k/1".to_string(), b"again".to_vec()),
                    ("/registry/k/2".to_string(), vec![1; 3]),
                    ("/registry/k/4".to_string(), vec![1; 3]),
                ]
            );
            assert!(matches!(
                storage.list("/registry/k/", &at(target - 1)).await,
                Err(StorageError::Compacted { .. })
            ));
            let mut watch = storage.watch("/registry/k/", target).await?;
            let next = watch.next().await.expect("an event")?;
            assert_eq!(
                next.kv.key, "/registry/k/4",
                "events after the target are kept"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn data_and_revision_survive_reopening_the_database() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested/state.db");
        let rev = {
            let storage = SqliteStorage::open(&path).await?;
            let created = storage.create("/registry/a", b"a".to_vec()).await?;
            storage.delete("/registry/a", Some(created)).await?;
            storage.create("/registry/b", b"b".to_vec()).await?
        };
        let storage = SqliteStorage::open(&path).await?;
        assert_eq!(storage.current_revision().await?, rev);
        assert_eq!(
            storage.get("/registry/b").await?.map(|kv| kv.value),
            Some(b"b".to_vec())
        );
        assert!(storage.create("/registry/c", Vec::new()).await? > rev);
        Ok(())
    }
}
