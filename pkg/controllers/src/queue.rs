//! A deduplicating work queue of object keys with per-key rate-limited retries, like client-go's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;

use crate::Error;

/// Base delay of the per-key exponential backoff after a failed sync.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// Cap of the per-key exponential backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A queue of keys: a key is never processed by two workers at once, and a key added while it
/// is queued is queued once.
#[derive(Clone, Default)]
pub struct WorkQueue {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    shutdown: bool,
}

impl WorkQueue {
    /// Creates an empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a worker panicked; the queue data is still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` unless it is already queued; a key being processed is queued again when done.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut state = self.state();
        if state.shutdown || !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.queue.push_back(key);
            drop(state);
            self.inner.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` after an exponential per-key backoff.
    pub fn add_rate_limited(&self, key: impl Into<String>) {
        let key = key.into();
        let failures = {
            let mut state = self.state();
            let n = state.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        let delay = BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX);
        self.add_after(key, delay);
    }

    /// Clears the failure count of `key`.
    pub fn forget(&self, key: &str) {
        self.state().failures.remove(key);
    }

    /// Waits for the next key; `None` once the queue is shut down.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.inner.notify.notified();
            {
                let mut state = self.state();
                if state.shutdown {
                    return None;
                }
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` as processed, re-queueing it if it was added meanwhile.
    pub fn done(&self, key: &str) {
        let mut state = self.state();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.to_string());
            drop(state);
            self.inner.notify.notify_one();
        }
    }

    /// Like [`WorkQueue::done`], but a key added meanwhile is handed out again only after
    /// `delay`; later adds coalesce into that one run.
    pub fn done_after(&self, key: &str, delay: Duration) {
        if delay.is_zero() {
            return self.done(key);
        }
        let mut state = self.state();
        state.processing.remove(key);
        if !state.dirty.contains(key) {
            return;
        }
        drop(state);
        // While it waits the key is dirty and neither queued nor processing, so `add` leaves
        // it alone and only this timer queues it.
        let queue = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut state = queue.state();
            if state.dirty.contains(&key) && !state.processing.contains(&key) && !state.shutdown {
                state.queue.push_back(key);
                drop(state);
                queue.inner.notify.notify_one();
            }
        });
    }

    /// Stops the queue: `get` returns `None` from now on.
    pub fn shutdown(&self) {
        self.state().shutdown = true;
        self.inner.notify.notify_waiters();
    }
}

/// Longest pause [`run_workers`] puts between two syncs of one busy key.
const MAX_COOLDOWN: Duration = Duration::from_secs(1);

/// Runs `workers` loops that take keys from `queue` and call `sync`. `Ok(Some(d))` requeues the
/// key after `d`; an error requeues it with backoff. A key changed again during its sync waits
/// as long as that sync took before the next one: a sync that scans 10,000 pods, retriggered by
/// every pod event, would otherwise take a whole core from the API server it is waiting on.
pub async fn run_workers<F, Fut>(name: &'static str, queue: WorkQueue, workers: usize, sync: F)
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, Error>> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let sync = sync.clone();
        tasks.spawn(async move {
            while let Some(key) = queue.get().await {
                let started = std::time::Instant::now();
                match sync(key.clone()).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(delay) = requeue {
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    Err(err) => {
                        warn!(controller = name, key = %key, error = %err, "sync failed, requeueing");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done_after(&key, started.elapsed().min(MAX_COOLDOWN));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedupes_and_requeues_dirty_keys() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        let first = tokio::time::timeout(Duration::from_secs(1), q.get())
            .await
            .unwrap();
        assert_eq!(first.as_deref(), Some("a"));
        // Added while processing: not handed out until done.
        q.add("a");
        let second = tokio::time::timeout(Duration::from_secs(1), q.get())
            .await
            .unwrap();
        assert_eq!(second.as_deref(), Some("b"));
        q.done("a");
        let third = tokio::time::timeout(Duration::from_secs(1), q.get())
            .await
            .unwrap();
        assert_eq!(third.as_deref(), Some("a"));
        q.shutdown();
        assert_eq!(q.get().await, None);
    }
}
