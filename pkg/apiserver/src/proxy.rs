//! Streaming pod subresources (`log`, `exec`, `attach`, `portforward`) proxied to the kubelet.
//!
//! NOT IMPLEMENTED YET. What is missing: looking up the pod's node and the node's kubelet
//! endpoint (`status.daemonEndpoints.kubeletEndpoint.Port` + an address from
//! `status.addresses`), then forwarding: `log` as a streamed HTTP GET (flush per line with
//! `follow`), `exec`/`attach` as a WebSocket (`v5.channel.k8s.io`) or SPDY/3.1 upgrade relay,
//! `portforward` as a WebSocket carrying SPDY frames (see /work/shared/KUBECTL-WIRE.md). Until
//! then every such request gets a clear 503 Status naming the node.

use axum::response::Response;
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::registry::{get_kv, Ctx, Registry};

/// Answer a streaming subresource request: 404 for a missing pod, otherwise 503.
pub async fn handle(reg: &Registry, ctx: &Ctx, name: &str, sub: &str) -> Result<Response> {
    let (_, pod) = get_kv(reg, ctx, name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Err(ApiError::unavailable(format!(
        "no kubelet for node {node}: pods/{sub} proxying is not implemented yet"
    )))
}
