//! Prometheus metrics for `/metrics`: request counts and latencies, open watches, storage
//! latencies and process memory, rendered in the text exposition format (version 0.0.4).
//!
//! The hot path is lock-light: each label set owns atomic counters, found through a read lock on
//! a small map (taken for writing only the first time a label set is seen). Rendering copies
//! the atomics under read locks and formats afterwards, so scrapes never stall requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upstream's request latency buckets (seconds).
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Storage latency buckets (seconds).
const STORAGE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0,
    8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// A histogram with fixed buckets; the sum is kept in nanoseconds so it stays an integer atomic.
struct Histogram {
    buckets: &'static [f64],
    /// Per-bucket (non-cumulative) counts; the last slot is +Inf.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Self {
            buckets,
            counts: (0..=buckets.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = self
            .buckets
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.buckets.len());
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative bucket counts, total count and sum in seconds.
    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut cumulative = Vec::with_capacity(self.counts.len());
        let mut total = 0;
        for c in &self.counts {
            total += c.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, total, sum)
    }
}

/// Label values → shared cell. Cells are `Arc`s so rendering can clone them out of the lock.
type Family<K, V> = RwLock<BTreeMap<K, Arc<V>>>;

/// Find or create the cell for `key`: a read lock normally, a write lock once per new key.
fn cell<K: Ord + Clone, V>(family: &Family<K, V>, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
    // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
    if let Some(c) = family.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return c.clone();
    }
    family
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

