//! Patch application for `PATCH` requests: JSON patch (RFC 6902), JSON merge patch (RFC 7386)
//! and strategic merge patch, each mapped to the status codes upstream's
//! `apiserver/pkg/endpoints/handlers/patch.go` uses. Server-side apply is not handled here.

mod go_format;
pub(crate) mod merge_keys;
mod order;
mod strategic;

use serde_json::{Map, Value};

pub use merge_keys::{field_patch_meta, supports_strategic_merge, FieldPatchMeta, PatchStrategy};

/// The top-level message upstream puts in a 422 built with `NewGenericServerResponse`; the
/// specific text goes into `details.causes[0].message` with reason `UnexpectedServerResponse`.
pub const UNPROCESSABLE_MESSAGE: &str =
    "the server rejected our request due to an error in our request";

/// Upstream's limit on the number of operations in one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The patch formats a `PATCH` request can carry, chosen by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902)
    Json,
    /// `application/merge-patch+json` (RFC 7386)
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchType {
    /// Parses a Content-Type header, ignoring parameters such as `; charset=utf-8`.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let media = media.to_ascii_lowercase();
        Some(match media.as_str() {
            "application/json-patch+json" => PatchType::Json,
            "application/merge-patch+json" => PatchType::Merge,
            "application/strategic-merge-patch+json" => PatchType::StrategicMerge,
            "application/apply-patch+yaml" => PatchType::Apply,
            _ => return None,
        })
    }

    /// The media type of this patch format.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// The 415 message for a patch media type the resource does not accept, listing what it
/// does (`strategic` = a built-in kind that accepts strategic merge patch).
pub fn unsupported_media_type_message(strategic: bool, apply: bool) -> String {
    let mut accepted = vec![
        PatchType::Json.content_type(),
        PatchType::Merge.content_type(),
    ];
    if strategic {
        accepted.push(PatchType::StrategicMerge.content_type());
    }
    if apply {
        accepted.push(PatchType::Apply.content_type());
    }
    format!(
        "the body of the request was in an unknown format - accepted media types include: {}",
        accepted.join(", ")
    )
}

/// Why a patch could not be applied. Each variant maps to the HTTP status upstream returns;
/// the string is the Status `message` (see [`PatchError::Unprocessable`] for the exception).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// 400 BadRequest: the body is not valid JSON or not a patch of this type, or a directive
    /// is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 422 with reason `Invalid`: a JSON patch that does not apply (a failed `test`, a path
    /// that does not exist) or a strategic patch with a list of lists. Upstream builds it with
    /// `NewGenericServerResponse(422, ...)`: Status `message` is [`UNPROCESSABLE_MESSAGE`] and
    /// this string goes into `details.causes[{reason:"UnexpectedServerResponse",message}]`.
    #[error("{0}")]
    Unprocessable(String),
    /// 413 RequestEntityTooLarge: more than [`MAX_JSON_PATCH_OPERATIONS`] operations.
    #[error("{0}")]
    TooLarge(String),
    /// 415 UnsupportedMediaType: strategic merge patch on a custom resource, or server-side
    /// apply (not implemented here).
    #[error("{0}")]
    Unsupported(String),
    /// 500 with an empty reason: upstream returns these strategic-merge errors (missing merge
    /// key, bad `$patch` value, `$setElementOrder` mismatch) as plain errors, which kubectl
    /// prints as `Error from server: <message>`.
    #[error("{0}")]
    Internal(String),
}

impl PatchError {
    /// The HTTP status code for this error.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Unprocessable(_) => 422,
            PatchError::TooLarge(_) => 413,
            PatchError::Unsupported(_) => 415,
            PatchError::Internal(_) => 500,
        }
    }

    /// The Status `reason` for this error (`""` where upstream sends none).
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::Unprocessable(_) => "Invalid",
            PatchError::TooLarge(_) => "RequestEntityTooLarge",
            PatchError::Unsupported(_) => "UnsupportedMediaType",
            PatchError::Internal(_) => "",
        }
    }
}

