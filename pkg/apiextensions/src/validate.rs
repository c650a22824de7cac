//! Validation of a custom resource against its compiled [`Schema`], with kube-openapi's messages
//! mapped to field errors the way apiextensions-apiserver maps them.

use crate::error::{go_float, FieldError};
use crate::format;
use crate::names::dns1035_label;
use crate::schema::{Additional, Schema};
use serde_json::{Map, Value};

impl Schema {
    /// Validates a whole custom resource (the root object). `apiVersion`, `kind` and `metadata`
    /// are always allowed at the root; of `metadata` only `name`/`generateName` are checked
    /// against the schema (the generic store validates the rest of `ObjectMeta`).
    /// `x-kubernetes-validations` are not evaluated here (see [`crate::cel`]).
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_node(self, obj, "", true, &mut errs);
        errs
    }

    /// Whether `value` satisfies this node (used for `anyOf`/`oneOf`/`not` and defaults).
    pub(crate) fn accepts(&self, value: &Value, path: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_node(self, value, path, false, &mut errs);
        errs
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type name kube-openapi reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn type_error(path: &str, expected: &str, v: &Value) -> FieldError {
    let actual = type_name(v);
    FieldError::type_invalid(
        path,
        actual,
        format!("{path} in body must be of type {expected}: {actual:?}"),
    )
}

/// JSON equality where `1` and `1.0` are the same number.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn validate_node(s: &Schema, v: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if s.nullable {
            return;
        }
        if let Some(t) = &s.type_ {
            errs.push(type_error(path, t, v));
            return;
        }
        if s.int_or_string {
            errs.push(type_error(path, "integer,string", v));
            return;
        }
    }
    if s.int_or_string && !(is_integer(v) || v.is_string() || v.is_null()) {
        errs.push(type_error(path, "integer,string", v));
        return;
    }
    if let Some(t) = &s.type_ {
        if !type_matches(t, v) {
            errs.push(type_error(path, t, v));
            return;
        }
    }
    if !s.enum_.is_empty() && !s.enum_.iter().any(|e| json_eq(e, v)) {
        let allowed: Vec<String> = s
            .enum_
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        errs.push(FieldError::not_supported(path, v.clone(), &allowed));
    }
    match v {
        Value::String(st) => validate_string(s, st, path, errs),
        Value::Number(n) => validate_number(s, n, path, errs),
        Value::Array(items) => validate_array(s, items, path, errs),
        Value::Object(map) => validate_object(s, map, path, root, errs),
        _ => {}
    }
    validate_junctors(s, v, path, errs);
}

