//! Request bodies: size limit, JSON/YAML/protobuf decoding, unknown-field detection (strict /
//! warn field validation) by round-tripping through the typed `k8s-openapi` struct, and Accept
//! negotiation of the response form.

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use kubelite_api::resource::ResourceInfo;
use kubelite_api::strategy::Strategy;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, Result};

/// Largest accepted request body (upstream's 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How much of an oversized body is read (and dropped) before answering 413, so ordinary
/// clients still see the Status instead of a reset connection.
const DRAIN_LIMIT: usize = 32 * 1024 * 1024;

/// Read the whole body, 413 past [`MAX_BODY_BYTES`].
pub async fn read(body: Body) -> Result<Bytes> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        total += chunk.len();
        if total > DRAIN_LIMIT {
            break;
        }
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large(
            "Request entity too large: limit is 3145728",
        ));
    }
    Ok(buf.freeze())
}

/// The media type of a Content-Type header without parameters, lower-cased.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decode an object body by Content-Type (JSON when absent).
pub fn decode(headers: &HeaderMap, bytes: &[u8]) -> Result<Value> {
    let mt = media_type(headers);
    let value = match mt.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?,
        crate::protobuf::PROTOBUF_CONTENT_TYPE => crate::protobuf::decode(bytes).map_err(|e| {
            if e.status_code() == 415 {
                ApiError::unsupported_media_type(e.to_string())
            } else {
                ApiError::bad_request(format!("error decoding protobuf body: {e}"))
            }
        })?,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
            )))
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    }
    Ok(value)
}

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    /// Parse the query value (absent means Warn); anything else is a 400.
    pub fn parse(v: Option<&str>) -> Result<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}. Supported values: Strict, Warn, Ignore"
            ))),
        }
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value> {
    // Deserialise from the borrowed value: no copy of the whole body.
    let typed: T = T::deserialize(v)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(format!("re-encoding object: {e}")))
}

/// Round-trip `v` through the typed struct of `(group, kind)` when kubelite knows one.
fn typed_roundtrip(group: &str, kind: &str, v: &Value) -> Option<Result<Value>> {
    use k8s_openapi::api::{
        apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core,
    };
    use k8s_openapi::api::{discovery::v1 as disc, events::v1 as events};
    Some(match (group, kind) {
        ("", "Namespace") => roundtrip::<core::Namespace>(v),
        ("", "Pod") => roundtrip::<core::Pod>(v),
        ("", "Node") => roundtrip::<core::Node>(v),
        ("", "Service") => roundtrip::<core::Service>(v),
        ("", "Endpoints") => roundtrip::<core::Endpoints>(v),
        ("", "ConfigMap") => roundtrip::<core::ConfigMap>(v),
        ("", "Secret") => roundtrip::<core::Secret>(v),
        ("", "ServiceAccount") => roundtrip::<core::ServiceAccount>(v),
        ("", "Event") => roundtrip::<core::Event>(v),
        ("", "ReplicationController") => roundtrip::<core::ReplicationController>(v),
        ("", "Binding") => roundtrip::<core::Binding>(v),
        ("apps", "Deployment") => roundtrip::<apps::Deployment>(v),
        ("apps", "ReplicaSet") => roundtrip::<apps::ReplicaSet>(v),
        ("apps", "DaemonSet") => roundtrip::<apps::DaemonSet>(v),
        ("apps", "StatefulSet") => roundtrip::<apps::StatefulSet>(v),
        ("batch", "Job") => roundtrip::<batch::Job>(v),
        ("discovery.k8s.io", "EndpointSlice") => roundtrip::<disc::EndpointSlice>(v),
        ("coordination.k8s.io", "Lease") => roundtrip::<coord::Lease>(v),
        ("events.k8s.io", "Event") => roundtrip::<events::Event>(v),
        ("autoscaling", "Scale") => roundtrip::<k8s_openapi::api::autoscaling::v1::Scale>(v),
        _ => return None,
    })
}