/// Applies `patch` (the raw request body) to `original`, an object of kind
/// `gvk = (group, version, kind)`, and returns the patched object. The caller validates and
/// stores the result; a result equal to `original` means a no-op patch.
pub fn apply_patch(
    gvk: (&str, &str, &str),
    original: &Value,
    patch_type: PatchType,
    patch: &[u8],
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => apply_json_patch(original, patch),
        PatchType::Merge => {
            let patch = parse_json(patch)?;
            if !patch.is_object() {
                return Err(PatchError::BadRequest("Invalid JSON Patch".to_string()));
            }
            let mut doc = original.clone();
            merge_patch(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::StrategicMerge => {
            let (group, version, kind) = gvk;
            let Some(root) = merge_keys::root(group, version, kind) else {
                return Err(PatchError::Unsupported(unsupported_media_type_message(
                    false, true,
                )));
            };
            strategic::apply(root, original, parse_json(patch)?)
        }
        PatchType::Apply => Err(PatchError::Unsupported(unsupported_media_type_message(
            merge_keys::root(gvk.0, gvk.1, gvk.2).is_some(),
            false,
        ))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body)
        .map_err(|e| PatchError::BadRequest(format!("error decoding patch: {e}")))
}

fn apply_json_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| PatchError::BadRequest(format!("error decoding patch: {e}")))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.0.len()
        )));
    }
    let mut doc = original.clone();
    // One operation at a time, so a `test` can be judged against the document as it stands.
    for op in &ops.0 {
        if passes_as_missing_null(&doc, op) {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op))
            .map_err(|e| json_patch_error(op, e))?;
    }
    Ok(doc)
}

/// evanphx/json-patch (upstream's) lets `test` with a null value pass when the key is missing
/// under an existing parent. kube-runtime's finalizer helper relies on it: it tests
/// `/metadata/finalizers` for null before adding the first finalizer.
fn passes_as_missing_null(doc: &Value, op: &json_patch::PatchOperation) -> bool {
    let json_patch::PatchOperation::Test(t) = op else {
        return false;
    };
    let path = t.path.as_str();
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
    t.value.is_null() && doc.pointer(path).is_none() && doc.pointer(parent).is_some()
}

/// A failed operation, worded like evanphx/json-patch (which upstream uses).
fn json_patch_error(op: &json_patch::PatchOperation, e: json_patch::PatchError) -> PatchError {
    let name = match op {
        json_patch::PatchOperation::Add(_) => "add",
        json_patch::PatchOperation::Remove(_) => "remove",
        json_patch::PatchOperation::Replace(_) => "replace",
        json_patch::PatchOperation::Move(_) => "move",
        json_patch::PatchOperation::Copy(_) => "copy",
        json_patch::PatchOperation::Test(_) => "test",
    };
    let message = match e.kind {
        json_patch::PatchErrorKind::TestFailed => {
            format!("testing value {} failed: test failed", e.path)
        }
        json_patch::PatchErrorKind::InvalidFromPointer => {
            format!(
                "{name} operation does not apply: doc is missing from path: {}",
                e.path
            )
        }
        json_patch::PatchErrorKind::CannotMoveInsideItself => {
            format!(
                "{name} operation does not apply: cannot move {} inside itself",
                e.path
            )
        }
        _ => format!(
            "{name} operation does not apply: doc is missing path: {}: missing value",
            e.path
        ),
    };
    PatchError::Unprocessable(message)
}

