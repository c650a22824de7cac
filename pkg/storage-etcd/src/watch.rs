//! Watches: one etcd watch stream per [`kubelite_storage::Storage::watch`] call, started at
//! `after + 1` with `prev_kv`, its responses flattened into [`Event`]s.
//!
//! etcd reports a compacted start revision only asynchronously (a cancel response after the
//! `created` one), so `watch()` first probes with a read at `after + 1`, which fails exactly when
//! the watch would; a compaction racing in between still arrives as a terminal `Err` item.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::{EventType, GetOptions, WatchOptions, WatchResponse, WatchResponseStream};
use futures::StreamExt;
use kubelite_storage::{Error, Event, EventKind, KeyValue, Result, Revision, WatchStream};

use crate::errors::{call, Failure};
use crate::{prefix_end, Inner};

impl Inner {
    pub(crate) async fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: Revision,
    ) -> Result<WatchStream> {
        let after = after.max(0);
        let start = after + 1;
        let current = self.current_revision().await?;
        if after > current {
            return Err(Error::FutureRevision {
                requested: after,
                current,
            });
        }
        if start <= current {
            let probe = GetOptions::new().with_count_only().with_revision(start);
            if let Err(f) = call(
                self.timeout,
                self.kv.clone().get(self.full_key("/"), Some(probe)),
            )
            .await
            {
                return Err(self.revision_error(f, start).await);
            }
        }

        let key = self.full_key(prefix);
        let end = prefix_end(&key);
        let key = if key.is_empty() { vec![0] } else { key };
        let opts = WatchOptions::new()
            .with_range(end)
            .with_start_revision(start)
            .with_prev_key();
        let stream = call(self.timeout, self.watch.clone().watch(key, Some(opts)))
            .await
            .map_err(Failure::into_error)?;
        // Keep the request half alive: dropping it closes the gRPC stream and cancels the watch.
        let (sender, mut responses) = stream.split();

        // Wait for etcd to confirm the watch so creation errors surface from `watch()` itself.
        let first = call(self.timeout, responses.message())
            .await
            .map_err(Failure::into_error)?;
        let first =
            first.ok_or_else(|| Error::Unavailable("etcd closed the watch stream".into()))?;
        let mut state = State {
            inner: self.clone(),
            responses,
            _sender: sender,
            pending: VecDeque::new(),
            start,
            failed: None,
            done: false,
        };
        state.absorb(first)?;
        Ok(futures::stream::unfold(state, next).boxed())
    }
}

/// One open watch, as the stream's state.
struct State {
    inner: Arc<Inner>,
    responses: WatchResponseStream,
    _sender: etcd_client::WatchRequestSender,
    pending: VecDeque<Event>,
    /// The first revision not yet delivered (reported if etcd compacts past the watcher).
    start: Revision,
    /// A terminal error to deliver once `pending` is drained.
    failed: Option<Error>,
    done: bool,
}

impl State {
    /// Queues a response's events; a cancel (compaction or otherwise) becomes a terminal error.
    fn absorb(&mut self, resp: WatchResponse) -> Result<()> {
        if resp.compact_revision() != 0 {
            return Err(Error::Compacted {
                requested: self.start,
                compacted: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            return Err(Error::Unavailable(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason()
            )));
        }
        for ev in resp.events() {
            let event = convert_event(&self.inner, ev)?;
            self.start = event.revision() + 1;
            self.pending.push_back(event);
        }
        Ok(())
    }
}

/// Produces the next item of a watch stream.
async fn next(mut state: State) -> Option<(Result<Event>, State)> {
    loop {
        if let Some(ev) = state.pending.pop_front() {
            return Some((Ok(ev), state));
        }
        // Events queued before a failure go out first, then the error, then the end.
        if let Some(e) = state.failed.take() {
            state.done = true;
            return Some((Err(e), state));
        }
        if state.done {
            return None;
        }
        match state.responses.message().await {
            Ok(Some(resp)) => {
                if let Err(e) = state.absorb(resp) {
                    state.failed = Some(e);
                }
            }
            Ok(None) => return None,
            Err(e) => state.failed = Some(Failure::from(e).into_error()),
        }
    }
}

/// Converts one etcd event. A put with version 1 is a create; a delete reports the last value
/// (from `prev_kv`) with the delete's own revision.
fn convert_event(inner: &Inner, ev: &etcd_client::Event) -> Result<Event> {
    let kv = ev
        .kv()
        .ok_or_else(|| Error::Internal("etcd: watch event without key".into()))?;
    let prev = ev.prev_kv().map(|p| inner.convert(p)).transpose()?;
    match ev.event_type() {
        EventType::Put if kv.version() == 1 => Ok(Event {
            kind: EventKind::Create,
            kv: inner.convert(kv)?,
            prev: None,
        }),
        EventType::Put => Ok(Event {
            kind: EventKind::Update,
            kv: inner.convert(kv)?,
            prev,
        }),
        EventType::Delete => {
            let key = inner.storage_key(kv.key())?;
            let (value, create_revision) = match &prev {
                Some(p) => (p.value.clone(), p.create_revision),
                None => (bytes::Bytes::new(), 0),
            };
            Ok(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key,
                    value,
                    create_revision,
                    mod_revision: kv.mod_revision(),
                },
                prev,
            })
        }
    }
}
