//! Namespaces: the built-in ones created at start, the admission check on create (missing →
//! 404, terminating → 403), and the namespace-lifecycle task.
//!
//! The lifecycle task is upstream's namespace controller (which lives in controller-manager);
//! it runs here until kubelite has a controller-manager, and only talks to the registry through
//! its public verbs so it can move out unchanged in spirit.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::registry::{self, delete, Ctx, Params, Registry};
use kubelite_api::resource::ResourceInfo;

/// Namespaces every cluster has.
pub const BUILTIN: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

pub(crate) fn ns_info() -> Result<&'static kubelite_api::resource::ResourceInfo> {
    kubelite_api::resource::find_builtin("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("no namespaces resource"))
}

/// Create the built-in namespaces (idempotent).
pub async fn bootstrap(reg: &Registry) -> Result<()> {
    let ctx = Ctx::new(ns_info()?, None);
    for name in BUILTIN {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}});
        match registry::create::create(reg, &ctx, &Params::default(), ns).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Objects may be created in `ns` only when it exists and is not terminating. `object` is what
/// is being created: upstream's Forbidden error names it (`configmaps "x" is forbidden: ...`).
/// The namespace at `key` from the watch cache, but only when the cache has seen every
/// namespace write this server acknowledged: a create must never land in a namespace the
/// client already saw go Terminating (read-your-writes). A miss falls back to storage, as
/// upstream's admission does a live lookup, so a namespace written elsewhere is never refused.
fn cached_namespace(reg: &Registry, info: &ResourceInfo, key: &str) -> Option<bool> {
    let prefix = info.prefix();
    let mark = reg.write_marks.mark(&prefix)?;
    let cache = reg.cache(&prefix)?;
    if cache.revision() < mark {
        return None;
    }
    // This runs on every namespaced create. A namespace whose JSON holds neither marker is
    // active (a terminating one has `deletionTimestamp` or phase `Terminating`); otherwise
    // only the two fields that matter are decoded (the words may sit in a label instead).
    terminating_json(&cache.get_json(key)?)
}

/// Whether a namespace's stored JSON says it is terminating (`None`: not decodable).
fn terminating_json(json: &[u8]) -> Option<bool> {
    if memchr::memmem::find(json, b"deletionTimestamp").is_none()
        && memchr::memmem::find(json, b"Terminating").is_none()
    {
        return Some(false);
    }
    let probe: NamespaceProbe = serde_json::from_slice(json).ok()?;
    Some(probe.terminating())
}

