//! The `/scale` subresource of custom resources: reading and writing replicas at the CRD's
//! `specReplicasPath`/`statusReplicasPath` and building the `autoscaling/v1` `Scale` object.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceSubresourceScale;
use serde_json::{json, Map, Value};

/// Why a scale path could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScaleError {
    /// A value on the path has the wrong type.
    #[error("{path} accessor error: {found} is of the type {type_}, expected {expected}")]
    WrongType {
        /// The JSON path, e.g. `.spec.replicas`.
        path: String,
        /// The value found.
        found: String,
        /// Its JSON type.
        type_: &'static str,
        /// The expected type.
        expected: &'static str,
    },
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Result<Option<&'a Value>, ScaleError> {
    let mut cur = obj;
    for seg in segments(path) {
        match cur {
            Value::Object(m) => match m.get(seg) {
                Some(v) => cur = v,
                None => return Ok(None),
            },
            other => {
                return Err(ScaleError::WrongType {
                    path: path.to_string(),
                    found: other.to_string(),
                    type_: json_type(other),
                    expected: "map[string]interface{}",
                })
            }
        }
    }
    Ok(Some(cur))
}

/// The integer at a simple JSON path (`.spec.replicas`); absent counts as 0, as upstream.
pub fn get_replicas(obj: &Value, path: &str) -> Result<i64, ScaleError> {
    match lookup(obj, path)? {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
        Some(other) => Err(ScaleError::WrongType {
            path: path.to_string(),
            found: other.to_string(),
            type_: json_type(other),
            expected: "int64",
        }),
    }
}

/// The string at `labelSelectorPath`; absent counts as empty.
pub fn get_selector(obj: &Value, path: &str) -> Result<String, ScaleError> {
    match lookup(obj, path)? {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ScaleError::WrongType {
            path: path.to_string(),
            found: other.to_string(),
            type_: json_type(other),
            expected: "string",
        }),
    }
}

/// Writes `replicas` at a simple JSON path, creating missing objects on the way.
pub fn set_replicas(obj: &mut Value, path: &str, replicas: i64) -> Result<(), ScaleError> {
    let segs = segments(path);
    let mut cur = obj;
    for (i, seg) in segs.iter().enumerate() {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else {
            return Err(ScaleError::WrongType {
                path: path.to_string(),
                found: cur.to_string(),
                type_: json_type(cur),
                expected: "map[string]interface{}",
            });
        };
        if i + 1 == segs.len() {
            m.insert(seg.to_string(), Value::from(replicas));
            return Ok(());
        }
        cur = m
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// The `autoscaling/v1` `Scale` for a custom resource (upstream `scaleFromCustomResource`).
pub fn get_scale(obj: &Value, scale: &CustomResourceSubresourceScale) -> Result<Value, ScaleError> {
    let spec = get_replicas(obj, &scale.spec_replicas_path)?;
    let status = get_replicas(obj, &scale.status_replicas_path)?;
    let selector = match scale
        .label_selector_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        Some(p) => get_selector(obj, p)?,
        None => String::new(),
    };
    let mut meta = Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.pointer(&format!("/metadata/{k}")) {
            meta.insert(k.to_string(), v.clone());
        }
    }
    let mut status_obj = json!({"replicas": status});
    if !selector.is_empty() {
        status_obj["selector"] = Value::from(selector);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": spec},
        "status": status_obj,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale_spec(sel: Option<&str>) -> CustomResourceSubresourceScale {
        CustomResourceSubresourceScale {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: sel.map(String::from),
        }
    }

    #[test]
    fn get_scale_table() {
        let cases = [
            (
                json!({"metadata": {"name": "a", "namespace": "d", "uid": "u", "resourceVersion": "7"},
                       "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=a"}}),
                Some(".status.selector"),
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                       "metadata": {"name": "a", "namespace": "d", "uid": "u", "resourceVersion": "7"},
                       "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=a"}}),
            ),
            (
                json!({"metadata": {"name": "b"}}),
                None,
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "b"},
                       "spec": {"replicas": 0}, "status": {"replicas": 0}}),
            ),
        ];
        for (obj, sel, want) in cases {
            assert_eq!(get_scale(&obj, &scale_spec(sel)), Ok(want));
        }
        let bad = json!({"spec": {"replicas": "three"}});
        let err = get_scale(&bad, &scale_spec(None)).expect_err("wrong type");
        assert_eq!(
            err.to_string(),
            ".spec.replicas accessor error: \"three\" is of the type string, expected int64"
        );
    }

    #[test]
    fn set_replicas_creates_path() {
        let mut obj = json!({"metadata": {"name": "a"}});
        set_replicas(&mut obj, ".spec.scale.replicas", 5).expect("set");
        assert_eq!(get_replicas(&obj, ".spec.scale.replicas"), Ok(5));
        let mut bad = json!({"spec": 1});
        assert!(set_replicas(&mut bad, ".spec.replicas", 1).is_err());
    }
}
