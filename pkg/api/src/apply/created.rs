//! The ownership of a create in one walk: when a new object carries no managed fields, its
//! creator owns every field it has (identity metadata stripped, reset subtrees ignored), so
//! the `FieldsV1` tree can be written straight from the object. This is what
//! [`update_managed_fields`](super::update_managed_fields) computes for `old = None` through
//! the generic diff, without the intermediate field sets; the tests below hold the two equal.
//!
//! The walk writes the `metadata.managedFields` list as JSON text directly
//! ([`created_managed_fields_json`]): a create's stored bytes are spliced from it, so no
//! `serde_json` map is built (and hashed, and dropped) for a tree nobody reads back.

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
    /// The element as its quoted `FieldsV1` key (`"f:name"`), escaped by `serde_json`.
    fn write_key(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Pe::Field(name) => {
                // `"name"`, then the prefix inside the quotes: no `f:name` string built.
                let at = out.len() + 1;
                serde_json::to_writer(&mut *out, name)?;
                out.splice(at..at, *b"f:");
                Ok(())
            }
            Pe::Other(pe) => serde_json::to_writer(out, &pe.to_fields_v1_key()),
        }
    }
}

/// The `FieldsV1` content of one node: whether the node itself is owned, and its children
/// in upstream's order (`"."` not among them).
struct Node<'v> {
    member: bool,
    children: Vec<(Pe<'v>, Node<'v>)>,
}

impl Node<'_> {
    fn leaf() -> Self {
        Self {
            member: true,
            children: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// The node as a `FieldsV1` object: `{".":{},...children}` when it is owned and has
    /// children, `{...children}` otherwise.
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write_object(
            out,
            self.member && !self.children.is_empty(),
            &self.children,
        )
    }
}

/// `{".":{}` (when `dot`) and the children, `}`.
fn write_object(
    out: &mut Vec<u8>,
    dot: bool,
    children: &[(Pe<'_>, Node<'_>)],
) -> serde_json::Result<()> {
    out.push(b'{');
    let mut first = true;
    if dot {
        out.extend_from_slice(b"\".\":{}");
        first = false;
    }
    for (pe, node) in children {
        if !first {
            out.push(b',');
        }
        first = false;
        pe.write_key(out)?;
        out.push(b':');
        node.write(out)?;
    }
    out.push(b'}');
    Ok(())
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
    ) -> Result<Vec<(Pe<'v>, Node<'v>)>, Fallback> {
        let root = names.is_empty();
        let top_level_struct = root && self.types.is_builtin();
        let in_meta = names.len() == 1 && names[0] == "metadata";
        let mut children: Vec<(Pe<'v>, Node<'v>)> = Vec::with_capacity(map.len());
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
        sorted(children)
    }

    fn value<'v>(
        &self,
        v: &'v Value,
        parent: Cursor,
        cur: Cursor,
        names: &mut Vec<&'v str>,
        ignored: &[&'t [PathElement]],
    ) -> Result<Node<'v>, Fallback> {
        let mut node = Node::leaf();
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
                    let mut child = Node::leaf();
                    if let (ListType::Map(_), Value::Object(m)) = (&lt, item) {
                        child.children = self.map(m, cur, names, &[])?;
                    }
                    children.push((Pe::Other(pe), child));
                }
                node.children = sorted(children)?;
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
fn sorted<'v>(mut children: Vec<(Pe<'v>, Node<'v>)>) -> Result<Vec<(Pe<'v>, Node<'v>)>, Fallback> {
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if children.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Fallback);
    }
    Ok(children)
}

/// The `metadata.managedFields` of a new object that carries none, created by `writer`, as
/// the JSON text of the list: `Some(None)` when the writer owns nothing (the object stays
/// untracked), `Some(Some(json))` with its one `Update` entry, or `None` when only the
/// generic path can tell (the caller then uses
/// [`update_managed_fields`](super::update_managed_fields) with `old = None`). The entry's
/// keys are in upstream's order (`manager`, `operation`, `apiVersion`, `time`, `fieldsType`,
/// `fieldsV1`, `subresource`), as are the `FieldsV1` keys.
pub fn created_managed_fields_json(
    obj: &Value,
    writer: &Writer<'_>,
    types: &TypeInfo,
) -> Option<Option<Vec<u8>>> {
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
    entry_json(writer, api_version, &fields).ok().map(Some)
}

/// The list of the one `Update` entry, keys in upstream's order.
fn entry_json(
    writer: &Writer<'_>,
    api_version: &str,
    fields: &[(Pe<'_>, Node<'_>)],
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"[{\"manager\":");
    serde_json::to_writer(&mut out, writer.manager)?;
    out.extend_from_slice(b",\"operation\":\"Update\",\"apiVersion\":");
    serde_json::to_writer(&mut out, api_version)?;
    out.extend_from_slice(b",\"time\":");
    serde_json::to_writer(&mut out, writer.time)?;
    out.extend_from_slice(b",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":");
    write_object(&mut out, false, fields)?;
    if !writer.subresource.is_empty() {
        out.extend_from_slice(b",\"subresource\":");
        serde_json::to_writer(&mut out, writer.subresource)?;
    }
    out.extend_from_slice(b"}]");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{
        stripped_fields, update_managed_fields, ListKey, ManagedFields, Path, TypeInfo,
    };
    use super::*;
    use serde_json::json;

    const T: &str = "2026-01-01T00:00:00Z";

    /// [`created_managed_fields_json`] as a value.
    fn created_managed_fields(
        obj: &Value,
        writer: &Writer<'_>,
        types: &TypeInfo,
    ) -> Option<Option<Value>> {
        created_managed_fields_json(obj, writer, types)
            .map(|json| json.map(|b| serde_json::from_slice(&b).expect("valid json")))
    }

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
                let slow = generic(&obj, &writer, types);
                assert_eq!(fast, slow, "{obj}");
                // Same bytes too (upstream's key order), as stored objects show them.
                let json = created_managed_fields_json(&obj, &writer, types).expect("one walk");
                assert_eq!(
                    json.map(|b| String::from_utf8(b).expect("utf-8")),
                    slow.map(|v| v.to_string())
                );
            }
        }
    }

    #[test]
    fn field_names_are_escaped_as_serde_json_escapes_them() {
        let deduced = TypeInfo::deduced();
        let obj = json!({"apiVersion": "x/v1", "kind": "Thing", "metadata": {"name": "t"},
            "spec": {"quo\"te": 1, "back\\slash": {"tab\there": 2}, "ctl\u{1}\u{1f}\n\r\u{8}\u{c}": 3,
                "üñï/~": 4}});
        let writer = Writer {
            manager: "m\"gr\u{7}",
            subresource: "",
            time: T,
            ignored: &[],
        };
        let json = created_managed_fields_json(&obj, &writer, &deduced)
            .expect("one walk")
            .expect("owned fields");
        let slow = generic(&obj, &writer, &deduced).expect("owned fields");
        assert_eq!(String::from_utf8(json).expect("utf-8"), slow.to_string());
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
