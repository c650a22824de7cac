//! Table columns of a custom resource version (`additionalPrinterColumns`, or the default `Age`)
//! and the cell values upstream's CRD table convertor produces for them.

use crate::jsonpath::JsonPath;
use chrono::{DateTime, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion;
use serde_json::Value;

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One table column (`Table.columnDefinitions[]`) plus the path its cells come from.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Header, e.g. `Name`, `Replicas`, `Age`.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// `name` for the first column; otherwise the CRD's format or empty.
    pub format: String,
    /// Column description.
    pub description: String,
    /// 0: always shown; higher: only with `-o wide`.
    pub priority: i32,
    /// JSONPath of the cell value, e.g. `.spec.replicas`.
    pub json_path: String,
    path: Option<JsonPath>,
}

impl Column {
    fn new(
        name: &str,
        type_: &str,
        format: &str,
        description: &str,
        priority: i32,
        json_path: &str,
    ) -> Column {
        Column {
            name: name.to_string(),
            type_: type_.to_string(),
            format: format.to_string(),
            description: description.to_string(),
            priority,
            json_path: json_path.to_string(),
            path: JsonPath::parse(json_path).ok(),
        }
    }

    /// The cell for `obj`, as upstream: `null` when the path selects nothing or the value has
    /// the wrong type; a `date` column becomes the age relative to `now` (e.g. `5m`).
    pub fn cell(&self, obj: &Value, now: DateTime<Utc>) -> Value {
        let Some(v) = self.path.as_ref().and_then(|p| p.first(obj)) else {
            return Value::Null;
        };
        match (self.type_.as_str(), v) {
            (_, Value::Null) => Value::Null,
            ("integer", Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, Value::from),
            ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
            ("boolean", Value::Bool(b)) => Value::Bool(*b),
            ("string", Value::String(s)) => Value::from(s.as_str()),
            // kubectl's printer renders non-string values of string columns as text.
            ("string", other) => Value::from(other.to_string()),
            ("date", Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Value::from(human_duration(now - t.with_timezone(&Utc))),
                Err(_) => Value::from("<invalid>"),
            },
            _ => Value::Null,
        }
    }
}

/// Upstream `duration.HumanDuration` (`45s`, `5m30s`, `3h`, `2d5h`, `2y100d`). Kept local so
/// this crate does not depend on `kubelite-api`.
fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    let with = |big: i64, unit: &str, small: i64, sunit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{sunit}")
        }
    };
    if mins < 10 {
        return with(mins, "m", secs % 60, "s");
    }
    if mins < 180 {
        return format!("{mins}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return with(hours, "h", mins % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// The columns of a version's table: `Name` first, then its `additionalPrinterColumns`, or the
/// default `Age` column when it declares none.
pub fn printer_columns(version: &CustomResourceDefinitionVersion) -> Vec<Column> {
    let mut cols = vec![Column::new(
        "Name",
        "string",
        "name",
        NAME_DESC,
        0,
        ".metadata.name",
    )];
    match version.additional_printer_columns.as_deref() {
        Some(defs) if !defs.is_empty() => cols.extend(defs.iter().map(|d| {
            Column::new(
                &d.name,
                &d.type_,
                d.format.as_deref().unwrap_or_default(),
                d.description.as_deref().unwrap_or_default(),
                d.priority.unwrap_or(0),
                &d.json_path,
            )
        })),
        _ => cols.push(Column::new(
            "Age",
            "date",
            "",
            AGE_DESC,
            0,
            ".metadata.creationTimestamp",
        )),
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(v: Value) -> CustomResourceDefinitionVersion {
        serde_json::from_value(v).expect("version")
    }

    #[test]
    fn default_columns_are_name_and_age() {
        let cols = printer_columns(&version(
            json!({"name": "v1", "served": true, "storage": true}),
        ));
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Name", "Age"]);
        assert_eq!(cols[0].format, "name");
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:05:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        assert_eq!(cols[0].cell(&obj, now), json!("x"));
        assert_eq!(cols[1].cell(&obj, now), json!("5m"));
    }

    #[test]
    fn human_duration_table() {
        let cases = [
            (-5, "<invalid>"),
            (30, "30s"),
            (119, "119s"),
            (330, "5m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 600, "3h10m"),
            (20 * 3600, "20h"),
            (53 * 3600, "2d5h"),
            (30 * 86400, "30d"),
            (800 * 86400, "2y70d"),
            (3000 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(chrono::Duration::seconds(secs)),
                want,
                "{secs}"
            );
        }
    }

    #[test]
    fn custom_column_cells() {
        let v = version(json!({"name": "v1", "served": true, "storage": true,
        "additionalPrinterColumns": [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
            {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
            {"name": "Count", "type": "string", "jsonPath": ".spec.replicas"},
            {"name": "Missing", "type": "string", "jsonPath": ".spec.nope"},
            {"name": "Wrong", "type": "integer", "jsonPath": ".spec.on"},
            {"name": "Since", "type": "date", "jsonPath": ".status.since"}
        ]}));
        let cols = printer_columns(&v);
        assert_eq!(cols.len(), 9);
        assert_eq!(cols[3].priority, 1);
        let obj = json!({"spec": {"replicas": 2.0, "ratio": 1, "on": true},
                         "status": {"since": "bogus", "conditions": [{"type": "Ready", "status": "True"}]}});
        let now = Utc::now();
        let cells: Vec<Value> = cols[1..].iter().map(|c| c.cell(&obj, now)).collect();
        assert_eq!(
            cells,
            vec![
                json!(2),
                json!("True"),
                json!(1.0),
                json!(true),
                json!("2.0"),
                Value::Null,
                Value::Null,
                json!("<invalid>")
            ]
        );
    }
}
