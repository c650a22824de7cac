//! Unknown-field detection for `fieldValidation=Strict|Warn` on built-in kinds, driven by the
//! generated component schemas: the same field set `kubectl explain` shows.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

use super::schemas::generated;

/// Schema name by `(group, version, kind)`, from each schema's `x-kubernetes-group-version-kind`.
fn by_gvk() -> &'static HashMap<(String, String, String), String> {
    static INDEX: OnceLock<HashMap<(String, String, String), String>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = HashMap::new();
        for (name, schema) in generated() {
            for gvk in schema["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let part = |k: &str| gvk[k].as_str().unwrap_or_default().to_string();
                index.insert((part("group"), part("version"), part("kind")), name.clone());
            }
        }
        index
    })
}

/// Follow `$ref` and single-element `allOf` wrappers to the schema they name.
fn resolve(schema: &Value) -> Option<&'static Value> {
    let target = schema
        .get("$ref")
        .or_else(|| {
            schema
                .get("allOf")
                .and_then(|a| a.get(0))
                .and_then(|s| s.get("$ref"))
        })?
        .as_str()?
        .strip_prefix("#/components/schemas/")?;
    generated().get(target)
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let schema = match resolve(schema) {
        Some(s) => s,
        None => schema,
    };
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => walk_object(schema, map, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, v) in map {
            match props.get(key) {
                Some(prop) => walk(prop, v, &join(key), out),
                None => out.push(join(key)),
            }
        }
    } else if let Some(values) = schema.get("additionalProperties") {
        for (key, v) in map {
            walk(values, v, &join(key), out);
        }
    }
    // An object schema with neither (FieldsV1, RawExtension) accepts anything.
}

/// Paths of the fields in `obj` that the built-in kind's schema does not define, in upstream's
/// strict-decoding notation (`spec.template.spec.containers[0].imagePullPolicyy`). None when no
/// schema is known for the kind (custom resources: validate against the CRD schema instead).
pub fn unknown_fields(api_version: &str, kind: &str, obj: &Value) -> Option<Vec<String>> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let name = by_gvk().get(&(group.to_string(), version.to_string(), kind.to_string()))?;
    let schema = generated().get(name)?;
    let mut out = Vec::new();
    if let Value::Object(map) = obj {
        walk_object(schema, map, "", &mut out);
    }
    Some(out)
}

/// The message upstream answers a strict request with (HTTP 400, reason BadRequest), e.g.
/// `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo"`.
pub fn strict_decoding_message(kind: &str, version: &str, unknown: &[String]) -> String {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}, "bogus": 1, "creationTimestamp": null},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "a", "image": "nginx", "resources": {"limits": {"cpu": "1"}}},
                        {"name": "b", "image": "nginx", "imagee": "x", "ports": [{"containerPort": 80, "hostt": 1}]},
                    ],
                    "volumes": [{"name": "v", "configMap": {"name": "c", "extra": true}}]},
                },
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
                "foo": {},
            },
            "status": {},
        });
        let mut got = unknown_fields("apps/v1", "Deployment", &deploy).expect("known kind");
        got.sort();
        assert_eq!(
            got,
            vec![
                "metadata.bogus",
                "spec.foo",
                "spec.template.spec.containers[1].imagee",
                "spec.template.spec.containers[1].ports[0].hostt",
                "spec.template.spec.volumes[0].configMap.extra",
            ]
        );
        assert_eq!(
            strict_decoding_message("Deployment", "v1", &got[..2]),
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"metadata.bogus\", unknown field \"spec.foo\""
        );
    }

    #[test]
    fn valid_objects_and_unknown_kinds() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}});
        assert_eq!(unknown_fields("v1", "ConfigMap", &cm), Some(vec![]));
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "x"}}});
        assert_eq!(unknown_fields("v1", "Service", &svc), Some(vec![]));
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "note": "n", "nope": 1});
        assert_eq!(
            unknown_fields("events.k8s.io/v1", "Event", &ev),
            Some(vec!["nope".to_string()])
        );
        assert_eq!(unknown_fields("example.com/v1", "Widget", &json!({})), None);
    }
}
