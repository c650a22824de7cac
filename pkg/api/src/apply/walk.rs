//! The schema-aware walks over JSON objects. This file holds the shared walker and the field
//! set of an object; `compare.rs` diffs two versions and `merge.rs` merges an applied
//! configuration and prunes what an applier gave up.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::typeinfo::{Cursor, ListKey, ListType, MapType, TypeInfo};
use super::ApplyError;

/// `metadata.managedFields` is bookkeeping, never a field anybody owns.
pub(super) fn skipped(path: &[&str], key: &str) -> bool {
    key == "managedFields" && path.len() == 1 && path[0] == "metadata"
}

/// The path element of an associative-list item. `strict` (for applied configurations) fails
/// on a missing key field without default, as upstream does; otherwise missing keys are left
/// out so stored objects that predate a key still walk.
fn item_key(
    item: &Value,
    keys: &[ListKey],
    strict: bool,
    path: &[&str],
) -> Result<PathElement, ApplyError> {
    let Value::Object(obj) = item else {
        return Err(ApplyError::Invalid(format!(
            ".{}: associative list items must be objects",
            path.join(".")
        )));
    };
    let mut fields = Vec::with_capacity(keys.len());
    for key in keys {
        match obj.get(&key.name).or(key.default.as_ref()) {
            Some(v) => fields.push((key.name.clone(), v.to_string())),
            None if strict => {
                return Err(ApplyError::Invalid(format!(
                    ".{}: associative list with keys has an element that omits key field {:?} \
                     (and doesn't have default value)",
                    path.join("."),
                    key.name
                )));
            }
            None => {}
        }
    }
    fields.sort();
    Ok(PathElement::Key(fields))
}

/// The path element of a list item, or `None` for atomic lists. Lenient: it never fails.
pub(super) fn lenient_pe(lt: &ListType, item: &Value, index: usize) -> Option<PathElement> {
    match lt {
        ListType::Atomic => None,
        ListType::Set => Some(PathElement::Value(item.to_string())),
        ListType::Map(keys) => {
            Some(item_key(item, keys, false, &[]).unwrap_or(PathElement::Index(index)))
        }
    }
}

/// Schema walks share a [`TypeInfo`] and the stack of field names to the current value.
pub(crate) struct Walker<'t> {
    pub types: &'t TypeInfo,
    /// Fail on associative-list items without their keys and on duplicate keys (applied
    /// configurations); stored objects are walked leniently, as upstream tolerates them.
    pub strict: bool,
}

impl<'t> Walker<'t> {
    /// The field set of an applied configuration: every leaf, every atomic list or map, and
    /// every item of a set or associative list (granular maps themselves are not members).
    /// Fails on duplicate list keys or missing key fields, like upstream's validation.
    pub fn field_set(&self, obj: &Value) -> Result<FieldSet, ApplyError> {
        let mut names = Vec::new();
        let mut out = FieldSet::new();
        if let Value::Object(map) = obj {
            self.map_fields(map, self.types.root(), &mut names, &mut out)?;
        }
        Ok(out)
    }

    fn map_fields<'v>(
        &self,
        map: &'v Map<String, Value>,
        cur: Cursor,
        names: &mut Vec<&'v str>,
        out: &mut FieldSet,
    ) -> Result<(), ApplyError> {
        for (k, v) in map {
            if skipped(names, k) {
                continue;
            }
            let child_cur = self.types.descend(cur, names, k);
            names.push(k);
            let mut node = FieldSet::new();
            self.value_fields(v, cur, child_cur, names, &mut node)?;
            names.pop();
            if !node.is_empty() {
                out.children.insert(PathElement::Field(k.clone()), node);
            }
        }
        Ok(())
    }

    /// Fills `node`, the set node of value `v` at `names`; `parent` is the cursor of the value
    /// holding `v` and `cur` its own.
    fn value_fields<'v>(
        &self,
        v: &'v Value,
        parent: Cursor,
        cur: Cursor,
        names: &mut Vec<&'v str>,
        node: &mut FieldSet,
    ) -> Result<(), ApplyError> {
        match v {
            Value::Object(map) if self.types.map_type(parent, names) == MapType::Granular => {
                self.map_fields(map, cur, names, node)
            }
            Value::Array(items) => match self.types.list_type(parent, names) {
                ListType::Atomic => {
                    node.member = true;
                    Ok(())
                }
                lt => {
                    for (i, item) in items.iter().enumerate() {
                        let pe = match &lt {
                            ListType::Map(keys) if self.strict => {
                                item_key(item, keys, true, names)?
                            }
                            _ => lenient_pe(&lt, item, i).unwrap_or(PathElement::Index(i)),
                        };
                        if self.strict && node.children.contains_key(&pe) {
                            return Err(ApplyError::Invalid(format!(
                                ".{}: duplicate entries for key {pe}",
                                names.join(".")
                            )));
                        }
                        let mut child = FieldSet::new();
                        child.member = true;
                        if let (ListType::Map(_), Value::Object(m)) = (&lt, item) {
                            self.map_fields(m, cur, names, &mut child)?;
                        }
                        node.attach(pe, child);
                    }
                    Ok(())
                }
            },
            _ => {
                node.member = true;
                Ok(())
            }
        }
    }
}
