//! Startup, liveness and readiness probes (exec, httpGet, tcpSocket, grpc), run from the pod
//! sync loop with upstream's timing: initialDelaySeconds, periodSeconds, timeoutSeconds and the
//! success/failure thresholds. Liveness and readiness wait until the startup probe succeeded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};

use crate::runtime::Runtime;

/// Counters of one probe of one container instance.
#[derive(Debug, Clone, Default)]
struct Counter {
    last: Option<Instant>,
    successes: i32,
    failures: i32,
}

/// Probe memory of one container instance.
#[derive(Debug, Clone)]
pub(crate) struct ProbeState {
    container_id: String,
    started: Instant,
    startup: Counter,
    readiness: Counter,
    liveness: Counter,
    /// Whether the startup probe has succeeded (true without one).
    pub started_ok: bool,
    /// Readiness as of the last readiness probe.
    pub ready: bool,
}

impl ProbeState {
    fn new(c: &Container, id: &str) -> Self {
        Self {
            container_id: id.to_string(),
            started: Instant::now(),
            startup: Counter::default(),
            readiness: Counter::default(),
            liveness: Counter::default(),
            started_ok: c.startup_probe.is_none(),
            ready: false,
        }
    }
}

/// Probe states per spec container name.
pub(crate) type Probes = HashMap<String, ProbeState>;

/// What the probes say about a running container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Ready (readiness passed, or no readiness probe once started).
    pub ready: bool,
    /// Started (startup probe passed, or none).
    pub started: bool,
    /// Set when liveness or startup failed: the container must be killed; the message says why.
    pub kill: Option<String>,
    /// Probe failures below the threshold, for Unhealthy events.
    pub unhealthy: Vec<String>,
}

/// Runs one probe action once.
async fn run(
    rt: &dyn Runtime,
    p: &Probe,
    c: &Container,
    id: &str,
    pod_ip: &str,
) -> Result<(), String> {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return crate::hooks::exec(rt, id, &cmd, timeout).await;
    }
    if let Some(a) = &p.http_get {
        return crate::hooks::http_get(a, c, pod_ip, timeout).await;
    }
    if let Some(t) = &p.tcp_socket {
        let port = crate::hooks::port(c, &t.port)?;
        return crate::hooks::tcp(t.host.as_deref(), port, pod_ip, timeout).await;
    }
    if let Some(g) = &p.grpc {
        let port = u16::try_from(g.port).map_err(|_| format!("invalid port {}", g.port))?;
        return grpc(pod_ip, port, g.service.as_deref(), timeout).await;
    }
    Err("probe has no action".into())
}

/// A `grpc.health.v1.Health/Check` call, with upstream's failure messages: the probe passes
/// only when the server answers SERVING within the timeout.
pub(crate) async fn grpc(
    host: &str,
    port: u16,
    service: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let addr = format!("{host}:{port}");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("invalid address {addr}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let secs = timeout.as_secs();
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(ch)) => ch,
        Ok(Err(e)) => {
            return Err(format!(
                "timeout: failed to connect service \"{addr}\" within {secs}s: {e}"
            ))
        }
        Err(_) => {
            return Err(format!(
                "timeout: failed to connect service \"{addr}\" within {secs}s: context deadline exceeded"
            ))
        }
    };
    let req = HealthCheckRequest {
        service: service.unwrap_or_default().to_string(),
    };
    let resp = tokio::time::timeout(timeout, HealthClient::new(channel).check(req))
        .await
        .map_err(|_| format!("timeout: health rpc did not complete within {secs}s"))?
        .map_err(|e| format!("error: health rpc probe failed: {}", e.message()))?;
    let status = resp.into_inner().status();
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!(
            "service unhealthy (responded with \"{}\")",
            status.as_str_name()
        ))
    }
}

fn due(ct: &Counter, started: Instant, p: &Probe) -> bool {
    let delay = Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
    started.elapsed() >= delay && ct.last.is_none_or(|l| l.elapsed() >= period)
}

/// The container a probe targets.
struct Target<'a> {
    rt: &'a dyn Runtime,
    c: &'a Container,
    id: &'a str,
    pod_ip: &'a str,
}

