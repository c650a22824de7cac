//! The ownership of a create in one walk: when a new object carries no managed fields, its
//! creator owns every field it has (identity metadata stripped, reset subtrees ignored), so
//! the `FieldsV1` tree can be written straight from the object. This is what
//! [`update_managed_fields`](super::update_managed_fields) computes for `old = None` through
//! the generic diff, without the intermediate field sets; the tests below hold the two equal.

use serde_json::{Map, Value};

use super::fieldset::PathElement;
use super::ops::Writer;
use super::typeinfo::{Cursor, ListType, MapType, TypeInfo};
use super::walk::{lenient_pe, skipped};

/// Top-level fields no manager owns (upstream's `stripMetaManager`, see
/// [`stripped_fields`](super::stripped_fields)): their membership is dropped, not their
/// children.
const STRIPPED_ROOT: &[&str] = &["apiVersion", "kind", "metadata"];
/// `metadata` fields no manager owns.
const STRIPPED_META: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// One path element, borrowing field names from the object (upstream's order: fields, then
/// keys, values and indices, as [`PathElement`] sorts).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Pe<'v> {
    Field(&'v str),
    Other(PathElement),
}

impl Pe<'_> {
    fn fields_v1_key(&self) -> String {
        match self {
            Pe::Field(name) => {
                let mut key = String::with_capacity(name.len() + 2);
                key.push_str("f:");
                key.push_str(name);
                key
            }
            Pe::Other(pe) => pe.to_fields_v1_key(),
        }
    }
}

/// The `FieldsV1` content of one node: whether the node itself is owned, and its children
/// already written (`"."` not yet added).
struct Node {
    member: bool,
    children: Map<String, Value>,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn into_value(self) -> Value {
        if self.member && !self.children.is_empty() {
            let mut out = Map::with_capacity(self.children.len() + 1);
            out.insert(".".to_owned(), Value::Object(Map::new()));
            out.extend(self.children);
            Value::Object(out)
        } else {
            Value::Object(self.children)
        }
    }
}

/// The one walk can't reproduce the generic result (duplicate list keys, which the generic
/// path merges, or a reset path through a list): use the generic path.
struct Fallback;

struct CreateWalk<'t> {
    types: &'t TypeInfo,
}

impl<'t> CreateWalk<'t> {
    fn map<'v>(
        &self,
        map: &'v Map<String, Value>,
        cur: Cursor,
        names: &mut Vec<&'v str>,
        ignored: &[&'t [PathElement]],
    ) -> Result<Map<String, Value>, Fallback> {
        let root = names.is_empty();
        let top_level_struct = root && self.types.is_builtin();
        let in_meta = names.len() == 1 && names[0] == "metadata";
        let mut children: Vec<(Pe<'v>, Node)> = Vec::with_capacity(map.len());
        for (k, v) in map {
            if skipped(names, k) {
                continue;
            }
            let (drop, below) = descend_ignored(ignored, k);
            if drop {
                continue;
            }
            let child_cur = self.types.descend(cur, names, k);
            names.push(k);
            let mut node = self.value(v, cur, child_cur, names, &below)?;
            names.pop();
            if top_level_struct && matches!(k.as_str(), "spec" | "status" | "metadata") {
                node.member = false;
            }
            if (root && STRIPPED_ROOT.contains(&k.as_str()))
                || (in_meta && STRIPPED_META.contains(&k.as_str()))
            {
                node.member = false;
            }
            if !node.is_empty() {
                children.push((Pe::Field(k), node));
            }
        }
        write_sorted(children)
    }

    fn value<'v>(
        &self,
        v: &'v Value,
        parent: Cursor,
        cur: Cursor,
        names: &mut Vec<&'v str>,
        ignored: &[&'t [PathElement]],
    ) -> Result<Node, Fallback> {
        let mut node = Node {
            member: true,
            children: Map::new(),
        };
        match v {
            Value::Object(map) if self.types.map_type(parent, names) == MapType::Granular => {
                node.children = self.map(map, cur, names, ignored)?;
            }
            Value::Array(items) => {
                let lt = self.types.list_type(parent, names);
                if lt == ListType::Atomic {
                    return Ok(node);
                }
                if !ignored.is_empty() {
                    return Err(Fallback);
                }
                let mut children = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let pe = lenient_pe(&lt, item, i).unwrap_or(PathElement::Index(i));
                    let mut child = Node {
                        member: true,
                        children: Map::new(),
                    };
                    if let (ListType::Map(_), Value::Object(m)) = (&lt, item) {
                        child.children = self.map(m, cur, names, &[])?;
                    }
                    children.push((Pe::Other(pe), child));
                }
                node.children = write_sorted(children)?;
            }
            _ => {}
        }
        Ok(node)
    }
}

