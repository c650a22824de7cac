//! The seam between the server and the pure API model (`kubelite_api`): strategies, selectors,
//! patches and metadata rules. Everything the registry needs from the model goes through here,
//! and model errors become [`ApiError`]s here.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use kubelite_api::apply::{self, ApplyError, ManagedFields, Path, Writer};
use kubelite_api::patch::{PatchError, PatchType};
use kubelite_api::resource::ResourceInfo;
use kubelite_api::selector::{FieldSelector, LabelSelector};
use kubelite_api::strategy::{FieldCause, Strategy};
use serde_json::{json, Value};

use crate::error::{ApiError, Failure, Target};

/// The strategy of a built-in resource (built once per resource).
pub fn strategy(info: &'static ResourceInfo) -> Arc<dyn Strategy> {
    static ALL: OnceLock<HashMap<String, Arc<dyn Strategy>>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        kubelite_api::kinds::builtin_strategies()
            .into_iter()
            .chain(crate::crd::definition_strategy())
            .map(|s| (s.info().prefix(), s))
            .collect()
    });
    all.get(&info.prefix())
        .cloned()
        .unwrap_or_else(|| kubelite_api::kinds::generic_strategy(info.clone()))
}

/// Parsed label and field selectors of a list or watch.
#[derive(Clone, Debug)]
pub struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    /// Parse the query's selectors; a field the kind cannot select on is a 400 like upstream.
    pub fn parse(
        label: Option<&str>,
        field: Option<&str>,
        strategy: &dyn Strategy,
    ) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(label.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(field.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let probe = json!({"metadata": {}});
        for r in fields.requirements() {
            let generic = r.field == "metadata.name" || r.field == "metadata.namespace";
            if !generic && strategy.field_value(&probe, &r.field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    /// Whether both selectors select everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether `obj` matches both selectors.
    pub fn matches(&self, obj: &Value, strategy: &dyn Strategy) -> bool {
        if !self.labels.matches_value(obj.pointer("/metadata/labels")) {
            return false;
        }
        self.fields.matches(|f| match f {
            "metadata.name" => obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string),
            "metadata.namespace" => obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            other => strategy.field_value(obj, other),
        })
    }
}

/// Apply a PATCH body of the given Content-Type to `original`.
pub fn apply_patch(
    info: &ResourceInfo,
    original: &Value,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    apply_patch_gvk(
        (info.group, info.version, info.kind),
        original,
        content_type,
        body,
    )
}

/// [`apply_patch`] for an explicit kind (the Scale subresource).
pub fn apply_patch_gvk(
    gvk: (&str, &str, &str),
    original: &Value,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let Some(pt) = PatchType::from_content_type(content_type) else {
        let strategic = kubelite_api::patch::supports_strategic_merge(gvk.0, gvk.1, gvk.2);
        return Err(ApiError::unsupported_media_type(
            kubelite_api::patch::unsupported_media_type_message(strategic, false),
        ));
    };
    if pt == PatchType::Apply {
        // Only the scale subresource gets here (objects go through [`server_side_apply`]): a
        // Scale is a view, so the applied configuration is merged into it like a strategic
        // merge patch (a merge patch for kinds without patch metadata) and the write is
        // tracked as an update of the parent.
        let applied = parse_apply(body)?;
        let bytes = serde_json::to_vec(&applied).map_err(|e| ApiError::internal(e.to_string()))?;
        let as_type = if kubelite_api::patch::supports_strategic_merge(gvk.0, gvk.1, gvk.2) {
            PatchType::StrategicMerge
        } else {
            PatchType::Merge
        };
        return kubelite_api::patch::apply_patch(gvk, original, as_type, &bytes)
            .map_err(patch_error);
    }
    kubelite_api::patch::apply_patch(gvk, original, pt, body).map_err(patch_error)
}

/// The subtrees a write through `subresource` never gains ownership of, because the strategy
/// resets them (upstream's `GetResetFields`): `status` on the main resource of kinds with a
/// status subresource, `spec` on `/status`.
fn reset_fields(info: &ResourceInfo, subresource: &str) -> &'static [Path] {
    static STATUS: OnceLock<[Path; 1]> = OnceLock::new();
    static SPEC: OnceLock<[Path; 1]> = OnceLock::new();
    match subresource {
        "" if info.subresource("status").is_some() => {
            STATUS.get_or_init(|| [Path::fields(&["status"])])
        }
        "status" => SPEC.get_or_init(|| [Path::fields(&["spec"])]),
        _ => &[],
    }
}

/// The entries a non-apply write starts from: those the request carries (a client may
/// rewrite them, as upstream allows on the main resource), else the live object's. Stored
/// entries that do not decode are reset rather than failing every later write.
fn base_entries(old: Option<&Value>, new: &Value, subresource: &str) -> ManagedFields {
    if subresource.is_empty() {
        if let Ok(m) = ManagedFields::from_object(new) {
            if !m.entries.is_empty() {
                return m;
            }
        }
    }
    old.and_then(|o| ManagedFields::from_object(o).ok())
        .unwrap_or_default()
}

/// Record a create (`old` = `None`), update or non-apply patch in `new`'s
/// `metadata.managedFields`: `manager` gains an `Update` entry (for `subresource`) with the
/// fields it set, others lose them. `new` must be the object as it will be stored.
pub fn track_update(
    strategy: &dyn Strategy,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
) {
    let base = base_entries(old, new, subresource);
    let time = crate::registry::now_rfc3339();
    let writer = Writer {
        manager,
        subresource,
        time: &time,
        ignored: reset_fields(strategy.info(), subresource),
    };
    let out = apply::update_managed_fields(old, new, &writer, &base, &strategy.type_info());
    out.write_to_object(new);
}

/// Record a create in `obj`'s `metadata.managedFields`, as [`track_update`] with `old =
/// None`, except in the common case (the client sent no entries, and one walk can tell what
/// the creator owns): the list is returned as JSON text, for
/// [`encode_with_managed`](crate::registry::encode_with_managed) to splice into the stored
/// bytes, and `obj` holds a `null` placeholder where the list goes (keys added later, such as
/// a generated name, follow it, as they follow the list). `None`: `obj` holds its entries (or
/// none).
pub fn track_create(strategy: &dyn Strategy, obj: &mut Value, manager: &str) -> Option<Vec<u8>> {
    let base = base_entries(None, obj, "");
    let time = crate::registry::now_rfc3339();
    let writer = Writer {
        manager,
        subresource: "",
        time: &time,
        ignored: reset_fields(strategy.info(), ""),
    };
    let types = strategy.type_info();
    if base.entries.is_empty() {
        if let Some(json) = apply::created_managed_fields_json(obj, &writer, &types) {
            // Whatever the client sent (an empty or invalid list) is replaced in place.
            write_entries(obj, json.as_ref().map(|_| Value::Null));
            return json;
        }
    }
    apply::update_managed_fields(None, obj, &writer, &base, &types).write_to_object(obj);
    None
}

/// Set (or, for `None`, remove) `metadata.managedFields` as
/// [`ManagedFields::write_to_object`] does.
fn write_entries(obj: &mut Value, entries: Option<Value>) {
    let Value::Object(root) = obj else { return };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(meta) = meta {
        match entries {
            Some(list) => {
                meta.insert("managedFields".into(), list);
            }
            None => {
                meta.remove("managedFields");
            }
        }
    }
}

/// Server-side apply of `applied` onto `live` (`None`: the object does not exist yet) by
/// `manager` through `subresource`: the merged object with its new `metadata.managedFields`,
/// or 409 (conflicts, unless `force`) / 422 (a configuration the schema rejects).
pub fn server_side_apply(
    strategy: &dyn Strategy,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let managed = live
        .and_then(|l| ManagedFields::from_object(l).ok())
        .unwrap_or_default();
    let time = crate::registry::now_rfc3339();
    let writer = Writer {
        manager,
        subresource,
        time: &time,
        ignored: reset_fields(strategy.info(), subresource),
    };
    let (mut merged, out) = apply::apply(
        live,
        applied,
        &writer,
        force,
        &managed,
        &strategy.type_info(),
    )
    .map_err(apply_error)?;
    out.write_to_object(&mut merged);
    Ok(merged)
}

/// Upstream's Status for a failed apply: 409 `Conflict` with one `FieldManagerConflict`
/// cause per contested field, or 422 `Invalid`.
fn apply_error(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => Failure {
            code: 409,
            reason: "Conflict",
            message: conflicts.to_string(),
            target: None,
            causes: conflicts
                .causes()
                .into_iter()
                .map(|(message, field)| FieldCause {
                    reason: "FieldManagerConflict",
                    field,
                    message,
                })
                .collect(),
        }
        .into(),
        ApplyError::Invalid(message) => Failure {
            code: 422,
            reason: "Invalid",
            message,
            target: None,
            causes: Vec::new(),
        }
        .into(),
    }
}

