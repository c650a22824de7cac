//! Strategic merge patch (`application/strategic-merge-patch+json`) applied server-side, with
//! the semantics of `k8s.io/apimachinery/pkg/util/strategicpatch` (`StrategicMergeMapPatch`).
//!
//! Written by hand: no maintained Rust crate implements strategic merge patch. The merge
//! metadata comes from [`super::merge_keys`] instead of Go struct tags found by reflection.
//!
//! Semantics, as upstream: maps merge recursively and `null` deletes a key; lists tagged
//! `merge` merge by their merge key (lists of primitives as a set), other lists are replaced;
//! directives `$patch: replace|delete` (on a map or a list element), `$retainKeys`,
//! `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are interpreted and never
//! stored. `$patch: merge` is rejected, as upstream does.
//!
//! Deliberate differences from upstream (which relies on decoding into Go structs to drop
//! leftovers): a value added where the original had nothing is itself run through the merge
//! against an empty value, so directives and `null`s inside it are resolved instead of being
//! stored; a `$deleteFromPrimitiveList` for an absent list is a no-op (upstream stores the
//! deletion list as the value).

use serde_json::{Map, Value};

use super::go_format::{bad_arg_type, go_fmt, json_kind, no_merge_key};
use super::merge_keys::{field, FieldPatchMeta, PatchStrategy, Ty};
use super::order::{normalize_order, partition, validate_against_order};
use super::PatchError;

pub(super) const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
pub(super) const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

const ERR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_LIST_OF_LISTS: &str = "lists of lists are not supported";

type Result<T, E = PatchError> = std::result::Result<T, E>;

/// Applies a strategic merge patch to `original` whose kind's root type is `root`.
pub(crate) fn apply(root: Ty, original: &Value, patch: Value) -> Result<Value> {
    let patch = match patch {
        Value::Object(p) => p,
        // Go unmarshals `null` into a nil map: nothing to apply.
        Value::Null => return Ok(original.clone()),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(&other)
            )))
        }
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch, Some(root)).map(Value::Object)
}

/// The patch metadata and element type of field `name` of `ty`.
#[derive(Clone, Copy, Default)]
struct FieldInfo {
    meta: Option<FieldPatchMeta>,
    ty: Option<Ty>,
}

impl FieldInfo {
    fn of(ty: Option<Ty>, name: &str) -> Self {
        field(ty, name)
            .map(|f| FieldInfo {
                meta: f.meta,
                ty: f.ty,
            })
            .unwrap_or_default()
    }

    /// `Some(merge_key)` for a merged list (`Some(None)` for a primitive set).
    fn merge(&self) -> Option<Option<&'static str>> {
        self.meta
            .filter(|m| m.strategy == PatchStrategy::Merge)
            .map(|m| m.merge_key)
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Option<Ty>,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        return match directive.as_str() {
            // Take the patch as the new map (its own directives still resolved).
            Some("replace") => merge_map(Map::new(), patch, ty),
            Some("delete") => Ok(Map::new()),
            _ => {
                patch.insert(DIRECTIVE.to_string(), directive.clone());
                Err(PatchError::Internal(format!(
                    "unknown patch type: {} in map: {}",
                    go_fmt(&directive),
                    go_fmt(&Value::Object(patch))
                )))
            }
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, ty)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (
                strip_directive(&key, DELETE_FROM_PRIMITIVE_LIST, ERR_PRIMITIVE_LIST)?,
                true,
            )
        } else if key.starts_with('$') {
            return Err(PatchError::BadRequest(format!(
                "unknown patch directive {key:?}"
            )));
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let info = FieldInfo::of(ty, &key);
        let Some(current) = original.get_mut(&key) else {
            if !is_delete_list {
                let value = resolve(patch_value, info)?;
                original.insert(key, value);
            }
            continue;
        };
        let merged = match (current.take(), patch_value) {
            (Value::Object(o), Value::Object(p)) => Value::Object(merge_map(o, p, info.ty)?),
            (Value::Array(o), Value::Array(p)) => match info.merge() {
                Some(merge_key) => {
                    Value::Array(merge_list(o, p, merge_key, info.ty, is_delete_list)?)
                }
                None if is_delete_list => Value::Array(delete_from_list(o, &p)),
                None => resolve(Value::Array(p), info)?,
            },
            (_, p) => resolve(p, info)?,
        };
        *current = merged;
    }
    Ok(original)
}

