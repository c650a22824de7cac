//! Namespace controller: finishes the deletion of Terminating namespaces like upstream's
//! namespaced-resources deleter. For every namespaced resource found through discovery (custom
//! resources included) it deletes all objects in the namespace, waits until they are gone
//! (objects with finalizers keep it waiting), keeps the namespace's deletion conditions up to
//! date, and finally removes the `kubernetes` finalizer through `namespaces/{name}/finalize`.
//! Deleting the Namespace object itself once no finalizer is left is the apiserver's job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{verbs, ApiCapabilities};
use serde_json::json;
use tracing::{debug, info};

use crate::discovery::{discover, group_resource, Discovered};
use crate::informer::Informer;
use crate::namespace_conditions::{ConditionUpdater, Totals};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{ignore_not_found, is_not_found};
use crate::{Error, Result, Shared};

/// The spec finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// Upstream's wait estimate, in seconds, for content held by finalizers.
const FINALIZER_ESTIMATE_SECS: i64 = 15;
/// Upper bound on the requeue delay while content remains: upstream waits estimate/2+1 seconds,
/// which is slow for a local control plane; polling sooner only costs a few list calls.
const MAX_REQUEUE: Duration = Duration::from_secs(2);

struct Controller {
    client: kube::Client,
    namespaces: Arc<Informer<Namespace>>,
}