/// RFC 7386 merge. Unlike `json_patch::merge` it keeps the remaining keys' order when a key is
/// removed, so stored objects do not get shuffled by `kubectl label x-`.
fn merge_patch(doc: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(map) = doc else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            map.shift_remove(k);
        } else {
            merge_patch(map.entry(k.as_str()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: (&str, &str, &str) = ("", "v1", "Pod");

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}
        })
    }

    #[test]
    fn content_types() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            (
                "application/strategic-merge-patch+json",
                Some(PatchType::StrategicMerge),
            ),
            ("application/apply-patch+yaml", Some(PatchType::Apply)),
            ("application/json", None),
            ("", None),
        ];
        for (ct, want) in cases {
            assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
            if let Some(t) = want {
                assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
            }
        }
    }

    #[test]
    fn json_patch_operations() {
        let cases: Vec<(Value, Result<Value, u16>)> = vec![
            (
                json!([{"op": "add", "path": "/metadata/labels/env", "value": "prod"}]),
                Ok(json!({"app": "web", "tier": "front", "env": "prod"})),
            ),
            (
                json!([{"op": "remove", "path": "/metadata/labels/tier"}]),
                Ok(json!({"app": "web"})),
            ),
            (
                json!([{"op": "replace", "path": "/metadata/labels/app", "value": "db"}]),
                Ok(json!({"app": "db", "tier": "front"})),
            ),
            (
                json!([
                    {"op": "test", "path": "/metadata/labels/app", "value": "web"},
                    {"op": "replace", "path": "/metadata/labels/app", "value": "db"}
                ]),
                Ok(json!({"app": "db", "tier": "front"})),
            ),
            (
                json!([{"op": "test", "path": "/metadata/labels/app", "value": "x"}]),
                Err(422),
            ),
            // kube-runtime's finalizer helper: a null test passes on a missing key.
            (
                json!([
                    {"op": "test", "path": "/metadata/labels/none", "value": null},
                    {"op": "add", "path": "/metadata/labels/none", "value": "added"}
                ]),
                Ok(json!({"app": "web", "tier": "front", "none": "added"})),
            ),
            (
                json!([{"op": "test", "path": "/metadata/labels/app", "value": null}]),
                Err(422),
            ),
            (
                json!([{"op": "test", "path": "/metadata/nope/x", "value": null}]),
                Err(422),
            ),
            (
                json!([{"op": "remove", "path": "/metadata/labels/missing"}]),
                Err(422),
            ),
            (
                json!([{"op": "replace", "path": "/spec/nope/x", "value": 1}]),
                Err(422),
            ),
            (json!({"op": "add"}), Err(400)),
            (json!([{"op": "frobnicate", "path": "/a"}]), Err(400)),
        ];
        for (patch, want) in cases {
            let body = serde_json::to_vec(&patch).expect("encode");
            let got = apply_patch(POD, &pod(), PatchType::Json, &body);
            match (got, want) {
                (Ok(obj), Ok(labels)) => assert_eq!(obj["metadata"]["labels"], labels, "{patch}"),
                (Err(e), Err(code)) => assert_eq!(e.code(), code, "{patch}: {e}"),
                (got, want) => panic!("{patch}: got {got:?}, want {want:?}"),
            }
        }
        let err = apply_patch(
            POD,
            &pod(),
            PatchType::Json,
            br#"[{"op":"test","path":"/metadata/name","value":"x"}]"#,
        )
        .expect_err("test fails");
        assert_eq!(
            err,
            PatchError::Unprocessable("testing value /metadata/name failed: test failed".into())
        );
        assert_eq!(err.reason(), "Invalid");
        assert_eq!(
            apply_patch(POD, &pod(), PatchType::Json, b"not json").map_err(|e| e.code()),
            Err(400)
        );
    }

    #[test]
    fn merge_patch_semantics() {
        let cases: Vec<(&str, Value)> = vec![
            ("{}", pod()),
            (r#"{"metadata":{"labels":{"tier":null}}}"#, {
                let mut p = pod();
                p["metadata"]["labels"] = json!({"app": "web"});
                p
            }),
            (r#"{"metadata":{"labels":{"env":"prod","app":"db"}}}"#, {
                let mut p = pod();
                p["metadata"]["labels"] = json!({"app": "db", "tier": "front", "env": "prod"});
                p
            }),
            // Lists are replaced wholesale by a merge patch.
            (r#"{"spec":{"containers":[{"name":"sidecar"}]}}"#, {
                let mut p = pod();
                p["spec"]["containers"] = json!([{"name": "sidecar"}]);
                p
            }),
            (r#"{"metadata":{"annotations":{"a":"1","gone":null}}}"#, {
                let mut p = pod();
                p["metadata"]["annotations"] = json!({"a": "1"});
                p
            }),
        ];
        for (patch, want) in cases {
            let got = apply_patch(POD, &pod(), PatchType::Merge, patch.as_bytes()).expect(patch);
            assert_eq!(got, want, "{patch}");
        }
        // Removing a key keeps the order of the others.
        let got = apply_patch(
            POD,
            &pod(),
            PatchType::Merge,
            br#"{"metadata":{"labels":{"app":null}}}"#,
        )
        .expect("remove");
        let keys: Vec<&String> = got["metadata"]
            .as_object()
            .expect("metadata")
            .keys()
            .collect();
        assert_eq!(keys, ["name", "labels"]);
        let top: Vec<&String> = got.as_object().expect("obj").keys().collect();
        assert_eq!(top, ["apiVersion", "kind", "metadata", "spec"]);
        for bad in [&b"[1]"[..], b"{", b"3"] {
            let err = apply_patch(POD, &pod(), PatchType::Merge, bad).expect_err("bad merge patch");
            assert_eq!(err.code(), 400);
        }
    }

    #[test]
    fn unsupported_types() {
        let cr = ("example.com", "v1", "Widget");
        let err =
            apply_patch(cr, &json!({}), PatchType::StrategicMerge, b"{}").expect_err("cr smp");
        assert_eq!(err.code(), 415);
        assert_eq!(
            err.to_string(),
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        );
        // Merge patch works for custom resources.
        let got = apply_patch(
            cr,
            &json!({"spec": {"a": 1}}),
            PatchType::Merge,
            br#"{"spec":{"b":2}}"#,
        )
        .expect("merge");
        assert_eq!(got, json!({"spec": {"a": 1, "b": 2}}));
        let err = apply_patch(POD, &pod(), PatchType::Apply, b"{}").expect_err("apply");
        assert_eq!(err.code(), 415);
        assert_eq!(err.reason(), "UnsupportedMediaType");
    }
}
