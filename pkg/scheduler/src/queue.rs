//! The scheduling queue: pending pods move between *active* (ready now; highest priority
//! first, then FIFO), *backoff*
//! (waiting out 1 s doubling to 10 s after a failure) and *unschedulable* (parked until the
//! cluster changes), like upstream's three queues. A pod is handed to one attempt at a time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::podinfo::PodInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Backoff(Instant),
    Unschedulable,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    info: Arc<PodInfo>,
    attempts: u32,
    state: State,
    first_seen: Instant,
    last_failure: Instant,
    /// Cluster-event counter when the current attempt started.
    popped_at_event: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// (priority, Reverse(arrival seq), key): a max-heap gives priority order, FIFO within.
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    seq: u64,
    backoff: BinaryHeap<Reverse<(Instant, String)>>,
    /// Keys in `State::Unschedulable`, so cluster events touch only parked pods.
    parked: HashSet<String>,
    event_seq: u64,
}

fn push_active(inner: &mut Inner, key: String) {
    let priority = inner.entries.get(&key).map_or(0, |e| e.info.priority);
    inner.seq += 1;
    let seq = inner.seq;
    inner.active.push((priority, Reverse(seq), key));
}

/// A pod handed out for one scheduling attempt.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// The API object.
    pub pod: Arc<Pod>,
    /// Its scheduling view.
    pub info: Arc<PodInfo>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the scheduler first saw the pod (e2e latency).
    pub first_seen: Instant,
}

/// What changed in the cluster (decides which parked pods to retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node was added or changed.
    NodeChanged,
    /// A pod was deleted (capacity freed).
    PodDeleted,
    /// A pod was bound somewhere (may satisfy affinity or spread).
    AssignedPodAdded,
    /// A namespace was added or relabelled (may change affinity namespaceSelectors).
    NamespaceChanged,
}

