//! Scheduler metrics (attempts by result, end-to-end scheduling latency, queue depth) in the
//! Prometheus text format, and the `/healthz` + `/metrics` router.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

/// Histogram bucket upper bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0,
];

/// Counters and gauges, updated lock-free on the hot path.
#[derive(Debug, Default)]
pub struct Metrics {
    scheduled: AtomicU64,
    unschedulable: AtomicU64,
    error: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Pending pods ready to be tried.
    pub queue_active: AtomicI64,
    /// Pending pods waiting out their backoff.
    pub queue_backoff: AtomicI64,
    /// Pending pods parked until the cluster changes.
    pub queue_unschedulable: AtomicI64,
}

/// Outcome of one scheduling attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Bound to a node.
    Scheduled,
    /// No node fits.
    Unschedulable,
    /// An API error (binding failed).
    Error,
}

impl Metrics {
    /// Counts an attempt.
    pub fn attempt(&self, r: AttemptResult) {
        let c = match r {
            AttemptResult::Scheduled => &self.scheduled,
            AttemptResult::Unschedulable => &self.unschedulable,
            AttemptResult::Error => &self.error,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of attempts with this result so far.
    pub fn attempts(&self, r: AttemptResult) -> u64 {
        match r {
            AttemptResult::Scheduled => &self.scheduled,
            AttemptResult::Unschedulable => &self.unschedulable,
            AttemptResult::Error => &self.error,
        }
        .load(Ordering::Relaxed)
    }

    /// Records the time from first enqueue to successful bind.
    pub fn observe_e2e(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result.");
        let _ = writeln!(s, "# TYPE scheduler_schedule_attempts_total counter");
        for (name, r) in [
            ("scheduled", AttemptResult::Scheduled),
            ("unschedulable", AttemptResult::Unschedulable),
            ("error", AttemptResult::Error),
        ] {
            let _ = writeln!(
                s,
                "scheduler_schedule_attempts_total{{result=\"{name}\"}} {}",
                self.attempts(r)
            );
        }
        let name = "scheduler_e2e_scheduling_duration_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} E2e scheduling latency in seconds (queue entry to bind)."
        );
        let _ = writeln!(s, "# TYPE {name} histogram");
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                s,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "{name}_sum {sum}");
        let _ = writeln!(s, "{name}_count {count}");
        let _ = writeln!(
            s,
            "# HELP scheduler_pending_pods Number of pending pods, by the queue type."
        );
        let _ = writeln!(s, "# TYPE scheduler_pending_pods gauge");
        for (q, g) in [
            ("active", &self.queue_active),
            ("backoff", &self.queue_backoff),
            ("unschedulable", &self.queue_unschedulable),
        ] {
            let _ = writeln!(
                s,
                "scheduler_pending_pods{{queue=\"{q}\"}} {}",
                g.load(Ordering::Relaxed)
            );
        }
        s
    }
}

/// `/healthz` ("ok") and `/metrics`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        m.render(),
                    )
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_and_histogram() {
        let m = Metrics::default();
        m.attempt(AttemptResult::Scheduled);
        m.attempt(AttemptResult::Unschedulable);
        m.attempt(AttemptResult::Scheduled);
        m.observe_e2e(Duration::from_millis(30));
        m.queue_active.store(4, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("scheduler_schedule_attempts_total{result=\"scheduled\"} 2"));
        assert!(text.contains("scheduler_schedule_attempts_total{result=\"unschedulable\"} 1"));
        assert!(text.contains("scheduler_e2e_scheduling_duration_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("scheduler_e2e_scheduling_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("scheduler_e2e_scheduling_duration_seconds_count 1"));
        assert!(text.contains("scheduler_pending_pods{queue=\"active\"} 4"));
    }
}
