//! Streaming pod subresources (`log`, `exec`, `attach`, `portforward`) proxied to the kubelet
//! of the pod's node, as upstream's pod registry does: resolve the container and the node's
//! kubelet address, then stream the log body through (`logs`) or relay an HTTP/1.1 upgrade
//! (WebSocket or SPDY) byte for byte (`upgrade`). The apiserver never interprets the stream
//! protocols; the kubelet speaks them.
//!
//! Kubelet paths (upstream's): `/containerLogs/{ns}/{pod}/{container}`,
//! `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}`, `/portForward/{ns}/{pod}`.

pub mod kubelet;
pub mod location;
mod logs;
mod upgrade;

use axum::http::{HeaderMap, Method};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use kubelite_api::resource::find_builtin;

use crate::error::{ApiError, Result};
use crate::registry::{get_kv, Ctx, Params, Registry};

/// The parts of the client's request a streaming subresource needs.
pub struct StreamRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub params: &'a Params,
    /// The client connection's upgrade handle (HTTP/1.1 only).
    pub on_upgrade: Option<OnUpgrade>,
}

/// Answer a streaming subresource request of pod `name`.
pub async fn handle(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    sub: &str,
    req: StreamRequest<'_>,
) -> Result<Response> {
    let allowed = match sub {
        "log" => req.method == Method::GET,
        _ => req.method == Method::GET || req.method == Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method
        )));
    }
    let (_, pod) = get_kv(reg, ctx, name).await?;
    let namespace = ctx.namespace.as_deref().unwrap_or("default");
    let container = match sub {
        "portforward" => None,
        _ => Some(location::container(
            &pod,
            name,
            req.params.get("container"),
        )?),
    };
    let Some(node) = location::node_name(&pod) else {
        if sub == "log" {
            // Upstream streams nothing for an unscheduled pod: 204 without a body.
            return Ok(logs::no_content());
        }
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let authority = kubelet_authority(reg, node).await?;
    let container = container.unwrap_or_default();
    match sub {
        "log" => {
            let path = format!("/containerLogs/{namespace}/{name}/{container}");
            logs::stream(&authority, &path, req.params, name).await
        }
        "exec" | "attach" => {
            let mut pairs = stream_flags(req.params);
            if sub == "exec" {
                for (k, v) in &req.params.0 {
                    if k == "command" {
                        pairs.push(("command", v.clone()));
                    }
                }
            }
            let path = format!("/{sub}/{namespace}/{name}/{container}");
            upgrade::relay(reg, &authority, &path, &kubelet::query(&pairs), req).await
        }
        _ => {
            // Upstream forwards requested ports as one comma-separated `port` parameter.
            let ports: Vec<&str> = req
                .params
                .0
                .iter()
                .filter(|(k, _)| k == "ports")
                .map(|(_, v)| v.as_str())
                .collect();
            let mut pairs = Vec::new();
            if !ports.is_empty() {
                pairs.push(("port", ports.join(",")));
            }
            let path = format!("/portForward/{namespace}/{name}");
            upgrade::relay(reg, &authority, &path, &kubelet::query(&pairs), req).await
        }
    }
}

/// The kubelet's `stdin/stdout/stderr/tty` parameters, as upstream encodes them (`=1`, only
/// when set); the kubelet checks for `1`, while clients send `true`.
fn stream_flags(params: &Params) -> Vec<(&'static str, String)> {
    ["stdin", "stdout", "stderr", "tty"]
        .into_iter()
        .filter(|k| params.flag(k))
        .map(|k| (k, "1".to_string()))
        .collect()
}

/// The kubelet address of node `node` (404 for an unknown node, as upstream).
async fn kubelet_authority(reg: &Registry, node: &str) -> Result<String> {
    let info = find_builtin("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("the nodes resource is not registered"))?;
    let node_ctx = Ctx::new(info, None);
    let (_, node_obj) = get_kv(reg, &node_ctx, node).await?;
    location::kubelet_authority(&node_obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_use_upstream_encoding() {
        let p = Params(vec![
            ("stdin".into(), "true".into()),
            ("stdout".into(), "1".into()),
            ("tty".into(), "false".into()),
        ]);
        assert_eq!(
            stream_flags(&p),
            vec![("stdin", "1".to_string()), ("stdout", "1".to_string())]
        );
    }
}
