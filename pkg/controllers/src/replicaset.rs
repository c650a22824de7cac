//! ReplicaSet controller: keeps `spec.replicas` active pods matching the selector, adopting
//! orphans and releasing pods that stop matching, and reports status.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, OwnerReference,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::api::{ApiResource, DynamicObject};
use kube::Resource;
use serde_json::json;
use tracing::info;

use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::{key_of, split_key, Change, Informer};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{
    controller_ref, ignore_not_found, labels_of, now, pod_is_active, pod_is_available,
    pod_is_ready, pod_ready_since, selector_matches,
};
use crate::{Error, Result, Shared};

/// Most pods created or deleted in one sync, like upstream's burstReplicas.
const BURST_REPLICAS: usize = 500;

type GetFn = dyn Fn(Option<&str>, &str) -> Option<ReplicaSet> + Send + Sync;
type UidFn = dyn Fn(Option<&str>, &str) -> Option<String> + Send + Sync;
type ListFn = dyn Fn() -> Vec<ReplicaSet> + Send + Sync;

/// The owners this controller manages, seen as ReplicaSets (a ReplicationController maps onto
/// one: same status fields, a map selector becomes matchLabels).
struct Source {
    get: Box<GetFn>,
    /// The uid of a cached owner, without building its ReplicaSet view (called per pod event).
    uid: Box<UidFn>,
    list: Box<ListFn>,
    resource: ApiResource,
}

struct Controller {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    source: Source,
    expectations: Expectations,
    recorder: Recorder,
}

/// Registers the ReplicaSet controller's handlers; returns its worker loop.
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    register_with(
        shared,
        shared.informers.replicasets.clone(),
        |rs| rs.clone(),
        "replicaset",
    )
}

/// Registers the ReplicationController controller (the same logic); returns its worker loop.
pub fn register_rc(shared: &Shared) -> BoxFuture<'static, ()> {
    register_with(
        shared,
        shared.informers.replicationcontrollers.clone(),
        rc_as_replica_set,
        "replicationcontroller",
    )
}

/// A ReplicationController seen as a ReplicaSet.
fn rc_as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let selector = spec
        .selector
        .filter(|s| !s.is_empty())
        .or(template_labels)
        .unwrap_or_default();
    let selector = if selector.is_empty() {
        // An empty RC selector selects nothing (validation forbids it anyway).
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubelite.io/never".into(),
                operator: "Exists".into(),
                values: None,
            }]),
            match_labels: None,
        }
    } else {
        LabelSelector {
            match_labels: Some(selector),
            match_expressions: None,
        }
    };
    let status = rc
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| serde_json::from_value(v).ok());
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: spec.template,
        }),
        status,
    }
}

fn register_with<K>(
    shared: &Shared,
    informer: Arc<Informer<K>>,
    view: fn(&K) -> ReplicaSet,
    name: &'static str,
) -> BoxFuture<'static, ()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let queue = WorkQueue::new();
    let (getter, lister, uids) = (informer.clone(), informer.clone(), informer.clone());
    let source = Source {
        get: Box::new(move |ns, n| getter.get(ns, n).map(|o| view(&o))),
        uid: Box::new(move |ns, n| uids.get(ns, n).and_then(|o| o.meta().uid.clone())),
        list: Box::new(move || lister.store().state().iter().map(|o| view(o)).collect()),
        resource: ApiResource::erase::<K>(&()),
    };
    let c = Arc::new(Controller {
        client: shared.client.clone(),
        pods: shared.informers.pods.clone(),
        source,
        expectations: Expectations::default(),
        recorder: Recorder::new(shared.client.clone(), &format!("{name}-controller")),
    });
    let _ = c.pods.store();
    {
        let (q, c2) = (queue.clone(), c.clone());
        informer.on_change(move |ch| {
            let key = key_of(ch.object());
            if let Change::Deleted(_) = ch {
                c2.expectations.delete(&key);
            }
            q.add(key);
        });
    }
    {
        let (q, c2) = (queue.clone(), c.clone());
        c.pods.on_change(move |ch| c2.pod_changed(&q, ch));
    }
    let workers = shared.config.workers;
    Box::pin(run_workers(name, queue, workers, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    }))
}

