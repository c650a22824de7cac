//! `metadata.managedFields`: the typed entries (one per manager, operation, apiVersion and
//! subresource), their JSON shape (k8s-openapi's `ManagedFieldsEntry`), upstream's sort order,
//! and the fields no manager ever owns.

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, Path};
use super::FieldsError;

/// The operation that produced a managed-fields entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`).
    Apply,
    /// Any other write: create, update (`PUT`) or a non-apply `PATCH`.
    Update,
}

impl Operation {
    /// The wire name (`"Apply"` / `"Update"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    /// The field manager (`?fieldManager=`, or derived from the user agent).
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The apiVersion the fields were set with.
    pub api_version: String,
    /// When the entry last changed (RFC 3339), if known.
    pub time: Option<String>,
    /// The subresource written through (`""` for the main resource).
    pub subresource: String,
    /// The owned fields.
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether this entry belongs to the writer `(manager, operation, api_version,
    /// subresource)`. Upstream keys appliers without the apiVersion, so an applier keeps one
    /// entry across versions.
    pub fn is_for(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), self.operation.as_str().into());
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            m.insert("time".into(), Value::String(time.clone()));
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(m)
    }

    fn from_value(v: &Value) -> Result<Self, FieldsError> {
        let Value::Object(m) = v else {
            return Err(FieldsError::InvalidEntry("entry is not an object".into()));
        };
        let text = |key: &str| -> Result<String, FieldsError> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(FieldsError::InvalidEntry(format!("{key} must be a string"))),
            }
        };
        let operation = match text("operation")?.as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => {
                return Err(FieldsError::InvalidEntry(format!(
                    "unknown operation {other:?}"
                )));
            }
        };
        let fields_type = text("fieldsType")?;
        if fields_type != "FieldsV1" {
            return Err(FieldsError::InvalidEntry(format!(
                "unsupported fieldsType {fields_type:?}"
            )));
        }
        let fields = match m.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => FieldSet::from_fields_v1(v)?,
        };
        let time = Some(text("time")?).filter(|t| !t.is_empty());
        Ok(ManagedFieldsEntry {
            manager: text("manager")?,
            operation,
            api_version: text("apiVersion")?,
            time,
            subresource: text("subresource")?,
            fields,
        })
    }

    /// Upstream's `printManager`: `"kubectl"`, `"kubectl" with subresource "status"`, and for
    /// updaters ` using apps/v1` plus ` at <time>` when the entry has one.
    pub fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
            if let Some(time) = &self.time {
                out.push_str(&format!(" at {time}"));
            }
        }
        out
    }
}

impl fmt::Display for ManagedFieldsEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// All managed-fields entries of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedFields {
    /// The entries, sorted by [`ManagedFields::sort`] after every operation here.
    pub entries: Vec<ManagedFieldsEntry>,
}

impl ManagedFields {
    /// Reads `metadata.managedFields` of an object (absent or `null` = none). Fails on entries
    /// upstream would not decode, including two entries for the same writer.
    pub fn from_object(obj: &Value) -> Result<Self, FieldsError> {
        match obj.get("metadata").and_then(|m| m.get("managedFields")) {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(list) => Self::from_value(list),
        }
    }

    /// Decodes a `managedFields` JSON list.
    pub fn from_value(list: &Value) -> Result<Self, FieldsError> {
        let Value::Array(items) = list else {
            return Err(FieldsError::InvalidEntry(
                "managedFields must be a list".into(),
            ));
        };
        let mut entries: Vec<ManagedFieldsEntry> = Vec::with_capacity(items.len());
        for item in items {
            let e = ManagedFieldsEntry::from_value(item)?;
            if entries
                .iter()
                .any(|o| o.is_for(&e.manager, e.operation, &e.api_version, &e.subresource))
            {
                return Err(FieldsError::DuplicateManager(e.describe()));
            }
            entries.push(e);
        }
        Ok(ManagedFields { entries })
    }

    /// The `managedFields` JSON list.
    pub fn to_value(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(ManagedFieldsEntry::to_value)
                .collect(),
        )
    }

    /// Writes `metadata.managedFields` into an object, removing the key when there are no
    /// entries (as upstream leaves it unset). Objects without a `metadata` map get one.
    pub fn write_to_object(&self, obj: &mut Value) {
        let Value::Object(root) = obj else { return };
        let meta = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(meta) = meta {
            if self.entries.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), self.to_value());
            }
        }
    }

    /// Upstream's order: by operation (Apply before Update), then time (entries without one
    /// first), manager, apiVersion and subresource.
    pub fn sort(&mut self) {
        self.entries.sort_by(|p, q| {
            p.operation
                .cmp(&q.operation)
                .then_with(|| p.time.is_some().cmp(&q.time.is_some()))
                .then_with(|| p.time.cmp(&q.time))
                .then_with(|| p.manager.cmp(&q.manager))
                .then_with(|| p.api_version.cmp(&q.api_version))
                .then_with(|| p.subresource.cmp(&q.subresource))
        });
    }

    /// The entry of a writer, if any (see [`ManagedFieldsEntry::is_for`]).
    pub fn find(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> Option<&ManagedFieldsEntry> {
        self.entries
            .iter()
            .find(|e| e.is_for(manager, operation, api_version, subresource))
    }

    /// Drops entries that own nothing.
    pub(crate) fn drop_empty(&mut self) {
        self.entries.retain(|e| !e.fields.is_empty());
    }
}