/// Registers the namespace controller's handlers; returns its worker loop.
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let c = Arc::new(Controller {
        client: shared.client.clone(),
        namespaces: shared.informers.namespaces.clone(),
    });
    {
        let q = queue.clone();
        c.namespaces.on_change(move |ch| {
            let ns = ch.object();
            if ns.metadata.deletion_timestamp.is_some() {
                q.add(ns.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let workers = shared.config.workers;
    Box::pin(run_workers("namespace", queue, workers, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    }))
}

/// What deleting one resource's content left behind.
struct Leftover {
    remaining: usize,
    finalizers: BTreeMap<String, usize>,
    estimate: i64,
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

impl Controller {
    async fn sync(&self, name: &str) -> Result<Option<Duration>> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        // Read from the server: the cache may lag our own finalize/status writes.
        let Some(ns) = ignore_not_found(api.get(name).await)? else {
            return Ok(None);
        };
        let Some(deleted_at) = ns.metadata.deletion_timestamp.clone() else {
            return Ok(None);
        };
        if !has_finalizer(&ns) {
            return Ok(None);
        }
        let mut updater = ConditionUpdater::default();
        let mut errors = Vec::new();
        let discovered = match discover(&self.client).await {
            Ok(d) => d,
            Err(err) => {
                updater.discovery_failed(err.to_string());
                self.write_status(&api, &ns, updater).await?;
                return Err(err);
            }
        };
        if let Some(msg) = discovered.failure_message() {
            // Not fatal: delete what can be found, but do not finalize on a partial view.
            updater.discovery_failed(format!(
                "Discovery failed for some groups, {} failing: {msg}",
                discovered.failed.len()
            ));
            errors.push(msg);
        }
        let (totals, estimate) = self
            .delete_all_content(name, &deleted_at, &discovered, &mut updater, &mut errors)
            .await;
        updater.content_totals(&totals);
        self.write_status(&api, &ns, updater).await?;
        if !errors.is_empty() {
            return Err(Error::Invalid(errors.join("; ")));
        }
        if estimate > 0 {
            let wait = Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1));
            debug!(namespace = name, ?totals, "content remaining");
            return Ok(Some(wait.min(MAX_REQUEUE)));
        }
        self.finalize(&api, name).await?;
        Ok(None)
    }

    /// Deletes the content of every deletable namespaced resource; returns what is left and
    /// the longest wait estimate. Per-resource errors are collected, not fatal.
    async fn delete_all_content(
        &self,
        ns: &str,
        deleted_at: &Time,
        discovered: &Discovered,
        updater: &mut ConditionUpdater,
        errors: &mut Vec<String>,
    ) -> (Totals, i64) {
        let mut totals = Totals::default();
        let mut estimate = 0;
        for (ar, caps) in discovered.namespaced_with(&[verbs::DELETE]) {
            match self.delete_content(ns, deleted_at, &ar, &caps).await {
                Ok(left) => {
                    estimate = estimate.max(left.estimate);
                    if left.remaining > 0 {
                        totals
                            .remaining
                            .insert((ar.plural.clone(), ar.group.clone()), left.remaining);
                    }
                    for (f, n) in left.finalizers {
                        *totals.finalizers.entry(f).or_default() += n;
                    }
                }
                Err(msg) => {
                    updater.delete_content_failed(msg.clone());
                    errors.push(msg);
                }
            }
        }
        (totals, estimate)
    }

    /// Deletes all objects of one resource in `ns` and reports what remains.
    async fn delete_content(
        &self,
        ns: &str,
        deleted_at: &Time,
        ar: &ApiResource,
        caps: &ApiCapabilities,
    ) -> Result<Leftover, String> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, ar);
        let fail = |e: kube::Error| format!("{}: {e}", group_resource(ar));
        let estimate = if ar.group.is_empty() && ar.plural == "pods" {
            pod_grace_estimate(&self.client, ns, deleted_at)
                .await
                .map_err(fail)?
        } else {
            0
        };
        let dp = DeleteParams::background();
        let list_ok = caps.supports_operation(verbs::LIST);
        if caps.supports_operation(verbs::DELETE_COLLECTION) {
            match api.delete_collection(&dp, &ListParams::default()).await {
                Ok(_) => {}
                // Unsupported after all: fall back to deleting items one by one.
                Err(kube::Error::Api(s)) if s.code == 405 || s.code == 404 => {
                    self.delete_each(&api, list_ok).await.map_err(fail)?
                }
                Err(e) => return Err(fail(e)),
            }
        } else {
            self.delete_each(&api, list_ok).await.map_err(fail)?;
        }
        if !list_ok {
            return Ok(Leftover {
                remaining: 0,
                finalizers: BTreeMap::new(),
                estimate,
            });
        }
        let items = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(fail(e)),
        };
        let mut finalizers = BTreeMap::new();
        for item in &items {
            for f in item.metadata.finalizers.iter().flatten() {
                *finalizers.entry(f.clone()).or_default() += 1;
            }
        }
        let mut left = Leftover {
            remaining: items.len(),
            estimate,
            finalizers,
        };
        if items.is_empty() {
            // Nothing left: no need to wait out grace periods.
            left.estimate = 0;
            return Ok(left);
        }
        if !left.finalizers.is_empty() {
            left.estimate = FINALIZER_ESTIMATE_SECS;
            return Ok(left);
        }
        // Gracefully terminating objects (pods) are expected to linger for a while.
        if left.estimate == 0
            && items
                .iter()
                .any(|i| i.metadata.deletion_timestamp.is_none())
        {
            return Err(format!(
                "unexpected items still remain in namespace: {ns} for gvr: {{{} {} {}}}",
                ar.group, ar.version, ar.plural
            ));
        }
        left.estimate = left.estimate.max(1);
        Ok(left)
    }

    async fn delete_each(
        &self,
        api: &Api<DynamicObject>,
        list_ok: bool,
    ) -> Result<(), kube::Error> {
        if !list_ok {
            return Ok(());
        }
        let items = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for item in items {
            let name = item.metadata.name.unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes phase Terminating and the deletion conditions when they changed.
    async fn write_status(
        &self,
        api: &Api<Namespace>,
        ns: &Namespace,
        updater: ConditionUpdater,
    ) -> Result<()> {
        let old = ns.status.clone().unwrap_or_default();
        let mut status = NamespaceStatus {
            phase: Some("Terminating".into()),
            ..old.clone()
        };
        let changed = updater.apply(&mut status) || old.phase != status.phase;
        if !changed {
            return Ok(());
        }
        let name = ns.metadata.name.clone().unwrap_or_default();
        let patch = json!({"status": {"phase": status.phase, "conditions": status.conditions}});
        ignore_not_found(
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )?;
        Ok(())
    }

    /// Removes `kubernetes` from spec.finalizers with a PUT to the finalize subresource.
    async fn finalize(&self, api: &Api<Namespace>, name: &str) -> Result<()> {
        let Some(mut ns) = ignore_not_found(api.get(name).await)? else {
            return Ok(());
        };
        let Some(spec) = ns.spec.as_mut() else {
            return Ok(());
        };
        let rest: Vec<String> = spec
            .finalizers
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != FINALIZER)
            .collect();
        spec.finalizers = Some(rest);
        ignore_not_found(
            api.replace_subresource("finalize", name, &PostParams::default(), &ns)
                .await,
        )?;
        info!(namespace = name, "namespace content removed, finalized");
        Ok(())
    }
}

/// Seconds left of the longest termination grace period among the namespace's running pods,
/// counted from the namespace's deletion (upstream's estimateGracefulTerminationForPods).
async fn pod_grace_estimate(
    client: &kube::Client,
    ns: &str,
    deleted_at: &Time,
) -> Result<i64, kube::Error> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let mut estimate = 0;
    for pod in pods.list(&ListParams::default()).await?.items {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(0);
        estimate = estimate.max(grace);
    }
    let elapsed = Timestamp::now().duration_since(deleted_at.0).as_secs();
    Ok(if elapsed >= estimate { 0 } else { estimate })
}
