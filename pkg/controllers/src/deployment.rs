//! Deployment controller: owns ReplicaSets by template hash and rolls pods from old to new
//! (RollingUpdate within maxSurge/maxUnavailable, or Recreate), tracking revisions, history and
//! the Progressing/Available conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::deployment_util::*;
use crate::events::Recorder;
use crate::informer::{key_of, split_key, Change, Informer};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{
    controller_owner_ref, controller_ref, ignore_not_found, labels_of, pod_is_active,
    pod_is_available, selector_matches,
};
use crate::{Error, Result, Shared};

pub(crate) struct Controller {
    pub(crate) client: kube::Client,
    pub(crate) pods: Arc<Informer<Pod>>,
    pub(crate) replicasets: Arc<Informer<ReplicaSet>>,
    pub(crate) deployments: Arc<Informer<Deployment>>,
    pub(crate) recorder: Recorder,
}

/// Registers the Deployment controller's handlers; returns its worker loop.
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let c = Arc::new(Controller {
        client: shared.client.clone(),
        pods: shared.informers.pods.clone(),
        replicasets: shared.informers.replicasets.clone(),
        deployments: shared.informers.deployments.clone(),
        recorder: Recorder::new(shared.client.clone(), "deployment-controller"),
    });
    {
        let q = queue.clone();
        c.deployments
            .on_change(move |ch| q.add(key_of(ch.object())));
    }
    {
        let (q, c2) = (queue.clone(), c.clone());
        c.replicasets.on_change(move |ch| {
            if let Change::Updated { old, .. } = ch {
                if let Some(k) = c2.owner_of_rs(old) {
                    q.add(k);
                }
            }
            let rs = ch.object();
            match c2.owner_of_rs(rs) {
                Some(k) => q.add(k),
                None if controller_ref(&rs.metadata).is_none() => {
                    c2.matching_deployments(rs)
                        .into_iter()
                        .for_each(|k| q.add(k));
                }
                None => {}
            }
        });
    }
    {
        // Availability is computed from pods, and Recreate waits for old pods to go away.
        let (q, c2) = (queue.clone(), c.clone());
        c.pods.on_change(move |ch| {
            let pod = ch.object();
            let Some(r) = controller_ref(&pod.metadata) else {
                return;
            };
            if r.kind != "ReplicaSet" {
                return;
            }
            if let Some(rs) = c2
                .replicasets
                .get(pod.metadata.namespace.as_deref(), &r.name)
            {
                if let Some(k) = c2.owner_of_rs(&rs) {
                    q.add(k);
                }
            }
        });
    }
    let workers = shared.config.workers;
    Box::pin(run_workers("deployment", queue, workers, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    }))
}

