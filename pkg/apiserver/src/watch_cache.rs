//! The watch cache: ONE storage watch per resource feeding an in-memory copy of the current
//! objects plus a ring of recent events. It serves `resourceVersion=0` lists and every watch, so
//! a thousand watchers cost one storage watch.
//!
//! Invariant: `ring` holds every event with a revision in `(ring_start, rev]`, in order, and
//! `objects` is the state at `rev`. A watcher asking for changes after `N >= ring_start` is
//! served from the ring and then the broadcast channel; older requests fall back to storage.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kubelite_storage::{EventKind, Storage};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::registry::set_rv;

const CHANNEL_CAPACITY: usize = 4096;

/// The watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, decoded.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub key: String,
    /// The object after the change (for deletes: the last state, with the delete's revision).
    pub obj: Arc<Value>,
    /// The object before the change, for selector transitions.
    pub prev: Option<Arc<Value>>,
    pub revision: i64,
}

/// Decode a storage event; `None` for undecodable values (logged).
pub fn decode_event(ev: &kubelite_storage::Event) -> Option<CacheEvent> {
    let parse = |bytes: &[u8], rev: i64| -> Option<Value> {
        let mut v: Value = serde_json::from_slice(bytes).ok()?;
        set_rv(&mut v, rev);
        Some(v)
    };
    let obj = match parse(&ev.kv.value, ev.kv.mod_revision) {
        Some(o) => o,
        None => {
            tracing::warn!(key = %ev.kv.key, "undecodable object in watch");
            return None;
        }
    };
    let prev = ev
        .prev
        .as_ref()
        .and_then(|p| parse(&p.value, p.mod_revision))
        .map(Arc::new);
    Some(CacheEvent {
        kind: match ev.kind {
            EventKind::Create => EventType::Added,
            EventKind::Update => EventType::Modified,
            EventKind::Delete => EventType::Deleted,
        },
        key: ev.kv.key.clone(),
        obj: Arc::new(obj),
        prev,
        revision: ev.kv.mod_revision,
    })
}

struct Inner {
    capacity: usize,
    objects: BTreeMap<String, Arc<Value>>,
    ring: VecDeque<Arc<CacheEvent>>,
    ring_start: i64,
    rev: i64,
    tx: broadcast::Sender<Arc<CacheEvent>>,
}

/// The cache of one resource (one storage prefix).
pub struct WatchCache {
    prefix: String,
    inner: RwLock<Inner>,
}

/// Where a watcher starts.
pub enum Start {
    /// Current objects (for synthetic ADDED events) as of `revision`, then live events.
    Snapshot {
        objects: Vec<Arc<Value>>,
        revision: i64,
        rx: broadcast::Receiver<Arc<CacheEvent>>,
    },
    /// Buffered events after the requested revision, then live events.
    Backlog {
        events: Vec<Arc<CacheEvent>>,
        rx: broadcast::Receiver<Arc<CacheEvent>>,
    },
}

impl WatchCache {
    /// List the prefix, start the feeding task, and return the ready cache.
    /// `capacity` is how many recent events the ring keeps.
    pub async fn start(
        storage: Arc<dyn Storage>,
        prefix: String,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> kubelite_storage::Result<Arc<Self>> {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let cache = Arc::new(Self {
            prefix,
            inner: RwLock::new(Inner {
                capacity: capacity.max(1),
                objects: BTreeMap::new(),
                ring: VecDeque::new(),
                ring_start: 0,
                rev: 0,
                tx,
            }),
        });
        cache.relist(storage.as_ref()).await?;
        let feeder = cache.clone();
        tokio::spawn(async move { feeder.feed(storage, shutdown).await });
        Ok(cache)
    }

    /// Replace the contents with a fresh list; existing watchers are disconnected (they re-watch).
    async fn relist(&self, storage: &dyn Storage) -> kubelite_storage::Result<()> {
        let list = storage.list(&self.prefix, Default::default()).await?;
        let mut objects = BTreeMap::new();
        for kv in &list.items {
            if let Ok(mut v) = serde_json::from_slice::<Value>(&kv.value) {
                set_rv(&mut v, kv.mod_revision);
                objects.insert(kv.key.clone(), Arc::new(v));
            }
        }
        let Ok(mut inner) = self.inner.write() else {
            return Err(kubelite_storage::Error::Internal(
                "watch cache lock poisoned".into(),
            ));
        };
        inner.objects = objects;
        inner.ring.clear();
        inner.ring_start = list.revision;
        inner.rev = list.revision;
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        inner.tx = tx;
        Ok(())
    }

    async fn feed(self: Arc<Self>, storage: Arc<dyn Storage>, shutdown: CancellationToken) {
        loop {
            let after = self.revision();
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                s = storage.watch(&self.prefix, after) => s,
            };
            match stream {
                Ok(mut stream) => loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        n = stream.next() => n,
                    };
                    match next {
                        Some(Ok(ev)) => {
                            if let Some(ce) = decode_event(&ev) {
                                self.apply(ce);
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(prefix = %self.prefix, error = %e, "watch cache storage watch failed");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => {
                    tracing::warn!(prefix = %self.prefix, error = %e, "watch cache could not watch")
                }
            }
            // The storage watch ended: rebuild from a fresh list (watchers are told to re-watch).
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Err(e) = self.relist(storage.as_ref()).await {
                tracing::warn!(prefix = %self.prefix, error = %e, "watch cache relist failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    fn apply(&self, ev: CacheEvent) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        if ev.revision <= inner.rev {
            return;
        }
        match ev.kind {
            EventType::Deleted => {
                inner.objects.remove(&ev.key);
            }
            _ => {
                inner.objects.insert(ev.key.clone(), ev.obj.clone());
            }
        }
        inner.rev = ev.revision;
        let ev = Arc::new(ev);
        inner.ring.push_back(ev.clone());
        if inner.ring.len() > inner.capacity {
            if let Some(old) = inner.ring.pop_front() {
                inner.ring_start = old.revision;
            }
        }
        let _ = inner.tx.send(ev);
    }

    /// The revision the cache is current at.
    pub fn revision(&self) -> i64 {
        self.inner.read().map(|i| i.rev).unwrap_or(0)
    }

    /// Current objects under `prefix` and the cache revision.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Arc<Value>>, i64) {
        let Ok(inner) = self.inner.read() else {
            return (Vec::new(), 0);
        };
        let objs = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (objs, inner.rev)
    }

    /// Start a watcher from the current state.
    pub fn watch_now(&self, prefix: &str) -> Option<Start> {
        let inner = self.inner.read().ok()?;
        let objects = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Some(Start::Snapshot {
            objects,
            revision: inner.rev,
            rx: inner.tx.subscribe(),
        })
    }

    /// Start a watcher after revision `after`; `None` when the cache no longer holds that far
    /// back (the caller falls back to a storage watch, which may answer 410).
    pub fn watch_after(&self, after: i64) -> Option<Start> {
        let inner = self.inner.read().ok()?;
        if after < inner.ring_start {
            return None;
        }
        let events = inner
            .ring
            .iter()
            .filter(|e| e.revision > after)
            .cloned()
            .collect();
        Some(Start::Backlog {
            events,
            rx: inner.tx.subscribe(),
        })
    }
}
