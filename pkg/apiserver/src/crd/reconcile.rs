//! The CRD reconcile task: stored CustomResourceDefinitions → served resources, status
//! conditions, and the cleanup of a deleted definition's objects.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kubelite_api::resource::{find_builtin, CustomNames, ResourceInfo, Scope};
use serde_json::{json, Value};

use super::{Entry, CLEANUP_FINALIZER};
use crate::error::{ApiError, Result};
use crate::registry::delete::{self, DeleteOptions};
use crate::registry::update::{self, Attempt, Part};
use crate::registry::{self, Ctx, Params, Registry};
use crate::watch_cache::WatchCache;

/// How often the stored CRDs are re-read without a kick (another apiserver on the same etcd
/// may have written them).
const RESYNC: Duration = Duration::from_secs(2);

/// Reconcile until shutdown: at start, on every kick, and every [`RESYNC`].
pub async fn run(reg: Arc<Registry>) {
    loop {
        if let Err(e) = reconcile(&reg).await {
            tracing::warn!(error = %e, "reconciling custom resource definitions failed");
        }
        tokio::select! {
            _ = reg.crds.kick.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
            _ = reg.shutdown.cancelled() => return,
        }
    }
}

fn crd_info() -> Result<&'static ResourceInfo> {
    find_builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| ApiError::internal("customresourcedefinitions are not in the table"))
}

/// One pass: read every CRD, serve what is acceptable, update status, clean up deletions.
pub async fn reconcile(reg: &Registry) -> Result<()> {
    let info = crd_info()?;
    let ctx = Ctx::new(info, None);
    let list = reg
        .storage
        .list(&info.prefix(), Default::default())
        .await
        .map_err(|e| ApiError::from_storage(e, ctx.target("")))?;
    let mut crds: Vec<Value> = list
        .items
        .iter()
        .filter_map(|kv| registry::decode_kv(kv).ok())
        .collect();
    // The oldest definition wins a name conflict, as upstream's naming controller decides.
    crds.sort_by(|a, b| {
        let ts = |v: &Value| {
            registry::meta_str(v, "creationTimestamp")
                .unwrap_or("")
                .to_string()
        };
        (ts(a), registry::name_of(a).to_string()).cmp(&(ts(b), registry::name_of(b).to_string()))
    });

    let mut entries = Vec::new();
    let mut taken: HashSet<(String, String)> = HashSet::new();
    let mut work = Vec::new();
    for raw in crds {
        let name = registry::name_of(&raw).to_string();
        let crd: CustomResourceDefinition = match serde_json::from_value(raw.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(crd = %name, error = %e, "unreadable custom resource definition");
                continue;
            }
        };
        let group = crd.spec.group.clone();
        let plural = crd.spec.names.plural.clone();
        let conflict = super::builtin_plural_taken(&group, &plural)
            || !taken.insert((group.clone(), plural.clone()));
        if !conflict {
            let multi = crd.spec.versions.iter().filter(|v| v.served).count() > 1;
            for version in crd.spec.versions.iter().filter(|v| v.served) {
                let names = custom_names(&crd, version);
                let info = reg.crds.info_for(&names);
                match reg.crds.strategy_for(info, &crd, version) {
                    Ok(strategy) => entries.push(Entry {
                        info,
                        strategy,
                        multi_version: multi,
                        openapi_schema: kubelite_apiextensions::openapi::openapi_v3_schema(
                            &crd,
                            &version.name,
                        ),
                    }),
                    Err(e) => {
                        tracing::warn!(crd = %name, version = %version.name, error = %e, "not serving version")
                    }
                }
            }
        }
        work.push((raw, crd, conflict));
    }

    // Caches first, so that a resource is never served without one.
    for e in &entries {
        ensure_cache(reg, &e.info.prefix()).await?;
    }
    reg.crds.install(entries);

    for (raw, crd, conflict) in work {
        let name = registry::name_of(&raw).to_string();
        if raw.pointer("/metadata/deletionTimestamp").is_some() {
            if let Err(e) = cleanup(reg, &crd, &raw).await {
                tracing::warn!(crd = %name, error = %e, "cleaning up custom resources failed");
            }
            continue;
        }
        if let Err(e) = write_status(reg, &raw, &crd, conflict).await {
            tracing::warn!(crd = %name, error = %e, "updating custom resource definition status failed");
        }
    }
    Ok(())
}

