//! DELETE and deletecollection: DeleteOptions, preconditions, graceful pod deletion, finalizers
//! (incl. the garbage-collection ones propagationPolicy adds), namespace termination.

use kubelite_storage::KeyValue;
use serde_json::{json, Value};

use super::{get_kv, meta_mut, Ctx, Params, Registry, Reply};
use crate::error::{ApiError, Result};
use crate::model::Selectors;

use super::MAX_ATTEMPTS;
/// Namespaces upstream refuses to delete.
const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// DeleteOptions from the body and/or the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub propagation: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Merge the query parameters and the optional DeleteOptions body (the body wins).
    pub fn parse(params: &Params, body: Option<&Value>) -> Result<Self> {
        let mut o = DeleteOptions {
            dry_run: params.dry_run(),
            ..Default::default()
        };
        if let Some(g) = params.get("gracePeriodSeconds") {
            o.grace_period = Some(
                g.parse()
                    .map_err(|_| ApiError::bad_request("invalid gracePeriodSeconds"))?,
            );
        }
        o.propagation = params.get("propagationPolicy").map(str::to_string);
        if params.get("orphanDependents") == Some("true") {
            o.propagation = Some("Orphan".into());
        }
        if let Some(b) = body {
            if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period = Some(g);
            }
            if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation = Some(p.to_string());
            }
            if b.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                o.propagation = Some("Orphan".into());
            }
            if let Some(pre) = b.get("preconditions") {
                o.uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
                o.resource_version = pre
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            if b.get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                o.dry_run = true;
            }
        }
        match o.propagation.as_deref() {
            None | Some("Background") | Some("Foreground") | Some("Orphan") => Ok(o),
            Some(p) => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

/// Kinds whose DELETE answers with the object instead of a success Status (upstream's
/// ReturnDeletedObject / graceful kinds).
fn returns_object(ctx: &Ctx) -> bool {
    matches!(ctx.info.kind, "Pod" | "Service" | "Namespace")
}

fn success_status(ctx: &Ctx, obj: &Value) -> Value {
    let mut details = json!({"name": super::name_of(obj), "kind": ctx.info.plural});
    if !ctx.info.group.is_empty() {
        details["group"] = json!(ctx.info.group);
    }
    if let Some(uid) = super::meta_str(obj, "uid") {
        details["uid"] = json!(uid);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// Remove the key for good (guarded by `cur`'s revision). `None` when the object changed.
pub async fn remove(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    cur: &KeyValue,
    last: &Value,
) -> Result<Option<Reply>> {
    let started = std::time::Instant::now();
    let res = reg
        .storage
        .delete(&ctx.key(name), Some(cur.mod_revision))
        .await;
    reg.metrics.observe_storage("delete", started.elapsed());
    match res {
        Ok(kv) => {
            crate::services::release_for(reg, ctx, last).await;
            let mut body = last.clone();
            super::set_rv(&mut body, kv.mod_revision);
            let body = if returns_object(ctx) {
                body
            } else {
                success_status(ctx, &body)
            };
            Ok(Some(Reply::ok(body)))
        }
        Err(kubelite_storage::Error::Conflict { .. }) => Ok(None),
        Err(e) => Err(ApiError::from_storage(e, ctx.target(name))),
    }
}

fn check_preconditions(
    ctx: &Ctx,
    name: &str,
    opts: &DeleteOptions,
    cur: &KeyValue,
    obj: &Value,
) -> Result<()> {
    if let Some(uid) = &opts.uid {
        let actual = super::meta_str(obj, "uid").unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(
                ctx.target(name),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.resource_version {
        if *rv != cur.mod_revision.to_string() {
            return Err(ApiError::conflict(
                ctx.target(name),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    cur.mod_revision
                ),
            ));
        }
    }
    Ok(())
}

/// The grace period a pod deletion gets: 0 for pods never scheduled or already terminated.
fn pod_grace(obj: &Value, opts: &DeleteOptions) -> i64 {
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let spec_grace = obj
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    opts.grace_period.unwrap_or(spec_grace).max(0)
}

/// Write `obj` (a deletion in progress) back, guarded; `None` when the object changed.
async fn mark(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    cur: &KeyValue,
    obj: &Value,
    dry_run: bool,
) -> Result<Option<Reply>> {
    if dry_run {
        return Ok(Some(Reply::ok(obj.clone())));
    }
    match reg
        .storage
        .update(&ctx.key(name), ctx.encode(obj)?, cur.mod_revision)
        .await
    {
        Ok(kv) => Ok(Some(Reply::ok(ctx.decode(&kv)?))),
        Err(kubelite_storage::Error::Conflict { .. }) => Ok(None),
        Err(e) => Err(ApiError::from_storage(e, ctx.target(name))),
    }
}

/// One deletion attempt against the current state.
async fn delete_once(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Option<Reply>> {
    let (cur, mut obj) = get_kv(reg, ctx, name).await?;
    check_preconditions(ctx, name, opts, &cur, &obj)?;
    let already_deleting = obj.pointer("/metadata/deletionTimestamp").is_some();

    if ctx.info.kind == "Namespace" {
        if UNDELETABLE_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted"
            )));
        }
        if already_deleting {
            return Ok(Some(Reply::ok(obj)));
        }
        if let Some(m) = meta_mut(&mut obj) {
            m.insert("deletionTimestamp".into(), json!(super::now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        obj["status"] = json!({"phase": "Terminating"});
        let r = mark(reg, ctx, name, &cur, &obj, opts.dry_run).await?;
        reg.namespace_kick.notify_one();
        return Ok(r);
    }

    // Finalizers requested by the propagation policy.
    let mut finalizers: Vec<Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let before = finalizers.clone();
    let (add, drop) = match opts.propagation.as_deref() {
        Some("Foreground") => (Some("foregroundDeletion"), "orphan"),
        Some("Orphan") => (Some("orphan"), "foregroundDeletion"),
        _ => (None, ""),
    };
    if let Some(add) = add {
        finalizers.retain(|f| f.as_str() != Some(drop));
        if !finalizers.iter().any(|f| f.as_str() == Some(add)) {
            finalizers.push(json!(add));
        }
    }

    let grace = if ctx.info.kind == "Pod" {
        pod_grace(&obj, opts)
    } else {
        0
    };
    if grace > 0 {
        let current = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if already_deleting && current.is_some_and(|c| c <= grace) && finalizers == before {
            return Ok(Some(Reply::ok(obj)));
        }
        if let Some(m) = meta_mut(&mut obj) {
            m.insert("deletionTimestamp".into(), json!(super::time_in(grace)));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), Value::Array(finalizers));
            }
        }
        return mark(reg, ctx, name, &cur, &obj, opts.dry_run).await;
    }

    if !finalizers.is_empty() {
        if already_deleting
            && finalizers == before
            && obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                == Some(0)
        {
            return Ok(Some(Reply::ok(obj)));
        }
        if let Some(m) = meta_mut(&mut obj) {
            if !already_deleting {
                m.insert("deletionTimestamp".into(), json!(super::now_rfc3339()));
            }
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            m.insert("finalizers".into(), Value::Array(finalizers));
        }
        return mark(reg, ctx, name, &cur, &obj, opts.dry_run).await;
    }

    if opts.dry_run {
        let body = if returns_object(ctx) {
            obj.clone()
        } else {
            success_status(ctx, &obj)
        };
        return Ok(Some(Reply::ok(body)));
    }
    remove(reg, ctx, name, &cur, &obj).await
}

/// DELETE one object.
pub async fn delete(reg: &Registry, ctx: &Ctx, name: &str, opts: &DeleteOptions) -> Result<Reply> {
    for attempt in 0..MAX_ATTEMPTS {
        super::conflict_pause(attempt).await;
        if let Some(r) = delete_once(reg, ctx, name, opts).await? {
            return Ok(r);
        }
    }
    Err(ApiError::stale(ctx.target(name)))
}

/// DELETE on a collection: every object matching the selectors; answers the list of what was
/// deleted (or marked for deletion).
pub async fn delete_collection(
    reg: &Registry,
    ctx: &Ctx,
    params: &Params,
    opts: &DeleteOptions,
) -> Result<Reply> {
    let selectors = Selectors::parse(
        params.get("labelSelector"),
        params.get("fieldSelector"),
        ctx.strategy.as_ref(),
    )?;
    let list = reg
        .storage
        .list(&ctx.collection_prefix(), Default::default())
        .await
        .map_err(|e| ApiError::from_storage(e, ctx.target("")))?;
    let mut items = Vec::new();
    for kv in &list.items {
        let obj = ctx.decode(kv)?;
        if !selectors.matches(&obj, ctx.strategy.as_ref()) {
            continue;
        }
        let name = super::name_of(&obj).to_string();
        let obj_ctx = Ctx {
            namespace: super::meta_str(&obj, "namespace").map(str::to_string),
            ..ctx.clone()
        };
        match delete(reg, &obj_ctx, &name, opts).await {
            Ok(r) => {
                let body = r.into_value()?;
                items.push(if body.get("kind") == Some(&json!("Status")) {
                    obj
                } else {
                    body
                })
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(json!({
        "kind": ctx.info.list_kind(),
        "apiVersion": ctx.info.api_version(),
        "metadata": {"resourceVersion": list.revision.to_string()},
        "items": items,
    })))
}