/// One step of the path to a field, rendered only when a field turns out unknown.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `spec.containers[0].bar` from its steps.
fn render_path(steps: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Collect the paths of fields present (non-null) in `orig` but absent from `typed`. Paths
/// are rendered only for the fields reported: every create walks its whole body here.
fn unknown_fields<'a>(
    orig: &'a Value,
    typed: &Value,
    steps: &mut Vec<Step<'a>>,
    out: &mut Vec<String>,
) {
    match (orig, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                steps.push(Step::Key(k));
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, steps, out),
                    None if v.is_null() => {}
                    None => out.push(render_path(steps)),
                }
                steps.pop();
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter().zip(t.iter()).enumerate() {
                steps.push(Step::Index(i));
                unknown_fields(ov, tv, steps, out);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// Drop fields the kind's schema does not know, as decoding into the typed struct does upstream,
/// and report them (`spec.foo`). Custom resources are pruned by their schema (the strategy's
/// [`Strategy::prune`]); other kinds without a typed struct pass unchanged.
pub fn prune_unknown(strategy: &dyn Strategy, obj: &mut Value) -> Result<Vec<String>> {
    if let Some(unknown) = strategy.prune(obj) {
        return Ok(unknown);
    }
    let info = strategy.info();
    prune_kind(info.group, info.kind, obj)
}

/// [`prune_unknown`] for an explicit group and kind (subresource bodies).
pub fn prune_kind(group: &str, kind: &str, obj: &mut Value) -> Result<Vec<String>> {
    let Some(typed) = typed_roundtrip(group, kind, obj) else {
        return Ok(Vec::new());
    };
    let typed = typed?;
    let mut unknown = Vec::new();
    unknown_fields(obj, &typed, &mut Vec::new(), &mut unknown);
    *obj = typed;
    Ok(unknown)
}

/// Unknown and duplicated fields of a request, as paths (`spec.foo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldProblems {
    pub unknown: Vec<String>,
    pub duplicate: Vec<String>,
}

impl FieldProblems {
    fn messages(&self) -> Vec<String> {
        let dup = self
            .duplicate
            .iter()
            .map(|f| format!("duplicate field {f:?}"));
        let unknown = self.unknown.iter().map(|f| format!("unknown field {f:?}"));
        dup.chain(unknown).collect()
    }
}

/// [`check_unknown`] for a decoded request body (create, update): upstream prefixes the
/// strict error with `<Kind> in version "<v>" cannot be handled as a <Kind>: `.
pub fn check_unknown_in_body(
    info: &ResourceInfo,
    mode: FieldValidation,
    problems: FieldProblems,
) -> Result<Vec<String>> {
    check_unknown(mode, problems).map_err(|mut e| {
        e.message = format!(
            "{} in version {:?} cannot be handled as a {}: {}",
            info.kind, info.version, info.kind, e.message
        );
        e
    })
}

/// Apply the fieldValidation mode to field problems: Strict → 400, Warn → warnings.
pub fn check_unknown(mode: FieldValidation, problems: FieldProblems) -> Result<Vec<String>> {
    let msgs = problems.messages();
    if msgs.is_empty() || mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    if mode == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    Ok(msgs)
}

/// Decode an object body and report duplicated keys (JSON bodies only; YAML decoding rejects
/// duplicates itself).
pub fn decode_checked(headers: &HeaderMap, bytes: &[u8]) -> Result<(Value, Vec<String>)> {
    match media_type(headers).as_str() {
        "" | "application/json" | "*/*" => {
            let (value, dups) = crate::dupfields::decode_with_duplicates(bytes)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?;
            if !value.is_object() {
                return Err(ApiError::bad_request(
                    "the request body is not a JSON object",
                ));
            }
            Ok((value, dups))
        }
        _ => Ok((decode(headers, bytes)?, Vec::new())),
    }
}

/// How the client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    /// A `meta.k8s.io` Table of the given version (`v1` or `v1beta1`).
    Table(&'static str),
}

/// Pick the response form from the Accept header: the first Table entry wins over JSON when it
/// comes first; anything else (protobuf, `*/*`) is answered as JSON.
pub fn negotiate(headers: &HeaderMap) -> Output {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for entry in accept.split(',') {
        let entry = entry.replace(' ', "");
        if entry.contains("as=Table") && entry.contains("g=meta.k8s.io") {
            return Output::Table(if entry.contains("v=v1beta1") {
                "v1beta1"
            } else {
                "v1"
            });
        }
        if entry.starts_with("application/json") && !entry.contains("as=") {
            return Output::Json;
        }
    }
    Output::Json
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_unknown_fields() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"foo": 1, "containers": [{"name": "c", "image": "i", "bar": true}]}});
        let unknown = prune_kind("", "Pod", &mut pod).expect("roundtrip");
        assert_eq!(
            unknown,
            vec!["spec.foo".to_string(), "spec.containers[0].bar".to_string()]
        );
        let mut nested = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "x": 1},
            "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d", "image": "i",
                "ports": [{"containerPort": 1, "y": 2}]}], "z": null}});
        assert_eq!(
            prune_kind("", "Pod", &mut nested).expect("roundtrip"),
            vec![
                "metadata.x".to_string(),
                "spec.containers[1].ports[0].y".to_string()
            ]
        );
        assert!(pod["spec"].get("foo").is_none());
    }

    #[test]
    fn table_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .expect("hv"),
        );
        assert_eq!(negotiate(&h), Output::Table("v1"));
        h.insert(
            axum::http::header::ACCEPT,
            "application/vnd.kubernetes.protobuf,application/json"
                .parse()
                .expect("hv"),
        );
        assert_eq!(negotiate(&h), Output::Json);
    }
}
