//! An asynchronous event recorder, like client-go's broadcaster: scheduling never waits for
//! an Event write. Events go into a bounded queue drained by a few concurrent writers; when
//! the queue is full (a burst of thousands of bindings) new events are dropped, as upstream's
//! broadcaster drops them (`DropIfChannelFull`), rather than slowing the binding pipeline.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tracing::debug;

use crate::events;

/// Queued events before new ones are dropped (upstream `maxQueuedEvents`).
const QUEUE: usize = 1000;
/// Concurrent Event writes.
const WRITERS: usize = 4;

struct Pending {
    pod: Arc<Pod>,
    type_: &'static str,
    reason: &'static str,
    message: String,
}

/// Cheap to clone; [`Recorder::emit`] never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    /// The recorder and the future that writes its events (run it next to the scheduler).
    pub fn new(
        client: kube::Client,
        component: String,
    ) -> (Self, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel::<Pending>(QUEUE);
        let writer = async move {
            let client = &client;
            let component = component.as_str();
            tokio_stream_from(rx)
                .for_each_concurrent(WRITERS, |p| async move {
                    let r =
                        events::record(client, component, &p.pod, p.type_, p.reason, &p.message);
                    if let Err(e) = r.await {
                        debug!(reason = p.reason, error = %e, "failed to record event");
                    }
                })
                .await;
        };
        (Recorder { tx }, writer)
    }

    /// Queues an event about `pod`; dropped when the queue is full.
    pub fn emit(&self, pod: &Arc<Pod>, type_: &'static str, reason: &'static str, message: String) {
        let p = Pending {
            pod: pod.clone(),
            type_,
            reason,
            message,
        };
        if self.tx.try_send(p).is_err() {
            debug!(reason, "event queue full, dropping event");
        }
    }
}

/// An mpsc receiver as a stream (without pulling in tokio-stream).
fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
