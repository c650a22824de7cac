//! Field sets as structured-merge-diff models them: a tree of path elements where a node is
//! either a *member* (the field itself is owned) or only a parent of owned fields, plus the
//! `FieldsV1` JSON encoding stored in `metadata.managedFields[].fieldsV1`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::FieldsError;

/// One step of a field path. The variant order is upstream's sort order (field names, then
/// keys, then set values, then indices), which is also the order `FieldsV1` is written in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A map or struct field: `f:<name>`.
    Field(String),
    /// An associative-list item, identified by its key fields: `k:{"name":"x"}`. The pairs are
    /// `(field name, compact JSON of the value)`, sorted by name.
    Key(Vec<(String, String)>),
    /// A set-list item, identified by its value (compact JSON): `v:"x"`.
    Value(String),
    /// A list item by position: `i:<n>` (not produced for the list types modelled here, but
    /// accepted when decoding).
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` key of this element (`f:`, `k:`, `v:` or `i:` prefixed).
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut out = String::from("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    out.push_str(value);
                }
                out.push('}');
                out
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses a `FieldsV1` key; JSON in `k:`/`v:` keys is re-encoded compactly so equal values
    /// always compare equal.
    pub fn from_fields_v1_key(key: &str) -> Result<Self, FieldsError> {
        let bad = || FieldsError::InvalidFieldsV1(format!("invalid path element {key:?}"));
        let (prefix, rest) = key.split_at_checked(2).ok_or_else(bad)?;
        match prefix {
            "f:" => Ok(PathElement::Field(rest.to_owned())),
            "v:" => {
                let value: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                Ok(PathElement::Value(value.to_string()))
            }
            "i:" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            "k:" => {
                let map: Map<String, Value> = serde_json::from_str(rest).map_err(|_| bad())?;
                let mut fields: Vec<(String, String)> =
                    map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
                fields.sort();
                Ok(PathElement::Key(fields))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PathElement {
    /// Upstream's `PathElement.String()`: `.name`, `[k1=v1,k2=v2]`, `[=value]`, `[3]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_str("[")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}={value}")?;
                }
                f.write_str("]")
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A field path from the object root, printed like upstream (`.spec.containers[name="a"].image`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path of plain field names, e.g. `Path::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> Self {
        Path(
            names
                .iter()
                .map(|n| PathElement::Field((*n).to_owned()))
                .collect(),
        )
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|pe| write!(f, "{pe}"))
    }
}

/// A set of field paths, stored as a tree. The root node stands for the whole object; its
/// `member` flag is never set. Nodes that are neither members nor parents of members are
/// pruned by every operation, so `FieldSet::default()` is the only empty set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub(crate) member: bool,
    pub(crate) children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Adds `path` (the empty path is ignored: the root is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let mut node = self.children.entry(first.clone()).or_default();
        for pe in rest {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            *self = FieldSet::new();
            return;
        };
        if rest.is_empty() {
            self.children.remove(first);
            return;
        }
        if let Some(child) = self.children.get_mut(first) {
            child.remove_subtree(rest);
            if child.is_empty() {
                self.children.remove(first);
            }
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        !path.is_empty() && self.node(path).is_some_and(|n| n.member)
    }

    /// The subtree at `path` (the set of paths below it, relative to it).
    pub fn node(&self, path: &[PathElement]) -> Option<&FieldSet> {
        path.iter().try_fold(self, |node, pe| node.children.get(pe))
    }

    /// The subtree of the child `pe`.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Whether this node is the element itself (`.` in `FieldsV1`) rather than only a parent.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// Every member path, in sorted order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            if child.member {
                out.push(Path(prefix.clone()));
            }
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The number of member paths.
    pub fn len(&self) -> usize {
        self.children
            .values()
            .map(|c| usize::from(c.member) + c.len())
            .sum()
    }

    /// Adds every path of `other` to `self`.
    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, theirs) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.union_with(theirs),
                None => {
                    self.children.insert(pe.clone(), theirs.clone());
                }
            }
        }
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Removes every path of `other` from `self` (parents of remaining paths stay).
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        if other.children.is_empty() || self.children.is_empty() {
            return;
        }
        self.children.retain(|pe, mine| {
            if let Some(theirs) = other.children.get(pe) {
                mine.subtract(theirs);
            }
            !mine.is_empty()
        });
    }

    /// `self \ other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// `self ∩ other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        // Walk the smaller side so the cost follows the smaller set.
        let (small, large) = if self.children.len() <= other.children.len() {
            (self, other)
        } else {
            (other, self)
        };
        for (pe, a) in &small.children {
            if let Some(b) = large.children.get(pe) {
                let both = a.intersection(b);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Whether the two sets share a path.
    pub fn intersects(&self, other: &FieldSet) -> bool {
        (self.member && other.member)
            || self
                .children
                .iter()
                .any(|(pe, a)| other.children.get(pe).is_some_and(|b| a.intersects(b)))
    }

    /// Attaches `child` under `pe` unless it is empty (merging with an existing child).
    pub(crate) fn attach(&mut self, pe: PathElement, child: FieldSet) {
        if child.is_empty() {
            return;
        }
        match self.children.get_mut(&pe) {
            Some(mine) => mine.union_with(&child),
            None => {
                self.children.insert(pe, child);
            }
        }
    }

    /// The `FieldsV1` JSON of this set: `{"f:spec":{"f:replicas":{}}}`, with `"."` marking a
    /// node that is both a member and a parent.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        self.write_children(&mut map);
        Value::Object(map)
    }

    fn write_children(&self, map: &mut Map<String, Value>) {
        for (pe, child) in &self.children {
            let mut inner = Map::new();
            if child.member && !child.children.is_empty() {
                inner.insert(".".to_owned(), Value::Object(Map::new()));
            }
            child.write_children(&mut inner);
            map.insert(pe.to_fields_v1_key(), Value::Object(inner));
        }
    }

    /// Parses `FieldsV1` JSON. A leaf (`{}`) is a member; `"."` makes a parent a member too.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldsError> {
        let Value::Object(map) = value else {
            return Err(FieldsError::InvalidFieldsV1(
                "fieldsV1 must be a JSON object".to_owned(),
            ));
        };
        let mut set = FieldSet::new();
        for (key, child) in map {
            if key == "." {
                return Err(FieldsError::InvalidFieldsV1(
                    "\".\" is not allowed at the root".to_owned(),
                ));
            }
            set.children.insert(
                PathElement::from_fields_v1_key(key)?,
                Self::parse_node(child)?,
            );
        }
        Ok(set)
    }

    fn parse_node(value: &Value) -> Result<FieldSet, FieldsError> {
        let Value::Object(map) = value else {
            return Err(FieldsError::InvalidFieldsV1(format!(
                "expected an object, got {value}"
            )));
        };
        let mut node = FieldSet {
            member: map.is_empty(),
            children: BTreeMap::new(),
        };
        for (key, child) in map {
            if key == "." {
                node.member = true;
                continue;
            }
            node.children.insert(
                PathElement::from_fields_v1_key(key)?,
                Self::parse_node(child)?,
            );
        }
        Ok(node)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> Self {
        let mut set = FieldSet::new();
        for path in iter {
            set.insert(&path.0);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn key(pairs: &[(&str, Value)]) -> PathElement {
        let mut fields: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_string()))
            .collect();
        fields.sort();
        PathElement::Key(fields)
    }

    fn set(paths: &[Vec<PathElement>]) -> FieldSet {
        paths.iter().cloned().map(Path).collect()
    }

    #[test]
    fn path_element_keys_round_trip() {
        let cases = [
            (f("replicas"), "f:replicas", ".replicas"),
            (
                key(&[("name", json!("nginx"))]),
                r#"k:{"name":"nginx"}"#,
                r#"[name="nginx"]"#,
            ),
            (
                key(&[("protocol", json!("TCP")), ("containerPort", json!(80))]),
                r#"k:{"containerPort":80,"protocol":"TCP"}"#,
                r#"[containerPort=80,protocol="TCP"]"#,
            ),
            (
                PathElement::Value(json!("a/b").to_string()),
                r#"v:"a/b""#,
                r#"[="a/b"]"#,
            ),
            (PathElement::Index(3), "i:3", "[3]"),
        ];
        for (pe, encoded, shown) in cases {
            assert_eq!(pe.to_fields_v1_key(), encoded);
            assert_eq!(pe.to_string(), shown);
            assert_eq!(PathElement::from_fields_v1_key(encoded).ok(), Some(pe));
        }
        // Whitespace and key order in stored keys do not matter.
        assert_eq!(
            PathElement::from_fields_v1_key(r#"k:{"protocol": "TCP", "containerPort": 80}"#).ok(),
            Some(key(&[
                ("containerPort", json!(80)),
                ("protocol", json!("TCP"))
            ]))
        );
        for bad in ["x:1", "k:[1]", "v:", "i:x", ""] {
            assert!(PathElement::from_fields_v1_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_v1_round_trips() {
        let cases = [
            json!({}),
            json!({"f:spec": {"f:replicas": {}}}),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}),
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {
                ".": {}, "f:image": {}, "f:name": {}
            }}}}),
            json!({"f:metadata": {"f:finalizers": {"v:\"x\"": {}}}}),
        ];
        for case in cases {
            let parsed = FieldSet::from_fields_v1(&case).expect("parse");
            assert_eq!(parsed.to_fields_v1(), case);
        }
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
        assert!(FieldSet::from_fields_v1(&json!({".": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    }

    #[test]
    fn fields_v1_sorts_like_upstream() {
        let s = set(&[
            vec![f("spec"), f("b")],
            vec![f("spec"), f("a")],
            vec![f("metadata"), f("labels"), f("x")],
        ]);
        assert_eq!(
            serde_json::to_string(&s.to_fields_v1()).expect("json"),
            r#"{"f:metadata":{"f:labels":{"f:x":{}}},"f:spec":{"f:a":{},"f:b":{}}}"#
        );
    }

    #[test]
    fn set_operations() {
        let a = set(&[
            vec![f("spec"), f("replicas")],
            vec![f("spec"), f("paused")],
            vec![f("metadata"), f("labels"), f("app")],
        ]);
        let b = set(&[
            vec![f("spec"), f("replicas")],
            vec![f("spec")],
            vec![f("status"), f("x")],
        ]);
        let paths = |s: &FieldSet| s.paths().iter().map(Path::to_string).collect::<Vec<_>>();
        type Case<'a> = (&'a str, FieldSet, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "union",
                a.union(&b),
                vec![
                    ".metadata.labels.app",
                    ".spec",
                    ".spec.paused",
                    ".spec.replicas",
                    ".status.x",
                ],
            ),
            (
                "difference",
                a.difference(&b),
                vec![".metadata.labels.app", ".spec.paused"],
            ),
            ("intersection", a.intersection(&b), vec![".spec.replicas"]),
            ("b minus a", b.difference(&a), vec![".spec", ".status.x"]),
        ];
        for (name, got, want) in cases {
            assert_eq!(paths(&got), want, "{name}");
        }
        assert!(a.intersects(&b));
        assert!(!a.difference(&b).intersects(&b));
        assert_eq!(a.len(), 3);
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.difference(&a), FieldSet::new());
        assert!(a.has(&[f("spec"), f("paused")]));
        let mut pruned = a.union(&b);
        pruned.remove_subtree(&[f("spec")]);
        assert_eq!(paths(&pruned), [".metadata.labels.app", ".status.x"]);
        pruned.remove_subtree(&[f("metadata"), f("labels"), f("app")]);
        assert_eq!(paths(&pruned), [".status.x"]);
        assert!(!a.has(&[f("spec")]));
    }
}
