//! The kubelet HTTP API: `/healthz`, `/pods`, `/metrics`, streaming `/containerLogs`, and the
//! upgraded streams `/exec`, `/attach` (WebSocket or SPDY) and `/portForward` (SPDY, bare or
//! tunnelled in a WebSocket, or the WebSocket channel protocol).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::metrics::{Kind, Metrics, Transport};
use crate::pods::PodManager;
use crate::runtime::LogOptions;
use crate::{portforward, remotecommand, streams};
use crate::{
    Kubelet, LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_NODE, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
    LABEL_POD_UID, SANDBOX,
};

#[derive(Clone)]
struct AppState {
    k: Arc<Kubelet>,
    pods: PodManager,
    metrics: Arc<Metrics>,
}

/// The kubelet API routes, callable without a socket.
pub(crate) fn router(k: Arc<Kubelet>, pods: PodManager) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(list_pods))
        .route("/metrics", get(metrics))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
        .route("/attach/{ns}/{pod}/{container}", get(attach).post(attach))
        .route(
            "/portForward/{ns}/{pod}",
            get(port_forward).post(port_forward),
        )
        .with_state(AppState {
            k,
            pods,
            metrics: Arc::default(),
        })
}

/// Serves until the task is aborted.
pub(crate) async fn serve(listener: tokio::net::TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!(error = %e, "kubelet api stopped");
    }
}

/// The single place errors become HTTP responses.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.1, "code": self.0.as_u16(),
        });
        (self.0, Json(body)).into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let node = s.k.config.node_name.clone();
    let containers =
        s.k.runtime
            .list(&[(LABEL_NODE, node.as_str())])
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let text = s.metrics.render(&containers, s.pods.pods().len());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn list_pods(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": s.pods.pods()}),
    )
}

#[derive(Debug, Deserialize, Default)]
struct LogQuery {
    follow: Option<String>,
    #[serde(rename = "tailLines")]
    tail_lines: Option<i64>,
    timestamps: Option<String>,
    #[serde(rename = "sinceSeconds")]
    since_seconds: Option<i64>,
    previous: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true") | Some("1") | Some(""))
}

async fn logs(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let node = s.k.config.node_name.clone();
    let labels = [
        (LABEL_NODE, node.as_str()),
        (LABEL_POD_NAMESPACE, ns.as_str()),
        (LABEL_POD_NAME, pod.as_str()),
        (LABEL_CONTAINER, container.as_str()),
    ];
    let mut found =
        s.k.runtime
            .list(&labels)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    found.sort_by_key(|c| {
        c.labels
            .get(LABEL_ATTEMPT)
            .and_then(|a| a.parse::<i32>().ok())
            .unwrap_or(0)
    });
    let pick = if truthy(&q.previous) {
        found.len().checked_sub(2).and_then(|i| found.get(i))
    } else {
        found.last()
    };
    let Some(c) = pick else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("container {container} of pod {ns}/{pod} not found on node {node}"),
        ));
    };
    let opts = LogOptions {
        follow: truthy(&q.follow),
        tail_lines: q.tail_lines,
        timestamps: truthy(&q.timestamps),
        since_seconds: q.since_seconds,
    };
    let stream =
        s.k.runtime
            .logs(&c.id, &opts)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Each Docker frame becomes one body chunk, so followers see lines as they are written.
    let body = Body::from_stream(stream.map(|r| r.map_err(std::io::Error::other)));
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

/// The running container `container` of pod `ns/pod` on this node.
async fn running_container(
    s: &AppState,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<crate::runtime::ContainerInfo, ApiError> {
    let node = s.k.config.node_name.clone();
    let labels = [
        (LABEL_NODE, node.as_str()),
        (LABEL_POD_NAMESPACE, ns),
        (LABEL_POD_NAME, pod),
        (LABEL_CONTAINER, container),
    ];
    let found =
        s.k.runtime
            .list(&labels)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    found
        .into_iter()
        .find(|c| c.state == crate::runtime::RunState::Running)
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("container {container} is not running in pod {ns}/{pod}"),
            )
        })
}

/// `stdin`/`stdout`/`stderr`/`tty` query flags (`1` from the apiserver, `true` from clients).
fn flag(pairs: &[(String, String)], name: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"))
}

async fn exec(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, ApiError> {
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command".into(),
        ));
    }
    remote_command(s, &ns, &pod, &container, &pairs, command, req).await
}