/// Whether the field `k` is a reset subtree itself, and the reset paths below it.
fn descend_ignored<'t>(ignored: &[&'t [PathElement]], k: &str) -> (bool, Vec<&'t [PathElement]>) {
    let mut below = Vec::new();
    for &path in ignored {
        if let Some((PathElement::Field(name), rest)) = path.split_first() {
            if name == k {
                if rest.is_empty() {
                    return (true, Vec::new());
                }
                below.push(rest);
            }
        }
    }
    (false, below)
}

/// The children in upstream's order; two equal elements (duplicate list keys) fall back.
fn write_sorted(mut children: Vec<(Pe<'_>, Node)>) -> Result<Map<String, Value>, Fallback> {
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if children.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Fallback);
    }
    let mut out = Map::with_capacity(children.len());
    for (pe, node) in children {
        out.insert(pe.fields_v1_key(), node.into_value());
    }
    Ok(out)
}

/// The `metadata.managedFields` of a new object that carries none, created by `writer`:
/// `Some(None)` when the writer owns nothing (the object stays untracked), `Some(Some(list))`
/// with its one `Update` entry, or `None` when only the generic path can tell (the caller
/// then uses [`update_managed_fields`](super::update_managed_fields) with `old = None`).
pub fn created_managed_fields(
    obj: &Value,
    writer: &Writer<'_>,
    types: &TypeInfo,
) -> Option<Option<Value>> {
    let Value::Object(root) = obj else {
        return Some(None);
    };
    let walk = CreateWalk { types };
    // The writer's reset subtrees, as the path remaining below the current node.
    let ignored: Vec<&[PathElement]> = writer.ignored.iter().map(|p| p.0.as_slice()).collect();
    let mut names = Vec::new();
    let fields = walk.map(root, types.root(), &mut names, &ignored).ok()?;
    if fields.is_empty() {
        return Some(None);
    }
    let api_version = root
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut entry = Map::with_capacity(7);
    entry.insert("manager".into(), Value::String(writer.manager.to_owned()));
    entry.insert("operation".into(), "Update".into());
    entry.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    entry.insert("time".into(), Value::String(writer.time.to_owned()));
    entry.insert("fieldsType".into(), "FieldsV1".into());
    entry.insert("fieldsV1".into(), Value::Object(fields));
    if !writer.subresource.is_empty() {
        entry.insert(
            "subresource".into(),
            Value::String(writer.subresource.to_owned()),
        );
    }
    Some(Some(Value::Array(vec![Value::Object(entry)])))
}

#[cfg(test)]
mod tests {
    use super::super::{
        stripped_fields, update_managed_fields, ListKey, ManagedFields, Path, TypeInfo,
    };
    use super::*;
    use serde_json::json;

    const T: &str = "2026-01-01T00:00:00Z";

    fn generic(obj: &Value, writer: &Writer<'_>, types: &TypeInfo) -> Option<Value> {
        let out = update_managed_fields(None, obj, writer, &ManagedFields::default(), types);
        (!out.entries.is_empty()).then(|| out.to_value())
    }

    #[test]
    fn stripped_lists_are_upstreams() {
        let mut listed: Vec<Path> = STRIPPED_ROOT
            .iter()
            .map(|n| Path::fields(&[n]))
            .chain(STRIPPED_META.iter().map(|n| Path::fields(&["metadata", n])))
            .collect();
        listed.sort();
        assert_eq!(listed, stripped_fields().paths());
    }