impl Controller {
    /// The key of the ReplicaSet a controllerRef points to, if it is one we know with that uid.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let r = controller_ref(&pod.metadata)?;
        if r.kind != self.source.resource.kind {
            return None;
        }
        let ns = pod.metadata.namespace.as_deref();
        let uid = (self.source.uid)(ns, &r.name)?;
        (uid == r.uid).then(|| match ns {
            Some(ns) => format!("{ns}/{}", r.name),
            None => r.name.clone(),
        })
    }

    fn matching_sets(&self, pod: &Pod) -> Vec<String> {
        let labels = labels_of(&pod.metadata);
        (self.source.list)()
            .iter()
            .filter(|rs| rs.metadata.namespace == pod.metadata.namespace)
            .filter(|rs| {
                rs.spec
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.selector, &labels))
            })
            .map(key_of)
            .collect()
    }

    /// A controller owner reference to `rs` with the managed kind.
    fn owner_ref(&self, rs: &ReplicaSet) -> OwnerReference {
        OwnerReference {
            api_version: self.source.resource.api_version.clone(),
            kind: self.source.resource.kind.clone(),
            name: rs.metadata.name.clone().unwrap_or_default(),
            uid: rs.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn pod_changed(&self, queue: &WorkQueue, change: &Change<'_, Pod>) {
        let pod = change.object();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let owner = self.owner_key(pod);
        match change {
            Change::Added(_) => {
                if let Some(key) = &owner {
                    if pod.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(key, &uid);
                    } else {
                        self.expectations.creation_observed(key);
                    }
                }
            }
            Change::Updated { old, .. } => {
                if pod.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                {
                    if let Some(key) = &owner {
                        self.expectations.deletion_observed(key, &uid);
                    }
                }
                if let Some(old_owner) = self.owner_key(old) {
                    if Some(&old_owner) != owner.as_ref() {
                        queue.add(old_owner);
                    }
                }
            }
            Change::Deleted(_) => {
                if let Some(key) = &owner {
                    self.expectations.deletion_observed(key, &uid);
                }
            }
        }
        match owner {
            Some(key) => queue.add(key),
            None if controller_ref(&pod.metadata).is_none() => {
                self.matching_sets(pod)
                    .into_iter()
                    .for_each(|k| queue.add(k));
            }
            None => {}
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let Some(rs) = (self.source.get)(ns, name) else {
            self.expectations.delete(key);
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let owned = self.claim_pods(&rs, ns).await?;
        let active: Vec<&Pod> = owned
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| pod_is_active(p))
            .collect();
        let mut manage_err = None;
        if self.expectations.satisfied(key) && rs.metadata.deletion_timestamp.is_none() {
            if let Err(err) = self.manage_replicas(&rs, &active, key, ns).await {
                manage_err = Some(err);
            }
        }
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let status = calculate_status(&rs, &active, manage_err.as_ref());
        let available = status.available_replicas.unwrap_or(0);
        let ready = status.ready_replicas.unwrap_or(0);
        self.update_status(&rs, ns, status).await?;
        if let Some(err) = manage_err {
            return Err(err);
        }
        // Pods that are ready but not yet available become available after minReadySeconds.
        if min_ready > 0 && available != ready {
            return Ok(Some(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(None)
    }

    /// Pods this ReplicaSet owns after adopting matching orphans and releasing non-matching pods.
    /// Cached pods are shared, not copied: at 10,000 replicas a copy per sync would dominate.
    async fn claim_pods(&self, rs: &ReplicaSet, ns: &str) -> Result<Vec<Arc<Pod>>> {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let no_labels = std::collections::BTreeMap::new();
        let pods = self
            .pods
            .store()
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(ns));
        for pod in pods {
            let matches = rs.spec.as_ref().is_some_and(|s| {
                selector_matches(
                    &s.selector,
                    pod.metadata.labels.as_ref().unwrap_or(&no_labels),
                )
            });
            match controller_ref(&pod.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push(pod.clone());
                    } else if !deleting {
                        release(&api, &pod, &uid).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                        let pod_name = pod.metadata.name.clone().unwrap_or_default();
                        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                        refs.push(self.owner_ref(rs));
                        let patch = json!({"metadata": {
                            "ownerReferences": refs,
                            "resourceVersion": pod.metadata.resource_version,
                        }});
                        match api
                            .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            Ok(p) => owned.push(Arc::new(p)),
                            Err(kube::Error::Api(s)) if s.code == 404 => {}
                            Err(err) => return Err(err.into()),
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn manage_replicas(
        &self,
        rs: &ReplicaSet,
        active: &[&Pod],
        key: &str,
        ns: &str,
    ) -> Result<()> {
        let want =
            usize::try_from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        if active.len() < want {
            let diff = (want - active.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, diff);
            let pod = pod_from_template(rs, self.owner_ref(rs))?;
            let mut remaining = diff;
            let mut batch = 1.min(remaining);
            while batch > 0 {
                let pp = PostParams::default();
                let results = join_all((0..batch).map(|_| api.create(&pp, &pod))).await;
                let mut first_err = None;
                for r in results {
                    match r {
                        Ok(p) => {
                            let pod_name = p.metadata.name.unwrap_or_default();
                            self.recorder.normal_for(
                                &self.source.resource,
                                rs,
                                "SuccessfulCreate",
                                format!("Created pod: {pod_name}"),
                            );
                        }
                        Err(err) => {
                            self.expectations.creation_observed(key);
                            self.recorder.warning_for(
                                &self.source.resource,
                                rs,
                                "FailedCreate",
                                format!("Error creating: {err}"),
                            );
                            first_err.get_or_insert(err);
                        }
                    }
                }
                remaining -= batch;
                if let Some(err) = first_err {
                    // The pods of later batches will never be created: stop expecting them.
                    (0..remaining).for_each(|_| self.expectations.creation_observed(key));
                    return Err(err.into());
                }
                batch = remaining.min(batch * 2);
            }
            info!(replicaset = %key, created = diff, "created pods");
        } else if active.len() > want {
            let diff = (active.len() - want).min(BURST_REPLICAS);
            let mut ranked: Vec<&Pod> = active.to_vec();
            ranked.sort_by_key(|p| deletion_rank(p));
            let victims = &ranked[..diff];
            let uids: Vec<String> = victims
                .iter()
                .map(|p| p.metadata.uid.clone().unwrap_or_default())
                .collect();
            self.expectations.expect_deletions(key, uids.clone());
            let results = join_all(victims.iter().map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                let api = api.clone();
                async move {
                    (
                        name.clone(),
                        api.delete(&name, &DeleteParams::default()).await,
                    )
                }
            }))
            .await;
            let mut first_err = None;
            for ((pod_name, r), uid) in results.into_iter().zip(uids) {
                match r {
                    Ok(_) => self.recorder.normal_for(
                        &self.source.resource,
                        rs,
                        "SuccessfulDelete",
                        format!("Deleted pod: {pod_name}"),
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        self.expectations.deletion_observed(key, &uid);
                    }
                    Err(err) => {
                        self.expectations.deletion_observed(key, &uid);
                        self.recorder
                            .warning(rs, "FailedDelete", format!("Error deleting: {err}"));
                        first_err.get_or_insert(err);
                    }
                }
            }
            info!(replicaset = %key, replicaset_name = %rs_name, deleted = diff, "deleted pods");
            if let Some(err) = first_err {
                return Err(err.into());
            }
        }
        Ok(())
    }

    async fn update_status(
        &self,
        rs: &ReplicaSet,
        ns: &str,
        status: ReplicaSetStatus,
    ) -> Result<()> {
        let current = rs.status.clone().unwrap_or_default();
        if current == status {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &self.source.resource);
        let mut value = serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
        if status.conditions.is_none() {
            value["conditions"] = serde_json::Value::Null;
        }
        let name = rs.metadata.name.clone().unwrap_or_default();
        let patch = Patch::Merge(json!({"status": value}));
        ignore_not_found(
            api.patch_status(&name, &PatchParams::default(), &patch)
                .await,
        )?;
        Ok(())
    }
}

async fn release(api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<()> {
    let refs: Vec<_> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    let patch = json!({"metadata": {
        "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
        "resourceVersion": pod.metadata.resource_version,
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    ignore_not_found(
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    )?;
    Ok(())
}

/// A new pod for `rs` from its template, owned by it, named `<rs-name>-<random>`.
fn pod_from_template(rs: &ReplicaSet, owner: OwnerReference) -> Result<Pod> {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| Error::Invalid("replicaset has no pod template".into()))?;
    let tmeta = template.metadata.unwrap_or_default();
    Ok(Pod {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.clone().unwrap_or_default())),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// Sort key: pods earlier in this order are deleted first when scaling down (like upstream's
/// ActivePods ordering): unscheduled, then pending, then not ready, then ready for less time,
/// then more restarts, then newer.
fn deletion_rank(pod: &Pod) -> impl Ord {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let phase_rank = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let ready = pod_is_ready(pod);
    let ready_since = pod_ready_since(pod)
        .flatten()
        .map(|t| Reverse(t.as_millisecond()));
    let restarts: i32 = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| Reverse(t.0.as_millisecond()));
    (
        scheduled,
        phase_rank,
        ready,
        ready_since,
        Reverse(restarts),
        created,
    )
}

/// The status the ReplicaSet should have given its active pods.
fn calculate_status(
    rs: &ReplicaSet,
    active: &[&Pod],
    manage_err: Option<&Error>,
) -> ReplicaSetStatus {
    let now_ts = k8s_openapi::jiff::Timestamp::now();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .map(labels_of)
        .unwrap_or_default();
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p: &Pod| {
        let l = p.metadata.labels.as_ref();
        template_labels
            .iter()
            .all(|(k, v)| l.and_then(|l| l.get(k)) == Some(v))
    });
    let mut conditions: Vec<ReplicaSetCondition> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some(err) if !has_failure => {
            let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let reason = if usize::try_from(want).unwrap_or(0) > active.len() {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(err.to_string()),
                last_transition_time: Some(now()),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&|p: &Pod| pod_is_ready(p))),
        available_replicas: Some(count(&|p: &Pod| pod_is_available(p, min_ready, now_ts))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..Default::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: Option<&str>, ready: bool, created_secs: i64) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(created_secs).unwrap(),
                )),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(String::from),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(if node.is_some() { "Running" } else { "Pending" }.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deletion_order_prefers_unscheduled_unready_newest() {
        let pods = [
            pod("ready-old", Some("n"), true, 10),
            pod("ready-new", Some("n"), true, 20),
            pod("unready", Some("n"), false, 5),
            pod("unscheduled", None, false, 1),
        ];
        let mut refs: Vec<&Pod> = pods.iter().collect();
        refs.sort_by_key(|p| deletion_rank(p));
        let names: Vec<_> = refs
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["unscheduled", "unready", "ready-new", "ready-old"]);
    }
}