/// The queue; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Queue {
    /// An empty queue with the given backoff bounds.
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            initial_backoff,
            max_backoff,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the queue half-updated in a way that
        // matters more than stopping the scheduler would, so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Backoff after `attempts` failures: initial * 2^(attempts-1), capped.
    pub fn backoff_for(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff)
    }

    /// Adds a pending pod or refreshes a known one. A parked pod whose spec or labels changed
    /// is retried (after its backoff).
    pub fn add(&self, pod: impl Into<Arc<Pod>>) {
        let pod: Arc<Pod> = pod.into();
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let mut inner = self.lock();
        let now = Instant::now();
        if let Some(e) = inner.entries.get_mut(&key) {
            let changed = e.pod.spec != pod.spec || e.pod.metadata.labels != pod.metadata.labels;
            e.info = Arc::new(PodInfo::from_pod(&pod));
            e.pod = pod;
            if changed && e.state == State::Unschedulable {
                let until = e.last_failure + self.backoff_for(e.attempts);
                self.park_in_backoff(&mut inner, &key, until, now);
            }
            return;
        }
        inner.entries.insert(
            key.clone(),
            Entry {
                info: Arc::new(PodInfo::from_pod(&pod)),
                pod,
                attempts: 0,
                state: State::Active,
                first_seen: now,
                last_failure: now,
                popped_at_event: 0,
            },
        );
        push_active(&mut inner, key);
        drop(inner);
        self.notify.notify_one();
    }

    /// Moves an entry to backoff until `until` (or straight to active when already due).
    fn park_in_backoff(&self, inner: &mut Inner, key: &str, until: Instant, now: Instant) {
        inner.parked.remove(key);
        let Some(e) = inner.entries.get_mut(key) else {
            return;
        };
        if until <= now {
            e.state = State::Active;
            push_active(inner, key.to_string());
            self.notify.notify_one();
        } else {
            e.state = State::Backoff(until);
            inner.backoff.push(Reverse((until, key.to_string())));
            // Wake the popper so it re-arms its timer for the earlier deadline.
            self.notify.notify_one();
        }
    }

    /// Forgets a pod (scheduled, bound elsewhere, or deleted).
    pub fn remove(&self, key: &str) {
        let mut inner = self.lock();
        inner.entries.remove(key);
        inner.parked.remove(key);
    }

    /// Whether the queue knows the pod.
    pub fn contains(&self, key: &str) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// Waits for the next pod that is ready to be tried.
    pub async fn pop(&self) -> QueuedPod {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake = {
                let mut inner = self.lock();
                let now = Instant::now();
                while let Some(Reverse((until, _))) = inner.backoff.peek() {
                    if *until > now {
                        break;
                    }
                    let Some(Reverse((until, key))) = inner.backoff.pop() else {
                        break;
                    };
                    // Heap entries are not removed on state changes; skip stale ones.
                    if let Some(e) = inner.entries.get_mut(&key) {
                        if e.state == State::Backoff(until) {
                            e.state = State::Active;
                            push_active(&mut inner, key);
                        }
                    }
                }
                let seq = inner.event_seq;
                while let Some((_, _, key)) = inner.active.pop() {
                    if let Some(e) = inner.entries.get_mut(&key) {
                        if e.state == State::Active {
                            e.state = State::InFlight;
                            e.popped_at_event = seq;
                            return QueuedPod {
                                pod: e.pod.clone(),
                                info: e.info.clone(),
                                attempts: e.attempts,
                                first_seen: e.first_seen,
                            };
                        }
                    }
                }
                inner.backoff.peek().map(|Reverse((until, _))| *until)
            };
            match wake {
                Some(until) => {
                    let _ = tokio::time::timeout_at(until.into(), notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// The attempt found no node. The pod is parked until the cluster changes, or put in
    /// backoff right away when the cluster already changed during the attempt.
    pub fn unschedulable(&self, key: &str) {
        let mut inner = self.lock();
        let now = Instant::now();
        let seq = inner.event_seq;
        let Some(e) = inner.entries.get_mut(key) else {
            return;
        };
        if e.state != State::InFlight {
            return;
        }
        e.attempts += 1;
        e.last_failure = now;
        if e.popped_at_event != seq {
            let until = now + self.backoff_for(e.attempts);
            self.park_in_backoff(&mut inner, key, until, now);
        } else {
            e.state = State::Unschedulable;
            inner.parked.insert(key.to_string());
        }
    }

    /// The attempt failed with an error (e.g. binding): retry after backoff. `pod` re-adds
    /// the entry if it was already removed.
    pub fn error(&self, pod: &Arc<Pod>, info: &Arc<PodInfo>, attempts: u32, first_seen: Instant) {
        let mut inner = self.lock();
        let now = Instant::now();
        let key = info.key.clone();
        let entry = inner.entries.entry(key.clone()).or_insert_with(|| Entry {
            pod: pod.clone(),
            info: info.clone(),
            attempts,
            state: State::InFlight,
            first_seen,
            last_failure: now,
            popped_at_event: 0,
        });
        entry.attempts += 1;
        entry.last_failure = now;
        let until = now + self.backoff_for(entry.attempts);
        self.park_in_backoff(&mut inner, &key, until, now);
    }

    /// Retries parked pods the event may help (each after its remaining backoff).
    pub fn on_cluster_event(&self, ev: ClusterEvent) {
        let mut inner = self.lock();
        inner.event_seq += 1;
        if inner.parked.is_empty() {
            return;
        }
        let now = Instant::now();
        let keys: Vec<(String, Instant)> = inner
            .parked
            .iter()
            .filter_map(|k| inner.entries.get(k).map(|e| (k, e)))
            .filter(|(_, e)| match ev {
                ClusterEvent::AssignedPodAdded => {
                    e.info.has_pod_affinity() || !e.info.spread.is_empty()
                }
                ClusterEvent::NamespaceChanged => e.info.has_pod_affinity(),
                _ => true,
            })
            .map(|(k, e)| (k.clone(), e.last_failure + self.backoff_for(e.attempts)))
            .collect();
        for (key, until) in keys {
            self.park_in_backoff(&mut inner, &key, until, now);
        }
    }

    /// Retries pods parked longer than `max_age` even without an event (upstream: 5 min).
    pub fn flush_stale(&self, max_age: Duration) {
        let mut inner = self.lock();
        let now = Instant::now();
        let keys: Vec<String> = inner
            .parked
            .iter()
            .filter(|k| {
                inner
                    .entries
                    .get(*k)
                    .is_some_and(|e| now - e.last_failure >= max_age)
            })
            .cloned()
            .collect();
        for key in keys {
            self.park_in_backoff(&mut inner, &key, now, now);
        }
    }

    /// Publishes queue depths to the metrics gauges.
    pub fn publish(&self, m: &Metrics) {
        let inner = self.lock();
        let (mut a, mut b, mut u) = (0i64, 0i64, 0i64);
        for e in inner.entries.values() {
            match e.state {
                State::Active | State::InFlight => a += 1,
                State::Backoff(_) => b += 1,
                State::Unschedulable => u += 1,
            }
        }
        m.queue_active.store(a, Ordering::Relaxed);
        m.queue_backoff.store(b, Ordering::Relaxed);
        m.queue_unschedulable.store(u, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c"}]}
        }))
        .expect("pod json")
    }

    async fn pop(q: &Queue, within_ms: u64) -> Option<QueuedPod> {
        tokio::time::timeout(Duration::from_millis(within_ms), q.pop())
            .await
            .ok()
    }

    #[tokio::test]
    async fn higher_priority_first_then_fifo() {
        let q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
        let mut high = pod("high");
        if let Some(spec) = high.spec.as_mut() {
            spec.priority = Some(1000);
        }
        q.add(pod("a"));
        q.add(pod("b"));
        q.add(high);
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(pop(&q, 100).await.expect("ready").info.key.clone());
        }
        assert_eq!(order, vec!["ns/high", "ns/a", "ns/b"]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
        let got: Vec<u64> = (1..=6).map(|a| q.backoff_for(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test]
    async fn fifo_then_parked_until_event_then_backoff() {
        let q = Queue::new(Duration::from_millis(200), Duration::from_secs(1));
        q.add(pod("a"));
        q.add(pod("b"));
        let a = pop(&q, 100).await.expect("a ready");
        assert_eq!(a.info.key, "ns/a");
        assert_eq!(
            pop(&q, 100).await.map(|p| p.info.key.clone()),
            Some("ns/b".to_string())
        );
        // In flight: a re-add does not hand it out twice.
        q.add(pod("a"));
        assert!(pop(&q, 100).await.is_none());
        q.unschedulable("ns/a");
        // Parked: no hot loop.
        assert!(pop(&q, 400).await.is_none());
        // An event moves it to backoff; it comes back once the backoff has elapsed.
        q.on_cluster_event(ClusterEvent::NodeChanged);
        let again = pop(&q, 1000).await.expect("retried after event");
        assert_eq!((again.info.key.as_str(), again.attempts), ("ns/a", 1));
        q.remove("ns/a");
        assert!(!q.contains("ns/a"));
    }

    #[tokio::test]
    async fn event_during_attempt_goes_to_backoff_and_errors_back_off() {
        let q = Queue::new(Duration::from_millis(100), Duration::from_secs(1));
        q.add(pod("a"));
        let a = pop(&q, 100).await.expect("a");
        q.on_cluster_event(ClusterEvent::PodDeleted);
        let started = Instant::now();
        q.unschedulable("ns/a");
        let again = pop(&q, 1000).await.expect("backoff, not parked");
        assert!(started.elapsed() >= Duration::from_millis(90));
        q.error(&again.pod, &again.info, again.attempts, a.first_seen);
        let third = pop(&q, 1000).await.expect("after error backoff");
        assert_eq!(third.attempts, 2);
        // Assigned-pod events leave pods without affinity parked.
        q.unschedulable("ns/a");
        q.on_cluster_event(ClusterEvent::AssignedPodAdded);
        assert!(pop(&q, 500).await.is_none());
        q.flush_stale(Duration::ZERO);
        assert!(pop(&q, 100).await.is_some());
    }
}
