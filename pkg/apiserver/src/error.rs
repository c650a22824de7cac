//! The one error type of the server and the single place where errors become HTTP responses
//! (a Kubernetes `Status` body with the matching code).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kubelite_api::resource::ResourceInfo;
use kubelite_api::strategy::FieldCause;
use serde_json::{json, Value};

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. \
You can start a new list without the continue parameter, or use the continue token in this response to retrieve \
the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that \
were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// Short alias used across the crate.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The object an error is about, for `Status.details` and messages.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `pods`, `deployments.apps`: what upstream prints before the quoted name.
    pub group_resource: String,
    pub group: String,
    /// `details.kind` is the plural resource, as upstream fills it.
    pub kind: String,
    pub name: String,
}

impl Target {
    /// The target for `name` of resource `info`.
    pub fn new(info: &ResourceInfo, name: &str) -> Self {
        Self {
            group_resource: info.group_resource(),
            group: info.group.to_string(),
            kind: info.plural.to_string(),
            name: name.to_string(),
        }
    }
}

/// A failed API request, rendered as a `Status`. Boxed so `Result`s stay small; fields are
/// reached through `Deref` to [`Failure`].
#[derive(Debug, Clone)]
pub struct ApiError(Box<Failure>);

/// The contents of an [`ApiError`].
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: &'static str,
    pub message: String,
    pub target: Option<Target>,
    pub causes: Vec<FieldCause>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl std::ops::Deref for ApiError {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Failure {
        &mut self.0
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        Self(Box::new(f))
    }
}

impl ApiError {
    fn plain(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            reason,
            message: message.into(),
            target: None,
            causes: Vec::new(),
        }
        .into()
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::plain(400, "BadRequest", message)
    }

    /// 404 NotFound: `<resource> "<name>" not found`.
    pub fn not_found(t: Target) -> Self {
        let mut e = Self::plain(
            404,
            "NotFound",
            format!("{} {:?} not found", t.group_resource, t.name),
        );
        e.target = Some(t);
        e
    }

    /// 404 for a URL that names no resource.
    pub fn no_route() -> Self {
        Self::plain(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 AlreadyExists: `<resource> "<name>" already exists`.
    pub fn already_exists(t: Target) -> Self {
        let mut e = Self::plain(
            409,
            "AlreadyExists",
            format!("{} {:?} already exists", t.group_resource, t.name),
        );
        e.target = Some(t);
        e
    }

    /// 409 Conflict for a stale resourceVersion or failed precondition.
    pub fn conflict(t: Target, detail: &str) -> Self {
        let mut e = Self::plain(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {:?}: {}",
                t.group_resource, t.name, detail
            ),
        );
        e.target = Some(t);
        e
    }

    /// The standard stale-resourceVersion conflict.
    pub fn stale(t: Target) -> Self {
        Self::conflict(
            t,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with causes, message as upstream: `Kind "name" is invalid: [a, b]`.
    pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<FieldCause>) -> Self {
        let kind = if info.group.is_empty() {
            info.kind.to_string()
        } else {
            format!("{}.{}", info.kind, info.group)
        };
        let lines: Vec<String> = causes.iter().map(FieldCause::to_message).collect();
        let detail = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        Failure {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} {name:?} is invalid: {detail}"),
            target: Some(Target {
                group_resource: info.group_resource(),
                group: info.group.to_string(),
                kind: info.kind.to_string(),
                name: name.to_string(),
            }),
            causes,
        }
        .into()
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::plain(403, "Forbidden", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::plain(405, "MethodNotAllowed", message)
    }

    /// 410 Expired (too old resourceVersion, expired continue token).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::plain(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::plain(413, "RequestEntityTooLarge", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::plain(415, "UnsupportedMediaType", message)
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::plain(503, "ServiceUnavailable", message)
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::plain(504, "Timeout", message)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::plain(500, "InternalError", message)
    }

    /// Convert a storage error about `target`. The single storage→API error mapping.
    pub fn from_storage(err: kubelite_storage::Error, target: Target) -> Self {
        use kubelite_storage::Error as E;
        match err {
            E::NotFound { .. } => Self::not_found(target),
            E::AlreadyExists { .. } => Self::already_exists(target),
            E::Conflict { .. } => Self::stale(target),
            E::Compacted {
                requested,
                compacted,
            } => Self::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { requested, current } => Self::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            E::TooLarge { .. } => Self::too_large("Request entity too large: limit is 3145728"),
            E::InvalidContinue(m) => Self::bad_request(format!("invalid continue token: {m}")),
            E::Unavailable(m) => Self::unavailable(format!("storage unavailable: {m}")),
            other => Self::internal(other.to_string()),
        }
    }

    /// [`ApiError::from_storage`] for a list continuing a previous one: a compacted revision
    /// means the continue token expired, which upstream explains at length.
    pub fn from_storage_continue(err: kubelite_storage::Error, target: Target) -> Self {
        match err {
            kubelite_storage::Error::Compacted { .. } => Self::gone(EXPIRED_CONTINUE),
            other => Self::from_storage(other, target),
        }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty() {
            if let Some(o) = status.as_object_mut() {
                o.remove("reason");
            }
        }
        if self.target.is_some() || !self.causes.is_empty() {
            let mut details = serde_json::Map::new();
            if let Some(t) = &self.target {
                details.insert("name".into(), json!(t.name));
                if !t.group.is_empty() {
                    details.insert("group".into(), json!(t.group));
                }
                details.insert("kind".into(), json!(t.kind));
            }
            if !self.causes.is_empty() {
                let causes: Vec<Value> = self
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status_body() {
        let t = Target {
            group_resource: "pods".into(),
            group: String::new(),
            kind: "pods".into(),
            name: "x".into(),
        };
        let s = ApiError::not_found(t).status();
        assert_eq!(s["message"], "pods \"x\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "pods");
        assert!(s["details"].get("group").is_none());
    }

    #[test]
    fn conflict_message() {
        let t = Target {
            group_resource: "deployments.apps".into(),
            group: "apps".into(),
            kind: "deployments".into(),
            name: "d".into(),
        };
        let e = ApiError::from_storage(
            kubelite_storage::Error::Conflict {
                key: "k".into(),
                expected: 1,
                current: None,
            },
            t,
        );
        assert_eq!(e.code, 409);
        assert!(e
            .message
            .starts_with("Operation cannot be fulfilled on deployments.apps \"d\""));
    }
}