fn validate_string(s: &Schema, st: &str, path: &str, errs: &mut Vec<FieldError>) {
    let len = st.chars().count() as i64;
    if let Some(max) = s.max_length.filter(|m| len > *m) {
        errs.push(FieldError::too_long(path, max));
    }
    if let Some(min) = s.min_length.filter(|m| len < *m) {
        errs.push(FieldError::invalid(
            path,
            st,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some((pat, re)) = &s.pattern {
        if !re.is_match(st) {
            errs.push(FieldError::invalid(
                path,
                st,
                format!("{path} in body should match '{pat}'"),
            ));
        }
    }
    if let Some(f) = &s.format {
        if !format::check(f, st) {
            errs.push(FieldError::type_invalid(
                path,
                st,
                format!("{path} in body must be of type {f}: {st:?}"),
            ));
        }
    }
}

fn validate_number(s: &Schema, n: &serde_json::Number, path: &str, errs: &mut Vec<FieldError>) {
    let Some(x) = n.as_f64() else { return };
    let shown = Value::Number(n.clone());
    if let Some(m) = s.multiple_of.filter(|m| *m > 0.0) {
        let q = x / m;
        if (q - q.round()).abs() > 1e-9 {
            errs.push(FieldError::invalid(
                path,
                shown.clone(),
                format!("{path} in body should be a multiple of {}", go_float(m)),
            ));
        }
    }
    if let Some(max) = s.maximum {
        let (bad, word) = if s.exclusive_maximum {
            (x >= max, "less than")
        } else {
            (x > max, "less than or equal to")
        };
        if bad {
            errs.push(FieldError::invalid(
                path,
                shown.clone(),
                format!("{path} in body should be {word} {}", go_float(max)),
            ));
        }
    }
    if let Some(min) = s.minimum {
        let (bad, word) = if s.exclusive_minimum {
            (x <= min, "greater than")
        } else {
            (x < min, "greater than or equal to")
        };
        if bad {
            errs.push(FieldError::invalid(
                path,
                shown,
                format!("{path} in body should be {word} {}", go_float(min)),
            ));
        }
    }
}

fn validate_array(s: &Schema, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let len = items.len() as i64;
    if let Some(min) = s.min_items.filter(|m| len < *m) {
        errs.push(FieldError::invalid(
            path,
            len,
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = s.max_items.filter(|m| len > *m) {
        errs.push(FieldError::too_many(path, len, max));
    }
    if s.unique_items && has_duplicates(items) {
        errs.push(FieldError::invalid(
            path,
            "",
            format!("{path} in body shouldn't contain duplicates"),
        ));
    }
    match s.list_type.as_deref() {
        Some("set") => {
            for (i, it) in items.iter().enumerate() {
                if items[..i].iter().any(|p| json_eq(p, it)) {
                    errs.push(FieldError::duplicate(&format!("{path}[{i}]"), it.clone()));
                }
            }
        }
        Some("map") if !s.list_map_keys.is_empty() => {
            let key_of = |it: &Value| -> Value {
                let mut m = Map::new();
                for k in &s.list_map_keys {
                    if let Some(kv) = it.get(k) {
                        m.insert(k.clone(), kv.clone());
                    }
                }
                Value::Object(m)
            };
            for (i, it) in items.iter().enumerate() {
                let key = key_of(it);
                if items[..i].iter().any(|p| json_eq(&key_of(p), &key)) {
                    errs.push(FieldError::duplicate(&format!("{path}[{i}]"), key));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = &s.items {
        for (i, it) in items.iter().enumerate() {
            validate_node(item_schema, it, &format!("{path}[{i}]"), false, errs);
        }
    }
}

fn has_duplicates(items: &[Value]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, it)| items[..i].iter().any(|p| json_eq(p, it)))
}

fn validate_object(
    s: &Schema,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    for r in &s.required {
        if !map.contains_key(r) {
            errs.push(FieldError::required(&child(path, r), ""));
        }
    }
    let n = map.len() as i64;
    if let Some(min) = s.min_properties.filter(|m| n < *m) {
        errs.push(FieldError::invalid(
            path,
            min,
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = s.max_properties.filter(|m| n > *m) {
        errs.push(FieldError::too_many(path, n, max));
    }
    if s.embedded_resource {
        validate_embedded(map, path, errs);
    }
    for (k, v) in map {
        let p = child(path, k);
        if (root || s.embedded_resource) && k == "metadata" {
            // ObjectMeta is validated by the generic store; the schema may only restrict
            // name and generateName.
            if let (Some(ms), Some(mo)) = (s.properties.get("metadata"), v.as_object()) {
                for f in ["name", "generateName"] {
                    if let (Some(fs), Some(fv)) = (ms.properties.get(f), mo.get(f)) {
                        validate_node(fs, fv, &child(&p, f), false, errs);
                    }
                }
            }
            continue;
        }
        if let Some(ps) = s.properties.get(k) {
            validate_node(ps, v, &p, false, errs);
            continue;
        }
        if (root || s.embedded_resource) && (k == "apiVersion" || k == "kind") {
            continue;
        }
        match &s.additional {
            Additional::Schema(a) => validate_node(a, v, &p, false, errs),
            Additional::Bool(false) => errs.push(FieldError::invalid(
                path,
                k.as_str(),
                format!("{p} in body is a forbidden property"),
            )),
            _ => {}
        }
    }
}

/// apiextensions' checks for `x-kubernetes-embedded-resource` objects.
fn validate_embedded(map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for f in ["apiVersion", "kind"] {
        let p = child(path, f);
        match map.get(f) {
            None => errs.push(FieldError::required(&p, "must not be empty")),
            Some(Value::String(s)) if s.is_empty() => {
                errs.push(FieldError::invalid(&p, s.as_str(), "must not be empty"))
            }
            Some(Value::String(s)) => {
                if f == "apiVersion" && s.split('/').count() > 2 {
                    errs.push(FieldError::invalid(
                        &p,
                        s.as_str(),
                        format!("unexpected GroupVersion string: {s}"),
                    ));
                }
                if f == "kind" {
                    let e = dns1035_label(&s.to_lowercase());
                    if !e.is_empty() {
                        errs.push(FieldError::invalid(
                            &p,
                            s.as_str(),
                            format!(
                                "may have mixed case, but should otherwise match: {}",
                                e.join(",")
                            ),
                        ));
                    }
                }
            }
            Some(other) => errs.push(FieldError::invalid(&p, other.clone(), "must be a string")),
        }
    }
    if let Some(m) = map.get("metadata") {
        if !m.is_object() {
            errs.push(type_error(&child(path, "metadata"), "object", m));
        }
    }
}

fn validate_junctors(s: &Schema, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let shown = if path.is_empty() { "<root>" } else { path };
    if !s.all_of.is_empty() {
        let sub: Vec<FieldError> = s.all_of.iter().flat_map(|a| a.accepts(v, path)).collect();
        if !sub.is_empty() {
            errs.push(FieldError::invalid(
                path,
                "",
                format!("{shown} must validate all the schemas (allOf)"),
            ));
            errs.extend(sub);
        }
    }
    if !s.any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = s.any_of.iter().map(|a| a.accepts(v, path)).collect();
        if results.iter().all(|r| !r.is_empty()) {
            errs.push(FieldError::invalid(
                path,
                "",
                format!("{shown} must validate at least one schema (anyOf)"),
            ));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                errs.extend(best);
            }
        }
    }
    if !s.one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = s.one_of.iter().map(|a| a.accepts(v, path)).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let found = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            errs.push(FieldError::invalid(
                path,
                "",
                format!("{shown} must validate one and only one schema (oneOf). {found}"),
            ));
            if valid == 0 {
                if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                    errs.extend(best);
                }
            }
        }
    }
    if let Some(not) = &s.not {
        if not.accepts(v, path).is_empty() {
            errs.push(FieldError::invalid(
                path,
                "",
                format!("{shown} must not validate the schema (not)"),
            ));
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
