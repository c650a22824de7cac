//! Node lifecycle controller: watches node Leases in kube-node-lease; a node whose lease is not
//! renewed within the grace period gets Ready=Unknown, the `unreachable` taints and its pods
//! marked not ready (a node reporting Ready=False gets the `not-ready` taints); pods that do not
//! tolerate the NoExecute taint are evicted after their tolerationSeconds. When the node is
//! healthy again the taints are removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use crate::events::Recorder;
use crate::informer::Informer;
use crate::util::{ignore_not_found, now};
use crate::{Result, Shared};

/// The taint key of unreachable nodes.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The taint key of nodes whose kubelet reports Ready=False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Namespace holding node heartbeat leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Node conditions set to Unknown when the kubelet goes silent.
const CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    grace: Duration,
    default_toleration: Duration,
    /// node -> (last renewTime seen, when we saw it change): local time avoids clock skew.
    observed: HashMap<String, (Option<String>, Instant)>,
    recorder: Recorder,
}

/// Registers the node lifecycle controller; returns its monitor loop.
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    let mut c = Controller {
        client: shared.client.clone(),
        nodes: shared.informers.nodes.clone(),
        leases: shared.informers.leases.clone(),
        pods: shared.informers.pods.clone(),
        grace: shared.config.node_monitor_grace_period,
        default_toleration: shared.config.pod_eviction_timeout,
        observed: HashMap::new(),
        recorder: Recorder::new(shared.client.clone(), "node-controller"),
    };
    let _ = (c.nodes.store(), c.leases.store(), c.pods.store());
    let period = shared.config.node_monitor_period;
    Box::pin(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Err(err) = c.monitor().await {
                warn!(error = %err, "node monitor pass failed");
            }
        }
    })
}

fn is_lifecycle_taint(key: &str) -> bool {
    key == UNREACHABLE_TAINT || key == NOT_READY_TAINT
}

/// Whether `tols` tolerate the NoExecute taint `key`, and for how long (None = forever).
fn toleration_for(tols: &[Toleration], key: &str) -> Option<Option<i64>> {
    tols.iter()
        .find(|t| {
            let key_ok = match t.operator.as_deref() {
                Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == key),
                _ => t.key.as_deref() == Some(key) && t.value.as_deref().unwrap_or("").is_empty(),
            };
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "NoExecute");
            key_ok && effect_ok
        })
        .map(|t| t.toleration_seconds)
}

impl Controller {
    async fn monitor(&mut self) -> Result<()> {
        let nodes = self.nodes.store().state();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let renew = self.leases.get(Some(LEASE_NAMESPACE), &name).and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
            });
            let entry = self
                .observed
                .entry(name.clone())
                .or_insert_with(|| (renew.clone(), Instant::now()));
            if entry.0 != renew {
                *entry = (renew, Instant::now());
            }
            let lease_fresh = entry.1.elapsed() <= self.grace;
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.clone());
            // Which NoExecute taint the node should carry: unreachable when the kubelet went
            // silent, not-ready when it reports Ready=False, none when healthy.
            let want = if !lease_fresh {
                Some(UNREACHABLE_TAINT)
            } else if ready.as_deref() == Some("False") {
                Some(NOT_READY_TAINT)
            } else {
                None
            };
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let stale = |t: &Taint| is_lifecycle_taint(&t.key) && Some(t.key.as_str()) != want;
            let Some(key) = want else {
                if taints.iter().any(stale) {
                    self.set_taints(&name, taints.into_iter().filter(|t| !stale(t)).collect())
                        .await?;
                    info!(node = %name, "node healthy again, removed lifecycle taints");
                }
                continue;
            };
            if key == UNREACHABLE_TAINT {
                self.mark_unknown(&node).await?;
            }
            if !taints.iter().any(|t| t.key == key) {
                let mut t: Vec<Taint> = taints.into_iter().filter(|t| !stale(t)).collect();
                for effect in ["NoSchedule", "NoExecute"] {
                    t.push(Taint {
                        key: key.into(),
                        effect: effect.into(),
                        time_added: Some(now()),
                        value: None,
                    });
                }
                self.set_taints(&name, t).await?;
                self.recorder.normal(
                    node.as_ref(),
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
                info!(node = %name, taint = key, "node not ready, tainted");
                // Evictions are timed from the taint; the next pass sees it in the cache.
                continue;
            }
            let added = taints
                .iter()
                .find(|t| t.key == key && t.effect == "NoExecute")
                .and_then(|t| t.time_added.as_ref().map(|t| t.0))
                .unwrap_or_else(Timestamp::now);
            self.handle_pods(&name, key, added).await?;
        }
        Ok(())
    }

    async fn set_taints(&self, node: &str, taints: Vec<Taint>) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }}});
        ignore_not_found(
            api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )?;
        Ok(())
    }

    async fn mark_unknown(&self, node: &Node) -> Result<()> {
        let conds = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let ready_unknown = conds
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "Unknown");
        if ready_unknown {
            return Ok(());
        }
        let mut updated = Vec::new();
        for t in CONDITIONS {
            let mut c = conds
                .iter()
                .find(|c| c.type_ == *t)
                .cloned()
                .unwrap_or_default();
            c.type_ = t.to_string();
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(now());
            updated.push(c);
        }
        updated.extend(
            conds
                .into_iter()
                .filter(|c| !CONDITIONS.contains(&c.type_.as_str())),
        );
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": {"conditions": updated}});
        ignore_not_found(
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )?;
        Ok(())
    }

    /// Marks the node's pods not ready and evicts those whose toleration ran out.
    async fn handle_pods(&self, node: &str, key: &str, tainted_at: Timestamp) -> Result<()> {
        let pods = self
            .pods
            .store()
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
        for pod in pods {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let conds = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            if conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                let updated: Vec<_> = conds
                    .into_iter()
                    .map(|mut c| {
                        if c.type_ == "Ready" {
                            c.status = "False".into();
                            c.reason = Some("NodeNotReady".into());
                            c.last_transition_time = Some(now());
                        }
                        c
                    })
                    .collect();
                let patch = json!({"status": {"conditions": updated}});
                ignore_not_found(
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await,
                )?;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let tols = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let seconds = match toleration_for(&tols, key) {
                Some(None) => continue,
                Some(Some(s)) => s,
                // No toleration at all: behave as if DefaultTolerationSeconds admission added one.
                None => i64::try_from(self.default_toleration.as_secs()).unwrap_or(300),
            };
            if tainted_at + SignedDuration::from_secs(seconds.max(0)) <= Timestamp::now() {
                info!(pod = %format!("{ns}/{name}"), node, "evicting pod from unreachable node");
                self.recorder.normal(
                    pod.as_ref(),
                    "TaintManagerEviction",
                    format!("Marking for deletion Pod {ns}/{name}"),
                );
                ignore_not_found(api.delete(&name, &DeleteParams::default()).await)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn toleration_matching() {
        let exists = Toleration {
            key: Some(UNREACHABLE_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(30),
            ..Default::default()
        };
        assert_eq!(
            toleration_for(std::slice::from_ref(&exists), UNREACHABLE_TAINT),
            Some(Some(30))
        );
        // A toleration for one lifecycle taint does not cover the other.
        assert_eq!(toleration_for(&[exists], NOT_READY_TAINT), None);
        let other = Toleration {
            key: Some("x".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(toleration_for(&[other], UNREACHABLE_TAINT), None);
        let all = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(toleration_for(&[all], NOT_READY_TAINT), Some(None));
    }
}
