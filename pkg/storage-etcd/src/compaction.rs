//! Compaction: explicit (physical) compaction, finding etcd's compaction point, and the
//! background compactor.
//!
//! etcd does not report its compaction point C, but it is observable: a read at revision `r`
//! fails with "compacted" exactly when `r < C`, and succeeds for `C <= r <= current`. So C is the
//! smallest readable revision, found by probing count-only reads: one probe at a known lower
//! bound in the common case (we raise the bound on every compaction we do or observe), a binary
//! search over `(bound, current]` when someone else (another apiserver, `etcdctl`, etcd's
//! `--auto-compaction-*`) compacted. No meta key is written, so this never costs a revision and
//! stays right whoever compacts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{CompactionOptions, GetOptions};
use kubelite_storage::{Error, Result, Revision};

use crate::errors::{call, Failure};
use crate::Inner;

impl Inner {
    pub(crate) async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= self.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        let current = self.current_revision().await?;
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        let opts = CompactionOptions::new().with_physical();
        match call(self.timeout, self.kv.clone().compact(revision, Some(opts))).await {
            Ok(_) => {}
            // Someone already compacted at or past `revision`: nothing to do.
            Err(Failure::Compacted) => {}
            Err(f) => return Err(self.revision_error(f, revision).await),
        }
        self.compacted.fetch_max(revision, Ordering::AcqRel);
        tracing::debug!(revision, "compacted etcd");
        Ok(())
    }

    pub(crate) async fn compacted_revision(&self) -> Result<Revision> {
        let bound = self.compacted.load(Ordering::Acquire).max(1);
        if self.readable(bound).await? {
            return Ok(bound);
        }
        // Invariant: `lo` is not readable, `hi` is (the current revision always is).
        let (mut lo, mut hi) = (bound, self.current_revision().await?);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.readable(mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.compacted.fetch_max(hi, Ordering::AcqRel);
        Ok(hi)
    }

    /// Whether the key space can still be read at `revision`.
    async fn readable(&self, revision: Revision) -> Result<bool> {
        let opts = GetOptions::new().with_count_only().with_revision(revision);
        match call(
            self.timeout,
            self.kv.clone().get(self.full_key("/"), Some(opts)),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(Failure::Compacted) => Ok(false),
            Err(f) => Err(f.into_error()),
        }
    }
}

/// The background compactor; aborted when dropped (with its [`crate::EtcdStore`]).
pub(crate) struct Compactor {
    task: tokio::task::JoinHandle<()>,
}

impl Compactor {
    /// Every `every`, compacts to `current revision - window`. Failures are logged and retried
    /// at the next tick: compaction is housekeeping, never worth failing requests over.
    pub(crate) fn spawn(inner: Arc<Inner>, every: Duration, window: i64) -> Self {
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick fires at once; history is not due for compaction yet.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = compact_once(&inner, window).await {
                    tracing::warn!(error = %e, "background etcd compaction failed");
                }
            }
        });
        Self { task }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One background compaction step.
async fn compact_once(inner: &Inner, window: i64) -> Result<()> {
    let current = inner.current_revision().await?;
    let target = current.saturating_sub(window.max(0));
    if target > inner.compacted.load(Ordering::Acquire) && target > 1 {
        inner.compact(target).await?;
        tracing::info!(revision = target, "compacted etcd history");
    }
    Ok(())
}
