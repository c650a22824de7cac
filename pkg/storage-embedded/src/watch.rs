//! Watch fan-out: the writer publishes committed events into one bounded in-memory ring; each
//! watcher pulls from it with its own cursor, and falls back to replaying the `revs` table when
//! the ring no longer holds the revisions it needs. Memory is bounded by the ring whatever the
//! number or speed of watchers: a slow watcher never buffers, it just reads from disk later.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use kubelite_storage::{Error, Event, Revision, WatchStream};
use redb::Database;
use tokio::sync::watch;

use crate::read;

/// How many revisions one watcher copies from the ring or reads from disk per step.
const STEP: usize = 512;
/// ... and about how many bytes of values one disk step may hold, so that many watchers
/// replaying at once (say, every client re-watching after a restart) stay cheap.
const STEP_BYTES: usize = 1024 * 1024;

/// State shared by the store handle, the writer thread and every watcher.
pub(crate) struct Shared {
    current: AtomicI64,
    compacted: AtomicI64,
    ring: Mutex<Ring>,
}

/// The most recent events, contiguous in revision order (revision of `events[i]` is
/// `first + i`), at most `cap` of them and about `max_bytes` of keys and values.
struct Ring {
    events: VecDeque<Arc<Event>>,
    cap: usize,
    bytes: usize,
    max_bytes: usize,
}

/// The memory one ring entry holds on to, roughly.
fn weight(ev: &Event) -> usize {
    let prev = ev.prev.as_ref().map_or(0, |p| p.key.len() + p.value.len());
    // A delete's value is the previous value itself, shared.
    let value = if ev.kind == kubelite_storage::EventKind::Delete {
        0
    } else {
        ev.kv.value.len()
    };
    ev.kv.key.len() + value + prev + 64
}

/// What a watcher found in the ring.
enum RingRead {
    /// Events after the cursor were copied (possibly none matched); the new cursor.
    Advanced(Revision),
    /// The ring does not start right after the cursor: read up to this revision from disk.
    Behind { upto: Option<Revision> },
}

impl Shared {
    pub(crate) fn new(
        current: Revision,
        compacted: Revision,
        cap: usize,
        max_bytes: usize,
    ) -> Self {
        Shared {
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(cap.min(1 << 16)),
                cap,
                bytes: 0,
                max_bytes,
            }),
        }
    }

    pub(crate) fn current(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }

    pub(crate) fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    pub(crate) fn set_compacted(&self, rev: Revision) {
        self.compacted.store(rev, Ordering::Release);
    }

    /// Appends one committed batch (consecutive revisions following the current one) and moves
    /// the current revision to its end. Called only by the writer thread.
    pub(crate) fn publish(&self, events: Vec<Arc<Event>>, new_current: Revision) {
        {
            let mut ring = lock(&self.ring);
            let cap = ring.cap;
            if cap > 0 {
                // Batches carry consecutive revisions, so appending keeps the ring contiguous;
                // a batch larger than the ring replaces it with its tail.
                if events.len() >= cap {
                    ring.events.clear();
                    ring.bytes = 0;
                }
                let skip = events.len().saturating_sub(cap);
                for ev in events.into_iter().skip(skip) {
                    ring.bytes += weight(&ev);
                    ring.events.push_back(ev);
                    while ring.events.len() > cap
                        || (ring.bytes > ring.max_bytes && ring.events.len() > 1)
                    {
                        if let Some(old) = ring.events.pop_front() {
                            ring.bytes = ring.bytes.saturating_sub(weight(&old));
                        }
                    }
                }
            }
        }
        self.current.store(new_current, Ordering::Release);
    }

    /// Copies up to [`STEP`] events after `cursor` whose key starts with `prefix` into `out`.
    fn read_ring(
        &self,
        cursor: Revision,
        prefix: &str,
        out: &mut VecDeque<Arc<Event>>,
    ) -> RingRead {
        let ring = lock(&self.ring);
        let Some(first) = ring.events.front().map(|e| e.revision()) else {
            return RingRead::Behind { upto: None };
        };
        if first > cursor + 1 {
            return RingRead::Behind {
                upto: Some(first - 1),
            };
        }
        let start = usize::try_from(cursor + 1 - first).unwrap_or(usize::MAX);
        let mut last = cursor;
        for ev in ring.events.iter().skip(start).take(STEP) {
            last = ev.revision();
            if ev.kv.key.starts_with(prefix) {
                out.push_back(ev.clone());
            }
        }
        RingRead::Advanced(last)
    }
}

fn lock(m: &Mutex<Ring>) -> std::sync::MutexGuard<'_, Ring> {
    // A poisoned ring only means a watcher panicked mid-copy; the data is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One watcher's position.
struct Watcher {
    prefix: String,
    cursor: Revision,
    // Shared with the ring, so a watcher that is slow to consume holds pointers, not copies.
    buf: VecDeque<Arc<Event>>,
    shared: Arc<Shared>,
    head: watch::Receiver<Revision>,
    // Weak so that an open watch never keeps the database file open after the store is gone.
    db: Weak<Database>,
    done: bool,
}

