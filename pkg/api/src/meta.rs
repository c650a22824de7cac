//! Generic metadata rules as upstream apimachinery applies them to every object (names, labels,
//! annotations, finalizers, owner references, namespace scope), plus the age formatter the
//! printers use. Messages are upstream's, word for word, so `kubectl` shows what users expect.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::resource::ResourceInfo;
use crate::strategy::FieldCause;

/// The alphabet upstream draws the 5-character `generateName` suffix from (no vowels, no
/// look-alike characters, so generated names never spell words).
pub const GENERATE_NAME_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// The length of the random suffix appended to `metadata.generateName`.
pub const GENERATE_NAME_SUFFIX_LEN: usize = 5;

/// Upstream's cap on the total size of all annotations of one object (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Which rule `metadata.name` follows for a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain, at most 253 characters (most kinds).
    Subdomain,
    /// RFC 1123 label, at most 63 characters (namespaces).
    Label,
    /// RFC 1035 label: like [`NameRule::Label`] but starting with a letter (services).
    Dns1035Label,
    /// Anything usable as one URL path segment: no `/` or `%`, not `.` or `..` (RBAC kinds).
    PathSegment,
}

/// The name rule upstream applies to `metadata.name` of `group`/`plural`.
pub fn name_rule(group: &str, plural: &str) -> NameRule {
    match (group, plural) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// Upstream's `validation.RegexError`: the message plus examples and the regex.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = msg.to_string();
    if examples.is_empty() {
        out.push_str(&format!(" (regex used for validation is '{fmt}')"));
        return out;
    }
    out.push_str(" (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` over the whole string.
fn matches_label(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    is_lower_alnum(first)
        && is_lower_alnum(last)
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
}

fn matches_subdomain(s: &str) -> bool {
    s.split('.').all(matches_label)
}

fn matches_qualified_part(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Upstream's `IsDNS1123Label`: the problems with `s`, empty when valid.
pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_label(s) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// Upstream's `IsDNS1123Subdomain`.
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_subdomain(s) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Upstream's `IsDNS1035Label`.
pub fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    let starts_alpha = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !(starts_alpha && matches_label(s)) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Upstream's `IsValidPathSegmentName`.
pub fn path_segment_errors(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| s.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Upstream's `IsQualifiedName`: `[prefix/]name` with a DNS subdomain prefix.
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in dns1123_subdomain_errors(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Upstream's `IsValidLabelValue`.
pub fn label_value_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !s.is_empty() && !matches_qualified_part(s) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            &format!("({QUALIFIED_NAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Validate a name (or, with `prefix`, a `generateName`) under `rule`. Like upstream, a
/// prefix may end in `-` since the random suffix follows it.
pub fn name_errors(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => dns1123_subdomain_errors(name),
        NameRule::Label => dns1123_label_errors(name),
        NameRule::Dns1035Label => dns1035_label_errors(name),
        NameRule::PathSegment => path_segment_errors(name),
    }
}

fn string_map(v: Option<&Value>) -> Vec<(&str, &str)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream's `ValidateLabels` at `path` (causes name the map, not the key, like upstream).
pub fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    for (k, v) in string_map(labels) {
        for m in qualified_name_errors(k) {
            out.push(FieldCause::invalid(path, &Value::from(k), m));
        }
        for m in label_value_errors(v) {
            out.push(FieldCause::invalid(path, &Value::from(v), m));
        }
    }
    out
}

/// Upstream's `ValidateAnnotations`: keys are qualified names (case-insensitive), total size
/// of keys and values at most 256 KiB.
pub fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let mut total = 0usize;
    for (k, v) in string_map(annotations) {
        for m in qualified_name_errors(&k.to_ascii_lowercase()) {
            out.push(FieldCause::invalid(path, &Value::from(k), m));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        out.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    out
}

/// A `FieldValueTooLong` cause as upstream's `field.TooLong` prints it.
pub fn too_long(path: &str, max: usize) -> FieldCause {
    FieldCause {
        reason: "FieldValueTooLong",
        field: path.to_string(),
        message: format!("Too long: may not be more than {max} bytes"),
    }
}

/// A `FieldValueRequired` cause with a detail (`Required value: <detail>`).
pub fn required_with(path: &str, detail: &str) -> FieldCause {
    FieldCause {
        reason: "FieldValueRequired",
        field: path.to_string(),
        message: format!("Required value: {detail}"),
    }
}

/// Upstream's `ValidateFinalizers`: each entry a qualified name.
pub fn validate_finalizers(finalizers: Option<&Value>, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    for (i, f) in finalizers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let s = f.as_str().unwrap_or("");
        for m in qualified_name_errors(s) {
            out.push(FieldCause::invalid(format!("{path}[{i}]"), f, m));
        }
    }
    out
}

/// Upstream's `ValidateOwnerReferences`: apiVersion (with a version), kind, name and uid are
/// required, and at most one reference may be the controller.
pub fn validate_owner_references(refs: Option<&Value>, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs.and_then(Value::as_array).into_iter().flatten() {
        let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let api_version = get("apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            out.push(FieldCause::invalid(
                format!("{path}.apiVersion"),
                &Value::from(api_version),
                "version must not be empty",
            ));
        }
        for (field, what) in [("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if get(field).is_empty() {
                out.push(FieldCause::invalid(
                    format!("{path}.{field}"),
                    &Value::from(""),
                    format!("{what} must not be empty"),
                ));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{}/{}", get("kind"), get("name"));
            match &first_controller {
                Some(first) => out.push(FieldCause::invalid(
                    path,
                    refs.unwrap_or(&Value::Null),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    out
}

/// Upstream's `ValidateObjectMeta` for a new object of `info`: name (or generateName),
/// namespace presence by scope, labels, annotations, owner references, finalizers.
pub fn validate_object_meta(obj: &Value, info: &ResourceInfo) -> Vec<FieldCause> {
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let get = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("");
    let rule = name_rule(info.group, info.plural);
    let mut out = Vec::new();
    let generate_name = get("generateName");
    if !generate_name.is_empty() {
        for m in name_errors(rule, generate_name, true) {
            out.push(FieldCause::invalid(
                "metadata.generateName",
                &Value::from(generate_name),
                m,
            ));
        }
    }
    let name = get("name");
    if name.is_empty() {
        out.push(required_with(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for m in name_errors(rule, name, false) {
            out.push(FieldCause::invalid("metadata.name", &Value::from(name), m));
        }
    }
    let namespace = get("namespace");
    if info.namespaced() {
        if namespace.is_empty() {
            out.push(FieldCause::required("metadata.namespace"));
        } else {
            for m in name_errors(NameRule::Label, namespace, false) {
                out.push(FieldCause::invalid(
                    "metadata.namespace",
                    &Value::from(namespace),
                    m,
                ));
            }
        }
    } else if !namespace.is_empty() {
        out.push(FieldCause::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
        if g < 0 {
            out.push(FieldCause::invalid(
                "metadata.generation",
                &Value::from(g),
                "must be greater than or equal to 0",
            ));
        }
    }
    out.extend(validate_labels(meta.get("labels"), "metadata.labels"));
    out.extend(validate_annotations(
        meta.get("annotations"),
        "metadata.annotations",
    ));
    out.extend(validate_owner_references(
        meta.get("ownerReferences"),
        "metadata.ownerReferences",
    ));
    out.extend(validate_finalizers(
        meta.get("finalizers"),
        "metadata.finalizers",
    ));
    out
}

/// Upstream's `ValidateObjectMetaUpdate`: the create rules on the new metadata, plus name,
/// namespace and uid are immutable. Like upstream's `BeforeUpdate`, the store is expected to
/// copy `creationTimestamp` (and an omitted `uid`) from the old object before calling this.
pub fn validate_object_meta_update(
    new: &Value,
    old: &Value,
    info: &ResourceInfo,
) -> Vec<FieldCause> {
    let mut out = validate_object_meta(new, info);
    for key in ["name", "namespace", "uid"] {
        let n = new
            .pointer(&format!("/metadata/{key}"))
            .unwrap_or(&Value::Null);
        let o = old
            .pointer(&format!("/metadata/{key}"))
            .unwrap_or(&Value::Null);
        if key == "uid" && n.as_str().unwrap_or("").is_empty() {
            continue;
        }
        if n != o {
            let shown = if n.is_null() {
                Value::from("")
            } else {
                n.clone()
            };
            out.push(FieldCause::invalid(
                format!("metadata.{key}"),
                &shown,
                "field is immutable",
            ));
        }
    }
    out
}

/// Upstream's `duration.HumanDuration`: the compact age kubectl prints (`45s`, `5m30s`, `3h`,
/// `2d5h`, `2y100d`). Up to 2 seconds in the future counts as now; more is `<invalid>`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parse an RFC 3339 timestamp as the API writes them.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Upstream printers' `translateTimestampSince`: the age of an RFC 3339 timestamp, or
/// `<unknown>` when it is absent or unparsable.
pub fn age_since(ts: Option<&Value>, now: DateTime<Utc>) -> String {
    match ts.and_then(Value::as_str).and_then(parse_time) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find_builtin;
    use serde_json::json;

    #[test]
    fn human_duration_matches_upstream() {
        let cases = [
            (-3, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (5 * 60, "5m"),
            (5 * 60 + 30, "5m30s"),
            (10 * 60 + 30, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (8 * 3600 + 20 * 60, "8h"),
            (47 * 3600, "47h"),
            (2 * 86400 + 5 * 3600, "2d5h"),
            (3 * 86400, "3d"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (2 * 365 * 86400 + 100 * 86400, "2y100d"),
            (3 * 365 * 86400, "3y"),
            (9 * 365 * 86400 + 10 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::seconds(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn age_since_handles_missing_timestamp() {
        let now = parse_time("2024-01-01T00:10:00Z").expect("time");
        assert_eq!(age_since(Some(&json!("2024-01-01T00:05:00Z")), now), "5m");
        assert_eq!(age_since(None, now), "<unknown>");
    }

    #[test]
    fn name_rules() {
        assert!(dns1123_subdomain_errors("web.example-1").is_empty());
        assert_eq!(
            dns1123_subdomain_errors("Foo"),
            vec!["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
        assert_eq!(
            dns1123_subdomain_errors(&"a".repeat(254))[0],
            "must be no more than 253 characters"
        );
        assert_eq!(
            dns1123_label_errors("a.b"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert_eq!(dns1035_label_errors("1abc").len(), 1);
        assert!(dns1035_label_errors("abc-1").is_empty());
        assert_eq!(path_segment_errors(".."), vec!["may not be '..'"]);
        assert_eq!(
            path_segment_errors("a/b%"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
        // A generateName may end in a dash.
        assert!(name_errors(NameRule::Subdomain, "web-", true).is_empty());
        assert_eq!(name_errors(NameRule::Subdomain, "web-", false).len(), 1);
        assert_eq!(name_rule("", "namespaces"), NameRule::Label);
        assert_eq!(name_rule("", "services"), NameRule::Dns1035Label);
        assert_eq!(name_rule("apps", "deployments"), NameRule::Subdomain);
    }

    #[test]
    fn qualified_names_and_label_values() {
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(qualified_name_errors("MyName").is_empty());
        assert_eq!(
            qualified_name_errors("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert!(qualified_name_errors("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(qualified_name_errors("-a")[0], "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')");
        assert_eq!(
            qualified_name_errors(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("v1.2_3").is_empty());
        assert_eq!(label_value_errors("bad value").len(), 1);
        assert_eq!(
            label_value_errors(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn object_meta_rules() {
        let pods = find_builtin("", "v1", "pods").expect("pods");
        let ns = find_builtin("", "v1", "namespaces").expect("namespaces");
        let ok =
            json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}});
        assert!(validate_object_meta(&ok, pods).is_empty());

        let bad =
            json!({"metadata": {"name": "Web", "labels": {"app": "a b"}, "finalizers": ["x/y/z"]}});
        let causes = validate_object_meta(&bad, pods);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "metadata.namespace",
                "metadata.labels",
                "metadata.finalizers[0]"
            ]
        );
        assert!(causes[0]
            .message
            .starts_with("Invalid value: \"Web\": a lowercase RFC 1123 subdomain"));
        assert_eq!(causes[1].message, "Required value");

        let unnamed = json!({"metadata": {"namespace": "x"}});
        assert_eq!(
            validate_object_meta(&unnamed, ns)[0].message,
            "Required value: name or generateName is required"
        );
        assert_eq!(
            validate_object_meta(&unnamed, ns)[1].to_message(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );

        let big = json!({"metadata": {"name": "a", "namespace": "b", "annotations": {"k": "x".repeat(300 * 1024)}}});
        let causes = validate_object_meta(&big, pods);
        assert_eq!(causes[0].reason, "FieldValueTooLong");
        assert_eq!(causes[0].field, "metadata.annotations");
    }

    #[test]
    fn owner_references() {
        let refs = json!([
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "apps/", "kind": "ReplicaSet", "name": "b", "uid": "", "controller": true}
        ]);
        let causes = validate_owner_references(Some(&refs), "metadata.ownerReferences");
        let msgs: Vec<String> = causes.iter().map(FieldCause::to_message).collect();
        assert_eq!(msgs[0], "metadata.ownerReferences.apiVersion: Invalid value: \"apps/\": version must not be empty");
        assert_eq!(
            msgs[1],
            "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"
        );
        assert!(msgs[2].ends_with("Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"));
    }

    #[test]
    fn meta_update_immutables() {
        let pods = find_builtin("", "v1", "pods").expect("pods");
        let old = json!({"metadata": {"name": "a", "namespace": "d", "uid": "1"}});
        let new = json!({"metadata": {"name": "a", "namespace": "d", "uid": "2"}});
        let causes = validate_object_meta_update(&new, &old, pods);
        assert_eq!(causes.len(), 1);
        let no_uid = json!({"metadata": {"name": "a", "namespace": "d"}});
        assert_eq!(validate_object_meta_update(&no_uid, &old, pods), vec![]);
        assert_eq!(
            causes[0].to_message(),
            "metadata.uid: Invalid value: \"2\": field is immutable"
        );
    }
}
