//! Exec readiness and liveness probes, run from the pod sync loop.
//!
//! Only `exec` probes run: httpGet/tcpSocket would need the host to dial pod IPs, which this
//! first version leaves out; such probes count as passing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Probe};

use crate::runtime::Runtime;

/// Probe memory of one container instance.
#[derive(Debug, Clone)]
pub(crate) struct ProbeState {
    container_id: String,
    started: Instant,
    last: Option<Instant>,
    successes: i32,
    failures: i32,
    /// Readiness as of the last readiness probe.
    pub ready: bool,
    live_failures: i32,
    live_last: Option<Instant>,
}

/// Probe states per spec container name.
pub(crate) type Probes = HashMap<String, ProbeState>;

async fn run_exec(rt: &dyn Runtime, id: &str, probe: &Probe) -> bool {
    let Some(cmd) = probe.exec.as_ref().and_then(|e| e.command.clone()) else {
        return true;
    };
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let run = async {
        let Ok(mut s) = rt.exec(id, &cmd, false, false).await else {
            return false;
        };
        while s.output.next().await.is_some() {}
        matches!(rt.exec_exit_code(&s.id).await, Ok(0))
    };
    tokio::time::timeout(timeout, run).await.unwrap_or(false)
}

fn due(last: Option<Instant>, started: Instant, probe: &Probe) -> bool {
    let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    started.elapsed() >= delay && last.is_none_or(|l| l.elapsed() >= period)
}

/// Runs due probes of a running container. Returns (ready, liveness failed).
pub(crate) async fn check(
    rt: &dyn Runtime,
    probes: &mut Probes,
    c: &Container,
    container_id: &str,
) -> (bool, bool) {
    let st = probes.entry(c.name.clone()).or_insert_with(|| ProbeState {
        container_id: container_id.to_string(),
        started: Instant::now(),
        last: None,
        successes: 0,
        failures: 0,
        ready: c.readiness_probe.is_none(),
        live_failures: 0,
        live_last: None,
    });
    if st.container_id != container_id {
        // A new container instance starts unready with fresh counters.
        *st = ProbeState {
            container_id: container_id.to_string(),
            started: Instant::now(),
            last: None,
            successes: 0,
            failures: 0,
            ready: c.readiness_probe.is_none(),
            live_failures: 0,
            live_last: None,
        };
    }
    if let Some(p) = &c.readiness_probe {
        if due(st.last, st.started, p) {
            st.last = Some(Instant::now());
            if run_exec(rt, container_id, p).await {
                st.successes += 1;
                st.failures = 0;
                if st.successes >= p.success_threshold.unwrap_or(1) {
                    st.ready = true;
                }
            } else {
                st.failures += 1;
                st.successes = 0;
                if st.failures >= p.failure_threshold.unwrap_or(3) {
                    st.ready = false;
                }
            }
        }
    }
    let mut dead = false;
    if let Some(p) = &c.liveness_probe {
        if due(st.live_last, st.started, p) {
            st.live_last = Some(Instant::now());
            if run_exec(rt, container_id, p).await {
                st.live_failures = 0;
            } else {
                st.live_failures += 1;
                dead = st.live_failures >= p.failure_threshold.unwrap_or(3);
            }
        }
    }
    (st.ready, dead)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;

    #[tokio::test]
    async fn readiness_follows_exec_result() {
        let fake = FakeRuntime::default();
        let mut probes = Probes::new();
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "a", "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}
        }))
        .unwrap();
        // The fake's exec exits 0.
        assert_eq!(check(&fake, &mut probes, &c, "c1").await, (true, false));
        let plain: Container = serde_json::from_value(serde_json::json!({"name": "b"})).unwrap();
        assert_eq!(check(&fake, &mut probes, &plain, "c2").await, (true, false));
    }
}
