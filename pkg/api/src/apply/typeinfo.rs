//! The schema facts server-side apply needs: for each list, whether it is atomic, a set or
//! an associative list (and its key fields); for each map, whether it is granular or atomic.
//! Built-in kinds derive them from the strategic-merge metadata in `patch::merge_keys` (which
//! is what upstream's OpenAPI-to-schema conversion falls back to when a field has no explicit
//! `x-kubernetes-list-type`), plus the explicit list-type and map-type markers that differ.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::patch::merge_keys::{self, PatchStrategy, Ty};

/// One key field of an associative list, with the schema default upstream substitutes when an
/// item omits it (e.g. a port's `protocol` defaults to `"TCP"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListKey {
    /// The key field's JSON name.
    pub name: String,
    /// The value used when an item omits the field; `None` makes the field required.
    pub default: Option<Value>,
}

impl ListKey {
    /// A required key field.
    pub fn required(name: &str) -> Self {
        ListKey {
            name: name.to_owned(),
            default: None,
        }
    }
}

/// How a list is merged and owned (`x-kubernetes-list-type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced and owned as a whole (the default for lists without metadata).
    Atomic,
    /// A set of scalars; each value is owned separately (`v:<value>`).
    Set,
    /// An associative list; items are merged and owned by their key fields (`k:{...}`).
    Map(Vec<ListKey>),
}

/// How a map (or struct) is merged and owned (`x-kubernetes-map-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    /// Each field is owned separately (the default).
    Granular,
    /// Replaced and owned as a whole.
    Atomic,
}

/// A source of list and map types for an object whose schema the server knows (custom
/// resources from their `x-kubernetes-*` extensions). `path` is the field names from the
/// object root; list items are stepped through transparently, so `["spec", "ports", "name"]`
/// is the `name` field of an item of `spec.ports`.
pub trait SchemaResolver: Send + Sync {
    /// The list type of the list at `path` (unannotated lists are [`ListType::Atomic`]).
    fn list_type(&self, path: &[&str]) -> ListType;
    /// The map type of the map at `path`.
    fn map_type(&self, _path: &[&str]) -> MapType {
        MapType::Granular
    }
}

/// A [`SchemaResolver`] from a list-type callback (all maps granular).
struct ListFn<F>(F);

impl<F: Fn(&[&str]) -> ListType + Send + Sync> SchemaResolver for ListFn<F> {
    fn list_type(&self, path: &[&str]) -> ListType {
        (self.0)(path)
    }
}

/// The schema of one kind, as far as server-side apply needs it. Cheap to clone.
#[derive(Clone)]
pub struct TypeInfo(Source);

#[derive(Clone)]
enum Source {
    Builtin(Ty),
    Resolver(Arc<dyn SchemaResolver>),
    Deduced,
}

impl fmt::Debug for TypeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Builtin(ty) => write!(f, "TypeInfo::Builtin({ty:?})"),
            Source::Resolver(_) => f.write_str("TypeInfo::Resolver"),
            Source::Deduced => f.write_str("TypeInfo::Deduced"),
        }
    }
}

/// Where a walk is in the schema: the modelled struct type of the current value, and whether
/// the built-in tables govern it (always true under `metadata`, whatever the kind).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    ty: Option<Ty>,
    builtin: bool,
}

impl TypeInfo {
    /// The schema of a built-in kind; kinds the server has no table for get
    /// [`TypeInfo::deduced`].
    pub fn for_kind(group: &str, version: &str, kind: &str) -> Self {
        match merge_keys::root(group, version, kind) {
            Some(ty) => TypeInfo(Source::Builtin(ty)),
            None => Self::deduced(),
        }
    }

    /// No schema (upstream's deduced type converter): every list is atomic, every map is
    /// granular. `metadata` still follows ObjectMeta's markers.
    pub fn deduced() -> Self {
        TypeInfo(Source::Deduced)
    }

    /// A schema from a resolver, for custom resources (`x-kubernetes-list-type`,
    /// `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`). `metadata` follows ObjectMeta.
    pub fn from_resolver(resolver: Arc<dyn SchemaResolver>) -> Self {
        TypeInfo(Source::Resolver(resolver))
    }

