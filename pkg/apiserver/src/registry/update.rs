//! PUT and PATCH of an object or its `status` subresource: preconditions, spec/status
//! separation, immutable metadata, generation, no-op detection, finalizer completion.

use kubelite_storage::KeyValue;
use serde_json::{json, Value};

use super::{
    check_namespace, check_type, ensure_valid, get_kv, meta_mut, Ctx, Params, Registry, Reply,
};
use crate::body::{
    check_unknown, check_unknown_in_body, prune_unknown, FieldProblems, FieldValidation,
};
use crate::error::{ApiError, Result};

use super::MAX_ATTEMPTS;

/// Which part of the object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// `/status`: only status.
    Status,
    /// `namespaces/<n>/finalize`: only spec.finalizers.
    Finalize,
    /// Server-internal writes that set spec and status together (pods/binding).
    Whole,
}

impl Part {
    /// The part a subresource name (`None`, `status`, `finalize`) writes.
    pub fn from_sub(sub: Option<&str>) -> Result<Self> {
        match sub {
            None => Ok(Part::Main),
            Some("status") => Ok(Part::Status),
            Some("finalize") => Ok(Part::Finalize),
            Some(other) => Err(ApiError::method_not_allowed(format!(
                "subresource {other:?} cannot be updated"
            ))),
        }
    }
}

/// Outcome of one guarded write attempt.
pub enum Attempt {
    Done(Reply),
    /// The stored object changed under us and the caller may retry.
    Raced,
}

/// Merge `incoming` onto `old` according to `part`, keeping what the client may not change.
fn merge_parts(ctx: &Ctx, part: Part, old: &Value, incoming: Value) -> Value {
    let has_status = ctx.info.subresource("status").is_some();
    match part {
        Part::Main => {
            let mut new = incoming;
            if has_status {
                if let Some(o) = new.as_object_mut() {
                    match old.get("status") {
                        Some(s) => o.insert("status".into(), s.clone()),
                        None => o.remove("status"),
                    };
                }
            }
            new
        }
        Part::Status => {
            let mut new = old.clone();
            if let Some(o) = new.as_object_mut() {
                match incoming.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
            new
        }
        Part::Whole => incoming,
        Part::Finalize => {
            let mut new = old.clone();
            let fins = incoming
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            new["spec"]["finalizers"] = fins;
            new
        }
    }
}

/// Copy metadata that only the server sets from `old` onto `new`.
fn keep_server_metadata(ctx: &Ctx, old: &Value, new: &mut Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let Some(m) = meta_mut(new) else { return };
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
    if ctx.namespace.is_none() {
        m.remove("namespace");
    }
}

/// How a write records field ownership in `metadata.managedFields`.
#[derive(Clone, Copy, Debug)]
pub enum Tracking<'a> {
    /// A non-apply write: `manager` gains an `Update` entry for `subresource`.
    Update {
        manager: &'a str,
        subresource: &'a str,
    },
    /// The entries were computed already (server-side apply).
    Computed,
    /// Server-internal writes that no manager makes (pods/binding).
    Untracked,
}

/// The shared write path of PUT, PATCH and the scale subresource: `incoming` is the full
/// desired object, `cur`/`old` the stored state (raw and decoded) it was computed from.
/// Ownership goes to the request's field manager through the subresource `part` names.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    reg: &Registry,
    ctx: &Ctx,
    part: Part,
    params: &Params,
    cur: &KeyValue,
    old: &Value,
    incoming: Value,
    warnings: Vec<String>,
) -> Result<Attempt> {
    let manager = params.field_manager();
    let tracking = match part {
        Part::Main => Tracking::Update {
            manager: &manager,
            subresource: "",
        },
        Part::Status => Tracking::Update {
            manager: &manager,
            subresource: "status",
        },
        Part::Finalize => Tracking::Update {
            manager: &manager,
            subresource: "finalize",
        },
        Part::Whole => Tracking::Untracked,
    };
    write_tracked(
        reg, ctx, part, params, cur, old, incoming, warnings, tracking,
    )
    .await
}

