//! The strategy of CustomResourceDefinition objects themselves: upstream's defaulting and
//! validation (from `kubelite-apiextensions`), the cleanup finalizer on create, and the
//! `NAME  CREATED AT` columns kubectl prints.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kubelite_api::resource::{find_builtin, ResourceInfo};
use kubelite_api::strategy::{Column, FieldCause, Strategy};
use serde_json::{json, Value};

use super::CLEANUP_FINALIZER;

/// The CustomResourceDefinition strategy (`None` only if the table lacks the resource).
pub fn definition_strategy() -> Option<Arc<dyn Strategy>> {
    let info = find_builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions")?;
    Some(Arc::new(Definition { info }))
}

struct Definition {
    info: &'static ResourceInfo,
}

/// Upstream's field errors as the server's 422 causes.
pub(super) fn causes(errors: Vec<kubelite_apiextensions::FieldError>) -> Vec<FieldCause> {
    errors.into_iter().map(super::custom::to_cause).collect()
}

/// The typed CRD (the body was already decoded into the typed struct once, so this only fails
/// on values the struct cannot hold).
fn typed(obj: &Value) -> Result<CustomResourceDefinition, FieldCause> {
    serde_json::from_value(obj.clone())
        .map_err(|e| FieldCause::invalid("spec", &json!(null), e.to_string()))
}

impl Strategy for Definition {
    fn info(&self) -> &ResourceInfo {
        self.info
    }

    fn default(&self, obj: &mut Value) {
        kubelite_apiextensions::default_crd(obj);
    }

    fn prepare_create(&self, obj: &mut Value) {
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let fins = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = fins.as_array_mut() {
            if !list.iter().any(|f| f == CLEANUP_FINALIZER) {
                list.push(json!(CLEANUP_FINALIZER));
            }
        }
        // Status is the server's (upstream's PrepareForCreate): the storage version is
        // recorded; conditions come from the reconcile task.
        let stored: Vec<Value> = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .filter_map(|v| v.get("name").cloned())
            .take(1)
            .collect();
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({"storedVersions": stored}));
        }
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        match typed(obj) {
            Ok(crd) => causes(kubelite_apiextensions::validate_crd(&crd)),
            Err(cause) => vec![cause],
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        match (typed(new), typed(old)) {
            (Ok(n), Ok(o)) => causes(kubelite_apiextensions::validate_crd_update(&n, &o)),
            (Err(cause), _) | (_, Err(cause)) => vec![cause],
        }
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column {
                name: "Name",
                type_: "string",
                format: "name",
                description: "Name must be unique within a namespace.",
                priority: 0,
            },
            Column {
                name: "Created At",
                type_: "date",
                format: "",
                description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
                priority: 0,
            },
        ]
    }

    fn row(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        vec![
            obj.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            obj.pointer("/metadata/creationTimestamp")
                .cloned()
                .unwrap_or(Value::Null),
        ]
    }
}
