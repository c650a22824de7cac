//! The per-kind strategy: everything that differs between kinds (defaulting, validation, what an
//! update may change, printer columns, selectable fields) as a stateless object over JSON values.
//! The apiserver's one generic store calls these hooks; it never matches on a kind itself.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::resource::ResourceInfo;

/// One `details.causes` entry of a 422 Invalid `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueDuplicate`, `FieldValueForbidden`, `FieldValueTooLong`, ...
    pub reason: &'static str,
    /// Dotted path as upstream prints it: `spec.containers[0].image`, `metadata.name`.
    pub field: String,
    /// The full message, as upstream's field.Error prints it, e.g.
    /// `Required value` or `Invalid value: "Foo": a lowercase RFC 1123 subdomain must ...`.
    pub message: String,
}

impl FieldCause {
    pub fn required(field: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    /// `Invalid value: <value as JSON>: <detail>`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {}", value, detail.as_ref()),
        }
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                value,
                list.join(", ")
            ),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value}"),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {}", detail.into()),
        }
    }

    /// The line upstream prints per cause inside the Status message: `<field>: <message>`.
    pub fn to_message(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// One Table column (meta.k8s.io/v1 TableColumnDefinition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// As upstream: `Name`, `Ready`, `Status`, `Restarts`, `Age`, `IP`, `Node`, ...
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// `name` for the first column, otherwise usually empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always printed; 1: only with `-o wide`.
    pub priority: i32,
}

/// Where a kind keeps what its `scale` subresource shows, as JSON pointers
/// (`/spec/replicas`). Custom resources take them from their CRD's scale subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// The label selector: a LabelSelector object (built-in kinds) or a string.
    pub selector: Option<String>,
    /// `selector` points at a serialized selector string (custom resources) rather than a
    /// LabelSelector object.
    pub selector_is_string: bool,
}

impl Default for ScalePaths {
    fn default() -> Self {
        Self {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector: Some("/spec/selector".into()),
            selector_is_string: false,
        }
    }
}

/// The kind-specific half of the generic store. All methods are pure functions of their input
/// (plus `now` where time matters), so they can be tested without a server.
///
/// The generic store does, for every kind: metadata (name rules, uid, timestamps, generation,
/// resourceVersion), status-vs-spec separation for kinds with a `status` subresource, and
/// selectors on `metadata.name`/`metadata.namespace`. Strategies add what is specific.
pub trait Strategy: Send + Sync {
    fn info(&self) -> &ResourceInfo;

    /// Fill defaults in place, as upstream's defaulters do, so `kubectl get -o yaml` shows the
    /// usual fields. Called on create and on every update of the main resource and of status.
    /// Must be idempotent.
    fn default(&self, _obj: &mut Value) {}

    /// Kind-specific checks on a new object (metadata was already validated generically).
    fn validate_create(&self, _obj: &Value) -> Vec<FieldCause> {
        Vec::new()
    }

    /// Kind-specific checks on an update (immutable fields, etc.). Default: the create rules.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldCause> {
        self.validate_create(new)
    }

    /// Whether a change to this object counts as a spec change (bumps `metadata.generation`).
    /// Default: the `spec` field differs. ConfigMaps, Secrets etc. have no generation.
    fn spec_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    /// Schema-driven pruning for kinds without a typed struct (custom resources): drop the
    /// fields the schema does not know and return their paths (`spec.foo`). `None` means the
    /// server prunes by the kind's typed struct (built-in kinds).
    fn prune(&self, _obj: &mut Value) -> Option<Vec<String>> {
        None
    }

    /// The status a new object starts with, set before [`Strategy::default`] (which may fill
    /// status from the spec, as a pod's QoS class): the status half of upstream's
    /// PrepareForCreate. Default: a kind with a `status` subresource starts at `{}` whatever the
    /// body said; a kind without one keeps the body's status. Create-only.
    fn reset_status(&self, obj: &mut Value) {
        if self.info().subresource("status").is_some() {
            replace_status(obj, Value::Object(Default::default()));
        }
    }

    /// Create-only preparation, after [`Strategy::default`] (e.g. a finalizer every new object
    /// of the kind gets). Updates never call it.
    fn prepare_create(&self, _obj: &mut Value) {}

    /// Where the `scale` subresource reads and writes replicas.
    fn scale_paths(&self) -> ScalePaths {
        ScalePaths::default()
    }

    /// Whether `metadata.generation` is maintained for this kind.
    fn has_generation(&self) -> bool {
        true
    }

    /// Table columns, as upstream's printers (`pkg/printers/internalversion/printers.go`).
    /// Usually `Name` (format `name`) comes first; core Events follow upstream and print it
    /// last, as a wide column.
    fn columns(&self) -> Vec<Column>;

    /// One row's cells for `obj`, aligned with [`Strategy::columns`]. `now` drives ages.
    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value>;

    /// The value of a selectable field beyond `metadata.name` and `metadata.namespace` (e.g.
    /// `spec.nodeName`, `status.phase` for pods), or `None` when the kind does not support it:
    /// the server then answers 400 like upstream (`field label not supported: <f>`).
    fn field_value(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }

    /// The list and map types server-side apply merges and tracks ownership by. Default: the
    /// built-in tables of the kind ([`crate::apply::TypeInfo::for_kind`]); custom resources
    /// answer from their CRD schema's `x-kubernetes-list-type` and friends.
    fn type_info(&self) -> crate::apply::TypeInfo {
        let info = self.info();
        crate::apply::TypeInfo::for_kind(info.group, info.version, info.kind)
    }
}

/// Put `status` on an object (a no-op on a body that is not a JSON object, which validation
/// refuses later): the building block of [`Strategy::reset_status`] overrides.
pub fn replace_status(obj: &mut Value, status: Value) {
    if let Some(o) = obj.as_object_mut() {
        o.insert("status".into(), status);
    }
}