/// `$retainKeys`: drop every key of `original` not listed, after checking the patch only sets
/// listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(list) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(list) = list else {
        return Err(PatchError::BadRequest(ERR_RETAIN_KEYS.to_string()));
    };
    let keep: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep.contains(&k.as_str()) {
            return Err(PatchError::BadRequest(ERR_RETAIN_KEYS.to_string()));
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

/// `$setElementOrder/<field>`: merge that field's list now and order the result by the given
/// list; items not mentioned keep their place relative to the live list.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Option<Ty>,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let order = patch.shift_remove(&directive_key).unwrap_or(Value::Null);
        let name = strip_directive(&directive_key, SET_ELEMENT_ORDER, ERR_SET_ELEMENT_ORDER)?;
        let Value::Array(order) = order else {
            return Err(PatchError::BadRequest(ERR_SET_ELEMENT_ORDER.to_string()));
        };
        let info = FieldInfo::of(ty, &name);
        // Ordering only means something for merged lists; elsewhere the field is replaced.
        let Some(merge_key) = info.merge() else {
            continue;
        };
        let original_list = list_field(original, &name)?;
        let patch_list = list_field(patch, &name)?;
        if let Some(p) = &patch_list {
            validate_against_order(p, &order, merge_key)?;
        }
        let server_order = original_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => merge_list(Vec::new(), p, merge_key, info.ty, false)?,
            (Some(o), Some(p)) => merge_list(o, p, merge_key, info.ty, false)?,
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, merge_key);
        let ordered = normalize_order(in_order, server_only, &order, &server_order, merge_key);
        original.insert(name.clone(), Value::Array(ordered));
        patch.shift_remove(&name);
    }
    Ok(())
}

