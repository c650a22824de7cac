//! Small helpers shared by the strategies: tolerant JSON accessors, column constructors, label
//! and selector formatting as upstream's printers and validation messages render them.

use std::fmt::Display;

use serde_json::{Map, Value};

use crate::strategy::{Column, FieldCause};

/// The value at JSON pointer `p`, resolved exactly as [`Value::pointer`] does. That one
/// allocates two `String`s per token to unescape it, which showed up on the pod create path;
/// here tokens are borrowed from `p`. Escaped paths (`~0`, `~1`) are rare, so they go to
/// `Value::pointer` instead of a second copy of the unescaping rules.
pub(crate) fn lookup<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    if p.contains('~') {
        return v.pointer(p);
    }
    if p.is_empty() {
        return Some(v);
    }
    p.strip_prefix('/')?
        .split('/')
        .try_fold(v, |cur, token| lookup_token(cur, token))
}

/// One pointer step with an already unescaped `token`: a key of an object, an index into an
/// array, nothing inside a scalar.
pub(crate) fn lookup_token<'a>(v: &'a Value, token: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(token),
        Value::Array(items) => parse_index(token).and_then(|i| items.get(i)),
        _ => None,
    }
}

/// An array index as `Value::pointer` reads it: `+1` and `01` name no element.
fn parse_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// The string at JSON pointer `p`, `""` when absent or not a string.
pub(crate) fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    lookup(v, p).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `p`, 0 when absent.
pub(crate) fn int(v: &Value, p: &str) -> i64 {
    lookup(v, p).and_then(Value::as_i64).unwrap_or(0)
}

/// The boolean at `p`, false when absent.
pub(crate) fn boolean(v: &Value, p: &str) -> bool {
    lookup(v, p).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `p`, empty when absent.
pub(crate) fn arr<'a>(v: &'a Value, p: &str) -> &'a [Value] {
    lookup(v, p)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The child object `key` of `m`, created when absent or null; `None` when it holds a
/// non-object (left for validation to reject instead of overwriting user data).
pub(crate) fn child<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    // Usually the child exists: a second lookup is cheaper than `entry`'s owned key, which
    // would allocate on every call.
    set_default_with(m, key, || Value::Object(Map::new()));
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Walk a path of child objects from the root, creating them as needed.
pub(crate) fn path_mut<'a>(v: &'a mut Value, keys: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v.as_object_mut()?;
    for k in keys {
        cur = child(cur, k)?;
    }
    Some(cur)
}

/// Set `key` to `val` unless it already holds a non-null value.
pub(crate) fn set_default(m: &mut Map<String, Value>, key: &str, val: Value) {
    set_default_with(m, key, || val);
}

/// [`set_default`] with the value built only when it is stored.
pub(crate) fn set_default_with(
    m: &mut Map<String, Value>,
    key: &str,
    make: impl FnOnce() -> Value,
) {
    match m.get_mut(key) {
        Some(v) if !v.is_null() => {}
        // Replacing a null in place keeps the key's position, as `insert` would, without
        // allocating the key and hashing it again.
        Some(v) => *v = make(),
        None => {
            m.insert(key.to_string(), make());
        }
    }
}

/// Apply `f` to every object in the array `key` of `m`.
pub(crate) fn each_obj(
    m: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(items) = m.get_mut(key).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(crate) const CONTAINERS_DESC: &str = "Names of each container in the template.";
pub(crate) const IMAGES_DESC: &str = "Images referenced by each container in the template.";

/// The `Name` column every kind starts with.
pub(crate) fn name_col() -> Column {
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DESC,
        priority: 0,
    }
}

/// The `Age` column.
pub(crate) fn age_col() -> Column {
    col("Age", "string", AGE_DESC, 0)
}

/// Any other column.
pub(crate) fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
    priority: i32,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority,
    }
}

/// The object's name as a cell.
pub(crate) fn name_cell(obj: &Value) -> Value {
    Value::from(s(obj, "/metadata/name"))
}