/// Upstream's answer to an apply without `?fieldManager=` (422 on `PatchOptions`).
pub fn field_manager_required() -> ApiError {
    let cause = FieldCause {
        reason: "FieldValueRequired",
        field: "fieldManager".into(),
        message: "Required value: is required for apply patch".into(),
    };
    Failure {
        code: 422,
        reason: "Invalid",
        message: format!(
            "PatchOptions.meta.k8s.io \"\" is invalid: {}",
            cause.to_message()
        ),
        target: Some(Target {
            group_resource: "PatchOptions.meta.k8s.io".into(),
            group: "meta.k8s.io".into(),
            kind: "PatchOptions".into(),
            name: String::new(),
        }),
        causes: vec![cause],
    }
    .into()
}

/// Whether a Content-Type is server-side apply.
pub fn is_apply(content_type: &str) -> bool {
    PatchType::from_content_type(content_type) == Some(PatchType::Apply)
}

/// The object of a server-side apply body (YAML, of which JSON is a subset).
pub fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration is not an object",
        ));
    }
    Ok(v)
}

fn patch_error(e: PatchError) -> ApiError {
    match e {
        PatchError::BadRequest(m) => ApiError::bad_request(m),
        PatchError::Unprocessable(m) => {
            let mut err = ApiError::bad_request(kubelite_api::patch::UNPROCESSABLE_MESSAGE);
            err.code = 422;
            err.reason = "Invalid";
            err.causes = vec![FieldCause {
                reason: "UnexpectedServerResponse",
                field: String::new(),
                message: m,
            }];
            err
        }
        PatchError::TooLarge(m) => ApiError::too_large(m),
        PatchError::Unsupported(m) => ApiError::unsupported_media_type(m),
        PatchError::Internal(m) => {
            let mut err = ApiError::internal(m);
            err.reason = "";
            err
        }
    }
}

