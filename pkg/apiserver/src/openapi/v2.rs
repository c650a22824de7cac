//! The `/openapi/v2` swagger 2.0 document, derived from the same operations and component
//! schemas as the v3 documents: one document with every served kind's operations (`paths`)
//! and schemas (`definitions`).
//!
//! kubectl reads it for client-side validation (`kind: List` manifests always, other kinds
//! when v3 does not answer) and for `kubectl explain --output=plaintext-openapiv2`. Its parser
//! (kube-openapi `pkg/util/proto`) is stricter than the format: a `$ref` may not carry a type
//! or properties, arrays need exactly one item schema, and one unknown reference fails the
//! whole document, so the conversion below guarantees all three.

use std::collections::HashSet;

use kubelite_api::resource::ResourceInfo;
use serde_json::{json, Map, Value};

use super::{paths_and_schemas, VERSION};

const V3_REF_PREFIX: &str = "#/components/schemas/";

/// The swagger 2.0 document of `resources`. `overrides` are the published v3 schemas of kinds
/// without generated ones (custom resources), keyed by schema name, as for v3.
pub(super) fn document(resources: &[ResourceInfo], overrides: &Map<String, Value>) -> Value {
    let (paths, schemas) = paths_and_schemas(
        resources,
        overrides,
        kubelite_apiextensions::openapi::openapi_v2_schema,
    );
    let names: HashSet<&str> = schemas.keys().map(String::as_str).collect();
    let definitions: Map<String, Value> = schemas
        .iter()
        .map(|(name, s)| (name.clone(), schema(s, &names)))
        .collect();
    let paths: Map<String, Value> = paths
        .iter()
        .map(|(path, item)| (path.clone(), path_item(item, &names)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

/// The `#/definitions/` name a v3 reference points at, if the document defines it.
fn target<'a>(reference: &'a str, names: &HashSet<&str>) -> Option<&'a str> {
    let name = reference.strip_prefix(V3_REF_PREFIX).unwrap_or(reference);
    names.contains(name).then_some(name)
}

/// One schema in swagger 2.0 form. OpenAPI 3 wraps a reference in a one-element `allOf` to
/// put a description beside it; swagger 2.0 (and kubectl) want the `$ref` itself, whose
/// siblings other than description/default are ignored or rejected, so they are dropped. A
/// reference to an undefined schema is dropped too (the node accepts any value), because
/// kubectl rejects the whole document over one. Keywords swagger 2.0 lacks (`oneOf`, `anyOf`,
/// `not`, `nullable`) go.
pub(super) fn schema(s: &Value, names: &HashSet<&str>) -> Value {
    let Value::Object(obj) = s else {
        return s.clone();
    };
    let wrapped = match obj.get("allOf") {
        Some(Value::Array(all)) if all.len() == 1 => all[0].get("$ref").and_then(Value::as_str),
        _ => None,
    };
    let reference = obj.get("$ref").and_then(Value::as_str).or(wrapped);
    let mut out = Map::new();
    if let Some(name) = reference.and_then(|r| target(r, names)) {
        out.insert(
            "$ref".into(),
            Value::String(format!("#/definitions/{name}")),
        );
    }
    let is_ref = out.contains_key("$ref");
    for (key, value) in obj {
        match key.as_str() {
            "$ref" | "allOf" | "oneOf" | "anyOf" | "not" | "nullable" | "writeOnly"
            | "deprecated" => {}
            "type" | "properties" | "items" | "additionalProperties" | "required" if is_ref => {}
            "properties" => {
                let props = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), schema(v, names)))
                    .collect();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" => {
                out.insert(key.clone(), schema(value, names));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// A path item: its operations and its shared parameters.
fn path_item(item: &Value, names: &HashSet<&str>) -> Value {
    let mut out = Map::new();
    for (key, value) in item.as_object().into_iter().flatten() {
        let converted = if key == "parameters" {
            Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(parameter)
                    .collect(),
            )
        } else {
            operation(value, names)
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

/// A v3 parameter in swagger 2.0 form: its type lives on the parameter itself.
fn parameter(p: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in p.as_object().into_iter().flatten() {
        if key == "schema" {
            for (k, v) in value.as_object().into_iter().flatten() {
                out.insert(k.clone(), v.clone());
            }
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

/// The schema of the first media type of a v3 `content` object, and every media type.
fn content(c: Option<&Value>) -> (Option<&Value>, Vec<Value>) {
    let Some(media) = c.and_then(Value::as_object) else {
        return (None, Vec::new());
    };
    let first = media.values().next().and_then(|m| m.get("schema"));
    (
        first,
        media.keys().map(|k| Value::String(k.clone())).collect(),
    )
}

/// A v3 operation in swagger 2.0 form: the request body becomes a `body` parameter and its
/// media types `consumes`; response media types become `produces`.
fn operation(op: &Value, names: &HashSet<&str>) -> Value {
    let mut out = Map::new();
    let mut params: Vec<Value> = Vec::new();
    let mut produces: Vec<Value> = Vec::new();
    let mut responses = Map::new();
    for (key, value) in op.as_object().into_iter().flatten() {
        match key.as_str() {
            "parameters" => params.extend(value.as_array().into_iter().flatten().map(parameter)),
            "requestBody" => {
                let (body, consumes) = content(value.get("content"));
                out.insert("consumes".into(), Value::Array(consumes));
                let mut p = json!({"name": "body", "in": "body", "required": value.get("required").cloned().unwrap_or(Value::Bool(false))});
                if let Some(body) = body {
                    p["schema"] = schema(body, names);
                }
                params.insert(0, p);
            }
            "responses" => {
                for (code, resp) in value.as_object().into_iter().flatten() {
                    let (body, media) = content(resp.get("content"));
                    if produces.is_empty() {
                        produces = media;
                    }
                    let mut r = Map::new();
                    if let Some(d) = resp.get("description") {
                        r.insert("description".into(), d.clone());
                    }
                    if let Some(body) = body {
                        r.insert("schema".into(), schema(body, names));
                    }
                    responses.insert(code.clone(), Value::Object(r));
                }
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if !produces.is_empty() {
        out.insert("produces".into(), Value::Array(produces));
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert("responses".into(), Value::Object(responses));
    Value::Object(out)
}