/// The object's age as a cell.
pub(crate) fn age_cell(obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Value {
    Value::from(crate::meta::age_since(
        lookup(obj, "/metadata/creationTimestamp"),
        now,
    ))
}

/// The `Containers` and `Images` cells of a pod spec: names and images joined by commas.
pub(crate) fn containers_images(pod_spec: &Value) -> (Value, Value) {
    let cs = arr(pod_spec, "/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

fn sorted_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

/// Upstream's `labels.FormatLabels`: `k=v,k2=v2` sorted by key, `<none>` when empty.
pub(crate) fn format_labels(v: Option<&Value>) -> String {
    let pairs = sorted_pairs(v);
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A LabelSelector as upstream's `LabelSelectorAsSelector(sel).String()` prints it:
/// requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
pub(crate) fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut reqs: Vec<(String, String)> = sorted_pairs(sel.get("matchLabels"))
        .into_iter()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for e in arr(sel, "/matchExpressions") {
        let key = s(e, "/key").to_string();
        let mut values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        values.sort();
        let text = match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        reqs.push((key, text));
    }
    // A stable sort keeps matchLabels before expressions on the same key, like upstream.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// Upstream's `metav1.FormatLabelSelector`: like [`selector_string`] but `<none>` when empty
/// (ReplicaSet, DaemonSet and Job printers use it; the Deployment printer does not).
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        s if s.is_empty() => "<none>".into(),
        s => s,
    }
}

/// Whether a metav1.LabelSelector matches `labels`. An empty selector matches everything.
pub(crate) fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let labels_ok = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().all(|(k, v)| get(k) == v.as_str()))
        .unwrap_or(true);
    labels_ok
        && arr(sel, "/matchExpressions").iter().all(|e| {
            let key = s(e, "/key");
            let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
            match s(e, "/operator") {
                "In" => get(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                _ => false,
            }
        })
}

/// Upstream's `ValidateLabelSelector` at `path`: matchLabels keys and values, and each
/// matchExpressions entry's key, operator and values.
pub(crate) fn validate_label_selector(sel: &Value, path: &str) -> Vec<FieldCause> {
    let mut out =
        crate::meta::validate_labels(sel.get("matchLabels"), &format!("{path}.matchLabels"));
    for (i, e) in arr(sel, "/matchExpressions").iter().enumerate() {
        let ep = format!("{path}.matchExpressions[{i}]");
        let has_values = !arr(e, "/values").is_empty();
        match s(e, "/operator") {
            "In" | "NotIn" if !has_values => out.push(crate::meta::required_with(
                &format!("{ep}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if has_values => out.push(FieldCause::forbidden(
                format!("{ep}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => out.push(FieldCause::invalid(
                format!("{ep}.operator"),
                &Value::from(op),
                "not a valid selector operator",
            )),
        }
        let key = s(e, "/key");
        for m in crate::meta::qualified_name_errors(key) {
            out.push(FieldCause::invalid(
                format!("{ep}.key"),
                &Value::from(key),
                m,
            ));
        }
    }
    out
}

/// Whether a selector has no requirements at all.
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && arr(sel, "/matchExpressions").is_empty()
}

/// A Go-quoted string as `%q`/`%#v` print it (close enough: JSON escaping).
fn go_quote(s: &str) -> String {
    Value::from(s).to_string()
}

/// A `map[string]string` as Go's `%#v` prints it inside upstream's messages.
pub(crate) fn go_string_map(v: Option<&Value>) -> String {
    if v.and_then(Value::as_object).is_none() {
        return "map[string]string(nil)".into();
    }
    let body: Vec<String> = sorted_pairs(v)
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

/// A metav1.LabelSelector as Go's `%#v` prints it inside upstream's messages.
pub(crate) fn go_label_selector(sel: &Value) -> String {
    let exprs = arr(sel, "/matchExpressions");
    let exprs = if sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none()
    {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                let values: Vec<String> = arr(e, "/values")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(go_quote)
                    .collect();
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:[]string{{{}}}}}",
                    go_quote(s(e, "/key")),
                    go_quote(s(e, "/operator")),
                    values.join(", ")
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(sel.get("matchLabels")),
        exprs
    )
}

/// A `FieldValueInvalid` cause whose value is already rendered (Go `%#v` style).
pub(crate) fn invalid_raw(field: impl Into<String>, rendered: &str, detail: &str) -> FieldCause {
    FieldCause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {rendered}: {detail}"),
    }
}

