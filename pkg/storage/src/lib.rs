//! The storage contract: one MVCC key space with a single, global, monotonically increasing
//! revision. The apiserver stores every object through [`Storage`]; backends (embedded, etcd)
//! implement it and prove it with the shared [`testing`] conformance suite.
//!
//! Revisions: every successful write (create, update, delete) gets the next revision, which is
//! also the resourceVersion the apiserver reports. A revision is never reused and never goes
//! backwards, including across restarts of the process.

use std::fmt;

use bytes::Bytes;
use futures::stream::BoxStream;

#[cfg(feature = "test-util")]
pub mod testing;

/// A global store revision (etcd's `mod_revision` / the Kubernetes resourceVersion).
pub type Revision = i64;

/// Largest value a backend accepts (etcd's default request limit). Larger writes fail with
/// [`Error::TooLarge`] before anything is written.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a storage call can fail. The apiserver maps these to `Status` codes at exactly one
/// place: NotFound→404, AlreadyExists→409, Conflict→409, Compacted→410, TooLarge→413,
/// FutureRevision→504 (timeout waiting for the revision), the rest→500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// The guarded write lost: the key's current mod revision is not the expected one.
    /// `current` is the key's current state (None when the key no longer exists).
    #[error("conflict on key {key:?}: expected mod revision {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision is older than the compaction point.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("value of {size} bytes for key {key:?} exceeds the limit of {limit} bytes")]
    TooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// A continue key that this backend did not produce or that does not belong to the prefix.
    #[error("invalid continue key: {0}")]
    InvalidContinue(String),
    /// The data dir (or remote store) holds something this backend cannot read. Never reset.
    #[error("corrupt or foreign data: {0}")]
    Corrupt(String),
    /// The backend cannot be reached or is shutting down; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage internal error: {0}")]
    Internal(String),
}

/// One stored key with its value and revisions.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key (the object's resourceVersion).
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// How to list a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read the key space as it was at this revision; `None` means the latest. A revision older
    /// than the compaction point fails with [`Error::Compacted`]; one newer than the current
    /// revision fails with [`Error::FutureRevision`].
    pub revision: Option<Revision>,
    /// At most this many items (0 or `None`: no limit).
    pub limit: Option<usize>,
    /// Start strictly after this key (the `continue_key` of a previous page). Must lie under the
    /// prefix.
    pub continue_after: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Items in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at: the requested one, or the current revision when none
    /// was requested. Later pages are read with `revision: Some(this)` to be consistent.
    pub revision: Revision,
    /// When the page was cut by `limit` and more keys follow: the key to continue after.
    pub continue_key: Option<String>,
    /// When more keys follow: how many (at `revision`), as Kubernetes' `remainingItemCount`.
    pub remaining: Option<u64>,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Update,
    Delete,
}

/// One change, as delivered by [`Storage::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change. For `Delete`, `value` is the last value before the delete and
    /// `mod_revision` is the revision of the delete itself.
    pub kv: KeyValue,
    /// The key's previous state (for `Update` and `Delete`).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the write this event reports.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events. It ends (returns `None`) only when the store shuts down or the
/// watcher falls too far behind; a consumer that sees the end must re-list. An `Err` item is
/// terminal (e.g. [`Error::Compacted`] when the backend compacted past the watcher).
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The MVCC key space. All methods are safe to call concurrently from many tasks.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The latest state of `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// The keys strictly under `prefix` (byte-wise prefix match), in ascending key order,
    /// consistent as of one revision (see [`ListOptions`]). Paging with `continue_after` and
    /// the returned `revision` yields exactly the keys that existed at that revision, each once,
    /// whatever writes happen between pages.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// How many keys currently lie under `prefix`.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// The current (latest committed) revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Create `key` with `value`. Fails with [`Error::AlreadyExists`] if it exists and
    /// [`Error::TooLarge`] if the value exceeds [`MAX_VALUE_BYTES`]. Returns the new key's state.
    /// When this returns `Ok`, the write is durable (survives a crash of the process or host).
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replace `key`'s value if its current mod revision equals `expected` (compare-and-swap).
    /// Fails with [`Error::NotFound`] if the key does not exist, [`Error::Conflict`] (carrying the
    /// current state) if the revision differs. Durable on `Ok`.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Delete `key`, if `expected` is `Some`, only when its mod revision equals it. Returns the
    /// last state before the delete, with `mod_revision` set to the delete's revision.
    /// Fails with [`Error::NotFound`] or [`Error::Conflict`]. Durable on `Ok`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Every change under `prefix` with a revision strictly greater than `after`, in revision
    /// order, each exactly once. `after` may be the current revision (only future changes).
    /// Fails with [`Error::Compacted`] if changes after `after` were forgotten (`after + 1` is
    /// older than the compaction point), and [`Error::FutureRevision`] if `after` is ahead of
    /// the store. `after = 0` on a store that never compacted replays every change.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forget history older than `revision`: afterwards lists at revisions `< revision` and
    /// watches with `after < revision - 1` fail with [`Error::Compacted`]. The state as of
    /// `revision` and everything newer stays readable. Compacting to a revision at or below the
    /// current compaction point is a no-op; beyond the current revision it is
    /// [`Error::FutureRevision`]. Backends also compact on their own, keeping a window of history.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The compaction point C: the oldest revision that can still be listed (watches may start
    /// with `after = C - 1`). 0 or 1 when nothing was compacted yet.
    async fn compacted_revision(&self) -> Result<Revision>;
}