    /// A schema from a list-type callback (all maps granular).
    pub fn from_list_fn(f: impl Fn(&[&str]) -> ListType + Send + Sync + 'static) -> Self {
        Self::from_resolver(Arc::new(ListFn(f)))
    }

    /// Whether this describes a built-in kind (whose Go structs never omit their top-level
    /// `spec`/`status`, so those are never owned as a whole).
    pub(crate) fn is_builtin(&self) -> bool {
        matches!(self.0, Source::Builtin(_))
    }

    pub(crate) fn root(&self) -> Cursor {
        match self.0 {
            Source::Builtin(ty) => Cursor {
                ty: Some(ty),
                builtin: true,
            },
            _ => Cursor {
                ty: None,
                builtin: false,
            },
        }
    }

    /// The cursor of field `name` (or of the items of list `name`) under `cur`; `path` is the
    /// path of `cur`.
    pub(crate) fn descend(&self, cur: Cursor, path: &[&str], name: &str) -> Cursor {
        if path.is_empty() && name == "metadata" {
            return Cursor {
                ty: Some(Ty::ObjectMeta),
                builtin: true,
            };
        }
        if cur.builtin {
            Cursor {
                ty: merge_keys::field(cur.ty, name).and_then(|f| f.ty),
                builtin: true,
            }
        } else {
            cur
        }
    }

    /// The list type of the list at `path` (non-empty); `parent` is the cursor of the value
    /// holding it.
    pub(crate) fn list_type(&self, parent: Cursor, path: &[&str]) -> ListType {
        if parent.builtin {
            return builtin_list_type(parent.ty, path);
        }
        match &self.0 {
            Source::Resolver(r) => r.list_type(path),
            _ => ListType::Atomic,
        }
    }

    /// The map type of the map at `path`; `parent` is the cursor of the value holding it.
    pub(crate) fn map_type(&self, parent: Cursor, path: &[&str]) -> MapType {
        if parent.builtin {
            return builtin_map_type(path);
        }
        match &self.0 {
            Source::Resolver(r) => r.map_type(path),
            _ => MapType::Granular,
        }
    }

    /// The list type at `path` from the root (test and diagnostics helper).
    pub fn list_type_at(&self, path: &[&str]) -> ListType {
        let Some((_, parents)) = path.split_last() else {
            return ListType::Atomic;
        };
        let mut cur = self.root();
        for (i, name) in parents.iter().enumerate() {
            cur = self.descend(cur, &path[..i], name);
        }
        self.list_type(cur, path)
    }

    /// The map type at `path` from the root (test and diagnostics helper).
    pub fn map_type_at(&self, path: &[&str]) -> MapType {
        let Some((_, parents)) = path.split_last() else {
            return MapType::Granular;
        };
        let mut cur = self.root();
        for (i, name) in parents.iter().enumerate() {
            cur = self.descend(cur, &path[..i], name);
        }
        self.map_type(cur, path)
    }
}

/// Built-in list types: a merge key makes an associative list, `patchStrategy:"merge"` on a
/// primitive list makes a set, anything else is atomic. A few lists carry explicit
/// `+listMapKey` markers with more than the merge key.
fn builtin_list_type(parent: Option<Ty>, path: &[&str]) -> ListType {
    let Some(name) = path.last() else {
        return ListType::Atomic;
    };
    let Some(meta) = merge_keys::field(parent, name).and_then(|f| f.meta) else {
        return ListType::Atomic;
    };
    if meta.strategy != PatchStrategy::Merge {
        return ListType::Atomic;
    }
    let tcp = || ListKey {
        name: "protocol".to_owned(),
        default: Some(Value::String("TCP".to_owned())),
    };
    match (parent, *name, meta.merge_key) {
        (Some(Ty::Container), "ports", _) => {
            ListType::Map(vec![ListKey::required("containerPort"), tcp()])
        }
        (Some(Ty::ServiceSpec), "ports", _) => {
            ListType::Map(vec![ListKey::required("port"), tcp()])
        }
        (Some(Ty::PodSpec), "topologySpreadConstraints", _) => ListType::Map(vec![
            ListKey::required("topologyKey"),
            ListKey::required("whenUnsatisfiable"),
        ]),
        (_, _, Some(key)) => ListType::Map(vec![ListKey::required(key)]),
        (_, _, None) => ListType::Set,
    }
}

