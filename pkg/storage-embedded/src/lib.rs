//! The embedded storage backend: a [`kubelite_storage::Storage`] on one redb file, durable on
//! every acknowledged write, with group commit and watches served from memory.
//!
//! # Data model
//!
//! One redb database, `<dir>/kubelite.redb`, with four tables:
//!
//! - `kubelite_meta` (`&str -> i64`): `format_version` (refused unless it is this build's),
//!   `revision` (the current revision) and `compacted` (the compaction point C).
//! - `kubelite_latest` (`key -> (create_rev, mod_rev)`): every live key. Gets, counts and lists
//!   at the current revision walk only this index.
//! - `kubelite_history` (`(key, rev) -> record`): every version of every key since C, where a
//!   record is a put (`0`, create revision, value) or a tombstone (`1`). Values are stored once,
//!   here. Listing at an older revision R seeks, per key, the newest version at or before R.
//! - `kubelite_revs` (`rev -> key`): the event log, one entry per revision. Watch replay walks
//!   it and rebuilds each event from `history` (a tombstone is a delete; a put whose create
//!   revision is its own revision a create; the previous state is the key's version before).
//!
//! Compacting to C drops the log before C and, per key written before C, every version before C
//! except the newest one when it is a put, which is exactly what lists at C or later and events
//! at C or later (their previous state) still need.
//!
//! # Group commit
//!
//! All writes go through one writer thread over a channel. It blocks for the first request,
//! drains everything else pending (bounded by count and bytes), applies the batch in order in a
//! single redb write transaction with consecutive revisions, and commits once with
//! `Durability::Immediate` (one fsync for the whole batch). When requests arrived while the
//! previous commit ran, more are usually on their way (many clients, each request's CPU work
//! done before its write), so the writer first waits up to that commit's duration (capped by
//! [`Options::commit_linger`]) and drains again: fewer, larger commits per second under load,
//! and no wait at all for a lone writer. A request whose precondition fails
//! (exists, not found, conflict) writes nothing and fails alone; an engine error fails the
//! batch. After the commit the writer appends the batch's events to an in-memory ring, moves the
//! current revision, wakes watchers, and only then acknowledges each request, so a caller that
//! got its answer can read and watch its own write. Compaction (explicit, or every interval per
//! [`Options`]) runs on the same thread in bounded chunks between batches.
//!
//! # Watches
//!
//! The writer appends each committed batch's events to one shared ring (bounded by
//! [`Options::watch_window`] events and [`Options::watch_window_bytes`]) and bumps a
//! `tokio::sync::watch` channel. Every watcher pulls from the ring with its own cursor, holding
//! only pointers into it. When the ring no longer holds the watcher's next revision (a watch from
//! an old revision, or a slow consumer), the watcher replays that stretch from the event log on
//! disk, in steps, then picks the ring up again: the cursor moves one revision at a time across
//! both sources, so there are no gaps or duplicates. Memory stays bounded whatever the number and
//! speed of watchers; a watcher compacted past gets a terminal [`Error::Compacted`]; when the
//! store is dropped every watch stream ends.
//!
//! # Durability and ownership
//!
//! `open` refuses a dir it did not write ([`Error::Corrupt`]: not redb, another application's
//! redb, a newer format version, or, with [`Options::verify_on_open`], any page whose checksum
//! fails) and one another store has open ([`Error::Unavailable`], via redb's file lock); it never
//! resets data. After a crash redb recovers to the last fsynced commit, which includes every
//! acknowledged write. Dropping the store closes the channel, joins the writer after its current
//! batch and closes the file.

mod read;
mod schema;
mod watch;
mod writer;

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use kubelite_storage::{
    Error, KeyValue, ListOptions, ListResult, Revision, Storage, WatchStream, MAX_VALUE_BYTES,
};
use redb::Database;
use tokio::sync::oneshot;

use crate::watch::Shared;
use crate::writer::{Msg, Op, Policy, Writer};

/// Tuning for [`EmbeddedStore::open`]. History is compacted away only once it is older than
/// both `keep_revisions` revisions and `keep_for`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Always keep at least this many of the most recent revisions listable and watchable.
    pub keep_revisions: i64,
    /// Always keep history written within this long.
    pub keep_for: Duration,
    /// How often to compact automatically; `None` turns automatic compaction off.
    pub compaction_interval: Option<Duration>,
    /// How many recent events the in-memory watch ring holds; older ones are read from disk.
    pub watch_window: usize,
    /// ... and at most about this many bytes of keys and values in it.
    pub watch_window_bytes: usize,
    /// redb's page cache size in bytes.
    pub cache_bytes: usize,
    /// Verify the checksum of every page at open, so a damaged file is refused up front
    /// ([`Error::Corrupt`]) instead of failing some later read. Costs one full read of the file.
    pub verify_on_open: bool,
    /// Longest the writer waits for more writes before committing a batch, when writes arrived
    /// while its previous commit ran (so more are on their way); [`Duration::ZERO`] turns the
    /// wait off. The wait is the previous commit's duration, capped here: a busy server then
    /// shares each fsync among more writes; a lone writer never waits. No write is acknowledged
    /// before its batch is durable either way.
    pub commit_linger: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keep_revisions: 10_000,
            keep_for: Duration::from_secs(300),
            compaction_interval: Some(Duration::from_secs(60)),
            watch_window: 10_000,
            watch_window_bytes: 64 * 1024 * 1024,
            cache_bytes: 256 * 1024 * 1024,
            verify_on_open: true,
            commit_linger: Duration::from_millis(1),
        }
    }
}

