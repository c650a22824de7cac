//! POST: create an object (metadata stamping, generateName, defaulting, validation, dryRun).

use rand::Rng;
use serde_json::{json, Value};

use super::{check_namespace, check_type, ensure_valid, meta_mut, Ctx, Params, Registry, Reply};
use crate::body::{check_unknown_in_body, prune_unknown, FieldProblems, FieldValidation};
use crate::error::{ApiError, Result};

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const GENERATE_ATTEMPTS: usize = 8;

/// `generateName` + 5 random characters, as upstream's name generator.
pub fn generate_name(base: &str) -> String {
    let mut rng = rand::rng();
    // Upstream keeps at most 58 bytes of the base; cut on a char boundary so odd input (which
    // validation rejects afterwards) cannot panic.
    let mut end = base.len().min(58);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    let base = &base[..end];
    let suffix: String = (0..5)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

/// A random (version 4) UUID, as upstream's object UIDs. The bytes come from the thread's
/// CSPRNG, not a `getrandom` system call per object as `Uuid::new_v4` makes.
fn new_uid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// Metadata every new object gets, whatever its kind.
fn stamp_metadata(ctx: &Ctx, obj: &mut Value) -> Result<()> {
    let has_generation = ctx.strategy.has_generation();
    let m = meta_mut(obj).ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    m.remove("resourceVersion");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.remove("selfLink");
    m.insert("uid".into(), Value::String(new_uid()));
    m.insert("creationTimestamp".into(), json!(super::now_rfc3339()));
    if has_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    Ok(())
}

/// Create from a decoded body.
pub async fn create(reg: &Registry, ctx: &Ctx, params: &Params, obj: Value) -> Result<Reply> {
    create_checked(reg, ctx, params, obj, Vec::new()).await
}

/// Create from a decoded body whose duplicated keys (paths) are known.
pub async fn create_checked(
    reg: &Registry,
    ctx: &Ctx,
    params: &Params,
    obj: Value,
    duplicate: Vec<String>,
) -> Result<Reply> {
    create_inner(reg, ctx, params, obj, duplicate, true).await
}

/// Create the result of a server-side apply onto nothing: its `metadata.managedFields` (the
/// applier's entry) were computed already.
pub async fn create_applied(
    reg: &Registry,
    ctx: &Ctx,
    params: &Params,
    obj: Value,
) -> Result<Reply> {
    create_inner(reg, ctx, params, obj, Vec::new(), false).await
}

/// The create path; `track` records the request's field manager as owner of every field.
async fn create_inner(
    reg: &Registry,
    ctx: &Ctx,
    params: &Params,
    mut obj: Value,
    duplicate: Vec<String>,
    track: bool,
) -> Result<Reply> {
    let info = ctx.info;
    check_type(&info.api_version(), info.kind, &mut obj)?;
    check_namespace(ctx, &mut obj)?;
    let mode = FieldValidation::parse(params.get("fieldValidation"))?;
    let unknown = prune_unknown(ctx.strategy.as_ref(), &mut obj)?;
    let warnings = check_unknown_in_body(info, mode, FieldProblems { unknown, duplicate })?;
    if let Some(ns) = &ctx.namespace {
        let target = crate::error::Target::new(info, super::name_of(&obj));
        crate::namespaces::ensure_active(reg, ns, target).await?;
    }
    stamp_metadata(ctx, &mut obj)?;
    super::drop_empty_metadata(&mut obj);
    ctx.strategy.reset_status(&mut obj);
    ctx.strategy.default(&mut obj);
    ctx.strategy.prepare_create(&mut obj);
    // Once per create, on the object as stored (defaults included, as upstream decodes them
    // before its field manager runs); a generated name changes nothing tracked. The common
    // case comes back as JSON to splice into the stored bytes. A dry run answers with the
    // object and a converted kind stores another form: those take the generic path, which
    // puts the same list in the object as a value.
    let mut managed = None;
    if track {
        let manager = params.field_manager();
        let strategy = ctx.strategy.as_ref();
        if params.dry_run() || ctx.converts() {
            crate::model::track_update(strategy, None, &mut obj, &manager, "");
        } else {
            managed = crate::model::track_create(strategy, &mut obj, &manager);
        }
    }

    let explicit_name = super::name_of(&obj).to_string();
    let generate = super::meta_str(&obj, "generateName")
        .unwrap_or("")
        .to_string();
    for attempt in 0..GENERATE_ATTEMPTS {
        if explicit_name.is_empty() && !generate.is_empty() {
            let name = generate_name(&generate);
            if let Some(m) = meta_mut(&mut obj) {
                m.insert("name".into(), json!(name));
            }
        }
        let name = super::name_of(&obj).to_string();
        let mut causes = crate::model::validate_meta(info, &obj);
        causes.extend(ctx.strategy.validate_create(&obj));
        ensure_valid(ctx, &obj, causes)?;

        let key = ctx.key(&name);
        if params.dry_run() {
            if reg
                .storage
                .get(&key)
                .await
                .map_err(|e| ApiError::from_storage(e, ctx.target(&name)))?
                .is_some()
            {
                return Err(ApiError::already_exists(ctx.target(&name)));
            }
            crate::services::check_for_dry_run(reg, ctx, &obj).await?;
            return Ok(Reply::new(201, obj, warnings));
        }
        let allocated = crate::services::allocate(reg, ctx, &mut obj).await?;
        let started = std::time::Instant::now();
        let encoded = match &managed {
            Some(json) => super::encode_with_managed(&obj, json)?,
            None => ctx.encode(&obj)?,
        };
        let res = reg.storage.create(&key, encoded.clone()).await;
        reg.metrics.observe_storage("create", started.elapsed());
        match res {
            Ok(kv) => {
                tracing::debug!(resource = %info.group_resource(), %name, "created");
                return super::stored_json_reply(ctx, 201, &encoded, &kv, warnings);
            }
            Err(e) => {
                crate::services::release_all(reg, &allocated).await;
                let generated = explicit_name.is_empty() && !generate.is_empty();
                if generated
                    && matches!(e, kubelite_storage::Error::AlreadyExists { .. })
                    && attempt + 1 < GENERATE_ATTEMPTS
                {
                    continue;
                }
                return Err(ApiError::from_storage(e, ctx.target(&name)));
            }
        }
    }
    Err(ApiError::internal("could not generate a unique name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_random_version_4_uuids() {
        let a = new_uid();
        let parsed = uuid::Uuid::parse_str(&a).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a, parsed.hyphenated().to_string());
        assert_ne!(a, new_uid());
    }

    #[test]
    fn generated_names() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n[4..].bytes().all(|b| NAME_CHARS.contains(&b)));
    }
}
