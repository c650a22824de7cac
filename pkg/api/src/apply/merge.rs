//! Merging an applied configuration into the live object by list and map types, and pruning
//! the fields an applier stopped applying that nobody else owns.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::typeinfo::{Cursor, ListType, MapType};
use super::walk::{lenient_pe, skipped, Walker};

impl Walker<'_> {
    /// Merges an applied configuration into `live` in place: granular maps field by field,
    /// set and associative lists item by item (live order first, then new items in the
    /// configuration's order), everything else replaced. A `null` in the configuration
    /// removes the field.
    pub fn merge_into(&self, live: &mut Value, config: &Value) {
        let mut names = Vec::new();
        let root = self.types.root();
        if let (Value::Object(l), Value::Object(c)) = (live, config) {
            self.merge_maps(l, c, root, &mut names);
        }
    }

    fn merge_maps<'v>(
        &self,
        live: &mut Map<String, Value>,
        config: &'v Map<String, Value>,
        cur: Cursor,
        names: &mut Vec<&'v str>,
    ) {
        for (k, cv) in config {
            if skipped(names, k) {
                continue;
            }
            if cv.is_null() {
                live.remove(k);
                continue;
            }
            match live.get_mut(k) {
                Some(lv) => {
                    let child_cur = self.types.descend(cur, names, k);
                    names.push(k);
                    self.merge_value(lv, cv, cur, child_cur, names);
                    names.pop();
                }
                None => {
                    live.insert(k.clone(), cv.clone());
                }
            }
        }
    }

    fn merge_value<'v>(
        &self,
        live: &mut Value,
        config: &'v Value,
        parent: Cursor,
        cur: Cursor,
        names: &mut Vec<&'v str>,
    ) {
        match (&mut *live, config) {
            (Value::Object(l), Value::Object(c))
                if self.types.map_type(parent, names) == MapType::Granular =>
            {
                self.merge_maps(l, c, cur, names);
            }
            (Value::Array(l), Value::Array(c)) => match self.types.list_type(parent, names) {
                ListType::Atomic => *live = config.clone(),
                lt => {
                    let taken = std::mem::take(l);
                    *l = self.merge_lists(taken, c, &lt, cur, names);
                }
            },
            _ => *live = config.clone(),
        }
    }

    /// Upstream keeps live-only items where they were and places configured items in the
    /// configuration's order; this two-pointer walk does the same for the common cases.
    fn merge_lists<'v>(
        &self,
        live: Vec<Value>,
        config: &'v [Value],
        lt: &ListType,
        cur: Cursor,
        names: &mut Vec<&'v str>,
    ) -> Vec<Value> {
        let config_keys: Vec<Option<PathElement>> = config
            .iter()
            .enumerate()
            .map(|(i, item)| lenient_pe(lt, item, i))
            .collect();
        let in_config: HashMap<&PathElement, usize> = config_keys
            .iter()
            .enumerate()
            .filter_map(|(i, pe)| pe.as_ref().map(|pe| (pe, i)))
            .collect();
        let mut live_slots: Vec<Option<Value>> = Vec::with_capacity(live.len());
        let mut live_by_key: HashMap<PathElement, usize> = HashMap::new();
        let mut live_keys = Vec::with_capacity(live.len());
        for (i, item) in live.into_iter().enumerate() {
            let pe = lenient_pe(lt, &item, i);
            if let Some(pe) = &pe {
                live_by_key.entry(pe.clone()).or_insert(i);
            }
            live_keys.push(pe);
            live_slots.push(Some(item));
        }
        let mut out = Vec::with_capacity(live_slots.len() + config.len());
        let (mut i, mut j) = (0, 0);
        while i < live_slots.len() || j < config.len() {
            let live_only = i < live_slots.len()
                && live_slots[i].is_some()
                && !live_keys[i]
                    .as_ref()
                    .is_some_and(|pe| in_config.contains_key(pe));
            if live_only {
                if let Some(item) = live_slots[i].take() {
                    out.push(item);
                }
                i += 1;
            } else if j < config.len() {
                let from_live = config_keys[j]
                    .as_ref()
                    .and_then(|pe| live_by_key.get(pe))
                    .and_then(|&li| live_slots[li].take());
                match (from_live, lt) {
                    (Some(mut item), ListType::Map(_)) => {
                        if let (Value::Object(l), Value::Object(c)) = (&mut item, &config[j]) {
                            self.merge_maps(l, c, cur, names);
                        }
                        out.push(item);
                    }
                    _ => out.push(config[j].clone()),
                }
                j += 1;
            } else {
                i += 1;
            }
        }
        out
    }

    /// Removes from `obj` the fields in `last` (what the applier owned before) that nobody owns
    /// any more (`owned`: every manager's set, the applier's new one included). A field is
    /// still owned when a member of `owned` is at or (for map fields) below it; list items are
    /// only kept by owning the item itself, as upstream's pruning does.
    pub fn prune(&self, obj: &mut Value, last: &FieldSet, owned: &FieldSet) {
        let mut names = Vec::new();
        if let Value::Object(map) = obj {
            self.prune_map(map, last, Some(owned), self.types.root(), &mut names);
        }
    }

    fn prune_map<'l>(
        &self,
        map: &mut Map<String, Value>,
        last: &'l FieldSet,
        owned: Option<&FieldSet>,
        cur: Cursor,
        names: &mut Vec<&'l str>,
    ) {
        for (pe, last_child) in &last.children {
            let PathElement::Field(k) = pe else { continue };
            let owned_child = owned.and_then(|o| o.child(pe));
            let still_owned = owned_child.is_some_and(|o| !o.is_empty());
            if !still_owned {
                map.remove(k);
                continue;
            }
            if last_child.children.is_empty() {
                continue;
            }
            let Some(v) = map.get_mut(k) else { continue };
            let child_cur = self.types.descend(cur, names, k);
            names.push(k);
            self.prune_value(v, last_child, owned_child, cur, child_cur, names);
            names.pop();
        }
    }

    fn prune_value<'l>(
        &self,
        v: &mut Value,
        last: &'l FieldSet,
        owned: Option<&FieldSet>,
        parent: Cursor,
        cur: Cursor,
        names: &mut Vec<&'l str>,
    ) {
        let refs: &[&str] = names;
        match v {
            Value::Object(map) if self.types.map_type(parent, refs) == MapType::Granular => {
                self.prune_map(map, last, owned, cur, names);
            }
            Value::Array(items) => {
                let lt = self.types.list_type(parent, refs);
                if lt == ListType::Atomic {
                    return;
                }
                let mut index = 0;
                items.retain_mut(|item| {
                    let i = index;
                    index += 1;
                    let Some(pe) = lenient_pe(&lt, item, i) else {
                        return true;
                    };
                    let Some(last_child) = last.child(&pe) else {
                        return true;
                    };
                    let owned_child = owned.and_then(|o| o.child(&pe));
                    if last_child.member && !owned_child.is_some_and(FieldSet::is_member) {
                        return false;
                    }
                    if let (Value::Object(m), false) = (item, last_child.children.is_empty()) {
                        self.prune_map(m, last_child, owned_child, cur, names);
                    }
                    true
                });
            }
            _ => {}
        }
    }
}
