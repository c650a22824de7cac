//! Component schemas of the OpenAPI documents: the generated ones for built-in kinds
//! (components.json, written by protobuf/gen_schema.py) and skeletons for everything else.

use kubelite_api::resource::ResourceInfo;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

pub(super) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(super) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// The component schemas generated from the Kubernetes API types (see
/// protobuf/gen_schema.py), parsed once; empty if the embedded file were unreadable.
pub(super) fn generated() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| serde_json::from_str(include_str!("components.json")).unwrap_or_default())
}

/// Every `$ref` target inside a value.
fn refs_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            out.push(name.to_string());
                        }
                    }
                    _ => refs_in(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs_in(v, out)),
        _ => {}
    }
}

/// The schemas a document needs: its kinds and everything the paths reference, closed over
/// `$ref`s. Generated (real) schemas win; skeletons cover kinds without one (custom resources).
pub(super) fn referenced_schemas(
    paths: &Map<String, Value>,
    kinds: Vec<String>,
    skeletons: &Map<String, Value>,
) -> Map<String, Value> {
    let mut pending = kinds;
    for item in paths.values() {
        refs_in(item, &mut pending);
    }
    pending.reverse();
    let mut found = Map::new();
    while let Some(name) = pending.pop() {
        if found.contains_key(&name) {
            continue;
        }
        if let Some(schema) = generated().get(&name).or_else(|| skeletons.get(&name)) {
            let mut more = Vec::new();
            refs_in(schema, &mut more);
            more.reverse();
            pending.extend(more);
            found.insert(name, schema.clone());
        }
    }
    let mut names: Vec<String> = found.keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|n| found.remove(&n).map(|s| (n, s)))
        .collect()
}

/// The OpenAPI component name of a kind, as upstream names them (`io.k8s.api.apps.v1.Deployment`;
/// reversed domain for other groups, e.g. `com.example.stable.v1.CronTab`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let package = match group {
        "" => "io.k8s.api.core".to_string(),
        g if !g.contains('.') => format!("io.k8s.api.{g}"),
        g if g.ends_with(".k8s.io") && g.matches('.').count() == 2 => {
            format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g))
        }
        g => g.split('.').rev().collect::<Vec<_>>().join("."),
    };
    format!("{package}.{version}.{kind}")
}

pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub(super) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// A skeleton schema for a kind: typed envelope, open spec/status.
pub(super) fn kind_schema(group: &str, version: &str, kind: &str) -> Value {
    json!({
        "description": format!("{kind} ({}).", if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }),
        "type": "object",
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": {"description": "Standard object's metadata.", "allOf": [schema_ref(OBJECT_META)], "default": {}},
            "spec": {"description": "Specification of the desired behavior.", "type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"description": "Most recently observed status.", "type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
        "x-kubernetes-group-version-kind": [gvk(group, version, kind)],
    })
}

/// Skeleton kind schema (used when no generated one exists) and the list schema of a resource.
pub(super) fn add_kind_schemas(r: &ResourceInfo, schemas: &mut Map<String, Value>) {
    let schema = kind_schema(r.group, r.version, r.kind);
    schemas.insert(schema_name(r.group, r.version, r.kind), schema);
    schemas.insert(
        schema_name(r.group, r.version, &r.list_kind()),
        json!({
            "description": format!("{} is a list of {}.", r.list_kind(), r.kind),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "items": {"type": "array", "items": {"allOf": [schema_ref(&schema_name(r.group, r.version, r.kind))], "default": {}}},
                "kind": {"type": "string"},
                "metadata": {"allOf": [schema_ref(LIST_META)], "default": {}},
            },
            "x-kubernetes-group-version-kind": [gvk(r.group, r.version, &r.list_kind())],
        }),
    );
}

pub(super) fn meta_schemas(schemas: &mut Map<String, Value>) {
    let string_map =
        json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}});
    schemas.insert(OBJECT_META.into(), json!({
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "type": "object",
        "properties": {
            "annotations": string_map,
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}},
            "generateName": {"type": "string"},
            "generation": {"type": "integer", "format": "int64"},
            "labels": string_map,
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            "resourceVersion": {"type": "string"},
            "selfLink": {"type": "string"},
            "uid": {"type": "string"},
        },
    }));
    schemas.insert(
        LIST_META.into(),
        json!({
            "description": "ListMeta describes metadata that synthetic resources must have.",
            "type": "object",
            "properties": {
                "continue": {"type": "string"},
                "remainingItemCount": {"type": "integer", "format": "int64"},
                "resourceVersion": {"type": "string"},
                "selfLink": {"type": "string"},
            },
        }),
    );
    schemas.insert(
        STATUS.into(),
        json!({
            "description": "Status is a return value for calls that don't return other objects.",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "code": {"type": "integer", "format": "int32"},
                "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "kind": {"type": "string"},
                "message": {"type": "string"},
                "metadata": {"allOf": [schema_ref(LIST_META)], "default": {}},
                "reason": {"type": "string"},
                "status": {"type": "string"},
            },
            "x-kubernetes-group-version-kind": [gvk("", "v1", "Status")],
        }),
    );
    schemas.insert(DELETE_OPTIONS.into(), json!({
        "description": "DeleteOptions may be provided when deleting an API object.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "dryRun": {"type": "array", "items": {"type": "string", "default": ""}},
            "gracePeriodSeconds": {"type": "integer", "format": "int64"},
            "kind": {"type": "string"},
            "orphanDependents": {"type": "boolean"},
            "preconditions": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "uid": {"type": "string"}}},
            "propagationPolicy": {"type": "string"},
        },
        "x-kubernetes-group-version-kind": [gvk("", "v1", "DeleteOptions")],
    }));
    schemas.insert(PATCH.into(), json!({
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        "type": "object",
    }));
}
