//! Handler actions shared by probes and lifecycle hooks (exec, httpGet, tcpSocket, sleep), and
//! the postStart/preStop hooks themselves.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::Runtime;

/// Resolves a port given by number or by the name of one of the container's ports.
pub(crate) fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("container {} has no port named {s:?}", c.name))
        }
    }
}

/// Runs a command in the container; success is exit code 0.
pub(crate) async fn exec(
    rt: &dyn Runtime,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let run = async {
        let mut s = rt
            .exec(id, cmd, false, false)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(chunk) = s.output.next().await {
            if let Ok((_, b)) = chunk {
                // Keep a little output for the failure message.
                if out.len() < 1024 {
                    out.extend_from_slice(&b);
                }
            }
        }
        match rt.exec_exit_code(&s.id).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!(
                "command {cmd:?} exited with {code}: {}",
                String::from_utf8_lossy(&out).trim()
            )),
            Err(e) => Err(e.to_string()),
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(format!("command {cmd:?} timed out after {timeout:?}")))
}

/// An HTTP GET to the pod (or `host`); success is a status in 200..400, as upstream.
pub(crate) async fn http_get(
    a: &HTTPGetAction,
    c: &Container,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    let port = port(c, &a.port)?;
    let scheme = a.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let host = a
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod_ip.to_string());
    let path = a.path.clone().unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let url = format!("{scheme}://{host}:{port}{path}");
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // Probes do not verify certificates and do not follow redirects off the pod, as upstream.
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::limited(10))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client.get(&url).header("User-Agent", "kube-probe/1.33");
    for h in a.http_headers.iter().flatten() {
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    let resp = req.send().await.map_err(|e| format!("Get {url:?}: {e}"))?;
    let code = resp.status().as_u16();
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// A TCP connect to the pod (or `host`).
pub(crate) async fn tcp(
    host: Option<&str>,
    port: u16,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or(pod_ip);
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Runs one lifecycle handler against a running container.
pub(crate) async fn run_handler(
    rt: &dyn Runtime,
    h: &LifecycleHandler,
    c: &Container,
    id: &str,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(e) = &h.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return exec(rt, id, &cmd, timeout).await;
    }
    if let Some(a) = &h.http_get {
        return http_get(a, c, pod_ip, timeout).await;
    }
    if let Some(t) = &h.tcp_socket {
        return tcp(t.host.as_deref(), port(c, &t.port)?, pod_ip, timeout).await;
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    Err("lifecycle handler has no action".into())
}

/// Runs the postStart hook. Upstream kills the container when it fails; the caller does.
pub(crate) async fn post_start(
    rt: &dyn Runtime,
    c: &Container,
    id: &str,
    pod_ip: &str,
) -> Result<(), String> {
    let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
        return Ok(());
    };
    // postStart has no timeout of its own; bound it so a stuck hook cannot wedge the pod worker.
    run_handler(rt, h, c, id, pod_ip, Duration::from_secs(120)).await
}

/// Runs the preStop hook within the grace period and returns the seconds left for SIGTERM.
pub(crate) async fn pre_stop(
    rt: &dyn Runtime,
    c: &Container,
    id: &str,
    pod_ip: &str,
    grace: i64,
) -> (i64, Option<String>) {
    let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
        return (grace, None);
    };
    let started = std::time::Instant::now();
    let budget = Duration::from_secs(grace.max(0) as u64);
    let err = run_handler(rt, h, c, id, pod_ip, budget).await.err();
    // Upstream gives SIGTERM at least a 2s minimum after a hook used up the period.
    let left = (grace - started.elapsed().as_secs() as i64).max(2);
    (left, err)
}

/// The spec container of a runtime container's name label, app or init.
pub(crate) fn spec_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_by_number_and_name() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        assert_eq!(port(&c, &IntOrString::Int(80)), Ok(80));
        assert_eq!(port(&c, &IntOrString::String("http".into())), Ok(8080));
        assert!(port(&c, &IntOrString::String("nope".into())).is_err());
    }

    #[tokio::test]
    async fn http_and_tcp_against_a_local_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/ok", axum::routing::get(|| async { "ok" }))
            .route(
                "/hdr",
                axum::routing::get(|h: http::HeaderMap| async move {
                    if h.get("x-probe").is_some() {
                        http::StatusCode::OK
                    } else {
                        http::StatusCode::INTERNAL_SERVER_ERROR
                    }
                }),
            );
        let srv = tokio::spawn(async move { axum::serve(l, app).await });
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        let t = Duration::from_secs(2);
        let get = |path: &str, headers: serde_json::Value| -> HTTPGetAction {
            serde_json::from_value(
                serde_json::json!({"path": path, "port": p, "httpHeaders": headers}),
            )
            .unwrap()
        };
        assert!(
            http_get(&get("/ok", serde_json::json!([])), &c, "127.0.0.1", t)
                .await
                .is_ok()
        );
        assert!(
            http_get(&get("/missing", serde_json::json!([])), &c, "127.0.0.1", t)
                .await
                .is_err()
        );
        assert!(
            http_get(&get("/hdr", serde_json::json!([])), &c, "127.0.0.1", t)
                .await
                .is_err()
        );
        let with = serde_json::json!([{"name": "X-Probe", "value": "1"}]);
        assert!(http_get(&get("/hdr", with), &c, "127.0.0.1", t)
            .await
            .is_ok());
        assert!(tcp(None, p, "127.0.0.1", t).await.is_ok());
        srv.abort();
        let _ = srv.await;
        assert!(tcp(None, p, "127.0.0.1", t).await.is_err());
    }
}
