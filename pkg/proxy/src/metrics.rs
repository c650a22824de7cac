//! Proxy metrics (syncs, last sync duration, rule count) in the Prometheus text format, and the
//! `/healthz` + `/metrics` router.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// Counters and gauges of the sync loop.
#[derive(Debug, Default)]
pub struct Metrics {
    syncs: AtomicU64,
    sync_errors: AtomicU64,
    last_sync_micros: AtomicU64,
    rules: AtomicU64,
    service_ports: AtomicU64,
    /// 0 = not started, 1 = iptables, 2 = userspace.
    mode: AtomicU64,
}

impl Metrics {
    /// Records a successful sync.
    pub fn synced(&self, took: Duration, rules: usize, service_ports: usize) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.last_sync_micros.store(micros, Ordering::Relaxed);
        self.rules.store(rules as u64, Ordering::Relaxed);
        self.service_ports
            .store(service_ports as u64, Ordering::Relaxed);
    }

    /// Records a failed sync.
    pub fn sync_failed(&self) {
        self.sync_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the proxy mode (`true` = iptables).
    pub fn set_mode(&self, iptables: bool) {
        self.mode
            .store(if iptables { 1 } else { 2 }, Ordering::Relaxed);
    }

    /// Successful syncs so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Duration of the last successful sync.
    pub fn last_sync(&self) -> Duration {
        Duration::from_micros(self.last_sync_micros.load(Ordering::Relaxed))
    }

    /// Rules written by the last sync.
    pub fn rules(&self) -> u64 {
        self.rules.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut put = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        put(
            "kubeproxy_sync_proxy_rules_total",
            "counter",
            "Successful rule syncs.",
            self.syncs().to_string(),
        );
        put(
            "kubeproxy_sync_proxy_rules_errors_total",
            "counter",
            "Failed rule syncs.",
            self.sync_errors.load(Ordering::Relaxed).to_string(),
        );
        put(
            "kubeproxy_sync_proxy_rules_last_duration_seconds",
            "gauge",
            "Duration of the last successful sync.",
            format!("{:.6}", self.last_sync().as_secs_f64()),
        );
        put(
            "kubeproxy_sync_proxy_rules_iptables_total",
            "gauge",
            "Rules in the proxy's chains after the last sync.",
            self.rules().to_string(),
        );
        put(
            "kubeproxy_service_ports",
            "gauge",
            "Service ports known to the proxy.",
            self.service_ports.load(Ordering::Relaxed).to_string(),
        );
        put(
            "kubeproxy_mode",
            "gauge",
            "1 = iptables, 2 = userspace fallback, 0 = starting.",
            self.mode.load(Ordering::Relaxed).to_string(),
        );
        s
    }
}

async fn healthz(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    // Healthy once the first sync is in: before that the node's services are not routed.
    if m.syncs() > 0 {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not synced yet")
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> String {
    m.render()
}

/// `/healthz` and `/metrics`.
pub fn router(m: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.synced(Duration::from_millis(12), 40, 3);
        let text = m.render();
        assert!(text.contains("kubeproxy_sync_proxy_rules_total 1\n"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_last_duration_seconds 0.012000\n"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_iptables_total 40\n"));
    }
}