/// The fields upstream strips from every manager's set (`stripMetaManager`): identity and
/// server-maintained metadata that no client owns.
pub fn stripped_fields() -> &'static FieldSet {
    static SET: OnceLock<FieldSet> = OnceLock::new();
    SET.get_or_init(|| {
        [
            &["apiVersion"][..],
            &["kind"],
            &["metadata"],
            &["metadata", "name"],
            &["metadata", "namespace"],
            &["metadata", "creationTimestamp"],
            &["metadata", "selfLink"],
            &["metadata", "uid"],
            &["metadata", "clusterName"],
            &["metadata", "generation"],
            &["metadata", "managedFields"],
            &["metadata", "resourceVersion"],
        ]
        .iter()
        .map(|names| Path::fields(names))
        .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, op: Operation, time: Option<&str>) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: manager.into(),
            operation: op,
            api_version: "apps/v1".into(),
            time: time.map(Into::into),
            subresource: String::new(),
            fields: [Path::fields(&["spec", "replicas"])].into_iter().collect(),
        }
    }

    #[test]
    fn managed_fields_round_trip_through_objects() {
        let obj = json!({"metadata": {"name": "x", "managedFields": [
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
             "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2026-01-01T00:00:01Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:replicas": {}}}, "subresource": "status"}
        ]}});
        let mf = ManagedFields::from_object(&obj).expect("decode");
        assert_eq!(mf.entries.len(), 2);
        assert_eq!(mf.entries[1].subresource, "status");
        assert_eq!(
            mf.entries[1].describe(),
            r#""kube-controller-manager" with subresource "status" using apps/v1 at 2026-01-01T00:00:01Z"#
        );
        assert_eq!(mf.entries[0].describe(), r#""kubectl""#);
        let mut out = json!({"metadata": {"name": "x"}});
        mf.write_to_object(&mut out);
        assert_eq!(out, obj);
        ManagedFields::default().write_to_object(&mut out);
        assert_eq!(out, json!({"metadata": {"name": "x"}}));
    }

    #[test]
    fn invalid_entries_are_rejected() {
        let cases = [
            json!({"a": 1}),
            json!([{"manager": "m", "operation": "Delete", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV2"}]),
            json!([{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": {"x:y": {}}}]),
            json!([
                {"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1", "apiVersion": "v1"},
                {"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1", "apiVersion": "v2"}
            ]),
        ];
        for case in cases {
            assert!(ManagedFields::from_value(&case).is_err(), "{case}");
        }
        // Two updaters at different versions are distinct writers.
        let ok = json!([
            {"manager": "m", "operation": "Update", "fieldsType": "FieldsV1", "apiVersion": "v1"},
            {"manager": "m", "operation": "Update", "fieldsType": "FieldsV1", "apiVersion": "v2"}
        ]);
        assert_eq!(
            ManagedFields::from_value(&ok).map(|m| m.entries.len()).ok(),
            Some(2)
        );
    }

    #[test]
    fn sorts_like_upstream() {
        let mut mf = ManagedFields {
            entries: vec![
                entry("b", Operation::Update, Some("2026-01-01T00:00:02Z")),
                entry("z", Operation::Apply, Some("2026-01-01T00:00:05Z")),
                entry("a", Operation::Update, Some("2026-01-01T00:00:02Z")),
                entry("c", Operation::Update, None),
                entry("y", Operation::Apply, Some("2026-01-01T00:00:01Z")),
            ],
        };
        mf.sort();
        let order: Vec<&str> = mf.entries.iter().map(|e| e.manager.as_str()).collect();
        assert_eq!(order, ["y", "z", "c", "a", "b"]);
    }

    #[test]
    fn strip_set_covers_identity_metadata() {
        let s = stripped_fields();
        assert!(s.has(&Path::fields(&["metadata", "resourceVersion"]).0));
        assert!(s.has(&Path::fields(&["metadata"]).0));
        assert!(s.has(&Path::fields(&["kind"]).0));
        assert!(!s.has(&Path::fields(&["metadata", "labels"]).0));
    }
}