/// The redb-backed store. Dropping it stops the writer (after its current batch), ends every
/// watch stream and closes the file.
pub struct EmbeddedStore {
    db: Arc<Database>,
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Msg>>,
    head: tokio::sync::watch::Receiver<Revision>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens the store in `dir`, creating the dir and an empty store if there is none.
    ///
    /// Fails with [`Error::Corrupt`] when the dir holds a file this backend did not write (not
    /// redb, another application's redb, or a newer format version), and with
    /// [`Error::Unavailable`] when another store already has it open.
    pub fn open(dir: &Path, opts: Options) -> Result<Self, Error> {
        let (db, persisted) = schema::open_db(dir, opts.cache_bytes, opts.verify_on_open)?;
        let db = Arc::new(db);
        let shared = Arc::new(Shared::new(
            persisted.revision,
            persisted.compacted,
            opts.watch_window,
            opts.watch_window_bytes,
        ));
        let (head_tx, head_rx) = tokio::sync::watch::channel(persisted.revision);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            rx,
            shared: shared.clone(),
            head: head_tx,
            policy: Policy {
                keep_revisions: opts.keep_revisions,
                keep_for: opts.keep_for,
                interval: opts.compaction_interval,
            },
            current: persisted.revision,
            compacted: persisted.compacted,
            linger_max: opts.commit_linger,
            carry: None,
            last_commit: Duration::ZERO,
        };
        let handle = std::thread::Builder::new()
            .name("kubelite-storage-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Internal(format!("start the writer thread: {e}")))?;
        tracing::info!(
            dir = %dir.display(),
            revision = persisted.revision,
            compacted = persisted.compacted,
            "opened embedded store"
        );
        Ok(EmbeddedStore {
            db,
            shared,
            requests: Some(tx),
            head: head_rx,
            writer: Some(handle),
        })
    }

    async fn submit(&self, op: Op) -> Result<KeyValue, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Write(op, tx))?;
        rx.await.map_err(|_| stopped())?
    }

    fn send(&self, msg: Msg) -> Result<(), Error> {
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(msg)
            .map_err(|_| stopped())
    }

    /// Runs a read on the blocking pool: redb reads may touch the disk.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Internal(format!("read task: {e}")))?
    }
}

fn stopped() -> Error {
    Error::Unavailable("the storage writer has stopped".into())
}

fn check_size(key: &str, value: &Bytes) -> Result<(), Error> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            key: key.to_string(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its current batch; joining it means the
        // file is closed (bar in-flight reads) once drop returns, so the dir can be reopened.
        self.requests.take();
        if let Some(h) = self.writer.take() {
            if h.join().is_err() {
                tracing::error!("storage writer thread panicked");
            }
        }
    }
}

#[async_trait::async_trait]
impl Storage for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let key = key.to_string();
        self.read(move |db| read::get(db, &key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, Error> {
        let prefix = prefix.to_string();
        self.read(move |db| read::list(db, &prefix, opts)).await
    }

    async fn count(&self, prefix: &str) -> Result<u64, Error> {
        let prefix = prefix.to_string();
        self.read(move |db| read::count(db, &prefix)).await
    }

    async fn current_revision(&self) -> Result<Revision, Error> {
        Ok(self.shared.current())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, Error> {
        check_size(key, &value)?;
        self.submit(Op::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue, Error> {
        check_size(key, &value)?;
        self.submit(Op::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, Error> {
        self.submit(Op::Delete {
            key: key.to_string(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error> {
        let mut current = self.shared.current();
        if after > current {
            // A revision just committed but not yet published (e.g. the revision of a list that
            // raced the writer) is not in the future: ask the database itself.
            current = self.read(read::committed_revision).await?;
            if after > current {
                return Err(Error::FutureRevision {
                    requested: after,
                    current,
                });
            }
        }
        let compacted = self.shared.compacted();
        if after + 1 < compacted {
            return Err(Error::Compacted {
                requested: after + 1,
                compacted,
            });
        }
        Ok(watch::stream(
            prefix.to_string(),
            after,
            self.shared.clone(),
            self.head.clone(),
            Arc::downgrade(&self.db),
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Compact(revision, tx))?;
        rx.await.map_err(|_| stopped())?
    }

    async fn compacted_revision(&self) -> Result<Revision, Error> {
        Ok(self.shared.compacted())
    }
}
