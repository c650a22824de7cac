//! `/healthz`, `/livez`, `/readyz` (with `?verbose`) and `/metrics`.

use axum::extract::State;
use axum::http::Uri;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;

fn text(code: StatusCode, body: String) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Run the named checks and answer like upstream's healthz handlers.
async fn checks(state: &AppState, uri: &Uri, name: &str, with_storage: bool) -> Response {
    let verbose = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    let mut results: Vec<(&str, Result<(), String>)> = vec![("ping", Ok(()))];
    if with_storage {
        let storage = state
            .registry
            .storage
            .current_revision()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        results.push(("etcd", storage));
        let shutting_down = state.registry.shutdown.is_cancelled();
        results.push((
            "shutdown",
            if shutting_down {
                Err("server is shutting down".into())
            } else {
                Ok(())
            },
        ));
    }
    let ok = results.iter().all(|(_, r)| r.is_ok());
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if !verbose && ok {
        return text(code, "ok".into());
    }
    let mut out = String::new();
    for (check, r) in &results {
        match r {
            Ok(()) => out.push_str(&format!("[+]{check} ok\n")),
            Err(e) => {
                tracing::warn!(check, error = %e, "health check failed");
                out.push_str(&format!("[-]{check} failed: reason withheld\n"));
            }
        }
    }
    if ok {
        out.push_str(&format!("{name} check passed\n"));
    } else {
        out.push_str(&format!("{name} check failed\n"));
    }
    text(code, out)
}

/// `/healthz`: ping and storage.
pub async fn healthz(State(state): State<AppState>, uri: Uri) -> Response {
    checks(&state, &uri, "healthz", true).await
}

/// `/livez`: the process answers.
pub async fn livez(State(state): State<AppState>, uri: Uri) -> Response {
    checks(&state, &uri, "livez", false).await
}

/// `/readyz`: ping, storage, not shutting down.
pub async fn readyz(State(state): State<AppState>, uri: Uri) -> Response {
    checks(&state, &uri, "readyz", true).await
}

/// `/metrics` in Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = (StatusCode::OK, state.registry.metrics.render()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