/// Probes `p` if due; `Some(true)` once successes reach the threshold, `Some(false)` once
/// failures do, `None` when undecided or not due. Failures are appended to `unhealthy`.
async fn step(
    t: &Target<'_>,
    ct: &mut Counter,
    started: Instant,
    p: &Probe,
    kind: &str,
    unhealthy: &mut Vec<String>,
) -> Option<bool> {
    if !due(ct, started, p) {
        return None;
    }
    ct.last = Some(Instant::now());
    match run(t.rt, p, t.c, t.id, t.pod_ip).await {
        Ok(()) => {
            ct.failures = 0;
            ct.successes += 1;
            (ct.successes >= p.success_threshold.unwrap_or(1).max(1)).then_some(true)
        }
        Err(msg) => {
            ct.successes = 0;
            ct.failures += 1;
            unhealthy.push(format!("{kind} probe failed: {msg}"));
            (ct.failures >= p.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// Runs due probes of a running container.
pub(crate) async fn check(
    rt: &dyn Runtime,
    probes: &mut Probes,
    c: &Container,
    container_id: &str,
    pod_ip: &str,
) -> Outcome {
    let st = probes
        .entry(c.name.clone())
        .or_insert_with(|| ProbeState::new(c, container_id));
    if st.container_id != container_id {
        // A new container instance starts unready with fresh counters.
        *st = ProbeState::new(c, container_id);
    }
    let mut out = Outcome {
        ready: false,
        started: st.started_ok,
        kill: None,
        unhealthy: Vec::new(),
    };
    let started = st.started;
    let t = Target {
        rt,
        c,
        id: container_id,
        pod_ip,
    };
    if !st.started_ok {
        if let Some(p) = &c.startup_probe {
            let r = step(
                &t,
                &mut st.startup,
                started,
                p,
                "Startup",
                &mut out.unhealthy,
            )
            .await;
            match r {
                Some(true) => st.started_ok = true,
                Some(false) => {
                    out.kill = Some(format!(
                        "Container {} failed startup probe, will be restarted",
                        c.name
                    ));
                    return out;
                }
                None => return out,
            }
        }
        out.started = st.started_ok;
    }
    match &c.readiness_probe {
        None => st.ready = true,
        Some(p) => {
            let r = step(
                &t,
                &mut st.readiness,
                started,
                p,
                "Readiness",
                &mut out.unhealthy,
            )
            .await;
            if let Some(ok) = r {
                st.ready = ok;
            }
        }
    }
    if let Some(p) = &c.liveness_probe {
        let r = step(
            &t,
            &mut st.liveness,
            started,
            p,
            "Liveness",
            &mut out.unhealthy,
        )
        .await;
        if r == Some(false) {
            out.kill = Some(format!(
                "Container {} failed liveness probe, will be restarted",
                c.name
            ));
        }
    }
    out.ready = st.ready;
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn readiness_follows_exec_result() {
        let fake = FakeRuntime::default();
        let mut probes = Probes::new();
        let c = container(serde_json::json!({
            "name": "a", "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}
        }));
        // The fake's exec exits 0.
        let o = check(&fake, &mut probes, &c, "c1", "127.0.0.1").await;
        assert!(o.ready && o.started && o.kill.is_none());
        let plain = container(serde_json::json!({"name": "b"}));
        assert!(
            check(&fake, &mut probes, &plain, "c2", "127.0.0.1")
                .await
                .ready
        );
    }

    #[tokio::test]
    async fn liveness_kills_after_failure_threshold_and_startup_gates_it() {
        let fake = FakeRuntime::default();
        let mut probes = Probes::new();
        // Nothing listens on port 1 of loopback: every tcp probe fails fast.
        let c = container(serde_json::json!({
            "name": "a", "livenessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 1, "failureThreshold": 2}
        }));
        let o = check(&fake, &mut probes, &c, "c1", "127.0.0.1").await;
        assert!(o.kill.is_none());
        assert_eq!(o.unhealthy.len(), 1);
        // Not due again within the period.
        assert!(check(&fake, &mut probes, &c, "c1", "127.0.0.1")
            .await
            .unhealthy
            .is_empty());
        probes.get_mut("a").unwrap().liveness.last = Some(Instant::now() - Duration::from_secs(2));
        let o = check(&fake, &mut probes, &c, "c1", "127.0.0.1").await;
        assert!(o.kill.unwrap().contains("liveness"));

        let gated = container(serde_json::json!({
            "name": "g", "startupProbe": {"tcpSocket": {"port": 1}, "failureThreshold": 1},
            "livenessProbe": {"exec": {"command": ["true"]}}
        }));
        let o = check(&fake, &mut probes, &gated, "c2", "127.0.0.1").await;
        assert!(!o.started);
        assert!(o.kill.unwrap().contains("startup"));
    }

    #[tokio::test]
    async fn grpc_probe_reads_the_health_service() {
        use tonic_health::ServingStatus;
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = incoming.local_addr().unwrap().port();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("sick", ServingStatus::NotServing)
            .await;
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let t = Duration::from_secs(2);
        grpc("127.0.0.1", port, None, t).await.unwrap();
        let err = grpc("127.0.0.1", port, Some("sick"), t).await.unwrap_err();
        assert_eq!(err, "service unhealthy (responded with \"NOT_SERVING\")");
        let err = grpc("127.0.0.1", port, Some("absent"), t)
            .await
            .unwrap_err();
        assert!(err.starts_with("error: health rpc probe failed"), "{err}");
        server.abort();
        let err = grpc("127.0.0.1", 1, None, t).await.unwrap_err();
        assert!(
            err.starts_with("timeout: failed to connect service"),
            "{err}"
        );
    }
}