/// [`write`] with explicit ownership bookkeeping.
#[allow(clippy::too_many_arguments)]
pub async fn write_tracked(
    reg: &Registry,
    ctx: &Ctx,
    part: Part,
    params: &Params,
    cur: &KeyValue,
    old: &Value,
    incoming: Value,
    mut warnings: Vec<String>,
    tracking: Tracking<'_>,
) -> Result<Attempt> {
    let name = super::name_of(old).to_string();
    let mut new = prepare(ctx, part, old, incoming, tracking)?;
    super::set_rv(&mut new, cur.mod_revision);
    if super::same_object(&new, old) {
        return Ok(Attempt::Done(Reply::new(200, old.clone(), warnings)));
    }
    if finalized(old, &new) {
        if params.dry_run() {
            return Ok(Attempt::Done(Reply::new(200, new, warnings)));
        }
        return super::delete::remove(reg, ctx, &name, cur, &new)
            .await
            .map(|r| match r {
                Some(mut reply) => {
                    reply.warnings.append(&mut warnings);
                    Attempt::Done(reply)
                }
                None => Attempt::Raced,
            });
    }
    if params.dry_run() {
        return Ok(Attempt::Done(Reply::new(200, new, warnings)));
    }
    let claimed = crate::services::allocate_on_update(reg, ctx, old, &mut new).await?;
    // The stored form has no resourceVersion; dropping it here spares `encode` a copy.
    if let Some(m) = super::meta_mut(&mut new) {
        m.remove("resourceVersion");
    }
    let encoded = ctx.encode(&new)?;
    let started = std::time::Instant::now();
    let res = reg
        .storage
        .update(&ctx.key(&name), encoded.clone(), cur.mod_revision)
        .await;
    reg.metrics.observe_storage("update", started.elapsed());
    if res.is_err() {
        crate::services::release_all(reg, &claimed).await;
    }
    match res {
        Ok(kv) => {
            crate::services::release_dropped(reg, ctx, old, &new).await;
            Ok(Attempt::Done(super::stored_reply(
                ctx, 200, new, &encoded, &kv, warnings,
            )?))
        }
        Err(kubelite_storage::Error::Conflict { .. }) => Ok(Attempt::Raced),
        Err(e) => Err(ApiError::from_storage(e, ctx.target(&name))),
    }
}

/// The pure half of [`write_tracked`]: the object a write of `incoming` over the stored `old`
/// stores (parts merged, server metadata kept, defaults, validation, generation, ownership),
/// before its resourceVersion is stamped and no-op writes are detected.
pub(crate) fn prepare(
    ctx: &Ctx,
    part: Part,
    old: &Value,
    incoming: Value,
    tracking: Tracking<'_>,
) -> Result<Value> {
    let info = ctx.info;
    // Entries server-side apply computed travel in `incoming`, which a subresource write
    // otherwise only takes its part of.
    let computed = match tracking {
        Tracking::Computed => incoming.pointer("/metadata/managedFields").cloned(),
        _ => None,
    };
    let mut new = merge_parts(ctx, part, old, incoming);
    if let (Some(entries), Some(m)) = (computed, meta_mut(&mut new)) {
        m.insert("managedFields".into(), entries);
    }
    keep_server_metadata(ctx, old, &mut new);
    super::drop_empty_metadata(&mut new);
    crate::services::keep_allocations(ctx, old, &mut new);
    ctx.strategy.default(&mut new);
    let mut causes = crate::model::validate_meta_update(info, &new, old);
    // Server-internal writes (bindings) change fields clients may not, so only metadata is checked.
    if part != Part::Whole {
        causes.extend(ctx.strategy.validate_update(&new, old));
    }
    ensure_valid(ctx, &new, causes)?;
    if ctx.strategy.has_generation() && part == Part::Main && ctx.strategy.spec_changed(&new, old) {
        let gen = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        if let Some(m) = meta_mut(&mut new) {
            m.insert("generation".into(), json!(gen));
        }
    }
    match tracking {
        Tracking::Update {
            manager,
            subresource,
        } => crate::model::track_update(
            ctx.strategy.as_ref(),
            Some(old),
            &mut new,
            manager,
            subresource,
        ),
        // Server-side apply computed the entries; a client cannot rewrite them through
        // another part, and internal writes keep them.
        Tracking::Computed => {}
        Tracking::Untracked => keep_managed_fields(old, &mut new),
    }
    super::drop_empty_metadata(&mut new);
    Ok(new)
}

/// Keep the stored `metadata.managedFields` on a write that does not track ownership.
fn keep_managed_fields(old: &Value, new: &mut Value) {
    let Some(m) = meta_mut(new) else { return };
    match old.pointer("/metadata/managedFields") {
        Some(v) => m.insert("managedFields".into(), v.clone()),
        None => m.remove("managedFields"),
    };
}