/// The resource a served version of `crd` is.
fn custom_names(
    crd: &CustomResourceDefinition,
    version: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion,
) -> CustomNames {
    let n = &crd.spec.names;
    let sub = version.subresources.as_ref();
    CustomNames {
        group: crd.spec.group.clone(),
        version: version.name.clone(),
        kind: n.kind.clone(),
        plural: n.plural.clone(),
        singular: n
            .singular
            .clone()
            .unwrap_or_else(|| n.kind.to_ascii_lowercase()),
        scope: if crd.spec.scope == "Cluster" {
            Scope::Cluster
        } else {
            Scope::Namespaced
        },
        short_names: n.short_names.clone().unwrap_or_default(),
        categories: n.categories.clone().unwrap_or_default(),
        status: sub.is_some_and(|s| s.status.is_some()),
        scale: sub.is_some_and(|s| s.scale.is_some()),
    }
}

async fn ensure_cache(reg: &Registry, prefix: &str) -> Result<()> {
    if reg.cache(prefix).is_some() {
        return Ok(());
    }
    let cache = WatchCache::start(
        reg.storage.clone(),
        prefix.to_string(),
        reg.crds.watch_cache_events,
        reg.shutdown.clone(),
    )
    .await
    .map_err(|e| ApiError::internal(format!("starting the watch cache of {prefix}: {e}")))?;
    reg.caches
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(prefix.to_string())
        .or_insert(cache);
    Ok(())
}

