//! An asynchronous event recorder, like client-go's broadcaster: scheduling never waits for
//! an Event write. Events go into a bounded queue drained by a few concurrent writers; when
//! the queue is full (a burst of thousands of bindings) new events are dropped, as upstream's
//! broadcaster drops them (`DropIfChannelFull`), rather than slowing the binding pipeline.
//!
//! Writes pass a token bucket of [`QPS`] per second with a burst of [`BURST`]. Upstream's
//! kube-scheduler writes Events through their own clientset, built from the same
//! `clientConnection` settings (qps 50, burst 100 by default), so its client-side rate limiter
//! caps Event writes at 50/s once the burst is spent and the broadcaster's queue absorbs (then
//! drops) the rest. An Event create costs the API server about as much as a binding: without
//! the cap a backlog of pods would spend half the API server on Events. A cluster that is not
//! saturated gets every Event, at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::events;

/// Queued events before new ones are dropped (upstream `maxQueuedEvents`).
const QUEUE: usize = 1000;
/// Concurrent Event writes.
const WRITERS: usize = 4;
/// Event writes per second after the burst (upstream `clientConnection.qps` default).
pub const QPS: f64 = 50.0;
/// Event writes allowed at once (upstream `clientConnection.burst` default).
pub const BURST: f64 = 100.0;

/// client-go's token bucket (`flowcontrol.NewTokenBucketRateLimiter`): starts full with
/// `burst` tokens, refills at `qps`, one token per write.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(qps: f64, burst: f64, now: Instant) -> Self {
        Self {
            qps,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token at `now`; returns how long the caller must wait before using it (zero
    /// when one was available). Waiting callers are served in order: the token is reserved.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

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
            let mut bucket = TokenBucket::new(QPS, BURST, Instant::now());
            tokio_stream_from(rx)
                // `then` runs one at a time: a write leaves here only with its token.
                .then(move |p| {
                    let wait = bucket.reserve(Instant::now());
                    async move {
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        p
                    }
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50.0, 100.0, t0);
        for _ in 0..100 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        // Empty: the next tokens come every 20 ms, reserved in order.
        let w1 = b.reserve(t0);
        let w2 = b.reserve(t0);
        assert!((w1.as_secs_f64() - 0.02).abs() < 1e-9, "{w1:?}");
        assert!((w2.as_secs_f64() - 0.04).abs() < 1e-9, "{w2:?}");
        // A second later 50 tokens have come back, two of them already reserved.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..48 {
            assert_eq!(b.reserve(t1), Duration::ZERO);
        }
        assert!(b.reserve(t1) > Duration::ZERO);
        // Idle long enough, the bucket is full again but never above the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..100 {
            assert_eq!(b.reserve(t2), Duration::ZERO);
        }
        assert!(b.reserve(t2) > Duration::ZERO);
    }
}