fn list_field(map: &Map<String, Value>, name: &str) -> Result<Option<Vec<Value>>> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.clone())),
        Some(other) => Err(PatchError::Internal(bad_arg_type("[]interface {}", other))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ElemKind {
    Map,
    String,
    Number,
    Bool,
    Null,
}

/// The common element kind of the lists; lists of lists and mixed lists are errors.
fn element_kind(lists: &[&[Value]]) -> Result<Option<ElemKind>> {
    let mut kind = None;
    for list in lists {
        for v in list.iter() {
            let k = match v {
                Value::Array(_) => {
                    return Err(PatchError::Unprocessable(ERR_LIST_OF_LISTS.to_string()))
                }
                Value::Object(_) => ElemKind::Map,
                Value::String(_) => ElemKind::String,
                Value::Number(_) => ElemKind::Number,
                Value::Bool(_) => ElemKind::Bool,
                Value::Null => ElemKind::Null,
            };
            match kind {
                None => kind = Some(k),
                Some(prev) if prev != k => {
                    let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                    return Err(PatchError::Internal(format!(
                        "list element types are not identical: {}",
                        go_fmt(&Value::Array(all))
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(kind)
}

/// Upstream `mergeSlice` for a list tagged `merge`.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: Option<&'static str>,
    elem_ty: Option<Ty>,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_kind(&[&original, &patch])?;
    if kind != Some(ElemKind::Map) {
        if is_delete_list {
            return Ok(delete_from_list(original, &patch));
        }
        // Set union; the final order comes from normalize_order below.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None);
        return Ok(normalize_order(
            in_patch,
            server_only,
            &patch,
            &original,
            None,
        ));
    }
    let Some(key) = merge_key else {
        return Err(PatchError::Internal(
            "cannot merge lists without merge key for type string".to_string(),
        ));
    };

    // Elements carrying `$patch` act on the whole list or on the element named by the key.
    let mut original = original;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            return Err(PatchError::Internal(bad_arg_type(
                "map[string]interface {}",
                &v,
            )));
        };
        let Some(directive) = m.get(DIRECTIVE) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = m
                    .get(key)
                    .ok_or_else(|| PatchError::Internal(no_merge_key(m, key)))?;
                original.retain(|o| o.get(key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Internal(
                    "merging lists cannot yet be specified in the patch".to_string(),
                ))
            }
            _ => {
                return Err(PatchError::Internal(format!(
                    "unknown patch type: {} in map: {}",
                    go_fmt(directive),
                    go_fmt(&v)
                )))
            }
        }
    }
    let (original, patch) = if replace {
        let replaced = plain
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => merge_map(Map::new(), m, elem_ty).map(Value::Object),
                other => Ok(other),
            })
            .collect::<Result<Vec<_>>>()?;
        (replaced, Vec::new())
    } else {
        (original, plain)
    };

    let server_order = original.clone();
    let mut merged = original;
    for p in &patch {
        let Value::Object(pm) = p else {
            return Err(PatchError::Internal(bad_arg_type(
                "map[string]interface {}",
                p,
            )));
        };
        let value = pm
            .get(key)
            .ok_or_else(|| PatchError::Internal(no_merge_key(pm, key)))?;
        match merged.iter().position(|o| o.get(key) == Some(value)) {
            Some(pos) => {
                let Value::Object(current) = merged[pos].take() else {
                    return Err(PatchError::Internal(format!(
                        "value for key {pos} is not a map."
                    )));
                };
                merged[pos] = Value::Object(merge_map(current, pm.clone(), elem_ty)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), pm.clone(), elem_ty)?)),
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, Some(key));
    Ok(normalize_order(
        in_patch,
        server_only,
        &patch,
        &server_order,
        Some(key),
    ))
}

fn delete_from_list(original: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    original
        .into_iter()
        .filter(|v| !to_delete.contains(v))
        .collect()
}

/// Resolves a patch value that replaces (or is added in place of) the original value: maps and
/// merged lists are merged against nothing, so their directives and nulls do not get stored.
fn resolve(value: Value, info: FieldInfo) -> Result<Value> {
    match value {
        Value::Object(m) => Ok(Value::Object(merge_map(Map::new(), m, info.ty)?)),
        Value::Array(items) => {
            let merged_list = info.merge().is_some();
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(mut m) if merged_list => {
                        match m.get(DIRECTIVE).and_then(Value::as_str) {
                            // Nothing to delete from; a replace marker just means "this list".
                            Some("delete") => {}
                            Some("replace") if m.len() == 1 => {}
                            Some("replace") => {
                                m.shift_remove(DIRECTIVE);
                                out.push(Value::Object(merge_map(Map::new(), m, info.ty)?));
                            }
                            _ => out.push(Value::Object(merge_map(Map::new(), m, info.ty)?)),
                        }
                    }
                    Value::Object(m) => out.push(Value::Object(merge_map(Map::new(), m, info.ty)?)),
                    other => out.push(other),
                }
            }
            Ok(Value::Array(out))
        }
        other => Ok(other),
    }
}