/// A stream of every event under `prefix` after `after`.
pub(crate) fn stream(
    prefix: String,
    after: Revision,
    shared: Arc<Shared>,
    head: watch::Receiver<Revision>,
    db: Weak<Database>,
) -> WatchStream {
    let w = Watcher {
        prefix,
        cursor: after,
        buf: VecDeque::new(),
        shared,
        head,
        db,
        done: false,
    };
    futures::stream::unfold(w, |mut w| async move {
        let item = w.next().await?;
        if item.is_err() {
            w.done = true;
        }
        Some((item, w))
    })
    .boxed()
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some(ev) = self.buf.pop_front() {
                return Some(Ok(Arc::unwrap_or_clone(ev)));
            }
            if self.done {
                return None;
            }
            let published = *self.head.borrow_and_update();
            if self.cursor >= published.max(self.shared.current()) {
                // Ends with the writer (store dropped): the contract's "store shuts down".
                if self.head.changed().await.is_err() {
                    self.done = true;
                    return None;
                }
                continue;
            }
            match self
                .shared
                .read_ring(self.cursor, &self.prefix, &mut self.buf)
            {
                RingRead::Advanced(c) => self.cursor = c,
                RingRead::Behind { upto } => {
                    let upto = upto.unwrap_or_else(|| self.shared.current());
                    // The store is gone: end like any watch at shutdown.
                    let Some(db) = self.db.upgrade() else {
                        self.done = true;
                        return None;
                    };
                    if let Err(e) = self.replay(db, upto).await {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Reads the next step of events up to `upto` from disk.
    async fn replay(&mut self, db: Arc<Database>, upto: Revision) -> Result<(), Error> {
        let prefix = self.prefix.clone();
        let after = self.cursor;
        let (events, cursor) = tokio::task::spawn_blocking(move || {
            read::replay(&db, &prefix, after, upto, STEP, STEP_BYTES)
        })
        .await
        .map_err(|e| Error::Internal(format!("watch replay task: {e}")))??;
        self.buf.extend(events.into_iter().map(Arc::new));
        self.cursor = cursor;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kubelite_storage::{EventKind, KeyValue};

    fn ev(rev: Revision, key: &str) -> Arc<Event> {
        Arc::new(Event {
            kind: EventKind::Create,
            kv: KeyValue {
                key: key.into(),
                value: Bytes::new(),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        })
    }

    #[test]
    fn ring_is_bounded_and_contiguous() {
        let s = Shared::new(0, 0, 3, usize::MAX);
        s.publish((1..=5).map(|r| ev(r, "/a")).collect(), 5);
        assert_eq!(s.current(), 5);
        let mut out = VecDeque::new();
        // Revisions 1 and 2 fell out: a watcher at 0 must go to disk for them.
        assert!(matches!(
            s.read_ring(0, "/", &mut out),
            RingRead::Behind { upto: Some(2) }
        ));
        assert!(matches!(
            s.read_ring(2, "/", &mut out),
            RingRead::Advanced(5)
        ));
        let revs: Vec<_> = out.iter().map(|e| e.revision()).collect();
        assert_eq!(revs, vec![3, 4, 5]);
    }

    #[test]
    fn ring_filters_by_prefix_but_advances_past_everything() {
        let s = Shared::new(0, 0, 10, usize::MAX);
        s.publish(vec![ev(1, "/a/x"), ev(2, "/b/x"), ev(3, "/a/y")], 3);
        let mut out = VecDeque::new();
        assert!(matches!(
            s.read_ring(1, "/a/", &mut out),
            RingRead::Advanced(3)
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kv.key, "/a/y");
        // Nothing after the head.
        out.clear();
        assert!(matches!(
            s.read_ring(3, "/", &mut out),
            RingRead::Advanced(3)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn ring_is_bounded_by_bytes() {
        let big = |rev: Revision| {
            let mut e = Event::clone(&ev(rev, "/k"));
            e.kv.value = Bytes::from(vec![0u8; 1000]);
            Arc::new(e)
        };
        let s = Shared::new(0, 0, 100, 2500);
        s.publish((1..=10).map(big).collect(), 10);
        let mut out = VecDeque::new();
        // About 1 KiB each: only the last two fit.
        assert!(matches!(
            s.read_ring(7, "/", &mut out),
            RingRead::Behind { upto: Some(8) }
        ));
        assert!(matches!(
            s.read_ring(8, "/", &mut out),
            RingRead::Advanced(10)
        ));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn empty_ring_sends_watchers_to_disk() {
        let s = Shared::new(7, 0, 0, usize::MAX);
        s.publish(vec![ev(8, "/a")], 8);
        let mut out = VecDeque::new();
        assert!(matches!(
            s.read_ring(0, "/", &mut out),
            RingRead::Behind { upto: None }
        ));
    }
}