/// An update that removes the last finalizer of an object being deleted completes the delete
/// (pods only once their grace period was cut to 0 by the kubelet).
fn finalized(old: &Value, new: &Value) -> bool {
    let fins = |v: &Value| {
        v.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    let grace = new
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    new.pointer("/metadata/deletionTimestamp").is_some()
        && fins(new) == 0
        && fins(old) > 0
        && grace == 0
}

/// Kinds whose PUT creates a missing object (upstream strategies' AllowCreateOnUpdate).
fn allows_create_on_update(ctx: &Ctx) -> bool {
    matches!(
        (ctx.info.group, ctx.info.kind),
        ("", "Endpoints")
            | ("", "Event")
            | ("coordination.k8s.io", "Lease")
            | ("events.k8s.io", "Event")
    )
}

/// The body's resourceVersion precondition, if any.
fn rv_precondition(obj: &Value) -> Option<String> {
    super::meta_str(obj, "resourceVersion")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// PUT of the object or a subresource.
pub async fn update(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    part: Part,
    params: &Params,
    obj: Value,
) -> Result<Reply> {
    update_checked(reg, ctx, name, part, params, obj, Vec::new()).await
}

/// PUT with the body's duplicated keys (paths) known.
#[allow(clippy::too_many_arguments)]
pub async fn update_checked(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    part: Part,
    params: &Params,
    mut obj: Value,
    duplicate: Vec<String>,
) -> Result<Reply> {
    let info = ctx.info;
    check_type(&info.api_version(), info.kind, &mut obj)?;
    let body_name = super::name_of(&obj);
    if body_name.is_empty() {
        if let Some(m) = meta_mut(&mut obj) {
            m.insert("name".into(), json!(name));
        }
    } else if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    check_namespace(ctx, &mut obj)?;
    let mode = FieldValidation::parse(params.get("fieldValidation"))?;
    let unknown = prune_unknown(ctx.strategy.as_ref(), &mut obj)?;
    let warnings = check_unknown_in_body(info, mode, FieldProblems { unknown, duplicate })?;
    let precondition = rv_precondition(&obj);
    for attempt in 0..MAX_ATTEMPTS {
        super::conflict_pause(attempt).await;
        let (cur, old) = match get_kv(reg, ctx, name).await {
            // Upstream's AllowCreateOnUpdate kinds: a PUT of a missing object creates it.
            Err(e) if e.code == 404 && part == Part::Main && allows_create_on_update(ctx) => {
                let mut fresh = obj.clone();
                if let Some(m) = meta_mut(&mut fresh) {
                    m.remove("resourceVersion");
                }
                return super::create::create(reg, ctx, params, fresh).await;
            }
            r => r?,
        };
        if let Some(rv) = &precondition {
            if *rv != cur.mod_revision.to_string() {
                return Err(ApiError::stale(ctx.target(name)));
            }
        }
        match write(
            reg,
            ctx,
            part,
            params,
            &cur,
            &old,
            obj.clone(),
            warnings.clone(),
        )
        .await?
        {
            Attempt::Done(r) => return Ok(r),
            Attempt::Raced if precondition.is_some() => {
                return Err(ApiError::stale(ctx.target(name)))
            }
            Attempt::Raced => continue,
        }
    }
    Err(ApiError::stale(ctx.target(name)))
}

/// PATCH of the object or a subresource.
pub async fn patch(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    part: Part,
    params: &Params,
    content_type: &str,
    body: &[u8],
) -> Result<Reply> {
    let info = ctx.info;
    let mode = FieldValidation::parse(params.get("fieldValidation"))?;
    let apply = crate::model::is_apply(content_type);
    let manager = params.field_manager();
    let applied = if apply {
        if params.get("fieldManager").is_none_or(str::is_empty) {
            return Err(crate::model::field_manager_required());
        }
        let mut applied = crate::model::parse_apply(body)?;
        check_type(&info.api_version(), info.kind, &mut applied)?;
        Some(applied)
    } else {
        None
    };
    let subresource = match part {
        Part::Status => "status",
        Part::Finalize => "finalize",
        Part::Main | Part::Whole => "",
    };
    for attempt in 0..MAX_ATTEMPTS {
        super::conflict_pause(attempt).await;
        let (cur, old) = match (get_kv(reg, ctx, name).await, &applied) {
            // Server-side apply creates what does not exist yet.
            (Err(e), Some(applied)) if e.code == 404 && part == Part::Main => {
                if super::name_of(applied) != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        super::name_of(applied)
                    )));
                }
                let created = crate::model::server_side_apply(
                    ctx.strategy.as_ref(),
                    None,
                    applied,
                    &manager,
                    "",
                    params.flag("force"),
                )?;
                match super::create::create_applied(reg, ctx, params, created).await {
                    // Someone else created it meanwhile: apply onto theirs.
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    r => return r,
                }
            }
            (r, _) => r?,
        };
        let mut patched = match &applied {
            Some(applied) => crate::model::server_side_apply(
                ctx.strategy.as_ref(),
                Some(&old),
                applied,
                &manager,
                subresource,
                params.flag("force"),
            )?,
            None => crate::model::apply_patch(info, &old, content_type, body)?,
        };
        check_type(&info.api_version(), info.kind, &mut patched)?;
        if super::name_of(&patched) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                super::name_of(&patched)
            )));
        }
        check_namespace(ctx, &mut patched)?;
        let unknown = prune_unknown(ctx.strategy.as_ref(), &mut patched)?;
        let warnings = check_unknown(
            mode,
            FieldProblems {
                unknown,
                duplicate: Vec::new(),
            },
        )?;
        // A resourceVersion set by the patch is a precondition; otherwise the patch is retried
        // on top of whatever is current, like upstream.
        let precondition =
            rv_precondition(&patched).filter(|rv| *rv != cur.mod_revision.to_string());
        if precondition.is_some() {
            return Err(ApiError::stale(ctx.target(name)));
        }
        let tracking = match (&applied, part) {
            (Some(_), _) => Tracking::Computed,
            (None, Part::Whole) => Tracking::Untracked,
            (None, _) => Tracking::Update {
                manager: &manager,
                subresource,
            },
        };
        match write_tracked(
            reg, ctx, part, params, &cur, &old, patched, warnings, tracking,
        )
        .await?
        {
            Attempt::Done(r) => return Ok(r),
            Attempt::Raced => continue,
        }
    }
    Err(ApiError::stale(ctx.target(name)))
}