/// Built-in atomic maps: label selectors (`+structType=atomic`), `spec.selector` of every
/// workload and Service (`+mapType=atomic` / LabelSelector) and a pod's `nodeSelector`.
fn builtin_map_type(path: &[&str]) -> MapType {
    match path {
        [.., "labelSelector" | "namespaceSelector" | "nodeSelector"] => MapType::Atomic,
        [.., "spec", "selector"] => MapType::Atomic,
        _ => MapType::Granular,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> ListType {
        ListType::Map(names.iter().map(|n| ListKey::required(n)).collect())
    }

    #[test]
    fn builtin_list_types() {
        let tcp = ListKey {
            name: "protocol".to_owned(),
            default: Some(Value::String("TCP".to_owned())),
        };
        let deploy = TypeInfo::for_kind("apps", "v1", "Deployment");
        let pod = TypeInfo::for_kind("", "v1", "Pod");
        let svc = TypeInfo::for_kind("", "v1", "Service");
        let widget = TypeInfo::deduced();
        let tpl = |rest: &[&'static str]| {
            let mut p = vec!["spec", "template", "spec"];
            p.extend_from_slice(rest);
            p
        };
        let cases: Vec<(&TypeInfo, Vec<&str>, ListType)> = vec![
            (&deploy, tpl(&["containers"]), keys(&["name"])),
            (&deploy, tpl(&["initContainers"]), keys(&["name"])),
            (&deploy, tpl(&["containers", "env"]), keys(&["name"])),
            (
                &deploy,
                tpl(&["containers", "ports"]),
                ListType::Map(vec![ListKey::required("containerPort"), tcp.clone()]),
            ),
            (
                &deploy,
                tpl(&["containers", "volumeMounts"]),
                keys(&["mountPath"]),
            ),
            (&deploy, tpl(&["volumes"]), keys(&["name"])),
            (&deploy, tpl(&["containers", "args"]), ListType::Atomic),
            (&deploy, tpl(&["tolerations"]), ListType::Atomic),
            (&deploy, vec!["status", "conditions"], keys(&["type"])),
            (&pod, vec!["spec", "containers"], keys(&["name"])),
            (&pod, vec!["metadata", "finalizers"], ListType::Set),
            (&pod, vec!["metadata", "ownerReferences"], keys(&["uid"])),
            (
                &svc,
                vec!["spec", "ports"],
                ListType::Map(vec![ListKey::required("port"), tcp]),
            ),
            (&svc, vec!["spec", "ipFamilies"], ListType::Atomic),
            (&widget, vec!["spec", "items"], ListType::Atomic),
            (&widget, vec!["metadata", "finalizers"], ListType::Set),
        ];
        for (ti, path, want) in cases {
            assert_eq!(ti.list_type_at(&path), want, "{ti:?} {path:?}");
        }
    }

    #[test]
    fn builtin_map_types() {
        let deploy = TypeInfo::for_kind("apps", "v1", "Deployment");
        let cases: Vec<(Vec<&str>, MapType)> = vec![
            (vec!["spec", "selector"], MapType::Atomic),
            (
                vec!["spec", "template", "spec", "nodeSelector"],
                MapType::Atomic,
            ),
            (
                vec!["spec", "template", "metadata", "labels"],
                MapType::Granular,
            ),
            (vec!["metadata", "annotations"], MapType::Granular),
            (vec!["spec", "strategy"], MapType::Granular),
        ];
        for (path, want) in cases {
            assert_eq!(deploy.map_type_at(&path), want, "{path:?}");
        }
    }

    #[test]
    fn resolver_plugs_in_custom_list_types() {
        let ti = TypeInfo::from_list_fn(|path| match path {
            ["spec", "ports"] => keys(&["port", "protocol"]),
            ["spec", "tags"] => ListType::Set,
            _ => ListType::Atomic,
        });
        assert_eq!(
            ti.list_type_at(&["spec", "ports"]),
            keys(&["port", "protocol"])
        );
        assert_eq!(ti.list_type_at(&["spec", "tags"]), ListType::Set);
        assert_eq!(ti.list_type_at(&["spec", "other"]), ListType::Atomic);
        // metadata is ObjectMeta for every kind.
        assert_eq!(ti.list_type_at(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(ti.map_type_at(&["spec", "selector"]), MapType::Granular);
    }
}