impl Controller {
    fn owner_of_rs(&self, rs: &ReplicaSet) -> Option<String> {
        let r = controller_ref(&rs.metadata)?;
        if r.kind != "Deployment" {
            return None;
        }
        let d = self
            .deployments
            .get(rs.metadata.namespace.as_deref(), &r.name)?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| key_of(d.as_ref()))
    }

    fn matching_deployments(&self, rs: &ReplicaSet) -> Vec<String> {
        let labels = labels_of(&rs.metadata);
        self.deployments
            .store()
            .state()
            .iter()
            .filter(|d| d.metadata.namespace == rs.metadata.namespace)
            .filter(|d| {
                d.spec
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.selector, &labels))
            })
            .map(|d| key_of(d.as_ref()))
            .collect()
    }

    pub(crate) fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let Some(d) = self.deployments.get(ns, name) else {
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let Some(spec) = d.spec.as_ref() else {
            return Ok(None);
        };
        let selector_empty = spec
            .selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && spec
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(|m| m.is_empty());
        if selector_empty {
            // Upstream refuses to act on an empty selector: it would match every pod.
            return Ok(None);
        }
        let rss = self.claim_replicasets(&d, ns).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let (new_rs, old) = self.split_new_old(&d, rss);
            self.sync_status(&d, new_rs.as_ref(), &old, None).await?;
            return Ok(None);
        }
        let paused = spec.paused.unwrap_or(false);
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        if paused {
            return self.sync_paused(&d, rss).await;
        }
        if recreate {
            self.rollout_recreate(&d, rss).await
        } else {
            self.rollout_rolling(&d, rss).await
        }
    }

    /// ReplicaSets this deployment owns, after adopting matching orphans and releasing ones that
    /// no longer match.
    async fn claim_replicasets(&self, d: &Deployment, ns: &str) -> Result<Vec<ReplicaSet>> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let api = self.rs_api(ns);
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let all = self
            .replicasets
            .store()
            .state_filter(|rs| rs.metadata.namespace.as_deref() == Some(ns));
        for rs in all {
            let matches = selector_matches(&selector, &labels_of(&rs.metadata));
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            match controller_ref(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push(rs.as_ref().clone());
                    } else if !deleting {
                        let refs: Vec<_> = rs
                            .metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .filter(|r| r.uid != uid)
                            .cloned()
                            .collect();
                        let patch = json!({"metadata": {"ownerReferences": refs}});
                        ignore_not_found(
                            api.patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await,
                        )?;
                    }
                }
                Some(_) => {}
                None => {
                    if matches && !deleting && rs.metadata.deletion_timestamp.is_none() {
                        let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                        refs.push(controller_owner_ref(d));
                        let patch = json!({"metadata": {
                            "ownerReferences": refs,
                            "resourceVersion": rs.metadata.resource_version,
                        }});
                        let pp = PatchParams::default();
                        if let Some(rs) =
                            ignore_not_found(api.patch(&rs_name, &pp, &Patch::Merge(&patch)).await)?
                        {
                            owned.push(rs);
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    /// Splits owned sets into the one whose template equals the deployment's and the others.
    pub(crate) fn split_new_old(
        &self,
        d: &Deployment,
        mut rss: Vec<ReplicaSet>,
    ) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let want = d
            .spec
            .as_ref()
            .map(|s| strip_hash(&s.template))
            .unwrap_or_default();
        // Oldest first, so a template shared by several sets resolves like upstream.
        rss.sort_by_key(|rs| {
            rs.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond())
        });
        let idx = rss.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| strip_hash(t) == want)
        });
        let new_rs = idx.map(|i| rss.remove(i));
        (new_rs, rss)
    }

    /// Available pods of `rs` from the pod cache, capped at its spec.replicas so pods about to
    /// be removed by a scale-down never count.
    pub(crate) fn available(&self, rs: &ReplicaSet, min_ready: i32) -> i32 {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let n = self
            .pods
            .store()
            .state_filter(|p| {
                controller_ref(&p.metadata).is_some_and(|r| r.uid == uid)
                    && pod_is_active(p)
                    && pod_is_available(p, min_ready, now)
            })
            .len();
        i32::try_from(n).unwrap_or(0).min(rs_replicas(rs))
    }

    /// Pods of the given sets that still exist and are not terminated (terminating included).
    pub(crate) fn running_pods(&self, rss: &[ReplicaSet]) -> usize {
        let uids: Vec<String> = rss.iter().filter_map(|r| r.metadata.uid.clone()).collect();
        self.pods
            .store()
            .state_filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                controller_ref(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                    && !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .len()
    }

    /// Finds the new ReplicaSet (bumping its revision if it was an old one) or creates it.
    pub(crate) async fn get_or_create_new_rs(
        &self,
        d: &Deployment,
        new_rs: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
        initial_replicas: i32,
    ) -> Result<(Option<ReplicaSet>, bool)> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let max_old = old
            .iter()
            .map(|rs| revision(rs.metadata.annotations.as_ref()))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        let d_name = d.metadata.name.clone().unwrap_or_default();
        if let Some(rs) = new_rs {
            if revision(rs.metadata.annotations.as_ref()) < max_old + 1 {
                // Rollback (or a re-used template): the set becomes the newest revision.
                let mut ann: BTreeMap<String, String> = copied_annotations(d);
                ann.insert(REVISION_ANNOTATION.into(), new_revision.clone());
                let patch = json!({"metadata": {"annotations": ann}});
                let name = rs.metadata.name.clone().unwrap_or_default();
                let updated = self
                    .rs_api(&ns)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                return Ok((Some(updated), false));
            }
            return Ok((Some(rs), false));
        }
        if !create {
            return Ok((None, false));
        }
        let spec = d
            .spec
            .as_ref()
            .ok_or_else(|| Error::Invalid("deployment has no spec".into()))?;
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = spec.template.clone();
        let hash = template_hash(&template, collision);
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut labels = tmeta.labels.clone().unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let (surge, _) = fenceposts(d);
        let replicas = spec.replicas.unwrap_or(1);
        let mut ann = copied_annotations(d);
        ann.insert(REVISION_ANNOTATION.into(), new_revision);
        ann.insert(DESIRED_REPLICAS_ANNOTATION.into(), replicas.to_string());
        ann.insert(
            MAX_REPLICAS_ANNOTATION.into(),
            (replicas + surge).to_string(),
        );
        let rs_name = format!("{d_name}-{hash}");
        let rs = ReplicaSet {
            metadata: kube::api::ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: Some(ann),
                owner_references: Some(vec![controller_owner_ref(d)]),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(initial_replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.recorder.normal(
                    d,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {rs_name} to {initial_replicas}"),
                );
                Ok((Some(created), true))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A set with this name exists but is not ours or has another template: a hash
                // collision. Bump collisionCount so the next hash differs.
                let existing = self.rs_api(&ns).get(&rs_name).await?;
                let ours = controller_ref(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same_template = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| strip_hash(t) == strip_hash(&spec.template));
                if ours && same_template {
                    return Ok((Some(existing), false));
                }
                let patch =
                    json!({"status": {"collisionCount": collision.unwrap_or(0).saturating_add(1)}});
                Api::<Deployment>::namespaced(self.client.clone(), &ns)
                    .patch_status(&d_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Err(Error::Invalid(format!(
                    "hash collision for replica set {rs_name}"
                )))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Scales `rs` to `replicas`, recording desired/max annotations and an event.
    pub(crate) async fn scale(&self, d: &Deployment, rs: &ReplicaSet, replicas: i32) -> Result<()> {
        let old = rs_replicas(rs);
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let (surge, _) = fenceposts(d);
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let name = rs.metadata.name.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {"annotations": {
                DESIRED_REPLICAS_ANNOTATION: desired.to_string(),
                MAX_REPLICAS_ANNOTATION: (desired + surge).to_string(),
            }},
            "spec": {"replicas": replicas}
        });
        self.rs_api(&ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if old != replicas {
            let op = if replicas > old { "up" } else { "down" };
            self.recorder.normal(
                d,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} to {replicas} from {old}"),
            );
        }
        Ok(())
    }

    /// Deletes old, fully scaled-down sets beyond revisionHistoryLimit, oldest revision first.
    pub(crate) async fn cleanup(&self, d: &Deployment, old: &[ReplicaSet]) -> Result<()> {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut candidates: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        let excess = candidates
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        candidates.sort_by_key(|rs| revision(rs.metadata.annotations.as_ref()));
        for rs in candidates.into_iter().take(excess) {
            let ns = rs.metadata.namespace.clone().unwrap_or_default();
            let name = rs.metadata.name.clone().unwrap_or_default();
            ignore_not_found(
                self.rs_api(&ns)
                    .delete(&name, &DeleteParams::default())
                    .await,
            )?;
        }
        Ok(())
    }

    /// Writes status and the revision annotation; returns when to re-check the progress deadline.
    pub(crate) async fn sync_status(
        &self,
        d: &Deployment,
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
        progress: Option<(&str, String)>,
    ) -> Result<Option<Duration>> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        if let Some(rs) = new_rs {
            let rev = revision(rs.metadata.annotations.as_ref());
            if rev > 0 && revision(d.metadata.annotations.as_ref()) != rev {
                let patch =
                    json!({"metadata": {"annotations": {REVISION_ANNOTATION: rev.to_string()}}});
                ignore_not_found(
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await,
                )?;
            }
        }
        let (status, requeue) = crate::deployment_status::calculate(d, new_rs, old, progress);
        if d.status.as_ref() != Some(&status) {
            let mut value =
                serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
            // A merge patch only clears fields that are explicitly null.
            for field in [
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
            ] {
                if value.get(field).is_none() {
                    value[field] = serde_json::Value::Null;
                }
            }
            let patch = Patch::Merge(json!({"status": value}));
            ignore_not_found(
                api.patch_status(&name, &PatchParams::default(), &patch)
                    .await,
            )?;
        }
        Ok(requeue)
    }
}

fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| copy_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
