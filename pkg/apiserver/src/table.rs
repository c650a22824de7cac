//! Server-side printing: `meta.k8s.io` Tables built from the strategy's columns and rows.

use chrono::Utc;
use kubelite_api::strategy::Strategy;
use serde_json::{json, Value};

use crate::error::{ApiError, Result};

/// What each row carries in `object` (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    /// Parse `includeObject` (absent means Metadata).
    pub fn parse(v: Option<&str>) -> Result<Self> {
        match v {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("Object") => Ok(Include::Object),
            Some("None") => Ok(Include::None),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// The column definitions of a strategy.
pub fn column_definitions(strategy: &dyn Strategy) -> Value {
    Value::Array(
        strategy
            .columns()
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// One row for `obj`.
pub fn row(strategy: &dyn Strategy, obj: &Value, include: Include) -> Value {
    let cells = strategy.row(obj, Utc::now());
    let mut row = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Metadata => {
            let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            });
        }
        Include::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of `objs` with list metadata `meta`; `columns == false` leaves the definitions out
/// (`null`), as upstream does for every watch event after the first.
pub fn table(
    strategy: &dyn Strategy,
    version: &str,
    objs: &[&Value],
    include: Include,
    meta: Value,
    columns: bool,
) -> Value {
    let rows: Vec<Value> = objs.iter().map(|o| row(strategy, o, include)).collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": meta,
        "columnDefinitions": if columns { column_definitions(strategy) } else { Value::Null },
        "rows": rows,
    })
}

/// Table list metadata from a list object's metadata.
pub fn list_meta(list: &Value) -> Value {
    let mut meta = json!({});
    for k in ["resourceVersion", "continue", "remainingItemCount"] {
        if let Some(v) = list.pointer(&format!("/metadata/{k}")) {
            meta[k] = v.clone();
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shape() {
        let info = kubelite_api::resource::find_builtin("", "v1", "configmaps").expect("cm");
        let s = crate::model::strategy(info);
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        let t = table(
            s.as_ref(),
            "v1",
            &[&obj],
            Include::Metadata,
            json!({"resourceVersion": "3"}),
            true,
        );
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
