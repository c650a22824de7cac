//! The kubelet HTTP API: `/healthz`, `/pods` and streaming `/containerLogs`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;

use crate::pods::PodManager;
use crate::runtime::LogOptions;
use crate::{
    Kubelet, LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_NODE, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
};

#[derive(Clone)]
struct AppState {
    k: Arc<Kubelet>,
    pods: PodManager,
}

/// The kubelet API routes, callable without a socket.
pub(crate) fn router(k: Arc<Kubelet>, pods: PodManager) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(list_pods))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
        .with_state(AppState { k, pods })
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

async fn exec(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let node = s.k.config.node_name.clone();
    let labels = [
        (LABEL_NODE, node.as_str()),
        (LABEL_POD_NAMESPACE, ns.as_str()),
        (LABEL_POD_NAME, pod.as_str()),
        (LABEL_CONTAINER, container.as_str()),
    ];
    let found =
        s.k.runtime
            .list(&labels)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some(c) = found
        .into_iter()
        .find(|c| c.state == crate::runtime::RunState::Running)
    else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {ns}/{pod}"),
        ));
    };
    let flag = |name: &str| {
        pairs
            .iter()
            .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"))
    };
    let req = crate::exec::ExecRequest {
        container_id: c.id,
        command: pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag("stdin"),
        tty: flag("tty"),
    };
    if req.command.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command".into(),
        ));
    }
    let runtime = s.k.runtime.clone();
    Ok(ws
        .protocols(crate::exec::PROTOCOLS)
        .on_upgrade(move |socket| crate::exec::session(socket, runtime, req)))
}