/// Generic metadata checks on a new object.
pub fn validate_meta(info: &ResourceInfo, obj: &Value) -> Vec<FieldCause> {
    kubelite_api::meta::validate_object_meta(obj, info)
}

/// Generic metadata checks on an update (immutable name, namespace, uid, creationTimestamp).
pub fn validate_meta_update(info: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldCause> {
    kubelite_api::meta::validate_object_meta_update(new, old, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_tracking_stores_what_the_generic_path_stores() {
        let pods = kubelite_api::resource::find_builtin("", "v1", "pods").expect("pods");
        let cms = kubelite_api::resource::find_builtin("", "v1", "configmaps").expect("cms");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Pending"}});
        let mut generated = pod.clone();
        generated["metadata"] = json!({"generateName": "p-", "namespace": "d"});
        let mut junk = pod.clone();
        junk["metadata"]["managedFields"] = json!("junk");
        let mut junk_first = pod.clone();
        junk_first["metadata"] =
            json!({"managedFields": "junk", "labels": {"a": "b"}, "annotations": {"x": "y"}});
        let mut duplicate = pod.clone();
        duplicate["spec"]["containers"] = json!([{"name": "c", "image": "i"}, {"name": "c"}]);
        let cases = [
            (pods, pod),
            // A name generated after tracking follows the list.
            (pods, generated),
            // Invalid client entries are replaced in place, as the generic path does.
            (pods, junk),
            (pods, junk_first),
            // Duplicate list keys: the one walk defers to the generic path.
            (pods, duplicate),
            // Nothing owned: no entries, and a client's empty list is removed.
            (
                cms,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": []}}),
            ),
            (
                cms,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {"k": "v"}}),
            ),
        ];
        let name = |o: &mut Value| {
            if let Some(m) = crate::registry::meta_mut(o) {
                m.insert("name".into(), json!("p-x2b4z"));
            }
        };
        for (info, obj) in cases {
            let s = strategy(info);
            let mut spliced = obj.clone();
            let managed = track_create(s.as_ref(), &mut spliced, "kubectl");
            name(&mut spliced);
            let got = match managed {
                Some(json) => crate::registry::encode_with_managed(&spliced, &json),
                None => crate::registry::encode(&spliced),
            }
            .expect("encode");
            let stored: Value = serde_json::from_slice(&got).expect("stored json");
            let mut generic = obj.clone();
            let writer = Writer {
                manager: "kubectl",
                subresource: "",
                time: stored
                    .pointer("/metadata/managedFields/0/time")
                    .and_then(Value::as_str)
                    .unwrap_or("2026-01-01T00:00:00Z"),
                ignored: reset_fields(info, ""),
            };
            let base = base_entries(None, &generic, "");
            apply::update_managed_fields(None, &generic, &writer, &base, &s.type_info())
                .write_to_object(&mut generic);
            name(&mut generic);
            let want = crate::registry::encode(&generic).expect("encode");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{obj}"
            );
        }
    }

    #[test]
    fn pod_fields_are_selectable_and_others_are_not() {
        let pods = kubelite_api::resource::find_builtin("", "v1", "pods").expect("pods");
        let s = strategy(pods);
        let sel =
            Selectors::parse(Some("app=web"), Some("spec.nodeName=n1"), s.as_ref()).expect("parse");
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        assert!(sel.matches(&pod, s.as_ref()));
        let err =
            Selectors::parse(None, Some("spec.bogus=x"), s.as_ref()).expect_err("unsupported");
        assert_eq!(err.message, "field label not supported: spec.bogus");
    }
}
