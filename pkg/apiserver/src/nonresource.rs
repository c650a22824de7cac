//! Non-resource endpoints: `/version`, discovery (`/api`, `/apis`, group and group-version
//! documents) and OpenAPI (`/openapi/v2`, `/openapi/v3[/...]`), with content-hash ETags.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::{discovery, openapi, AppState};

/// `/version`: a strict-semver gitVersion, which the kubectl dispatcher relies on.
pub async fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    });
    with_etag(
        &HeaderMap::new(),
        "application/json",
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// A 200 with an ETag (sha256 of the body), or 304 when `If-None-Match` matches. No max-age:
/// clients must revalidate.
pub fn with_etag(req_headers: &HeaderMap, content_type: &str, body: Vec<u8>) -> Response {
    let etag = openapi::etag(&body);
    cached_doc(req_headers, content_type, &etag, Bytes::from(body))
}

fn json_doc(headers: &HeaderMap, content_type: &str, v: &Value) -> Response {
    with_etag(
        headers,
        content_type,
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// `/api`, `/apis`, `/api/v1`, `/apis/<g>`, `/apis/<g>/<v>`.
pub fn discovery(
    state: &AppState,
    segs: &[&str],
    headers: &HeaderMap,
    method: &Method,
) -> Result<Response> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let all = state.registry.resources();
    let resources: &[kubelite_api::resource::ResourceInfo] = &all;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let aggregated = discovery::negotiate_aggregated(accept);
    let ct = "application/json";
    match (segs, aggregated) {
        (["api"], Some(version)) => Ok(json_doc(
            headers,
            version.content_type(),
            &version.apply(discovery::aggregated_core(resources)),
        )),
        (["apis"], Some(version)) => Ok(json_doc(
            headers,
            version.content_type(),
            &version.apply(discovery::aggregated_apis(resources)),
        )),
        (["api"], None) => Ok(json_doc(
            headers,
            ct,
            &discovery::legacy_api_versions(&state.server_address),
        )),
        (["apis"], None) => Ok(json_doc(
            headers,
            ct,
            &discovery::legacy_group_list(resources),
        )),
        (["apis", g], _) => discovery::legacy_group(resources, g)
            .map(|v| json_doc(headers, ct, &v))
            .ok_or_else(ApiError::no_route),
        (["api", v], _) => discovery::legacy_resource_list(resources, "", v)
            .map(|d| json_doc(headers, ct, &d))
            .ok_or_else(ApiError::no_route),
        (["apis", g, v], _) => discovery::legacy_resource_list(resources, g, v)
            .map(|d| json_doc(headers, ct, &d))
            .ok_or_else(ApiError::no_route),
        _ => Err(ApiError::no_route()),
    }
}

/// What `/openapi/v2` answers an Accept header with, as upstream's handler negotiates: the
/// first acceptable clause by quality wins; JSON for `*/*` or no Accept; None (406) when
/// neither JSON nor gnostic protobuf is acceptable.
fn v2_wants_protobuf(accept: &str) -> Option<bool> {
    if accept.trim().is_empty() {
        return Some(false);
    }
    let mut clauses: Vec<(f32, &str)> = accept
        .split(',')
        .map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q, media)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // Stable: equal qualities keep the client's order.
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses.into_iter().find_map(|(_, media)| {
        let media = media.to_ascii_lowercase();
        if media == openapi::V2_PROTOBUF_ACCEPT || media == openapi::V2_PROTOBUF_CONTENT_TYPE {
            Some(true)
        } else if matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            Some(false)
        } else {
            None
        }
    })
}

/// A prebuilt document with its precomputed ETag (or 304), sharing the cached bytes.
fn cached_doc(req_headers: &HeaderMap, content_type: &str, etag: &str, body: Bytes) -> Response {
    let matches = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// `/openapi/v2`: the swagger 2.0 document of every served kind, as gnostic protobuf (what
/// kubectl asks for) or JSON. Built once per CRD set, off the async workers.
pub async fn openapi_v2(State(state): State<AppState>, req: Request) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(protobuf) = v2_wants_protobuf(accept) else {
        let mut resp = StatusCode::NOT_ACCEPTABLE.into_response();
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        return resp;
    };
    let docs = state.registry.crds.openapi();
    let doc = match docs.v2_built() {
        Some(doc) => doc,
        None => match tokio::task::spawn_blocking(move || docs.v2()).await {
            Ok(doc) => doc,
            Err(e) => {
                return ApiError::internal(format!("building the OpenAPI v2 document: {e}"))
                    .into_response()
            }
        },
    };
    if protobuf {
        cached_doc(
            req.headers(),
            openapi::V2_PROTOBUF_CONTENT_TYPE,
            &doc.protobuf_etag,
            doc.protobuf.clone(),
        )
    } else {
        cached_doc(
            req.headers(),
            "application/json",
            &doc.json_etag,
            doc.json.clone(),
        )
    }
}

/// `/openapi/v3`: the index of per-group-version documents.
pub async fn openapi_v3_root(State(state): State<AppState>, req: Request) -> Response {
    let docs = state.registry.crds.openapi();
    json_doc(req.headers(), "application/json", docs.root())
}

/// `/openapi/v3/<path>`.
pub async fn openapi_v3_doc(State(state): State<AppState>, req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .trim_start_matches("/openapi/v3/")
        .trim_end_matches('/')
        .to_string();
    let docs = state.registry.crds.openapi();
    match docs.document(&path) {
        Some(text) => with_etag(req.headers(), "application/json", text.as_bytes().to_vec()),
        None => ApiError::no_route().into_response(),
    }
}
