//! The strategy of one served custom resource version: validation, pruning and defaulting by
//! the version's structural schema, generation on any change but metadata and status, the
//! CRD's additionalPrinterColumns, and its scale subresource paths.

use chrono::{DateTime, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use std::sync::Arc;

use kubelite_api::apply::{ListKey, ListType, MapType, SchemaResolver, TypeInfo};
use kubelite_api::resource::ResourceInfo;
use kubelite_api::strategy::{Column, FieldCause, ScalePaths, Strategy};
use kubelite_apiextensions::{Column as PrinterColumn, FieldError, Schema};
use serde_json::Value;

/// An upstream field error as a 422 cause.
pub(super) fn to_cause(e: FieldError) -> FieldCause {
    FieldCause {
        reason: e.reason(),
        message: e.body(),
        field: e.path,
    }
}

/// `.spec.replicas` → `/spec/replicas`.
fn pointer(json_path: &str) -> String {
    json_path
        .trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut p, seg| {
            p.push('/');
            p.push_str(seg);
            p
        })
}

/// The strategy of one served version of a custom resource.
pub struct CustomStrategy {
    info: &'static ResourceInfo,
    schema: Option<Schema>,
    /// The schema has `x-kubernetes-validations` somewhere (checked once).
    has_rules: bool,
    columns: Vec<(Column, PrinterColumn)>,
    scale: Option<ScalePaths>,
    /// Server-side apply's view of the schema (built once; cheap to clone per request).
    types: TypeInfo,
}

/// The list and map types of a custom resource from its structural schema: lists follow
/// `x-kubernetes-list-type` (atomic when unset, as upstream), maps `x-kubernetes-map-type`.
struct CrdTypes(Schema);

impl CrdTypes {
    /// The schema node at `path` (field names; list items stepped through transparently).
    fn node(&self, path: &[&str]) -> Option<&Schema> {
        let mut cur = &self.0;
        for seg in path {
            while cur.type_() == Some("array") {
                cur = cur.items()?;
            }
            cur = cur.child(seg)?;
        }
        Some(cur)
    }
}

impl SchemaResolver for CrdTypes {
    fn list_type(&self, path: &[&str]) -> ListType {
        let Some(node) = self.node(path) else {
            return ListType::Atomic;
        };
        match node.list_type() {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                node.list_map_keys()
                    .iter()
                    .map(|k| ListKey::required(k))
                    .collect(),
            ),
            _ => ListType::Atomic,
        }
    }

    fn map_type(&self, path: &[&str]) -> MapType {
        match self.node(path).and_then(Schema::map_type) {
            Some("atomic") => MapType::Atomic,
            _ => MapType::Granular,
        }
    }
}

impl CustomStrategy {
    /// Compile the version's schema and columns. Column names are leaked: callers build a
    /// strategy once per CRD generation, not per request.
    pub fn new(
        info: &'static ResourceInfo,
        _crd: &CustomResourceDefinition,
        version: &CustomResourceDefinitionVersion,
    ) -> Result<Self, String> {
        let schema = match version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            Some(props) => Some(Schema::compile(props).map_err(|e| e.to_string())?),
            None => None,
        };
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let columns = kubelite_apiextensions::printer_columns(version)
            .into_iter()
            .map(|c| {
                let col = Column {
                    name: leak(&c.name),
                    type_: leak(&c.type_),
                    format: leak(&c.format),
                    description: leak(&c.description),
                    priority: c.priority,
                };
                (col, c)
            })
            .collect();
        let scale = version
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .map(|s| ScalePaths {
                spec_replicas: pointer(&s.spec_replicas_path),
                status_replicas: pointer(&s.status_replicas_path),
                selector: s.label_selector_path.as_deref().map(pointer),
                selector_is_string: true,
            });
        // Without a schema nothing is known: every list atomic, like upstream's deduced type.
        let types = match &schema {
            Some(s) => TypeInfo::from_resolver(Arc::new(CrdTypes(s.clone()))),
            None => TypeInfo::deduced(),
        };
        Ok(Self {
            info,
            has_rules: schema.as_ref().is_some_and(Schema::has_validation_rules),
            schema,
            types,
            columns,
            scale,
        })
    }
}

impl CustomStrategy {
    /// Schema validation, then the `x-kubernetes-validations` rules (with `oldSelf` on update).
    fn check(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldCause> {
        let Some(schema) = &self.schema else {
            return Vec::new();
        };
        let mut errors = schema.validate(obj);
        if errors.is_empty() && self.has_rules {
            errors.extend(kubelite_apiextensions::cel::validate_rules(
                schema, obj, old,
            ));
        }
        errors.into_iter().map(to_cause).collect()
    }
}

impl Strategy for CustomStrategy {
    fn info(&self) -> &ResourceInfo {
        self.info
    }

    /// With a status subresource, a custom resource starts without a status (there is no
    /// typed empty one); without one, status is ordinary content and is kept.
    fn reset_status(&self, obj: &mut Value) {
        if self.info.subresource("status").is_some() {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
    }

    fn default(&self, obj: &mut Value) {
        if let Some(s) = &self.schema {
            s.apply_defaults(obj);
        }
    }

    fn prune(&self, obj: &mut Value) -> Option<Vec<String>> {
        Some(match &self.schema {
            Some(s) => s.prune(obj),
            None => Vec::new(),
        })
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        self.check(obj, None)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        self.check(new, Some(old))
    }

    /// Custom resources bump `metadata.generation` on any change outside metadata and status.
    fn spec_changed(&self, new: &Value, old: &Value) -> bool {
        // Compared in place (no clones): a key added, removed or changed outside
        // metadata and status.
        let tracked = |k: &String| !matches!(k.as_str(), "metadata" | "status");
        let (Some(n), Some(o)) = (new.as_object(), old.as_object()) else {
            return new != old;
        };
        n.iter()
            .filter(|(k, _)| tracked(k))
            .any(|(k, v)| o.get(k) != Some(v))
            || o.keys().filter(|k| tracked(k)).any(|k| !n.contains_key(k))
    }

    fn scale_paths(&self) -> ScalePaths {
        self.scale.clone().unwrap_or_default()
    }

    fn columns(&self) -> Vec<Column> {
        self.columns.iter().map(|(c, _)| c.clone()).collect()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        self.columns
            .iter()
            .map(|(_, pc)| pc.cell(obj, now))
            .collect()
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let _ = (obj, field);
        None
    }

    fn type_info(&self) -> TypeInfo {
        self.types.clone()
    }
}
