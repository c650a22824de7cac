//! The etcd storage backend: [`EtcdStore`] implements [`kubelite_storage::Storage`] over etcd's
//! v3 API (`etcd-client`), mapping the contract one-to-one onto etcd's MVCC.
//!
//! - Revisions are etcd's: `mod_revision` / `create_revision` / the response header revision.
//! - Writes are single transactions guarded by compares on `create_revision`, `version` and
//!   `mod_revision`, so a failed guard never writes.
//! - Every key is stored as `prefix + key`. The apiserver's keys already start with
//!   `/registry/...`; the prefix is an extra namespace in front (default: none), e.g. `/kubelite`
//!   stores `/registry/pods/default/a` as `/kubelite/registry/pods/default/a`. No separator is
//!   added. Several clusters can share one etcd with distinct prefixes (compaction stays global).
//! - The compaction point is not exposed by etcd; it is found by probing reads (see the
//!   `compaction` module), which is exact, needs no extra writes, and stays right whoever
//!   compacts.
//! - Automatic compaction runs in this client (like kube-apiserver's `--etcd-compaction-interval`)
//!   rather than relying on etcd's `--auto-compaction-*` flags, so it works with any etcd the
//!   operator hands us; several apiservers compacting the same etcd is harmless. Default: every
//!   5 minutes, keeping the last 10,000 revisions (see [`EtcdOptions`]).
//!
//! Wiring it into the apiserver:
//!
//! ```no_run
//! # async fn wire() -> Result<(), kubelite_storage::Error> {
//! use std::sync::Arc;
//! use kubelite_storage::Storage;
//! use kubelite_storage_etcd::EtcdStore;
//!
//! let endpoints = vec!["http://127.0.0.1:2379".to_string()];
//! let store: Arc<dyn Storage> = Arc::new(EtcdStore::connect(&endpoints, "").await?);
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! etcd's default `--max-request-bytes` (1.5 MiB) is exactly [`kubelite_storage::MAX_VALUE_BYTES`],
//! so a value at the limit plus its key does not fit: run etcd with `--max-request-bytes=2097152`
//! (the test helper does). Requests etcd still refuses as too large fail with `TooLarge`.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Client, ConnectOptions, KvClient, WatchClient};
use kubelite_storage::{Error, KeyValue, ListOptions, ListResult, Result, Revision, Storage};

mod compaction;
mod errors;
mod kv;
#[cfg(feature = "test-util")]
pub mod testing;
mod watch;

/// Largest gRPC message we decode: lists of many objects and watch batches with `prev_kv` can
/// far exceed tonic's 4 MiB default.
const MAX_DECODE_BYTES: usize = 512 * 1024 * 1024;

/// How [`EtcdStore::connect_with`] talks to etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Prepended to every key (no separator added); `""` stores the apiserver's keys as they are.
    pub prefix: String,
    /// Deadline for each unary etcd call (and for connecting and watch creation); past it the
    /// call fails with [`Error::Unavailable`].
    pub request_timeout: Duration,
    /// How often the background compactor runs; `None` disables it.
    pub compaction_interval: Option<Duration>,
    /// How many revisions of history the background compactor keeps: each run compacts to
    /// `current revision - compaction_window`.
    pub compaction_window: i64,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            request_timeout: Duration::from_secs(30),
            // kube-apiserver's default `--etcd-compaction-interval`.
            compaction_interval: Some(Duration::from_secs(5 * 60)),
            compaction_window: 10_000,
        }
    }
}

/// A [`Storage`] backed by an etcd cluster. Cheap to share behind an `Arc`; dropping it stops
/// the background compactor.
pub struct EtcdStore {
    inner: Arc<Inner>,
    _compactor: Option<compaction::Compactor>,
}

/// The state every operation needs; shared with the background compactor.
pub(crate) struct Inner {
    /// Owns the balanced channel the per-service clients below share.
    _client: Client,
    kv: KvClient,
    watch: WatchClient,
    prefix: String,
    timeout: Duration,
    /// A lower bound of etcd's compaction point (raised by our compactions and probes).
    compacted: AtomicI64,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (URLs such as `http://127.0.0.1:2379`), storing every key
    /// under `prefix` (`""` for none), with the default [`EtcdOptions`] otherwise.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self> {
        let opts = EtcdOptions {
            prefix: prefix.to_string(),
            ..EtcdOptions::default()
        };
        Self::connect_with(endpoints, opts).await
    }

    /// Connects with explicit options. Fails with [`Error::Unavailable`] when no endpoint answers
    /// within `request_timeout`.
    pub async fn connect_with(endpoints: &[String], opts: EtcdOptions) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(Error::Unavailable("no etcd endpoints given".into()));
        }
        let unreachable = |e: String| {
            Error::Unavailable(format!("cannot reach etcd at {}: {e}", endpoints.join(",")))
        };
        let connect_opts = ConnectOptions::new()
            .with_connect_timeout(opts.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = errors::call(
            opts.request_timeout,
            Client::connect(endpoints, Some(connect_opts)),
        )
        .await
        .map_err(|f| unreachable(f.to_string()))?;
        let inner = Inner {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_DECODE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_DECODE_BYTES),
            _client: client,
            prefix: opts.prefix.clone(),
            timeout: opts.request_timeout,
            compacted: AtomicI64::new(0),
        };
        // The channel connects lazily: one real read proves the endpoints answer.
        inner.current_revision().await.map_err(|e| match e {
            Error::Unavailable(msg) => unreachable(msg),
            other => other,
        })?;
        let inner = Arc::new(inner);
        let compactor = opts.compaction_interval.map(|every| {
            compaction::Compactor::spawn(inner.clone(), every, opts.compaction_window)
        });
        tracing::info!(
            endpoints = %endpoints.join(","),
            prefix = %opts.prefix,
            "connected to etcd"
        );
        Ok(Self {
            inner,
            _compactor: compactor,
        })
    }
}

impl Inner {
    /// The etcd key for a storage key.
    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// The storage key for an etcd key, which must lie under our prefix.
    fn storage_key(&self, key: &[u8]) -> Result<String> {
        let rest = key.strip_prefix(self.prefix.as_bytes()).ok_or_else(|| {
            Error::Corrupt(format!(
                "etcd returned key {:?} outside the prefix {:?}",
                String::from_utf8_lossy(key),
                self.prefix
            ))
        })?;
        String::from_utf8(rest.to_vec()).map_err(|_| {
            Error::Corrupt(format!(
                "etcd key {:?} is not utf-8",
                String::from_utf8_lossy(key)
            ))
        })
    }

    /// Converts etcd's key-value into ours.
    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.storage_key(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end for a
/// prefix); `[0]` (etcd's "to the end of the key space") when no such key exists.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait::async_trait]
impl Storage for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.inner.list(prefix, opts).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        self.inner.count(prefix).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.inner.create(key, value).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.inner.update(key, value, expected).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.inner.delete(key, expected).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<kubelite_storage::WatchStream> {
        self.inner.watch(prefix, after).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn default_options_compact_in_the_background() {
        let o = EtcdOptions::default();
        assert_eq!(o.prefix, "");
        assert!(o.compaction_interval.is_some());
        assert!(o.compaction_window > 0);
    }
}
