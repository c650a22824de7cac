//! Object-kind subresources other than status: `scale` (autoscaling/v1 Scale over
//! spec.replicas), `pods/binding` (in `binding.rs`) and `pods/eviction`.

use serde_json::{json, Value};

use kubelite_api::strategy::ScalePaths;

use super::delete::DeleteOptions;
use super::update::{write_tracked, Attempt, Part, Tracking};
use super::{check_type, get_kv, Ctx, Params, Registry, Reply};
use crate::body::{check_unknown, prune_kind, FieldProblems, FieldValidation};
use crate::error::{ApiError, Result};

use super::MAX_ATTEMPTS;

pub use super::binding::bind;

/// A label selector object (`matchLabels` + `matchExpressions`) or a plain map, as a string.
pub fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut parts = Vec::new();
    let labels = sel.get("matchLabels").or_else(|| {
        if sel.get("matchExpressions").is_none() {
            Some(sel)
        } else {
            None
        }
    });
    if let Some(m) = labels.and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// The Scale view of an object of a built-in kind.
pub fn scale_of(obj: &Value) -> Value {
    scale_at(obj, &ScalePaths::default())
}

/// Set `value` at the JSON pointer `path`, creating the objects on the way.
fn set_at(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == segs.len() {
            map.insert((*seg).to_string(), value);
            return;
        }
        cur = map.entry((*seg).to_string()).or_insert_with(|| json!({}));
    }
}

/// The Scale view of an object whose replicas live at `paths`.
pub fn scale_at(obj: &Value, paths: &ScalePaths) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut scale_meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(k) {
            scale_meta[k] = v.clone();
        }
    }
    let replicas = obj
        .pointer(&paths.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = obj
        .pointer(&paths.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = match &paths.selector {
        Some(p) if paths.selector_is_string => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        Some(p) => selector_string(obj.pointer(p)),
        None => String::new(),
    };
    let mut status = json!({"replicas": status_replicas});
    if !selector.is_empty() || !paths.selector_is_string {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": replicas},
        "status": status,
    })
}

/// GET `.../scale`.
pub async fn get_scale(reg: &Registry, ctx: &Ctx, name: &str) -> Result<Reply> {
    let (_, obj) = get_kv(reg, ctx, name).await?;
    Ok(Reply::ok(scale_at(&obj, &ctx.strategy.scale_paths())))
}

/// PUT (`body = Some(scale)`) or PATCH (`patch = Some((content type, bytes))`) of `.../scale`.
pub async fn write_scale(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    params: &Params,
    body: Option<Value>,
    patch: Option<(&str, &[u8])>,
) -> Result<Reply> {
    let mode = FieldValidation::parse(params.get("fieldValidation"))?;
    if patch.is_some_and(|(ct, _)| crate::model::is_apply(ct))
        && params.get("fieldManager").is_none_or(str::is_empty)
    {
        return Err(crate::model::field_manager_required());
    }
    // Upstream records scale writes on the parent object, under subresource `scale`.
    let manager = params.field_manager();
    let tracking = Tracking::Update {
        manager: &manager,
        subresource: "scale",
    };
    for attempt in 0..MAX_ATTEMPTS {
        super::conflict_pause(attempt).await;
        let (cur, old) = get_kv(reg, ctx, name).await?;
        let paths = ctx.strategy.scale_paths();
        let current = scale_at(&old, &paths);
        let mut scale = match (&body, patch) {
            (Some(b), _) => b.clone(),
            (None, Some((ct, bytes))) => {
                crate::model::apply_patch_gvk(("autoscaling", "v1", "Scale"), &current, ct, bytes)?
            }
            (None, None) => return Err(ApiError::bad_request("empty scale request")),
        };
        check_type("autoscaling/v1", "Scale", &mut scale)?;
        let warnings = check_unknown(
            mode,
            FieldProblems {
                unknown: prune_kind("autoscaling", "Scale", &mut scale)?,
                duplicate: Vec::new(),
            },
        )?;
        if let Some(rv) = super::meta_str(&scale, "resourceVersion").filter(|s| !s.is_empty()) {
            if rv != cur.mod_revision.to_string() {
                return Err(ApiError::stale(ctx.target(name)));
            }
        }
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            let cause = kubelite_api::strategy::FieldCause::invalid(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            );
            return Err(ApiError::invalid(ctx.info, name, vec![cause]));
        }
        let mut new = old.clone();
        set_at(&mut new, &paths.spec_replicas, json!(replicas));
        let attempt = write_tracked(
            reg,
            ctx,
            Part::Main,
            params,
            &cur,
            &old,
            new,
            warnings,
            tracking,
        );
        match attempt.await? {
            Attempt::Done(mut r) => {
                let warnings = std::mem::take(&mut r.warnings);
                let code = r.code;
                let obj = r.into_value()?;
                return Ok(Reply::new(code, scale_at(&obj, &paths), warnings));
            }
            Attempt::Raced => continue,
        }
    }
    Err(ApiError::stale(ctx.target(name)))
}

/// POST `pods/<name>/eviction`: delete the pod gracefully (no disruption budgets yet).
pub async fn evict(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    params: &Params,
    eviction: Value,
) -> Result<Reply> {
    let opts = DeleteOptions::parse(params, eviction.get("deleteOptions"))?;
    super::delete::delete(reg, ctx, name, &opts).await?;
    Ok(Reply::new(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        Vec::new(),
    ))
}