/// `$prefix/<field>` → `<field>`.
fn strip_directive(key: &str, prefix: &str, err: &str) -> Result<String> {
    match key.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest.to_string()),
        _ => Err(PatchError::BadRequest(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use crate::patch::{apply_patch, PatchType};
    use serde_json::{json, Value};

    const POD: (&str, &str, &str) = ("", "v1", "Pod");
    const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");

    fn smp(gvk: (&str, &str, &str), original: &Value, patch: Value) -> Value {
        let body = serde_json::to_vec(&patch).expect("encode");
        let out = apply_patch(gvk, original, PatchType::StrategicMerge, &body)
            .unwrap_or_else(|e| panic!("patch {patch} failed: {e}"));
        assert!(!out.to_string().contains("\"$"), "directive stored: {out}");
        out
    }

    fn smp_err(gvk: (&str, &str, &str), original: &Value, patch: Value) -> (u16, String) {
        let body = serde_json::to_vec(&patch).expect("encode");
        let err = apply_patch(gvk, original, PatchType::StrategicMerge, &body)
            .expect_err("patch should fail");
        (err.code(), err.to_string())
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": containers}
                }
            }
        })
    }

    /// Table of (original pod spec, patch to spec, expected spec).
    #[test]
    fn pod_spec_lists() {
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "container merged by name",
                json!({"containers": [{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b", "image": "b:1"}]}),
                json!({"containers": [{"name": "b", "image": "b:2"}]}),
                json!({"containers": [{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b", "image": "b:2"}]}),
            ),
            (
                "env merged by name, new entries after the live ones they follow",
                json!({"containers": [{"name": "a", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}),
                json!({"containers": [{"name": "a", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}),
                json!({"containers": [{"name": "a", "env": [
                    {"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
                ]}]}),
            ),
            (
                "ports merged by containerPort",
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]}),
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]}]}),
                json!({"containers": [{"name": "a", "ports": [
                    {"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}
                ]}]}),
            ),
            (
                "volumes merged by name, $retainKeys switches the source",
                json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}),
                json!({"volumes": [{"name": "v", "hostPath": {"path": "/x"}, "$retainKeys": ["hostPath", "name"]}]}),
                json!({"volumes": [{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]}),
            ),
            (
                "volumeMounts merged by mountPath",
                json!({"containers": [{"name": "a", "volumeMounts": [{"mountPath": "/d", "name": "v"}]}]}),
                json!({"containers": [{"name": "a", "volumeMounts": [{"mountPath": "/d", "readOnly": true}]}]}),
                json!({"containers": [{"name": "a", "volumeMounts": [{"mountPath": "/d", "name": "v", "readOnly": true}]}]}),
            ),
            (
                "$patch: delete removes the keyed element",
                json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
                json!({"containers": [{"name": "b", "$patch": "delete"}]}),
                json!({"containers": [{"name": "a"}, {"name": "c"}]}),
            ),
            (
                "$patch: replace replaces the whole list",
                json!({"containers": [{"name": "a", "image": "a"}, {"name": "b"}]}),
                json!({"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}),
                json!({"containers": [{"name": "z", "image": "z"}]}),
            ),
            (
                "$setElementOrder reorders without content changes",
                json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                json!({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}),
                json!({"containers": [{"name": "b"}, {"name": "a"}]}),
            ),
            (
                "lists without a strategy are replaced",
                json!({"tolerations": [{"key": "a"}], "containers": [{"name": "a", "args": ["1", "2"]}]}),
                json!({"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["3"]}]}),
                json!({"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["3"]}]}),
            ),
            (
                "imagePullSecrets and hostAliases merge",
                json!({"imagePullSecrets": [{"name": "r1"}], "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["a"]}]}),
                json!({"imagePullSecrets": [{"name": "r2"}], "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}]}),
                json!({"imagePullSecrets": [{"name": "r2"}, {"name": "r1"}], "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}]}),
            ),
            (
                "null deletes, maps merge",
                json!({"nodeSelector": {"a": "1", "b": "2"}, "restartPolicy": "Always"}),
                json!({"nodeSelector": {"a": null, "c": "3"}, "restartPolicy": null}),
                json!({"nodeSelector": {"b": "2", "c": "3"}}),
            ),
            (
                "new list elements resolve their own directives",
                json!({}),
                json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}], "image": null}]}),
                json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}),
            ),
        ];
        for (name, original, patch, want) in cases {
            let got = smp(POD, &pod(original), json!({"spec": patch}));
            assert_eq!(got["spec"], want, "{name}");
        }
    }

    #[test]
    fn map_directives_and_primitive_lists() {
        let original = json!({
            "metadata": {
                "name": "p",
                "labels": {"a": "1", "b": "2"},
                "annotations": {"x": "1"},
                "finalizers": ["f1", "f2", "f3"],
                "ownerReferences": [{"uid": "u1", "name": "rs1"}, {"uid": "u2", "name": "rs2"}]
            }
        });
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "$patch: replace on a map",
                json!({"labels": {"$patch": "replace", "c": "3"}}),
                json!({"labels": {"c": "3"}}),
            ),
            // Upstream turns a deleted map into an empty one.
            (
                "$patch: delete on a map",
                json!({"annotations": {"$patch": "delete"}}),
                json!({"annotations": {}}),
            ),
            (
                "$deleteFromPrimitiveList/finalizers",
                json!({"$deleteFromPrimitiveList/finalizers": ["f2"]}),
                json!({"finalizers": ["f1", "f3"]}),
            ),
            (
                "finalizers merge as a set",
                json!({"finalizers": ["f2", "f4"]}),
                json!({"finalizers": ["f1", "f2", "f4", "f3"]}),
            ),
            (
                "finalizers reordered by $setElementOrder",
                json!({"$setElementOrder/finalizers": ["f3", "f1"], "$deleteFromPrimitiveList/finalizers": ["f2"]}),
                json!({"finalizers": ["f3", "f1"]}),
            ),
            (
                "ownerReferences merge by uid",
                json!({"ownerReferences": [{"uid": "u2", "controller": true}]}),
                json!({"ownerReferences": [{"uid": "u1", "name": "rs1"}, {"uid": "u2", "name": "rs2", "controller": true}]}),
            ),
            (
                "finalizers: null removes the list",
                json!({"finalizers": null}),
                json!({"finalizers": null}),
            ),
        ];
        for (name, patch, want) in cases {
            let got = smp(POD, &original, json!({"metadata": patch}));
            for (k, v) in want.as_object().expect("want") {
                let actual = got["metadata"].get(k).cloned().unwrap_or(Value::Null);
                assert_eq!(&actual, v, "{name}: {k}");
            }
        }
    }

    #[test]
    fn deployment_template_and_retain_keys() {
        let original = deployment(json!([{"name": "nginx", "image": "nginx:1.25"}]));
        let got = smp(
            DEPLOYMENT,
            &original,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
        let got = smp(
            DEPLOYMENT,
            &original,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "env": [{"name": "A", "value": "1"}]}]}}}}),
        );
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}]}])
        );
        assert_eq!(got["spec"]["replicas"], json!(2));
        let (code, msg) = smp_err(
            DEPLOYMENT,
            &original,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}),
        );
        assert_eq!(
            (code, msg.as_str()),
            (400, "invalid patch format of retainKeys")
        );
        // Other workloads share the pod template path.
        for kind in [
            ("apps", "v1", "StatefulSet"),
            ("apps", "v1", "DaemonSet"),
            ("batch", "v1", "Job"),
        ] {
            let got = smp(
                kind,
                &original,
                json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s"}]}}}}),
            );
            let names: Vec<&str> = got["spec"]["template"]["spec"]["containers"]
                .as_array()
                .expect("containers")
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            assert_eq!(names, ["side", "nginx"], "{kind:?}");
        }
    }

    /// Patches captured from `kubectl apply` (client-side, three-way) against a deployment.
    #[test]
    fn kubectl_apply_three_way_patches() {
        let two = deployment(json!([
            {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "busybox"}
        ]));
        let containers = |v: &Value| v["spec"]["template"]["spec"]["containers"].clone();

        let got = smp(
            DEPLOYMENT,
            &two,
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],"containers":[{"image":"nginx:1.26","name":"nginx"}]}}}}),
        );
        assert_eq!(containers(&got)[0]["image"], json!("nginx:1.26"));
        assert_eq!(containers(&got)[0]["env"][1]["value"], json!("2"));
        assert_eq!(containers(&got)[1]["name"], json!("sidecar"));

        let got = smp(
            DEPLOYMENT,
            &two,
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"$patch":"delete","name":"sidecar"}]}}}}),
        );
        assert_eq!(
            containers(&got),
            json!([{"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])
        );

        let got = smp(
            DEPLOYMENT,
            &two,
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],"containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"$patch":"delete","name":"B"}],"name":"nginx"}]}}}}),
        );
        assert_eq!(
            containers(&got)[0]["env"],
            json!([{"name": "A", "value": "1"}])
        );

        // A dropped field is sent as null; metadata changes ride along.
        let got = smp(
            DEPLOYMENT,
            &two,
            json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},"spec":{"strategy":null,"template":{"metadata":{"labels":{"tier":null}}}}}),
        );
        assert_eq!(
            got["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web"})
        );
        assert!(got["spec"].get("strategy").is_none());
        assert_eq!(
            got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            json!("{}")
        );

        // Adding a container at a position given by $setElementOrder.
        let one = deployment(json!([{"name": "nginx", "image": "nginx:1.25"}]));
        for (order, want) in [
            (
                json!([{"name": "nginx"}, {"name": "log"}]),
                ["nginx", "log"],
            ),
            (
                json!([{"name": "log"}, {"name": "nginx"}]),
                ["log", "nginx"],
            ),
        ] {
            let got = smp(
                DEPLOYMENT,
                &one,
                json!({"spec":{"template":{"spec":{"$setElementOrder/containers": order,"containers":[{"image":"busybox","name":"log"}]}}}}),
            );
            let names: Vec<Value> = containers(&got)
                .as_array()
                .expect("list")
                .iter()
                .map(|c| c["name"].clone())
                .collect();
            assert_eq!(names, want.map(Value::from), "order {want:?}");
        }
    }

    #[test]
    fn other_kinds() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "selector": {"app": "a"}}});
        let got = smp(
            ("", "v1", "Service"),
            &svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            got["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );

        let node = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}, "spec": {"taints": [{"key": "a"}]}});
        let got = smp(
            ("", "v1", "Node"),
            &node,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}, "spec": {"taints": [{"key": "b"}]}}),
        );
        assert_eq!(
            got["status"]["conditions"][0],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(
            got["status"]["conditions"][1]["type"],
            json!("DiskPressure")
        );
        assert_eq!(got["spec"]["taints"], json!([{"key": "b"}]));

        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let got = smp(
            ("", "v1", "ConfigMap"),
            &cm,
            json!({"data": {"a": null, "c": "3"}}),
        );
        assert_eq!(got["data"], json!({"b": "2", "c": "3"}));

        let ep = json!({"subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]});
        let got = smp(
            ("", "v1", "Endpoints"),
            &ep,
            json!({"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]}),
        );
        assert_eq!(got["subsets"], json!([{"addresses": [{"ip": "2.2.2.2"}]}]));
        // `null` as the whole patch is a no-op.
        assert_eq!(smp(("", "v1", "ConfigMap"), &cm, Value::Null), cm);
    }

    #[test]
    fn errors_match_upstream() {
        let original = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let cases: Vec<(Value, u16, &str)> = vec![
            (
                json!({"spec": {"containers": [{"image": "y"}]}}),
                500,
                "map: map[image:y] does not contain declared merge key: name",
            ),
            (
                json!({"metadata": {"labels": {"$patch": "merge"}}}),
                500,
                "unknown patch type: merge in map: map[$patch:merge]",
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
                500,
                "merging lists cannot yet be specified in the patch",
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "args": ["x"]}, {"name": "b"}], "$setElementOrder/containers": [{"name": "b"}]}}),
                500,
                "The order in patch list:\n[map[args:[x] name:a] map[name:b]]\n doesn't match $setElementOrder list:\n[map[name:b]]\n",
            ),
            (json!({"spec": {"containers": [["a"]]}}), 422, "lists of lists are not supported"),
            (json!({"metadata": {"$retainKeys": "name"}}), 400, "invalid patch format of retainKeys"),
            (json!({"metadata": {"$setElementOrder": []}}), 400, "invalid patch format of setElementOrder list"),
            (json!({"metadata": {"$deleteFromPrimitiveList": []}}), 400, "invalid patch format of primitive list"),
            (json!([1]), 400, "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ];
        for (patch, code, msg) in cases {
            assert_eq!(
                smp_err(POD, &original, patch.clone()),
                (code, msg.to_string()),
                "{patch}"
            );
        }
        let err =
            apply_patch(POD, &original, PatchType::StrategicMerge, b"{").expect_err("bad json");
        assert_eq!(err.code(), 400);
    }
}