    #[test]
    fn one_walk_equals_the_generic_diff() {
        let status = [Path::fields(&["status"])];
        let spec_sub = [Path::fields(&["spec", "template"])];
        let pod = TypeInfo::for_kind("", "v1", "Pod");
        let deploy = TypeInfo::for_kind("apps", "v1", "Deployment");
        let svc = TypeInfo::for_kind("", "v1", "Service");
        let cm = TypeInfo::for_kind("", "v1", "ConfigMap");
        let widget = TypeInfo::from_list_fn(|path| match path {
            ["spec", "ports"] => ListType::Map(vec![ListKey::required("port")]),
            ["spec", "tags"] => ListType::Set,
            _ => ListType::Atomic,
        });
        let deduced = TypeInfo::deduced();
        let pod_obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "generation": 1,
                "creationTimestamp": T, "labels": {"app": "web", "tier": "a"},
                "annotations": {"z": "1", "a": "2"}, "finalizers": ["b/x", "a/y"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "o-1"}]},
            "spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                     "resources": {"requests": {"cpu": "10m"}}, "env": [{"name": "B", "value": "1"}, {"name": "A"}],
                     "args": ["x", "y"], "securityContext": {}},
                    {"name": "side", "image": "busybox"}],
                "nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "k"}],
                "securityContext": {}, "dnsPolicy": "ClusterFirst",
                "topologySpreadConstraints": [{"topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "maxSkew": 1}],
                "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        });
        let deploy_obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "d"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"mountPath": "/a", "name": "v"}]}]}}},
        });
        let cases: Vec<(Value, &TypeInfo, &[Path])> = vec![
            (pod_obj.clone(), &pod, &status),
            (pod_obj.clone(), &pod, &[]),
            (deploy_obj.clone(), &deploy, &status),
            (deploy_obj, &deploy, &spec_sub),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                    "spec": {"ports": [{"port": 80}, {"port": 80, "protocol": "UDP"}], "selector": {"a": "b"},
                        "ipFamilies": ["IPv4"]}}),
                &svc,
                &status,
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                    "data": {"b": "1", "a": "2"}, "binaryData": {}}),
                &cm,
                &[],
            ),
            // Identity metadata only: nothing owned.
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}),
                &cm,
                &[],
            ),
            (
                json!({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}},
                    "spec": {"ports": [{"port": 1, "name": "a"}, {"name": "nokey"}], "tags": ["b", "a", 3],
                        "items": [{"a": 1}], "nested": {"deep": {"x": null}}, "empty": {}},
                    "status": {"ok": true}}),
                &widget,
                &status,
            ),
            (
                json!({"apiVersion": "x/v1", "kind": "Thing", "metadata": {"name": "t", "finalizers": ["f"]},
                    "spec": {"list": [1, 2]}, "data": "x", "kind2": {"kind": 1}}),
                &deduced,
                &[],
            ),
            // A stripped name that is (wrongly) a map keeps its children, as upstream.
            (
                json!({"apiVersion": "v1", "kind": {"x": 1}, "metadata": {"name": {"a": "b"}}}),
                &deduced,
                &[],
            ),
            // A client-supplied but invalid managedFields is not walked.
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": "junk"},
                    "data": {"a": "1"}}),
                &cm,
                &[],
            ),
        ];
        for (obj, types, ignored) in cases {
            for subresource in ["", "status"] {
                let writer = Writer {
                    manager: "kubectl-create",
                    subresource,
                    time: T,
                    ignored,
                };
                let fast = created_managed_fields(&obj, &writer, types).expect("one walk");
                assert_eq!(fast, generic(&obj, &writer, types), "{obj}");
                // Same bytes too (key order), as stored objects show them.
                assert_eq!(
                    fast.map(|v| v.to_string()),
                    generic(&obj, &writer, types).map(|v| v.to_string())
                );
            }
        }
    }

    #[test]
    fn duplicate_keys_fall_back_to_the_generic_path() {
        let pod = TypeInfo::for_kind("", "v1", "Pod");
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}});
        let writer = Writer {
            manager: "m",
            subresource: "",
            time: T,
            ignored: &[],
        };
        assert!(created_managed_fields(&obj, &writer, &pod).is_none());
    }
}