fn condition(type_: &str, status: bool, reason: &str, message: &str, old: &Value) -> Value {
    let status = if status { "True" } else { "False" };
    // Keep the transition time while the status stays the same.
    let since = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == type_ && c["status"] == status)
        })
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(registry::now_rfc3339()));
    json!({"type": type_, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
}

/// `NamesAccepted`, `Established`, acceptedNames and storedVersions, written only on change.
async fn write_status(
    reg: &Registry,
    raw: &Value,
    crd: &CustomResourceDefinition,
    conflict: bool,
) -> Result<()> {
    let mut names = serde_json::to_value(&crd.spec.names).unwrap_or(json!({}));
    if names.get("singular").is_none() {
        names["singular"] = json!(crd.spec.names.kind.to_ascii_lowercase());
    }
    if names.get("listKind").is_none() {
        names["listKind"] = json!(format!("{}List", crd.spec.names.kind));
    }
    let conditions = if conflict {
        let msg = format!("\"{}\" is already in use", crd.spec.names.plural);
        vec![
            condition("NamesAccepted", false, "NameConflict", &msg, raw),
            condition(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
                raw,
            ),
        ]
    } else {
        vec![
            condition(
                "NamesAccepted",
                true,
                "NoConflicts",
                "no conflicts found",
                raw,
            ),
            condition(
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
                raw,
            ),
        ]
    };
    let mut stored: BTreeSet<String> = raw
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(v) = crd.spec.versions.iter().find(|v| v.storage) {
        stored.insert(v.name.clone());
    }
    let status = json!({
        "conditions": conditions,
        "acceptedNames": if conflict { raw.pointer("/status/acceptedNames").cloned().unwrap_or(json!({"plural": "", "kind": ""})) } else { names },
        "storedVersions": stored.into_iter().collect::<Vec<_>>(),
    });
    if raw.get("status") == Some(&status) {
        return Ok(());
    }
    let mut new = raw.clone();
    new["status"] = status;
    write(reg, raw, new, Part::Status).await
}

/// A guarded write of `new` over the stored `raw` (one attempt: the next pass retries).
async fn write(reg: &Registry, raw: &Value, new: Value, part: Part) -> Result<()> {
    let ctx = Ctx::new(crd_info()?, None);
    let name = registry::name_of(raw).to_string();
    let (cur, old) = registry::get_kv(reg, &ctx, &name).await?;
    if old.pointer("/metadata/resourceVersion") != raw.pointer("/metadata/resourceVersion") {
        reg.crds.kick.notify_one();
        return Ok(());
    }
    // Recorded in managedFields as the server's own writes, as upstream.
    let params = Params(vec![("fieldManager".into(), "kube-apiserver".into())]);
    match update::write(reg, &ctx, part, &params, &cur, &old, new, Vec::new()).await? {
        Attempt::Done(_) => Ok(()),
        Attempt::Raced => {
            reg.crds.kick.notify_one();
            Ok(())
        }
    }
}

/// A deleted CRD: delete its objects in every served version's storage, then drop the
/// cleanup finalizer so the definition goes.
async fn cleanup(reg: &Registry, crd: &CustomResourceDefinition, raw: &Value) -> Result<()> {
    let has_finalizer = raw
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
    if !has_finalizer {
        return Ok(());
    }
    let names = match crd.spec.versions.iter().find(|v| v.storage) {
        Some(v) => custom_names(crd, v),
        None => return Ok(()),
    };
    let info = reg.crds.info_for(&names);
    let remaining = delete_objects(reg, info).await?;
    let mut new = raw.clone();
    let conds = vec![condition(
        "Terminating",
        true,
        if remaining == 0 {
            "InstanceDeletionCompleted"
        } else {
            "InstanceDeletionInProgress"
        },
        &if remaining == 0 {
            "removed all instances".to_string()
        } else {
            format!("CustomResource deletion is in progress: {remaining} remaining")
        },
        raw,
    )];
    if remaining > 0 {
        let mut status = raw.get("status").cloned().unwrap_or(json!({}));
        status["conditions"] = json!(conds);
        if raw.get("status") != Some(&status) {
            new["status"] = status;
            write(reg, raw, new, Part::Status).await?;
        }
        // Objects with finalizers take a while: look again soon.
        tokio::spawn({
            let kick = reg.crds.kick.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                kick.notify_one();
            }
        });
        return Ok(());
    }
    if let Some(fins) = new
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        fins.retain(|f| f != CLEANUP_FINALIZER);
    }
    write(reg, raw, new, Part::Main).await?;
    tracing::info!(crd = %registry::name_of(raw), "custom resources removed; definition deleted");
    reg.crds.kick.notify_one();
    Ok(())
}

/// Delete every object of the resource; how many are still stored.
async fn delete_objects(reg: &Registry, info: &'static ResourceInfo) -> Result<usize> {
    let strategy: Arc<dyn kubelite_api::strategy::Strategy> =
        kubelite_api::kinds::generic_strategy(info.clone());
    let list = reg
        .storage
        .list(&info.prefix(), Default::default())
        .await
        .map_err(|e| ApiError::from_storage(e, crate::error::Target::new(info, "")))?;
    let opts = DeleteOptions {
        propagation: Some("Background".into()),
        ..Default::default()
    };
    for kv in &list.items {
        let obj = registry::decode_kv(kv)?;
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let ns = registry::meta_str(&obj, "namespace").map(str::to_string);
        let ctx = Ctx::with_strategy(info, strategy.clone(), ns);
        match delete::delete(reg, &ctx, registry::name_of(&obj), &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let left = reg
        .storage
        .list(&info.prefix(), Default::default())
        .await
        .map_err(|e| ApiError::from_storage(e, crate::error::Target::new(info, "")))?;
    Ok(left.items.len())
}
