//! Garbage collector: keeps an ownership graph (uid -> owners) of every object of every
//! resource discovery reports as list/watch/delete-able (custom resources included; see
//! `gc_resources`), fed by metadata-only watches; deletes dependents whose owners are gone and
//! runs the foreground and orphan finalizers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use serde_json::json;
use tokio::sync::Notify;
use tracing::info;

use crate::gc_resources::{node_of, rediscover_loop, sync_resources, wait_synced, Resources};

use crate::queue::{run_workers, WorkQueue};
use crate::util::{ignore_not_found, is_not_found};
use crate::{Result, Shared};

/// Finalizer the apiserver adds for `propagationPolicy: Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer the apiserver adds for `propagationPolicy: Orphan`.
pub const ORPHAN: &str = "orphan";

/// One object in the graph.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Index into the collector's resource table.
    pub res: usize,
    pub namespace: String,
    pub name: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

/// uid -> node for every object of every watched resource.
#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: HashMap<String, Node>,
}

impl Graph {
    /// Objects that list `uid` among their owners.
    pub fn dependents(&self, uid: &str) -> Vec<(String, Node)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.owners.iter().any(|o| o.uid == uid))
            .map(|(u, n)| (u.clone(), n.clone()))
            .collect()
    }
}

/// The collector: resource table, graph and work queue (keys are uids).
pub(crate) struct Collector {
    pub client: kube::Client,
    pub resources: Resources,
    graph: Mutex<Graph>,
    pub queue: WorkQueue,
    /// Wakes the rediscovery loop (a CRD changed).
    pub rediscover: Notify,
}

/// Registers the garbage collector; returns its loop (discovery and watches start inside it).
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let c = Arc::new(Collector {
        client: shared.client.clone(),
        resources: Resources::default(),
        graph: Mutex::default(),
        queue: queue.clone(),
        rediscover: Notify::new(),
    });
    let workers = shared.config.workers;
    Box::pin(async move {
        wait_synced(sync_resources(&c).await).await;
        info!("garbage collector graph synced");
        // Everything with owners or pending finalizers gets one check after the initial sync.
        let uids: Vec<String> = c.lock().nodes.keys().cloned().collect();
        uids.into_iter().for_each(|u| queue.add(u));
        let rediscover = tokio::spawn(rediscover_loop(c.clone()));
        let c2 = c.clone();
        run_workers("garbagecollector", queue, workers, move |uid| {
            let c = c2.clone();
            async move { c.process(&uid).await }
        })
        .await;
        rediscover.abort();
        c.resources.stop();
    })
}

impl Collector {
    /// The graph (a poisoned lock only means a worker panicked; the map is still usable).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn api(&self, node: &Node) -> Option<Api<DynamicObject>> {
        let (ar, namespaced) = self.resources.get(node.res)?;
        Some(if namespaced {
            Api::namespaced_with(self.client.clone(), &node.namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }

    /// Checks one object: runs its deletion finalizers, or deletes it if all owners are gone.
    async fn process(&self, uid: &str) -> Result<Option<Duration>> {
        let Some(node) = self.lock().nodes.get(uid).cloned() else {
            return Ok(None);
        };
        let Some(api) = self.api(&node) else {
            return Ok(None);
        };
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            return self.orphan_dependents(uid, &node, &api).await;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            return self.delete_dependents(uid, &node, &api).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(None);
        }
        let mut solid = 0;
        let mut waiting = 0;
        let mut dangling = Vec::new();
        for owner in &node.owners {
            match self.owner_state(&node, owner).await? {
                OwnerState::Solid => solid += 1,
                OwnerState::Waiting => waiting += 1,
                OwnerState::Absent => dangling.push(owner.uid.clone()),
            }
        }
        if solid > 0 {
            if !dangling.is_empty() {
                let refs: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|o| !dangling.contains(&o.uid))
                    .collect();
                let patch = json!({"metadata": {"ownerReferences": refs}});
                ignore_not_found(
                    api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await,
                )?;
            }
            return Ok(None);
        }
        // Every owner is gone or being deleted in the foreground: delete this dependent.
        let policy = if waiting > 0 {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        info!(kind = %self.resources.kind(node.res), namespace = %node.namespace, name = %node.name, ?policy, "deleting dependent");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(None),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn owner_state(&self, node: &Node, owner: &OwnerReference) -> Result<OwnerState> {
        let cached = self.lock().nodes.get(&owner.uid).cloned();
        let owner_node = match cached {
            Some(n) => Some(n),
            None => {
                // Not in the graph: confirm with the apiserver before calling it gone (our
                // watch of the owner's kind may lag).
                let Some(res) = self.resources.find(&owner.api_version, &owner.kind) else {
                    // A kind discovery does not report: never delete on its account.
                    return Ok(OwnerState::Solid);
                };
                let probe = Node {
                    res,
                    namespace: node.namespace.clone(),
                    name: owner.name.clone(),
                    owners: Vec::new(),
                    deleting: false,
                    finalizers: Vec::new(),
                };
                let Some(api) = self.api(&probe) else {
                    return Ok(OwnerState::Solid);
                };
                match api.get_metadata_opt(&owner.name).await? {
                    Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                        node_of(res, &o.metadata)
                    }
                    _ => None,
                }
            }
        };
        Ok(match owner_node {
            None => OwnerState::Absent,
            Some(o) if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND) => {
                OwnerState::Waiting
            }
            Some(_) => OwnerState::Solid,
        })
    }

    async fn delete_dependents(
        &self,
        uid: &str,
        node: &Node,
        api: &Api<DynamicObject>,
    ) -> Result<Option<Duration>> {
        let dependents = self.lock().dependents(uid);
        let mut blocking = 0;
        for (dep_uid, dep) in &dependents {
            let blocks = dep
                .owners
                .iter()
                .any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
            if blocks {
                blocking += 1;
            }
            if !dep.deleting {
                // Process the dependent itself: it deletes with Foreground since we wait.
                self.queue.add(dep_uid.clone());
            }
        }
        if blocking > 0 {
            return Ok(None);
        }
        remove_finalizer(api, &self.resources.kind(node.res), node, FOREGROUND).await?;
        Ok(None)
    }

    async fn orphan_dependents(
        &self,
        uid: &str,
        node: &Node,
        api: &Api<DynamicObject>,
    ) -> Result<Option<Duration>> {
        let dependents = self.lock().dependents(uid);
        for (_, dep) in dependents {
            let Some(dep_api) = self.api(&dep) else {
                continue;
            };
            let refs: Vec<&OwnerReference> = dep.owners.iter().filter(|o| o.uid != uid).collect();
            let refs = if refs.is_empty() {
                serde_json::Value::Null
            } else {
                json!(refs)
            };
            let patch = json!({"metadata": {"ownerReferences": refs}});
            ignore_not_found(
                dep_api
                    .patch(&dep.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await,
            )?;
        }
        remove_finalizer(api, &self.resources.kind(node.res), node, ORPHAN).await?;
        Ok(None)
    }
}

enum OwnerState {
    Solid,
    Waiting,
    Absent,
}

async fn remove_finalizer(
    api: &Api<DynamicObject>,
    kind: &str,
    node: &Node,
    finalizer: &str,
) -> Result<()> {
    let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
    let rest = if rest.is_empty() {
        serde_json::Value::Null
    } else {
        json!(rest)
    };
    let patch = json!({"metadata": {"finalizers": rest}});
    info!(kind, namespace = %node.namespace, name = %node.name, finalizer, "removing finalizer");
    ignore_not_found(
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    )?;
    Ok(())
}