fn cells<K: Ord + Clone, V>(family: &Family<K, V>) -> Vec<(K, Arc<V>)> {
    family
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Request, watch and storage metrics, rendered in Prometheus text format.
pub struct Metrics {
    requests: Family<(String, String, u16), AtomicU64>,
    durations: Family<(String, String), Histogram>,
    watchers: Family<String, AtomicI64>,
    storage: Family<String, Histogram>,
    start_time: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: RwLock::default(),
            durations: RwLock::default(),
            watchers: RwLock::default(),
            storage: RwLock::default(),
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

impl Metrics {
    /// An empty registry whose `process_start_time_seconds` is now.
    pub fn new() -> Self {
        Self::default()
    }

    /// One finished request.
    pub fn observe_request(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        let key = (verb.to_string(), resource.to_string(), code);
        cell(&self.requests, &key, || AtomicU64::new(0)).fetch_add(1, Ordering::Relaxed);
        let key = (verb.to_string(), resource.to_string());
        cell(&self.durations, &key, || Histogram::new(REQUEST_BUCKETS)).observe(elapsed);
    }

    /// A watch opened (+1) or closed (-1).
    pub fn watch_delta(&self, resource: &str, delta: i64) {
        cell(&self.watchers, &resource.to_string(), || AtomicI64::new(0))
            .fetch_add(delta, Ordering::Relaxed);
    }

    /// One storage call.
    pub fn observe_storage(&self, op: &str, elapsed: Duration) {
        cell(&self.storage, &op.to_string(), || {
            Histogram::new(STORAGE_BUCKETS)
        })
        .observe(elapsed);
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "apiserver_request_total",
            "counter",
            "Counter of apiserver requests broken out by verb, resource and HTTP response code.",
        );
        for ((verb, resource, code), c) in cells(&self.requests) {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",resource=\"{}\",verb=\"{}\"}} {}",
                escape(&resource),
                escape(&verb),
                c.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "apiserver_request_duration_seconds",
            "histogram",
            "Response latency distribution in seconds for each verb and resource.",
        );
        for ((verb, resource), h) in cells(&self.durations) {
            let labels = format!(
                "resource=\"{}\",verb=\"{}\"",
                escape(&resource),
                escape(&verb)
            );
            histogram(&mut out, "apiserver_request_duration_seconds", &labels, &h);
        }
        header(
            &mut out,
            "apiserver_registered_watchers",
            "gauge",
            "Number of currently registered watchers for a given resource.",
        );
        for (resource, g) in cells(&self.watchers) {
            let _ = writeln!(
                out,
                "apiserver_registered_watchers{{resource=\"{}\"}} {}",
                escape(&resource),
                g.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "apiserver_storage_duration_seconds",
            "histogram",
            "Storage operation latency distribution in seconds.",
        );
        for (op, h) in cells(&self.storage) {
            let labels = format!("operation=\"{}\"", escape(&op));
            histogram(&mut out, "apiserver_storage_duration_seconds", &labels, &h);
        }
        if let Some(rss) = resident_memory_bytes() {
            header(
                &mut out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
            );
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        header(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        let _ = writeln!(out, "process_start_time_seconds {}", self.start_time);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (cumulative, count, sum) = h.snapshot();
    for (bound, c) in h.buckets.iter().zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// Escape a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident set size from `/proc/self/statm` (pages × page size); None off Linux.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Linux page size on every platform kubelite targets (x86_64, aarch64 with 4k pages).
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        m.observe_request("GET", "pods", 200, Duration::from_millis(3));
        m.observe_request("GET", "pods", 200, Duration::from_millis(30));
        m.observe_request("POST", "pods", 201, Duration::from_secs(100));
        m.watch_delta("pods", 1);
        m.watch_delta("pods", 1);
        m.watch_delta("pods", -1);
        m.observe_storage("get", Duration::from_millis(7));
        let text = m.render();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
                .to_string()
        };
        assert_eq!(
            line("apiserver_request_total{code=\"200\",resource=\"pods\",verb=\"GET\"}"),
            "apiserver_request_total{code=\"200\",resource=\"pods\",verb=\"GET\"} 2"
        );
        assert!(text.contains("# TYPE apiserver_request_total counter\n"));
        assert!(text.contains("# TYPE apiserver_request_duration_seconds histogram\n"));
        assert!(text.contains("apiserver_request_duration_seconds_bucket{resource=\"pods\",verb=\"GET\",le=\"0.005\"} 1\n"));
        assert!(text.contains("apiserver_request_duration_seconds_bucket{resource=\"pods\",verb=\"GET\",le=\"0.05\"} 2\n"));
        assert!(text.contains("apiserver_request_duration_seconds_bucket{resource=\"pods\",verb=\"POST\",le=\"60\"} 0\n"));
        assert!(text.contains("apiserver_request_duration_seconds_bucket{resource=\"pods\",verb=\"POST\",le=\"+Inf\"} 1\n"));
        assert!(text.contains(
            "apiserver_request_duration_seconds_count{resource=\"pods\",verb=\"GET\"} 2\n"
        ));
        assert!(text.contains(
            "apiserver_request_duration_seconds_sum{resource=\"pods\",verb=\"GET\"} 0.033\n"
        ));
        assert!(text.contains("apiserver_registered_watchers{resource=\"pods\"} 1\n"));
        assert!(text.contains(
            "apiserver_storage_duration_seconds_bucket{operation=\"get\",le=\"0.01\"} 1\n"
        ));
        assert!(line("process_resident_memory_bytes ")
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v > 0));
        assert!(line("process_start_time_seconds ")
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 1e9));
        // Every sample line is `name{labels} value` or `name value` with a numeric value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "bad sample {l}");
        }
    }

    #[test]
    fn escapes_label_values() {
        let m = Metrics::new();
        m.observe_request("GET", "we\"ird\\\n", 404, Duration::ZERO);
        assert!(m.render().contains("resource=\"we\\\"ird\\\\\\n\""));
    }

    #[test]
    fn concurrent_updates_are_counted() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.observe_request("LIST", "nodes", 200, Duration::from_micros(10));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(m.render().contains(
            "apiserver_request_total{code=\"200\",resource=\"nodes\",verb=\"LIST\"} 4000\n"
        ));
    }
}
