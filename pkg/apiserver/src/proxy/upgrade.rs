//! `exec`, `attach`, `portforward`: upstream's upgrade-aware proxy. The client's upgrade request
//! (WebSocket or SPDY/3.1, with its protocol headers) goes to the kubelet unchanged; the
//! kubelet's 101 and its headers (`Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol`,
//! `X-Stream-Protocol-Version`) come back, and then bytes are copied both ways between the two
//! upgraded connections until both sides are done. A kubelet that does not upgrade has its
//! answer relayed as is.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use super::kubelet::{self, plain_500};
use super::StreamRequest;
use crate::error::{ApiError, Result};
use crate::registry::Registry;

/// Request headers not passed to the kubelet: the client's credentials are for the apiserver
/// only, and `Host`/framing headers describe the client's connection, not ours.
const DROPPED_REQUEST_HEADERS: [HeaderName; 4] = [
    header::HOST,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

/// Whether the request asks for a connection upgrade (`Connection: upgrade` + `Upgrade`), as
/// upstream's `httpstream.IsUpgradeRequest` decides.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Relay an upgrade request to the kubelet at `authority` (`path` + encoded `query`).
pub async fn relay(
    reg: &Registry,
    authority: &str,
    path: &str,
    query: &str,
    req: StreamRequest<'_>,
) -> Result<Response> {
    if !is_upgrade_request(req.headers) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let Some(client_upgrade) = req.on_upgrade else {
        return Err(ApiError::bad_request(
            "this connection cannot be upgraded (upgrades need HTTP/1.1)",
        ));
    };
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let mut sender = kubelet::connect(authority)
        .await
        .map_err(|e| plain_500(format!("error dialing backend: {e}")))?;
    let mut builder = http::Request::builder()
        .method(req.method.clone())
        .uri(&uri)
        .header(header::HOST, authority);
    for (name, value) in req.headers {
        if !DROPPED_REQUEST_HEADERS.contains(name) {
            builder = builder.header(name, value);
        }
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    let mut resp = sender
        .send_request(request)
        .await
        .map_err(|e| plain_500(format!("error proxying to the kubelet at {authority}: {e}")))?;

    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The kubelet refused the upgrade (unsupported protocol, unknown container, ...):
        // the client sees its answer, as through upstream's proxy.
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(Body::new(body));
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        return Ok(out);
    }

    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();

    let shutdown = reg.shutdown.clone();
    let peer = authority.to_string();
    tokio::spawn(async move {
        // The client's upgrade completes once hyper has written the 101 returned below.
        let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
            (Ok(c), Ok(b)) => (c, b),
            (c, b) => {
                tracing::debug!(
                    kubelet = %peer,
                    client_ok = c.is_ok(),
                    kubelet_ok = b.is_ok(),
                    "stream upgrade failed"
                );
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut backend) => match r {
                Ok((up, down)) => tracing::debug!(kubelet = %peer, up, down, "stream closed"),
                Err(e) => tracing::debug!(kubelet = %peer, error = %e, "stream ended with an error"),
            },
            _ = shutdown.cancelled() => {
                tracing::debug!(kubelet = %peer, "stream closed: server shutting down");
            }
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn detects_upgrade_requests() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade_request(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(!is_upgrade_request(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade_request(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        assert!(!is_upgrade_request(&h));
    }
}
