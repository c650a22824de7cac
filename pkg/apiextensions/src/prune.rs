//! Structural pruning (dropping fields the schema does not know) and structural defaulting
//! (filling `default`s where fields are absent), as apiextensions-apiserver applies them to
//! custom resources on create/update (prune, then default) and on read (default).

use crate::schema::{Additional, Schema};
use serde_json::{Map, Value};

impl Schema {
    /// Drops every field the schema does not specify, except under
    /// `x-kubernetes-preserve-unknown-fields`. `apiVersion`, `kind` and `metadata` survive at the
    /// root and in `x-kubernetes-embedded-resource` objects. Returns the pruned paths (upstream
    /// reports them as `unknown field` warnings), e.g. `spec.foo`.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        prune_node(self, obj, "", true, &mut pruned);
        pruned
    }

    /// Applies `default`s: for each object whose schema has a property with a default, the
    /// default is filled in when the field is absent, or is `null` and the property is not
    /// nullable; recursively, including into freshly defaulted values and array items. Then
    /// drops remaining `null`s of non-nullable fields that have no default, as upstream does.
    pub fn apply_defaults(&self, obj: &mut Value) {
        default_node(self, obj);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_node(s: &Schema, v: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => prune_object(s, map, path, root || s.embedded_resource, pruned),
        Value::Array(items) => {
            if let Some(is) = &s.items {
                for (i, it) in items.iter_mut().enumerate() {
                    prune_node(is, it, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

fn prune_object(
    s: &Schema,
    map: &mut Map<String, Value>,
    path: &str,
    keep_type_meta: bool,
    pruned: &mut Vec<String>,
) {
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let p = join(path, &k);
        if keep_type_meta && (k == "apiVersion" || k == "kind") {
            continue;
        }
        if keep_type_meta && k == "metadata" {
            // ObjectMeta is owned by the generic store; never prune inside it.
            continue;
        }
        if let Some(ps) = s.properties.get(&k) {
            if let Some(child) = map.get_mut(&k) {
                prune_node(ps, child, &p, false, pruned);
            }
            continue;
        }
        match &s.additional {
            Additional::Schema(a) => {
                if let Some(child) = map.get_mut(&k) {
                    prune_node(a, child, &p, false, pruned);
                }
            }
            Additional::Bool(true) => {}
            _ if s.preserve_unknown_fields => {}
            _ => {
                map.remove(&k);
                pruned.push(p);
            }
        }
    }
}

fn non_nullable_null(v: &Value, s: &Schema) -> bool {
    v.is_null() && !s.nullable
}

fn default_node(s: &Schema, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, ps) in &s.properties {
                let Some(d) = &ps.default else { continue };
                let missing = match map.get(k) {
                    None => true,
                    Some(cur) => non_nullable_null(cur, ps),
                };
                if missing {
                    map.insert(k.clone(), d.clone());
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child_schema = match s.properties.get(&k) {
                    Some(ps) => Some(ps),
                    None => match &s.additional {
                        Additional::Schema(a) => Some(a.as_ref()),
                        _ => None,
                    },
                };
                let Some(cs) = child_schema else { continue };
                if map.get(&k).is_some_and(|cur| non_nullable_null(cur, cs)) {
                    // A non-nullable null without default is dropped rather than stored.
                    map.remove(&k);
                    continue;
                }
                if let Some(child) = map.get_mut(&k) {
                    default_node(cs, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = &s.items {
                for it in items.iter_mut() {
                    if non_nullable_null(it, is) {
                        if let Some(d) = &is.default {
                            *it = d.clone();
                        }
                    }
                    default_node(is, it);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::compile(&serde_json::from_value(v).expect("props")).expect("compile")
    }

    fn test_schema() -> Schema {
        schema(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "mode": {"type": "string", "default": "fast"},
                    "opt": {"type": "string", "nullable": true, "default": "x"},
                    "plain": {"type": "string"},
                    "nested": {"type": "object", "default": {}, "properties": {
                        "depth": {"type": "integer", "default": 5}
                    }},
                    "ports": {"type": "array", "items": {"type": "object", "properties": {
                        "port": {"type": "integer"},
                        "protocol": {"type": "string", "default": "TCP"}
                    }}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}
                }},
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        }))
    }

    #[test]
    fn prune_table() {
        let s = test_schema();
        let cases = [
            (
                json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "zzz": 1},
                       "spec": {"plain": "a", "junk": 1}, "extra": true}),
                json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "zzz": 1},
                       "spec": {"plain": "a"}}),
                vec!["spec.junk", "extra"],
            ),
            (
                json!({"spec": {"ports": [{"port": 1, "bad": 2}], "labels": {"a": "b"},
                                "free": {"anything": {"goes": 1}}}}),
                json!({"spec": {"ports": [{"port": 1}], "labels": {"a": "b"},
                                "free": {"anything": {"goes": 1}}}}),
                vec!["spec.ports[0].bad"],
            ),
            (
                json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1},
                                             "spec": {"a": "b", "c": "d"}, "other": 1}}}),
                json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1},
                                             "spec": {"a": "b"}}}}),
                vec!["spec.template.spec.c", "spec.template.other"],
            ),
        ];
        for (mut input, want, want_pruned) in cases {
            let got_pruned = s.prune(&mut input);
            assert_eq!(input, want);
            let mut got_pruned = got_pruned;
            let mut want_pruned: Vec<String> = want_pruned.into_iter().map(String::from).collect();
            got_pruned.sort();
            want_pruned.sort();
            assert_eq!(got_pruned, want_pruned);
        }
    }

    #[test]
    fn defaults_table() {
        let s = test_schema();
        let cases = [
            (
                json!({"spec": {}}),
                json!({"spec": {"replicas": 1, "mode": "fast", "opt": "x", "nested": {"depth": 5}}}),
            ),
            (
                json!({"spec": {"replicas": 3, "mode": null, "opt": null, "plain": null,
                                "nested": {"depth": 7}}}),
                json!({"spec": {"replicas": 3, "mode": "fast", "opt": null,
                                "nested": {"depth": 7}}}),
            ),
            (
                json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}}),
                json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                                "replicas": 1, "mode": "fast", "opt": "x", "nested": {"depth": 5}}}),
            ),
            // No spec at all: nothing to default into (spec has no default itself).
            (
                json!({"metadata": {"name": "a"}}),
                json!({"metadata": {"name": "a"}}),
            ),
        ];
        for (mut input, want) in cases {
            s.apply_defaults(&mut input);
            assert_eq!(input, want);
        }
    }
}
