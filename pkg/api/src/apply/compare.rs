//! Comparing two versions of an object as sets of added, modified and removed paths, which
//! is what ownership changes are computed from.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::typeinfo::{Cursor, ListType, MapType};
use super::walk::{lenient_pe, skipped, Walker};

/// The comparison of two versions of an object, as sets of paths.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Paths present only in the old version.
    pub removed: FieldSet,
    /// Leaf paths whose value changed.
    pub modified: FieldSet,
    /// Paths present only in the new version.
    pub added: FieldSet,
}

impl Comparison {
    /// Whether the versions are equal as far as ownership is concerned.
    pub fn is_same(&self) -> bool {
        self.removed.is_empty() && self.modified.is_empty() && self.added.is_empty()
    }

    /// Hangs `child` under `pe`, building the element only when something changed there (the
    /// create path compares every field, so this avoids a key clone per unchanged field).
    fn attach(&mut self, pe: impl FnOnce() -> PathElement, child: Comparison) {
        if child.is_same() {
            return;
        }
        let pe = pe();
        let parts = [
            (&mut self.removed, child.removed),
            (&mut self.modified, child.modified),
            (&mut self.added, child.added),
        ];
        for (mine, theirs) in parts {
            if !theirs.is_empty() {
                mine.attach(pe.clone(), theirs);
            }
        }
    }

    /// Takes the children of `inner` (a comparison of the same node) by move.
    fn absorb_children(&mut self, inner: Comparison) {
        self.removed.children = inner.removed.children;
        self.modified.children = inner.modified.children;
        self.added.children = inner.added.children;
    }
}

impl Walker<'_> {
    /// Compares two versions of an object (`None` = absent). Leaves (scalars, atomic lists and
    /// maps) are added, removed or modified; map fields and list items are added or removed
    /// as a whole too, which is how an updater comes to own `f:labels` with its `.`.
    pub fn compare(&self, old: Option<&Value>, new: &Value) -> Comparison {
        let mut names = Vec::new();
        let root = self.types.root();
        match (old, new) {
            (Some(Value::Object(o)), Value::Object(n)) => {
                self.compare_maps(Some(o), Some(n), root, &mut names)
            }
            (None, Value::Object(n)) => self.compare_maps(None, Some(n), root, &mut names),
            _ => Comparison::default(),
        }
    }

    fn compare_maps<'v>(
        &self,
        old: Option<&'v Map<String, Value>>,
        new: Option<&'v Map<String, Value>>,
        cur: Cursor,
        names: &mut Vec<&'v str>,
    ) -> Comparison {
        let mut out = Comparison::default();
        let top_level_struct = self.types.is_builtin() && names.is_empty();
        for (k, nv) in new.into_iter().flatten() {
            if skipped(names, k) {
                continue;
            }
            let ov = old.and_then(|o| o.get(k));
            let child = self.compare_field(k, ov, Some(nv), cur, names, top_level_struct);
            out.attach(|| PathElement::Field(k.clone()), child);
        }
        for (k, ov) in old.into_iter().flatten() {
            if skipped(names, k) || new.is_some_and(|n| n.contains_key(k)) {
                continue;
            }
            let child = self.compare_field(k, Some(ov), None, cur, names, top_level_struct);
            out.attach(|| PathElement::Field(k.clone()), child);
        }
        out
    }

    fn compare_field<'v>(
        &self,
        k: &'v str,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        cur: Cursor,
        names: &mut Vec<&'v str>,
        top_level_struct: bool,
    ) -> Comparison {
        let child_cur = self.types.descend(cur, names, k);
        names.push(k);
        let mut c = self.compare_value(old, new, cur, child_cur, names);
        // Go structs always serialize their top-level `spec`/`status`/`metadata`, so upstream
        // never sees those added or removed as a whole for built-in kinds. Top-level maps
        // (a ConfigMap's `data`) are omitted when empty, so creating them is owned with `.`.
        if top_level_struct && matches!(k, "spec" | "status" | "metadata") {
            c.added.member = false;
            c.removed.member = false;
        }
        names.pop();
        c
    }

    fn compare_value<'v>(
        &self,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        parent: Cursor,
        cur: Cursor,
        names: &mut Vec<&'v str>,
    ) -> Comparison {
        let mut out = Comparison::default();
        out.added.member = old.is_none();
        out.removed.member = new.is_none();
        let is_obj = |v: Option<&Value>| v.is_none_or(Value::is_object);
        let is_arr = |v: Option<&Value>| v.is_none_or(Value::is_array);
        if is_obj(old) && is_obj(new) && self.types.map_type(parent, names) == MapType::Granular {
            let inner = self.compare_maps(
                old.and_then(Value::as_object),
                new.and_then(Value::as_object),
                cur,
                names,
            );
            out.absorb_children(inner);
            return out;
        }
        if is_arr(old) && is_arr(new) {
            let lt = self.types.list_type(parent, names);
            if lt != ListType::Atomic {
                self.compare_lists(old, new, &lt, cur, names, &mut out);
                return out;
            }
        }
        if let (Some(o), Some(n)) = (old, new) {
            out.modified.member = o != n;
        }
        out
    }

    fn compare_lists<'v>(
        &self,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        lt: &ListType,
        cur: Cursor,
        names: &mut Vec<&'v str>,
        out: &mut Comparison,
    ) {
        let old_items: &'v [Value] = old.and_then(Value::as_array).map_or(&[], Vec::as_slice);
        let new_items: &'v [Value] = new.and_then(Value::as_array).map_or(&[], Vec::as_slice);
        let keyed = |items: &'v [Value]| -> Vec<(PathElement, &'v Value)> {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| lenient_pe(lt, item, i).map(|pe| (pe, item)))
                .collect()
        };
        let old_keyed = keyed(old_items);
        let new_keyed = keyed(new_items);
        // The first item wins for duplicate keys in stored objects, as upstream tolerates.
        let mut old_by_key: HashMap<&PathElement, &Value> = HashMap::new();
        for (pe, item) in &old_keyed {
            old_by_key.entry(pe).or_insert(item);
        }
        let new_keys: HashMap<&PathElement, ()> =
            new_keyed.iter().map(|(pe, _)| (pe, ())).collect();
        let is_map = matches!(lt, ListType::Map(_));
        for (pe, item) in &new_keyed {
            let before = old_by_key.get(pe).copied();
            let child = self.compare_item(before, Some(item), is_map, cur, names);
            out.attach(|| pe.clone(), child);
        }
        for (pe, item) in &old_keyed {
            if !new_keys.contains_key(pe) {
                let child = self.compare_item(Some(item), None, is_map, cur, names);
                out.attach(|| pe.clone(), child);
            }
        }
    }

    fn compare_item<'v>(
        &self,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        is_map: bool,
        cur: Cursor,
        names: &mut Vec<&'v str>,
    ) -> Comparison {
        let mut out = Comparison::default();
        out.added.member = old.is_none();
        out.removed.member = new.is_none();
        if is_map {
            let inner = self.compare_maps(
                old.and_then(Value::as_object),
                new.and_then(Value::as_object),
                cur,
                names,
            );
            out.absorb_children(inner);
        }
        out
    }
}
