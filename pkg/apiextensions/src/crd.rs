//! CustomResourceDefinition defaulting, create/update preparation and validation, following
//! apiextensions-apiserver's `v1` defaults and `ValidateCustomResourceDefinition*`.

use crate::error::{FieldError, Path};
use crate::names::{dns1035_label, dns1123_subdomain};
use crate::structural::validate_schema;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionStatus, CustomResourceSubresources,
};
use serde_json::{json, Value};

/// Fills the defaults the API server sets on a CRD (JSON as decoded from the request):
/// `spec.names.singular` = lowercase kind, `spec.names.listKind` = kind + `List`,
/// `spec.conversion.strategy` = `None`. Call before decoding into the typed CRD and validating.
pub fn default_crd(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
        if empty(names.get("singular")) {
            names.insert("singular".into(), Value::from(kind.to_lowercase()));
        }
        if empty(names.get("listKind")) && !kind.is_empty() {
            names.insert("listKind".into(), Value::from(format!("{kind}List")));
        }
    }
    match spec.get_mut("conversion").and_then(Value::as_object_mut) {
        Some(conv) => {
            if conv
                .get("strategy")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                conv.insert("strategy".into(), Value::from("None"));
            }
        }
        None => {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
    }
}

/// The name of the version marked `storage: true`, if exactly one is.
pub fn storage_version(crd: &CustomResourceDefinition) -> Option<&str> {
    let mut it = crd.spec.versions.iter().filter(|v| v.storage);
    match (it.next(), it.next()) {
        (Some(v), None) => Some(v.name.as_str()),
        _ => None,
    }
}

/// Upstream `PrepareForCreate`: status reset to `storedVersions: [<storage version>]`.
/// Call after [`default_crd`] and before [`validate_crd`].
pub fn prepare_crd_for_create(crd: &mut CustomResourceDefinition) {
    let stored: Vec<String> = storage_version(crd)
        .map(str::to_string)
        .into_iter()
        .collect();
    crd.status = Some(CustomResourceDefinitionStatus {
        stored_versions: Some(stored),
        ..Default::default()
    });
}

/// Upstream `PrepareForUpdate` for the main resource: status carried over from `old`, and the
/// (possibly new) storage version appended to `status.storedVersions`.
pub fn prepare_crd_for_update(old: &CustomResourceDefinition, new: &mut CustomResourceDefinition) {
    new.status = old.status.clone();
    if let Some(sv) = storage_version(new).map(str::to_string) {
        let status = new.status.get_or_insert_with(Default::default);
        let stored = status.stored_versions.get_or_insert_with(Vec::new);
        if !stored.contains(&sv) {
            stored.push(sv);
        }
    }
}