async fn attach(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, ApiError> {
    remote_command(s, &ns, &pod, &container, &pairs, Vec::new(), req).await
}

/// exec (`command` non-empty) or attach, over WebSocket or SPDY.
async fn remote_command(
    s: AppState,
    ns: &str,
    pod: &str,
    container: &str,
    pairs: &[(String, String)],
    command: Vec<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let c = running_container(&s, ns, pod, container).await?;
    let attach = command.is_empty();
    let er = crate::exec::ExecRequest {
        container_id: c.id,
        command,
        stdin: flag(pairs, "stdin"),
        tty: flag(pairs, "tty"),
        attach,
    };
    let runtime = s.k.runtime.clone();
    let kind = if attach { Kind::Attach } else { Kind::Exec };
    if streams::wants_spdy(&parts.headers) {
        let protocol = match streams::negotiate(&parts.headers, &remotecommand::PROTOCOLS) {
            Ok(p) => p,
            Err(refused) => return Ok(*refused),
        };
        let (stdout, stderr) = (flag(pairs, "stdout"), flag(pairs, "stderr"));
        let on_upgrade = take_upgrade(&mut parts)?;
        s.metrics.session(kind, Transport::Spdy);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let (conn, incoming) = streams::start(TokioIo::new(upgraded));
                    remotecommand::serve(conn, incoming, runtime, er, stdout, stderr).await;
                }
                Err(e) => tracing::debug!(error = %e, "spdy upgrade failed"),
            }
        });
        return Ok(streams::switching_protocols(protocol.as_deref()));
    }
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    s.metrics.session(kind, Transport::WebSocket);
    Ok(ws
        .protocols(crate::exec::PROTOCOLS)
        .on_upgrade(move |socket| crate::exec::session(socket, runtime, er)))
}

fn take_upgrade(parts: &mut http::request::Parts) -> Result<hyper::upgrade::OnUpgrade, ApiError> {
    parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "this connection cannot be upgraded".into(),
            )
        })
}

/// The IP port-forwarding dials: the sandbox's address on the pod network, or the node's for
/// host-network pods.
async fn pod_target(s: &AppState, ns: &str, pod: &str) -> Result<portforward::Target, ApiError> {
    let sandbox = running_container(s, ns, pod, SANDBOX).await.map_err(|_| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "pod {ns}/{pod} is not running on node {}",
                s.k.config.node_name
            ),
        )
    })?;
    let uid = sandbox
        .labels
        .get(LABEL_POD_UID)
        .cloned()
        .unwrap_or_default();
    let info =
        s.k.runtime
            .inspect(&sandbox.id, Some(&s.k.config.pod_network))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let ip = info
        .ip
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| s.k.config.node_ip.clone());
    let ip = ip.parse().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("pod {ns}/{pod} has no usable IP ({ip})"),
        )
    })?;
    Ok(portforward::Target {
        pod: format!("{ns}/{pod}"),
        uid,
        ip,
    })
}

async fn port_forward(
    State(s): State<AppState>,
    Path((ns, pod)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    if streams::wants_spdy(&parts.headers) {
        let protocol = match streams::negotiate(&parts.headers, &[portforward::PROTOCOL]) {
            Ok(p) => p,
            Err(refused) => return Ok(*refused),
        };
        let target = pod_target(&s, &ns, &pod).await?;
        let on_upgrade = take_upgrade(&mut parts)?;
        s.metrics.session(Kind::PortForward, Transport::Spdy);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let (conn, incoming) = streams::start(TokioIo::new(upgraded));
                    portforward::serve(conn, incoming, target).await;
                }
                Err(e) => tracing::debug!(error = %e, "spdy upgrade failed"),
            }
        });
        return Ok(streams::switching_protocols(protocol.as_deref()));
    }
    if !streams::wants_websocket(&parts.headers) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "Upgrade request required".into(),
        ));
    }
    // kubectl tunnels SPDY; other clients speak the channel protocol, which names its ports
    // in the query and must be refused before upgrading when it has none.
    let tunnel = parts
        .headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == portforward::WEBSOCKET_PROTOCOL);
    let ports = if tunnel {
        Vec::new()
    } else {
        portforward::parse_ports(&pairs).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?
    };
    let target = pod_target(&s, &ns, &pod).await?;
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    s.metrics.session(Kind::PortForward, Transport::WebSocket);
    let protocols = if tunnel {
        [portforward::WEBSOCKET_PROTOCOL]
    } else {
        [portforward::CHANNEL_PROTOCOL]
    };
    Ok(ws
        .protocols(protocols)
        .on_upgrade(move |socket| async move {
            if tunnel {
                let (conn, incoming) = streams::start(streams::websocket_io(socket));
                portforward::serve(conn, incoming, target).await;
            } else {
                portforward::serve_channels(socket, target, ports).await;
            }
        }))
}