/// A `FieldValueNotFound` cause.
pub(crate) fn not_found(field: impl Into<String>, value: &Value) -> FieldCause {
    FieldCause {
        reason: "FieldValueNotFound",
        field: field.into(),
        message: format!("Not found: {value}"),
    }
}

/// `must be greater than or equal to 0` when the integer at `p` is negative. `field` is only
/// rendered for a cause, so callers in per-item loops can pass it unformatted.
pub(crate) fn non_negative(obj: &Value, p: &str, field: impl Display, out: &mut Vec<FieldCause>) {
    if let Some(n) = lookup(obj, p).and_then(Value::as_i64) {
        if n < 0 {
            out.push(FieldCause::invalid(
                field.to_string(),
                &Value::from(n),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// `field is immutable` when the values at `p` differ between `new` and `old`.
pub(crate) fn immutable(new: &Value, old: &Value, p: &str, field: &str, out: &mut Vec<FieldCause>) {
    let n = lookup(new, p).unwrap_or(&Value::Null);
    if n != lookup(old, p).unwrap_or(&Value::Null) {
        out.push(FieldCause::invalid(field, n, "field is immutable"));
    }
}

/// A string field as `Some` when present and non-empty (for `field_value`).
pub(crate) fn field(obj: &Value, p: &str) -> Option<String> {
    Some(s(obj, p).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_matches_value_pointer() {
        let doc = json!({
            "a": {"b": [10, {"c": "x"}, [true]], "": {"": 1}},
            "a/b": 1, "m~n": 2, "~1": 3, "~": 4, "0": 5, "01": 6, "+1": 7,
            "list": ["zero", "one"], "n": null, "s": "str"
        });
        let paths = [
            "",
            "/",
            "//",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/2/0",
            "/a/b/3",
            "/a/b/-1",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/00",
            "/a/b/1/c/d",
            "/a/",
            "/a//",
            "/a/b/",
            "/a/~1b",
            "/a~1b",
            "/m~0n",
            "/~01",
            "/~00",
            "/~0",
            "/~1",
            "/~",
            "/~2",
            "/0",
            "/01",
            "/+1",
            "/list/0",
            "/list/1",
            "/list/2",
            "/list/+1",
            "/list/01",
            "/list/-0",
            "/list/18446744073709551616",
            "/list/0/x",
            "/n",
            "/n/x",
            "/s",
            "/s/0",
            "/missing",
            "/missing/x",
            "a",
            "a/b",
            "x/a",
        ];
        for p in paths {
            assert_eq!(lookup(&doc, p), doc.pointer(p), "{p:?}");
            assert_eq!(
                s(&doc, p),
                doc.pointer(p).and_then(Value::as_str).unwrap_or("")
            );
        }
        assert_eq!(arr(&doc, "/list").len(), 2);
        assert_eq!(int(&doc, "/a//"), 1);
        assert!(boolean(&doc, "/a/b/2/0"));
    }

    #[test]
    fn set_default_keeps_order_and_values() {
        let mut m = json!({"a": null, "b": 1})
            .as_object()
            .cloned()
            .unwrap_or_default();
        set_default(&mut m, "a", json!("x"));
        set_default(&mut m, "b", json!(2));
        set_default(&mut m, "c", json!(3));
        assert_eq!(Value::Object(m).to_string(), r#"{"a":"x","b":1,"c":3}"#);
    }

    #[test]
    fn selector_formatting() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(Some(&sel)), "a=1,b=2,env in (dev,prod),!x");
        assert_eq!(format_labels(sel.get("matchLabels")), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(
            go_label_selector(&json!({"matchLabels": {"app": "y"}})),
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"y\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
    }

    #[test]
    fn selector_matching() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]});
        assert!(selector_matches(&sel, Some(&json!({"app": "web"}))));
        assert!(!selector_matches(
            &sel,
            Some(&json!({"app": "web", "tier": "db"}))
        ));
        assert!(!selector_matches(&sel, None));
        assert!(selector_is_empty(&json!({})));
    }
}
