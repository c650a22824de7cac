//! The two operations the apiserver calls: [`apply`] (server-side apply: merge, prune,
//! conflicts, ownership) and [`update_managed_fields`] (ownership after create, update and
//! non-apply patches), plus the conflict error in upstream's wording.

use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, Path};
use super::managed::{stripped_fields, ManagedFields, ManagedFieldsEntry, Operation};
use super::typeinfo::TypeInfo;
use super::walk::Walker;
use super::ApplyError;

/// The manager upstream gives the fields of an untracked object on its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Who is writing: the field manager, the subresource written through (`""` for the main
/// resource) and the time to stamp on its entry (RFC 3339, e.g. `2026-01-01T00:00:00Z`).
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The field manager name.
    pub manager: &'a str,
    /// The subresource (`""`, `"status"`, `"scale"`, ...).
    pub subresource: &'a str,
    /// The timestamp for entries this write changes.
    pub time: &'a str,
    /// Subtrees nobody gains through this write because the strategy resets them (upstream's
    /// `ResetFieldsStrategy`): typically `status` on the main resource and `spec` on
    /// `/status`. Changes there neither conflict nor move ownership.
    pub ignored: &'a [Path],
}

impl Writer<'_> {
    fn drop_ignored(&self, set: &mut FieldSet) {
        for path in self.ignored {
            set.remove_subtree(&path.0);
        }
    }
}

/// One field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager as upstream prints it (`"kubectl" using apps/v1`).
    pub manager: String,
    /// The contested field.
    pub path: Path,
    sort_key: (String, Operation, String, String),
}

/// Every conflict of a failed apply; `Display` is upstream's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// The Status causes upstream sends: `(message, field)` pairs for reason
    /// `FieldManagerConflict`, e.g. `("conflict with \"kubectl\" using apps/v1", ".spec.replicas")`.
    pub fn causes(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|c| (format!("conflict with {}", c.manager), c.path.to_string()))
            .collect()
    }
}

impl fmt::Display for Conflicts {
    /// `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`, or for
    /// several `Apply failed with N conflicts: conflicts with "m":` and one `- <path>` line
    /// per field, grouped by manager in sorted order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager, only.path
            );
        }
        let mut lines = Vec::new();
        let mut current: Option<&(String, Operation, String, String)> = None;
        for c in &self.0 {
            if current != Some(&c.sort_key) {
                lines.push(format!("conflicts with {}:", c.manager));
                current = Some(&c.sort_key);
            }
            lines.push(format!("- {}", c.path));
        }
        write!(
            f,
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }
}

/// The field set of an applied configuration, as the applier will own it (identity metadata
/// stripped). Fails like [`apply`] on configurations that do not fit the schema.
pub fn field_set(obj: &Value, types: &TypeInfo) -> Result<FieldSet, ApplyError> {
    let mut set = Walker {
        types,
        strict: true,
    }
    .field_set(obj)?;
    set.subtract(stripped_fields());
    Ok(set)
}

fn api_version_of<'v>(obj: &'v Value, fallback: Option<&'v Value>) -> &'v str {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .or_else(|| fallback?.get("apiVersion")?.as_str())
        .unwrap_or_default()
}