/// Validates a CRD on create (after [`default_crd`]). Returns every problem found.
pub fn validate_crd(crd: &CustomResourceDefinition) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &crd.spec;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let want = format!("{}.{}", spec.names.plural, spec.group);
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for e in dns1123_subdomain(&name) {
            errs.push(FieldError::invalid("metadata.name", name.as_str(), e));
        }
        if name != want {
            errs.push(FieldError::invalid(
                "metadata.name",
                name.as_str(),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
    }
    errs.extend(validate_spec(spec, &Path::new("spec")));
    if let Some(stored) = crd.status.as_ref().and_then(|s| s.stored_versions.as_ref()) {
        if !stored.is_empty() {
            errs.extend(validate_stored_versions(stored, spec));
        }
    }
    errs
}

/// Validates a CRD update: everything [`validate_crd`] checks, stored versions, and the
/// immutable fields (`group`, `names.plural`; `scope` and `names.kind` once Established).
pub fn validate_crd_update(
    old: &CustomResourceDefinition,
    new: &CustomResourceDefinition,
) -> Vec<FieldError> {
    let mut errs = validate_crd(new);
    let stored = new
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default();
    if stored.is_empty() {
        errs.push(FieldError::invalid(
            "status.storedVersions",
            json!([]),
            "must have at least one stored version",
        ));
    }
    let immutable = |path: &str, o: &str, n: &str, errs: &mut Vec<FieldError>| {
        if o != n {
            errs.push(FieldError::invalid(path, n, "field is immutable"));
        }
    };
    if is_established(old) {
        immutable("spec.scope", &old.spec.scope, &new.spec.scope, &mut errs);
        immutable(
            "spec.names.kind",
            &old.spec.names.kind,
            &new.spec.names.kind,
            &mut errs,
        );
    }
    immutable("spec.group", &old.spec.group, &new.spec.group, &mut errs);
    immutable(
        "spec.names.plural",
        &old.spec.names.plural,
        &new.spec.names.plural,
        &mut errs,
    );
    errs
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

fn validate_stored_versions(
    stored: &[String],
    spec: &CustomResourceDefinitionSpec,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for v in &spec.versions {
        if v.storage && !stored.contains(&v.name) {
            errs.push(FieldError::invalid(
                "status.storedVersions",
                v.name.as_str(),
                format!("must have the storage version {}", v.name),
            ));
        }
    }
    for (i, s) in stored.iter().enumerate() {
        if !spec.versions.iter().any(|v| &v.name == s) {
            errs.push(FieldError::invalid(
                &format!("status.storedVersions[{i}]"),
                s.as_str(),
                "must appear in spec.versions",
            ));
        }
    }
    errs
}

fn validate_spec(spec: &CustomResourceDefinitionSpec, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let gp = p.child("group");
    if spec.group.is_empty() {
        errs.push(FieldError::required(gp.as_str(), ""));
    } else if let e @ [_, ..] = dns1123_subdomain(&spec.group).as_slice() {
        errs.push(FieldError::invalid(
            gp.as_str(),
            spec.group.as_str(),
            e.join(","),
        ));
    } else if spec.group.split('.').count() < 2 {
        errs.push(FieldError::invalid(
            gp.as_str(),
            spec.group.as_str(),
            "should be a domain with at least one dot",
        ));
    }
    let sp = p.child("scope");
    if spec.scope.is_empty() {
        errs.push(FieldError::required(sp.as_str(), ""));
    } else if spec.scope != "Cluster" && spec.scope != "Namespaced" {
        errs.push(FieldError::not_supported(
            sp.as_str(),
            spec.scope.as_str(),
            &["Cluster".into(), "Namespaced".into()],
        ));
    }
    let vp = p.child("versions");
    if spec.versions.is_empty() {
        errs.push(FieldError::required(
            vp.as_str(),
            "must have at least one version",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut unique = true;
    for (i, v) in spec.versions.iter().enumerate() {
        let ip = vp.index(i);
        if seen.contains(&v.name.as_str()) {
            unique = false;
        }
        seen.push(&v.name);
        let e = dns1035_label(&v.name);
        if !e.is_empty() {
            errs.push(FieldError::invalid(
                ip.child("name").as_str(),
                v.name.as_str(),
                e.join(","),
            ));
        }
        let schema_path = ip.child("schema").child("openAPIV3Schema");
        match v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            None => errs.push(FieldError::required(
                schema_path.as_str(),
                "schemas are required",
            )),
            Some(s) => errs.extend(validate_schema(s, schema_path.as_str())),
        }
        if let Some(sub) = &v.subresources {
            errs.extend(validate_subresources(sub, &ip.child("subresources")));
        }
        for (c, col) in v.additional_printer_columns.iter().flatten().enumerate() {
            errs.extend(validate_column(
                col,
                &ip.child("additionalPrinterColumns").index(c),
            ));
        }
    }
    if !unique {
        errs.push(FieldError::invalid_no_value(
            vp.as_str(),
            "must contain unique version names",
        ));
    }
    if spec.versions.iter().filter(|v| v.storage).count() != 1 {
        errs.push(FieldError::invalid_no_value(
            vp.as_str(),
            "must have exactly one version marked as storage version",
        ));
    }
    errs.extend(validate_names(&spec.names, &p.child("names")));
    if spec.preserve_unknown_fields == Some(true) {
        errs.push(FieldError::invalid(
            p.child("preserveUnknownFields").as_str(),
            true,
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    if let Some(conv) = &spec.conversion {
        let cp = p.child("conversion").child("strategy");
        if conv.strategy.is_empty() {
            errs.push(FieldError::required(cp.as_str(), ""));
        } else if conv.strategy != "None" {
            // Webhook conversion needs an outbound call; kubelite only serves `None`.
            errs.push(FieldError::not_supported(
                cp.as_str(),
                conv.strategy.as_str(),
                &["None".into()],
            ));
        }
        if conv.strategy == "None" && conv.webhook.is_some() {
            errs.push(FieldError::forbidden(
                p.child("conversion").child("webhook").as_str(),
                "should not be set when strategy is not set to Webhook",
            ));
        }
    }
    errs
}

fn validate_names(n: &CustomResourceDefinitionNames, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let singular = n.singular.clone().unwrap_or_default();
    let list_kind = n.list_kind.clone().unwrap_or_default();
    for (val, field) in [
        (&n.plural, "plural"),
        (&singular, "singular"),
        (&n.kind, "kind"),
        (&list_kind, "listKind"),
    ] {
        if val.is_empty() {
            errs.push(FieldError::required(p.child(field).as_str(), ""));
        }
    }
    let lower = |val: &str, field: &str, errs: &mut Vec<FieldError>| {
        let e = dns1035_label(val);
        if !val.is_empty() && !e.is_empty() {
            errs.push(FieldError::invalid(
                p.child(field).as_str(),
                val,
                e.join(","),
            ));
        }
    };
    lower(&n.plural, "plural", &mut errs);
    lower(&singular, "singular", &mut errs);
    for (val, field) in [(&n.kind, "kind"), (&list_kind, "listKind")] {
        let e = dns1035_label(&val.to_lowercase());
        if !val.is_empty() && !e.is_empty() {
            errs.push(FieldError::invalid(
                p.child(field).as_str(),
                val.as_str(),
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    e.join(",")
                ),
            ));
        }
    }
    for (i, s) in n.short_names.iter().flatten().enumerate() {
        let e = dns1035_label(s);
        if !e.is_empty() {
            errs.push(FieldError::invalid(
                p.child("shortNames").index(i).as_str(),
                s.as_str(),
                e.join(","),
            ));
        }
    }
    if !n.kind.is_empty() && n.kind == list_kind {
        errs.push(FieldError::invalid(
            p.child("listKind").as_str(),
            list_kind.as_str(),
            "kind and listKind may not be the same",
        ));
    }
    for (i, c) in n.categories.iter().flatten().enumerate() {
        let e = dns1035_label(c);
        if !e.is_empty() {
            errs.push(FieldError::invalid(
                p.child("categories").index(i).as_str(),
                c.as_str(),
                e.join(","),
            ));
        }
    }
    errs
}

/// Upstream `validateSimpleJSONPath`.
fn simple_json_path(s: &str, p: &str) -> Option<FieldError> {
    if s.is_empty() {
        Some(FieldError::invalid(p, s, "must not be empty"))
    } else if !s.starts_with('.') {
        Some(FieldError::invalid(
            p,
            s,
            "must be a simple json path starting with .",
        ))
    } else {
        None
    }
}

fn validate_subresources(sub: &CustomResourceSubresources, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(scale) = &sub.scale else { return errs };
    for (val, field, prefix) in [
        (
            &scale.spec_replicas_path,
            "scale.specReplicasPath",
            ".spec.",
        ),
        (
            &scale.status_replicas_path,
            "scale.statusReplicasPath",
            ".status.",
        ),
    ] {
        let fp = p.child(field);
        if val.is_empty() {
            errs.push(FieldError::required(fp.as_str(), ""));
        } else if let Some(e) = simple_json_path(val, fp.as_str()) {
            errs.push(e);
        } else if !val.starts_with(prefix) {
            let under = prefix.trim_end_matches('.');
            errs.push(FieldError::invalid(
                fp.as_str(),
                val.as_str(),
                format!("should be a json path under {under}"),
            ));
        }
    }
    if let Some(sel) = scale.label_selector_path.as_ref().filter(|s| !s.is_empty()) {
        let fp = p.child("scale.labelSelectorPath");
        if let Some(e) = simple_json_path(sel, fp.as_str()) {
            errs.push(e);
        } else if !sel.starts_with(".spec.") && !sel.starts_with(".status.") {
            errs.push(FieldError::invalid(
                fp.as_str(),
                sel.as_str(),
                "should be a json path under either .spec or .status",
            ));
        }
    }
    errs
}

fn validate_column(col: &CustomResourceColumnDefinition, p: &Path) -> Vec<FieldError> {
    const TYPES: &str = "boolean,date,integer,number,string";
    const FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";
    let mut errs = Vec::new();
    if col.name.is_empty() {
        errs.push(FieldError::required(p.child("name").as_str(), ""));
    }
    let tp = p.child("type");
    if col.type_.is_empty() {
        errs.push(FieldError::required(
            tp.as_str(),
            format!("must be one of {TYPES}"),
        ));
    } else if !TYPES.split(',').any(|t| t == col.type_) {
        errs.push(FieldError::invalid(
            tp.as_str(),
            col.type_.as_str(),
            format!("must be one of {TYPES}"),
        ));
    }
    if let Some(f) = col.format.as_ref().filter(|f| !f.is_empty()) {
        if !FORMATS.split(',').any(|x| x == f) {
            errs.push(FieldError::invalid(
                p.child("format").as_str(),
                f.as_str(),
                format!("must be one of {FORMATS}"),
            ));
        }
    }
    let jp = p.child("jsonPath");
    if col.json_path.is_empty() {
        errs.push(FieldError::required(jp.as_str(), ""));
    } else if let Some(e) = simple_json_path(&col.json_path, jp.as_str()) {
        errs.push(e);
    } else if let Err(e) = crate::jsonpath::JsonPath::parse(&col.json_path) {
        errs.push(FieldError::invalid(
            jp.as_str(),
            col.json_path.as_str(),
            e.to_string(),
        ));
    }
    errs
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