/// What the create path needs to know of a namespace.
#[derive(serde::Deserialize)]
struct NamespaceProbe {
    #[serde(default)]
    metadata: ProbeMeta,
    #[serde(default)]
    status: ProbeStatus,
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProbeMeta {
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

#[derive(Default, serde::Deserialize)]
struct ProbeStatus {
    phase: Option<String>,
}

impl NamespaceProbe {
    fn terminating(&self) -> bool {
        self.status.phase.as_deref() == Some("Terminating")
            || self.metadata.deletion_timestamp.is_some()
    }
}

/// Whether a stored namespace is terminating.
fn is_terminating(obj: &Value) -> bool {
    obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        || obj.pointer("/metadata/deletionTimestamp").is_some()
}

pub async fn ensure_active(reg: &Registry, ns: &str, object: crate::error::Target) -> Result<()> {
    let info = ns_info()?;
    let key = info.key(None, ns);
    let terminating = match cached_namespace(reg, info, &key) {
        Some(t) => t,
        None => {
            let kv = reg
                .storage
                .get(&key)
                .await
                .map_err(|e| ApiError::from_storage(e, crate::error::Target::new(info, ns)))?;
            let Some(kv) = kv else {
                return Err(ApiError::not_found(crate::error::Target::new(info, ns)));
            };
            is_terminating(&registry::decode_kv(&kv)?)
        }
    };
    if terminating {
        let prefix = format!("{} {:?} is forbidden: ", object.group_resource, object.name);
        let mut e = ApiError::forbidden(format!(
            "{prefix}unable to create new content in namespace {ns} because it is being terminated"
        ));
        e.target = Some(object);
        e.causes = vec![kubelite_api::strategy::FieldCause {
            reason: "NamespaceTerminating",
            field: "metadata.namespace".into(),
            message: format!("namespace {ns} is being terminated"),
        }];
        return Err(e);
    }
    Ok(())
}

/// Run the lifecycle loop until shutdown: on every kick (and every few seconds) finish the
/// deletion of terminating namespaces.
pub async fn lifecycle(reg: Arc<Registry>) {
    loop {
        if let Err(e) = sweep(&reg).await {
            tracing::warn!(error = %e, "namespace lifecycle sweep failed");
        }
        tokio::select! {
            _ = reg.shutdown.cancelled() => return,
            _ = reg.namespace_kick.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn sweep(reg: &Registry) -> Result<()> {
    let info = ns_info()?;
    let list = reg
        .storage
        .list(&info.prefix(), Default::default())
        .await
        .map_err(|e| ApiError::from_storage(e, crate::error::Target::new(info, "")))?;
    for kv in &list.items {
        let ns = registry::decode_kv(kv)?;
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let name = registry::name_of(&ns).to_string();
        if reg.namespace_content_deletion {
            if empty_namespace(reg, &name).await? {
                finish(reg, &name).await?;
            }
            continue;
        }
        // The controller-manager's namespace controller deletes the content and then removes
        // `kubernetes` from spec.finalizers; the namespace itself goes once no finalizer is
        // left (upstream's ShouldDeleteNamespaceDuringUpdate).
        let spec_finalizers_left = ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if !spec_finalizers_left {
            finish(reg, &name).await?;
        }
    }
    Ok(())
}

/// Delete every namespaced object in `ns`; true when nothing is left.
async fn empty_namespace(reg: &Registry, ns: &str) -> Result<bool> {
    let mut empty = true;
    let opts = delete::DeleteOptions {
        propagation: Some("Background".into()),
        ..Default::default()
    };
    let builtin = kubelite_api::resource::builtin_resources()
        .iter()
        .filter(|r| r.namespaced())
        .map(|info| Ctx::new(info, Some(ns.to_string())));
    let custom = reg
        .crds
        .entries()
        .into_iter()
        .filter(|e| e.info.namespaced())
        .map(|e| Ctx::with_strategy(e.info, e.strategy, Some(ns.to_string())));
    let mut swept = std::collections::HashSet::new();
    for ctx in builtin.chain(custom) {
        // events.k8s.io Events are the core ones (one storage), and a custom resource's
        // versions share one: each storage is swept once.
        if !swept.insert(ctx.stored().prefix()) {
            continue;
        }
        let list = reg
            .storage
            .list(&ctx.collection_prefix(), Default::default())
            .await
            .map_err(|e| ApiError::from_storage(e, ctx.target("")))?;
        for kv in &list.items {
            empty = false;
            let obj = registry::decode_kv(kv)?;
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            match delete::delete(reg, &ctx, registry::name_of(&obj), &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(namespace = ns, error = %e, "deleting namespace content failed")
                }
            }
        }
    }
    Ok(empty)
}

/// Remove the `kubernetes` finalizer (when this server deleted the content), then the namespace
/// itself once no spec or metadata finalizer is left (others' finalizers keep it).
async fn finish(reg: &Registry, name: &str) -> Result<()> {
    let ctx = Ctx::new(ns_info()?, None);
    let (cur, obj) = registry::get_kv(reg, &ctx, name).await?;
    let list = |ptr: &str| -> Vec<Value> {
        obj.pointer(ptr)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let spec_finalizers = list("/spec/finalizers");
    if spec_finalizers.iter().any(|f| f == "kubernetes") {
        let mut new = obj.clone();
        let rest: Vec<Value> = spec_finalizers
            .into_iter()
            .filter(|f| f != "kubernetes")
            .collect();
        new["spec"]["finalizers"] = json!(rest);
        let _ = reg
            .storage
            .update(&ctx.key(name), registry::encode(&new)?, cur.mod_revision)
            .await;
        reg.namespace_kick.notify_one();
        return Ok(());
    }
    if !spec_finalizers.is_empty() || !list("/metadata/finalizers").is_empty() {
        return Ok(());
    }
    match delete::remove(reg, &ctx, name, &cur, &obj).await? {
        Some(_) => tracing::info!(namespace = name, "namespace deleted"),
        None => reg.namespace_kick.notify_one(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::terminating_json;

    #[test]
    fn terminating_from_json() {
        let active = br#"{"metadata":{"name":"a"},"status":{"phase":"Active"}}"#;
        assert_eq!(terminating_json(active), Some(false));
        // The marker words in a label do not make a namespace terminating.
        let labelled = br#"{"metadata":{"name":"a","labels":{"x":"Terminating"},
            "annotations":{"deletionTimestamp":"no"}},"status":{"phase":"Active"}}"#;
        assert_eq!(terminating_json(labelled), Some(false));
        let phase = br#"{"metadata":{"name":"a"},"status":{"phase":"Terminating"}}"#;
        assert_eq!(terminating_json(phase), Some(true));
        let deleted = br#"{"metadata":{"name":"a","deletionTimestamp":"2026-12-06T00:00:00Z"},
            "status":{"phase":"Active"}}"#;
        assert_eq!(terminating_json(deleted), Some(true));
        assert_eq!(
            terminating_json(b"{\"status\":{\"phase\":\"Terminating\""),
            None
        );
    }
}
