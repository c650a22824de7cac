//! Go-style rendering of decoded JSON for error messages, so strategic-merge errors read like
//! upstream's (`map: map[image:y] does not contain declared merge key: name`).

use serde_json::{Map, Value};

pub(super) fn no_merge_key(m: &Map<String, Value>, key: &str) -> String {
    format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(&Value::Object(m.clone()))
    )
}

pub(super) fn bad_arg_type(expected: &str, actual: &Value) -> String {
    let actual = match actual {
        Value::Object(_) => "map[string]interface {}",
        Value::Array(_) => "[]interface {}",
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::Bool(_) => "bool",
        Value::Null => "%!s(<nil>)",
    };
    format!("expected a {expected}, but received a {actual}")
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Object(_) | Value::Null => "object",
    }
}

/// Go's `%v` of a decoded JSON value, for error messages that quote patch content.
pub(super) fn go_fmt(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_fmt(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(go_fmt).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".to_string(),
    }
}
