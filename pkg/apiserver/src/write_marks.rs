//! Read-your-writes for watch-cache reads: a storage decorator that remembers the revision of
//! the last write this server made under chosen prefixes, so a watch cache that has reached
//! that revision can answer instead of storage.
//!
//! Upstream's namespace-lifecycle admission reads namespaces from an informer and falls back to
//! a live lookup; here the mark tells us when the cache is provably current for every write
//! this server acknowledged (a client can only have seen writes that were acknowledged).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kubelite_storage::{
    Error, KeyValue, ListOptions, ListResult, Result, Revision, Storage, WatchStream,
};

/// [`Storage`] that forwards everything to `inner` and records, per watched prefix, the
/// highest revision of a write this server made there.
pub struct WriteMarks {
    inner: Arc<dyn Storage>,
    marks: Vec<(String, AtomicI64)>,
}

impl WriteMarks {
    /// Wrap `inner`, marking writes under each of `prefixes`.
    pub fn new(inner: Arc<dyn Storage>, prefixes: &[String]) -> Self {
        Self {
            inner,
            marks: prefixes
                .iter()
                .map(|p| (p.clone(), AtomicI64::new(0)))
                .collect(),
        }
    }

    /// The revision a cache of `prefix` must have reached to reflect every write to it this
    /// server acknowledged; `None` when `prefix` is not marked (the cache proves nothing).
    pub fn mark(&self, prefix: &str) -> Option<Revision> {
        self.slot(prefix).map(|m| m.load(Ordering::Acquire))
    }

    fn slot(&self, prefix: &str) -> Option<&AtomicI64> {
        self.marks.iter().find(|(p, _)| p == prefix).map(|(_, m)| m)
    }

    fn slot_for_key(&self, key: &str) -> Option<&AtomicI64> {
        self.marks
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, m)| m)
    }

    /// Record the outcome of a write to `key`. A write that certainly did not happen changes
    /// nothing; one whose outcome is unknown (e.g. a lost connection to etcd) may have landed
    /// at any revision up to the current one, so the mark moves there (or to "never trust the
    /// cache" when even that is unknown).
    async fn note(&self, key: &str, res: &Result<KeyValue>) {
        let Some(slot) = self.slot_for_key(key) else {
            return;
        };
        let rev = match res {
            Ok(kv) => kv.mod_revision,
            Err(
                Error::AlreadyExists { .. }
                | Error::NotFound { .. }
                | Error::Conflict { .. }
                | Error::TooLarge { .. },
            ) => return,
            Err(_) => self.inner.current_revision().await.unwrap_or(Revision::MAX),
        };
        slot.fetch_max(rev, Ordering::AcqRel);
    }
}

#[async_trait::async_trait]
impl Storage for WriteMarks {
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
        let res = self.inner.create(key, value).await;
        self.note(key, &res).await;
        res
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let res = self.inner.update(key, value, expected).await;
        self.note(key, &res).await;
        res
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let res = self.inner.delete(key, expected).await;
        self.note(key, &res).await;
        res
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
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

    #[tokio::test]
    async fn marks_only_acknowledged_writes_under_the_prefix() {
        let dir = tempfile::tempdir().expect("test");
        let inner: Arc<dyn Storage> = Arc::new(
            kubelite_storage_embedded::EmbeddedStore::open(dir.path(), Default::default())
                .expect("test"),
        );
        let marks = WriteMarks::new(inner, &["/ns/".to_string()]);
        assert_eq!(marks.mark("/ns/"), Some(0));
        assert_eq!(marks.mark("/pods/"), None);

        let kv = marks
            .create("/ns/a", Bytes::from_static(b"{}"))
            .await
            .expect("test");
        assert_eq!(marks.mark("/ns/"), Some(kv.mod_revision));
        // Another prefix leaves the mark alone.
        marks
            .create("/pods/x", Bytes::from_static(b"{}"))
            .await
            .expect("test");
        assert_eq!(marks.mark("/ns/"), Some(kv.mod_revision));
        // A refused write changes nothing.
        assert!(marks
            .create("/ns/a", Bytes::from_static(b"{}"))
            .await
            .is_err());
        assert_eq!(marks.mark("/ns/"), Some(kv.mod_revision));
        let upd = marks
            .update("/ns/a", Bytes::from_static(b"{\"a\":1}"), kv.mod_revision)
            .await
            .expect("test");
        let del = marks.delete("/ns/a", None).await.expect("test");
        assert!(del.mod_revision > upd.mod_revision);
        assert_eq!(marks.mark("/ns/"), Some(del.mod_revision));
    }
}
