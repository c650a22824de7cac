//! `pods/log`: a GET to the kubelet's `/containerLogs/...` whose body is streamed through frame
//! by frame (never buffered, so `follow=true` shows each line as the kubelet writes it), and
//! upstream's mapping of kubelet error answers to `Status`es.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use super::kubelet::{self, plain_500, SCHEME};
use crate::error::{ApiError, Failure, Result};
use crate::registry::Params;

/// How much of a kubelet error body is read into the Status (upstream's `maxReadLength`).
const MAX_ERROR_BODY: usize = 50_000;

/// How long reading a kubelet error body may take.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// 204: upstream's answer for logs of a pod that is not scheduled yet.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The kubelet query for the client's log options.
fn log_query(params: &Params) -> Result<String> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if params.flag(flag) {
            pairs.push((flag, "true".into()));
        }
    }
    for num in ["sinceSeconds", "tailLines", "limitBytes"] {
        if let Some(v) = params.get(num) {
            let n: i64 = v.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for {num}: not an integer"))
            })?;
            pairs.push((num, n.to_string()));
        }
    }
    if let Some(t) = params.get("sinceTime") {
        chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
            ApiError::bad_request(format!("invalid value {t:?} for sinceTime: {e}"))
        })?;
        pairs.push(("sinceTime", t.to_string()));
    }
    Ok(kubelet::query(&pairs))
}

/// Stream the logs at kubelet `path` of pod `pod`.
pub async fn stream(authority: &str, path: &str, params: &Params, pod: &str) -> Result<Response> {
    let query = log_query(params)?;
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    // Upstream's errors here are Go's `url.Error`: `Get "<url>": <cause>`.
    let url = format!("{SCHEME}://{authority}{uri}");
    let mut sender = kubelet::connect(authority)
        .await
        .map_err(|e| plain_500(format!("Get \"{url}\": {e}")))?;
    let request = http::Request::get(&uri)
        .header(header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| plain_500(format!("Get \"{url}\": {e}")))?;
    let code = resp.status().as_u16();
    if !(200..=206).contains(&code) {
        let body = read_error_body(resp.into_body()).await;
        return Err(backend_error(code, &body, pod));
    }
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

async fn read_error_body(mut body: hyper::body::Incoming) -> String {
    let mut buf = Vec::new();
    let read = async {
        while buf.len() < MAX_ERROR_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIMEOUT, read).await;
    buf.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Upstream's `GenericHttpResponseChecker`: 400 and 500 carry the kubelet's text as the
/// message; other codes get the generic message of their reason, the text as a cause.
fn backend_error(code: u16, body: &str, pod: &str) -> ApiError {
    match code {
        400 => ApiError::bad_request(body),
        500 => ApiError::internal(format!("Internal error occurred: {body}")),
        _ => {
            let (reason, message) = match code {
                401 => (
                    "Unauthorized",
                    "the server has asked for the client to provide credentials".to_string(),
                ),
                403 => ("Forbidden", body.to_string()),
                404 => (
                    "NotFound",
                    "the server could not find the requested resource".to_string(),
                ),
                409 => ("Conflict", "the server reported a conflict".to_string()),
                429 => (
                    "TooManyRequests",
                    "the server has received too many requests and has asked us to try again later"
                        .to_string(),
                ),
                503 => (
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request".to_string(),
                ),
                504 => (
                    "Timeout",
                    "the server was unable to return a response in the time allotted, but may still be processing the request"
                        .to_string(),
                ),
                _ => (
                    "",
                    format!(
                        "the server responded with the status code {code} but did not return more information"
                    ),
                ),
            };
            let mut err: ApiError = Failure {
                code,
                reason,
                message: format!("{message} ( pods/log {pod})"),
                target: None,
                causes: vec![kubelite_api::strategy::FieldCause {
                    reason: "UnexpectedServerResponse",
                    message: body.to_string(),
                    field: String::new(),
                }],
            }
            .into();
            err.target = Some(crate::error::Target {
                group_resource: "pods/log".into(),
                group: String::new(),
                kind: "pods/log".into(),
                name: pod.to_string(),
            });
            err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_are_forwarded() {
        let p = Params(vec![
            ("container".into(), "c".into()),
            ("follow".into(), "true".into()),
            ("tailLines".into(), "5".into()),
            ("sinceTime".into(), "2026-01-01T00:00:00Z".into()),
        ]);
        assert_eq!(
            log_query(&p).expect("query"),
            "follow=true&tailLines=5&sinceTime=2026-01-01T00%3A00%3A00Z"
        );
        let bad = Params(vec![("tailLines".into(), "x".into())]);
        assert_eq!(log_query(&bad).expect_err("not a number").code, 400);
    }

    #[test]
    fn kubelet_errors_map_like_upstream() {
        let e = backend_error(400, "container \"c\" in pod \"p\" is waiting to start", "p");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "container \"c\" in pod \"p\" is waiting to start"
        );
        let e = backend_error(500, "boom", "p");
        assert_eq!(e.message, "Internal error occurred: boom");
        let e = backend_error(404, "no such pod", "p");
        assert_eq!(e.reason, "NotFound");
        let s = e.status();
        assert_eq!(s["details"]["name"], "p");
        assert_eq!(s["details"]["causes"][0]["message"], "no such pod");
    }
}