/// Server-side apply: merges `applied` into `live` (`None` = the object does not exist yet,
/// so this is a create), removes fields this manager applied before but no longer does and
/// nobody else owns, and records the applier as owner of exactly the applied fields.
///
/// Fields another manager owns whose value the apply changes are conflicts: without `force`
/// the apply fails with [`ApplyError::Conflicts`]; with `force` ownership moves to the
/// applier. Applying a field with the value it already has shares ownership. Returns the new
/// object (its `metadata.managedFields` still the live one: write the returned entries with
/// [`ManagedFields::write_to_object`]) and the new entries, sorted.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
    managed: &ManagedFields,
    types: &TypeInfo,
) -> Result<(Value, ManagedFields), ApplyError> {
    let has_managed = applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|mf| !mf.is_null() && mf.as_array().is_none_or(|a| !a.is_empty()));
    if has_managed {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".to_owned(),
        ));
    }
    let walker = Walker {
        types,
        strict: true,
    };
    // Pruning sees the unstripped set, as upstream strips only after the merge: the applied
    // `metadata.name` keeps `metadata` itself from looking abandoned.
    let raw_config_set = walker.field_set(applied)?;
    let mut config_set = raw_config_set.difference(stripped_fields());
    writer.drop_ignored(&mut config_set);
    let mut merged = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    walker.merge_into(&mut merged, applied);

    let mut out = match live {
        // Upstream (skipNonAppliedManager) hands every existing field of an untracked object
        // to `before-first-apply`, so a first apply conflicts instead of silently taking over.
        Some(live) if managed.entries.is_empty() => {
            let before = Writer {
                manager: BEFORE_FIRST_APPLY,
                subresource: "",
                ..*writer
            };
            track_update(None, live, &before, managed, types)
        }
        _ => managed.clone(),
    };
    let api_version = api_version_of(applied, live);
    let mine = out
        .entries
        .iter()
        .position(|e| e.is_for(writer.manager, Operation::Apply, "", writer.subresource));
    let previous = mine.map(|i| out.entries.swap_remove(i));
    if let Some(last) = previous.as_ref().filter(|p| !p.fields.is_empty()) {
        let mut owned = raw_config_set;
        for e in &out.entries {
            owned.union_with(&e.fields);
        }
        walker.prune(&mut merged, &last.fields, &owned);
    }

    let mut cmp = walker.compare(live, &merged);
    cmp.added.subtract(stripped_fields());
    cmp.modified.subtract(stripped_fields());
    writer.drop_ignored(&mut cmp.added);
    writer.drop_ignored(&mut cmp.modified);
    writer.drop_ignored(&mut cmp.removed);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for e in &out.entries {
        let contested = e.fields.intersection(&changed);
        if contested.is_empty() {
            continue;
        }
        // Upstream names conflicting managers by their identifier, which never carries the
        // time: `"kubectl-edit" using v1`, not `... at <time>`.
        let manager = ManagedFieldsEntry {
            time: None,
            fields: FieldSet::new(),
            ..e.clone()
        }
        .describe();
        for path in contested.paths() {
            conflicts.push(Conflict {
                manager: manager.clone(),
                path,
                sort_key: (
                    e.manager.clone(),
                    e.operation,
                    e.api_version.clone(),
                    e.subresource.clone(),
                ),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| a.sort_key.cmp(&b.sort_key).then(a.path.cmp(&b.path)));
        return Err(ApplyError::Conflicts(Conflicts(conflicts)));
    }
    for e in &mut out.entries {
        e.fields.subtract(&changed);
        e.fields.subtract(&cmp.removed);
    }
    let object_changed = !cmp.is_same();
    let time = match previous {
        Some(p) if !object_changed && p.fields == config_set => p.time,
        _ => Some(writer.time.to_owned()),
    };
    out.entries.push(ManagedFieldsEntry {
        manager: writer.manager.to_owned(),
        operation: Operation::Apply,
        api_version: api_version.to_owned(),
        time,
        subresource: writer.subresource.to_owned(),
        fields: config_set,
    });
    out.drop_empty();
    out.sort();
    Ok((merged, out))
}

/// Ownership after a create (`old` = `None`), update or non-apply patch from `old` to `new`:
/// the writer's `Update` entry (per apiVersion and subresource) gains every field it added or
/// changed and loses the ones it removed; every other manager loses the fields that changed
/// or disappeared. Entries left empty are dropped; the writer's time is stamped when it
/// gained fields. Returns the entries sorted like upstream.
///
/// Like upstream, an existing object without entries stays untracked (only a create, or an
/// apply, starts tracking), so `old: Some(..)` with no entries returns no entries.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    writer: &Writer<'_>,
    managed: &ManagedFields,
    types: &TypeInfo,
) -> ManagedFields {
    if old.is_some() && managed.entries.is_empty() {
        return ManagedFields::default();
    }
    track_update(old, new, writer, managed, types)
}

fn track_update(
    old: Option<&Value>,
    new: &Value,
    writer: &Writer<'_>,
    managed: &ManagedFields,
    types: &TypeInfo,
) -> ManagedFields {
    let mut cmp = Walker {
        types,
        strict: false,
    }
    .compare(old, new);
    cmp.added.subtract(stripped_fields());
    cmp.modified.subtract(stripped_fields());
    cmp.removed.subtract(stripped_fields());
    writer.drop_ignored(&mut cmp.added);
    writer.drop_ignored(&mut cmp.modified);
    writer.drop_ignored(&mut cmp.removed);
    let mut out = managed.clone();
    if cmp.is_same() {
        return out;
    }
    let api_version = api_version_of(new, old);
    // On create nothing is modified: move the (whole-object) added set instead of copying it.
    let gained = if cmp.modified.is_empty() {
        std::mem::take(&mut cmp.added)
    } else {
        cmp.modified.union(&cmp.added)
    };
    let mine = out.entries.iter().position(|e| {
        e.is_for(
            writer.manager,
            Operation::Update,
            api_version,
            writer.subresource,
        )
    });
    let previous = mine.map(|i| out.entries.swap_remove(i));
    for e in &mut out.entries {
        e.fields.subtract(&gained);
        e.fields.subtract(&cmp.removed);
    }
    let (mut fields, time) = match previous {
        Some(p) => (p.fields, p.time),
        None => (FieldSet::new(), None),
    };
    fields.subtract(&cmp.removed);
    let time = if gained.is_empty() {
        time
    } else {
        fields.union_with(&gained);
        Some(writer.time.to_owned())
    };
    out.entries.push(ManagedFieldsEntry {
        manager: writer.manager.to_owned(),
        operation: Operation::Update,
        api_version: api_version.to_owned(),
        time,
        subresource: writer.subresource.to_owned(),
        fields,
    });
    out.drop_empty();
    out.sort();
    out
}
