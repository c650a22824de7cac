//! The watch cache: ONE storage watch per resource feeding an in-memory copy of the current
//! objects plus a ring of recent events. It serves `resourceVersion=0` lists and every watch, so
//! a thousand watchers cost one storage watch.
//!
//! Invariant: `ring` holds every event with a revision in `(ring_start, rev]`, in order, and
//! `objects` is the state at `rev`. A watcher asking for changes after `N >= ring_start` is
//! served from the ring and then the broadcast channel; older requests fall back to storage.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kubelite_storage::{EventKind, Storage};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::registry::list::stamp_rv;
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
    pub revision: i64,
    /// The object after the change (for deletes: the last state, with the delete's revision)
    /// as JSON with its resourceVersion: the cache keeps it, and every watch line embeds it.
    json: Bytes,
    /// `json` parsed, on first need (selectors, conversions, Tables): watchers without
    /// selectors never pay for it.
    obj: OnceLock<Option<Arc<Value>>>,
    /// The object before the change, for selector transitions; parsed on first need.
    prev_json: Option<Bytes>,
    prev: OnceLock<Option<Arc<Value>>>,
    /// The JSON watch line of `obj`, per event type (selectors can turn a MODIFIED into an
    /// ADDED or DELETED), built by the first watcher that needs it and shared by the rest:
    /// a thousand watchers cost one serialisation (upstream's cachingObject).
    lines: [OnceLock<Bytes>; 3],
}

impl CacheEvent {
    /// `{"type":<kind>,"object":<obj>}\n`, encoded once per event and type.
    pub fn json_line(&self, kind: EventType) -> Bytes {
        let slot = match kind {
            EventType::Added => 0,
            EventType::Modified => 1,
            EventType::Deleted => 2,
        };
        self.lines[slot]
            .get_or_init(|| raw_line(kind.as_str(), &self.object_json()))
            .clone()
    }

    /// The object encoded as JSON (resourceVersion included).
    pub fn object_json(&self) -> Bytes {
        self.json.clone()
    }

    /// The object after the change; `None` if it does not parse.
    pub fn obj(&self) -> Option<Arc<Value>> {
        self.obj
            .get_or_init(|| parse(&self.json).map(Arc::new))
            .clone()
    }

    /// The object before the change, when storage reported it.
    pub fn prev(&self) -> Option<Arc<Value>> {
        self.prev
            .get_or_init(|| self.prev_json.as_deref().and_then(parse).map(Arc::new))
            .clone()
    }
}

/// Compact JSON of a value, without spare capacity (the cache holds it for long).
pub fn to_json(v: &Value) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.shrink_to_fit();
    Bytes::from(out)
}

/// Parse a cached object (the cache only holds JSON it encoded itself).
pub fn parse(json: &[u8]) -> Option<Value> {
    serde_json::from_slice(json).ok()
}

/// A watch line around an already encoded object.
pub fn raw_line(kind: &str, object_json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object_json.len() + kind.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object_json);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// One watch event on the wire, serialised from references (no copy of the object).
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

/// Encode one JSON watch line (`{"type":..,"object":..}` and a newline).
pub fn encode_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&Line { kind, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Decode a storage event; `None` for undecodable values (logged).
pub fn decode_event(ev: &kubelite_storage::Event) -> Option<CacheEvent> {
    // Splice the resourceVersion into the stored JSON; only odd bytes are parsed to do it.
    let stamp = |bytes: &[u8], rev: i64| -> Option<Bytes> {
        if let Some(json) = stamp_rv(bytes, rev) {
            return Some(Bytes::from(json));
        }
        let mut v: Value = serde_json::from_slice(bytes).ok()?;
        set_rv(&mut v, rev);
        Some(to_json(&v))
    };
    let Some(json) = stamp(&ev.kv.value, ev.kv.mod_revision) else {
        tracing::warn!(key = %ev.kv.key, "undecodable object in watch");
        return None;
    };
    let prev_json = ev
        .prev
        .as_ref()
        .and_then(|p| stamp(&p.value, p.mod_revision));
    Some(CacheEvent {
        kind: match ev.kind {
            EventKind::Create => EventType::Added,
            EventKind::Update => EventType::Modified,
            EventKind::Delete => EventType::Deleted,
        },
        key: ev.kv.key.clone(),
        revision: ev.kv.mod_revision,
        json,
        obj: OnceLock::new(),
        prev_json,
        prev: OnceLock::new(),
        lines: Default::default(),
    })
}

struct Inner {
    capacity: usize,
    /// Current objects as JSON (resourceVersion stamped): a fraction of a parsed `Value`'s
    /// memory, and lists and watches without selectors splice them in unparsed.
    objects: BTreeMap<String, Bytes>,
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
        objects: Vec<Bytes>,
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
                objects.insert(kv.key.clone(), to_json(&v));
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
                inner.objects.insert(ev.key.clone(), ev.object_json());
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

    /// The cached object's JSON at `key`, if the cache holds it.
    pub fn get_json(&self, key: &str) -> Option<Bytes> {
        self.inner.read().ok()?.objects.get(key).cloned()
    }

    /// The cached object at `key`, if the cache holds it.
    pub fn get(&self, key: &str) -> Option<Value> {
        let json = self.inner.read().ok()?.objects.get(key).cloned()?;
        parse(&json)
    }

    /// Current objects (JSON) under `prefix` and the cache revision.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Bytes>, i64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shared_lines_match_per_watcher_encoding() {
        let obj = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a", "resourceVersion": "7"}});
        let stored = br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a"}}"#;
        let ev = decode_event(&kubelite_storage::Event {
            kind: EventKind::Update,
            kv: kubelite_storage::KeyValue {
                key: "/registry/pods/default/a".into(),
                value: Bytes::from_static(stored),
                create_revision: 3,
                mod_revision: 7,
            },
            prev: None,
        })
        .expect("decodes");
        assert_eq!(ev.obj().as_deref(), Some(&obj));
        assert!(ev.prev().is_none());
        for kind in [EventType::Added, EventType::Modified, EventType::Deleted] {
            let line = ev.json_line(kind);
            // The same event as a watcher encoding it alone would send (key order aside: the
            // splice puts resourceVersion first in metadata).
            let alone: Value = serde_json::from_slice(&encode_line(kind.as_str(), &obj))
                .expect("encoded line is json");
            let back: Value = serde_json::from_slice(&line).expect("line is json");
            assert_eq!(back, alone);
            assert_eq!(back, json!({"type": kind.as_str(), "object": obj}));
            // Later watchers get the very same buffer.
            assert_eq!(ev.json_line(kind).as_ptr(), line.as_ptr());
        }
        assert_eq!(parse(&ev.object_json()), Some(obj.clone()));
        assert_eq!(ev.kind, EventType::Modified);
    }
}
