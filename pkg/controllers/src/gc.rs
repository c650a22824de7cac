//! Garbage collector: keeps an ownership graph of namespaced objects (uid -> owners) fed by
//! watches, deletes dependents whose owners are gone, and runs the foreground and orphan
//! finalizers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PropagationPolicy,
};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tracing::{debug, info};

use crate::queue::{run_workers, WorkQueue};
use crate::util::{ignore_not_found, is_not_found};
use crate::{Result, Shared};

/// Finalizer the apiserver adds for `propagationPolicy: Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer the apiserver adds for `propagationPolicy: Orphan`.
pub const ORPHAN: &str = "orphan";

/// Namespaced resources the collector tracks: (group, version, kind, plural).
const RESOURCES: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Pod", "pods"),
    ("", "v1", "Service", "services"),
    ("", "v1", "Endpoints", "endpoints"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "ReplicationController", "replicationcontrollers"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("apps", "v1", "ControllerRevision", "controllerrevisions"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
];

/// One object in the graph.
#[derive(Clone, Debug)]
struct Node {
    res: usize,
    namespace: String,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    fn dependents(&self, uid: &str) -> Vec<(String, Node)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.owners.iter().any(|o| o.uid == uid))
            .map(|(u, n)| (u.clone(), n.clone()))
            .collect()
    }
}

struct Collector {
    client: kube::Client,
    resources: Vec<ApiResource>,
    graph: Mutex<Graph>,
    queue: WorkQueue,
}

fn api_resource(i: usize) -> Option<ApiResource> {
    let (g, v, k, plural) = RESOURCES.get(i)?;
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(g, v, k),
        plural,
    ))
}

/// Registers the garbage collector; returns its loop (watches start inside it).
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let c = Arc::new(Collector {
        client: shared.client.clone(),
        resources: (0..RESOURCES.len()).filter_map(api_resource).collect(),
        graph: Mutex::default(),
        queue: queue.clone(),
    });
    let workers = shared.config.workers;
    Box::pin(async move {
        let mut watches = tokio::task::JoinSet::new();
        let mut ready = Vec::new();
        for (i, ar) in c.resources.iter().enumerate() {
            let api: Api<DynamicObject> = Api::all_with(c.client.clone(), ar);
            // Resources this apiserver does not serve are skipped instead of retried forever.
            if let Err(err) = api.list_metadata(&ListParams::default().limit(1)).await {
                debug!(resource = %ar.plural, error = %err, "not collecting resource");
                continue;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            ready.push(rx);
            watches.spawn(c.clone().watch(i, api, tx));
        }
        for rx in ready {
            let _ = rx.await;
        }
        info!("garbage collector graph synced");
        // Everything with owners or pending finalizers gets one check after the initial sync.
        let uids: Vec<String> = c.lock().nodes.keys().cloned().collect();
        uids.into_iter().for_each(|u| queue.add(u));
        let c2 = c.clone();
        run_workers("garbagecollector", queue, workers, move |uid| {
            let c = c2.clone();
            async move { c.process(&uid).await }
        })
        .await;
        watches.abort_all();
    })
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn watch(
        self: Arc<Self>,
        res: usize,
        api: Api<DynamicObject>,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let mut relist: Option<HashMap<String, Node>> = None;
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            match event {
                Event::Init => relist = Some(HashMap::new()),
                Event::InitApply(o) => {
                    if let (Some(buf), Some((uid, node))) = (relist.as_mut(), to_node(res, &o)) {
                        buf.insert(uid, node);
                    }
                }
                Event::InitDone => {
                    let fresh = relist.take().unwrap_or_default();
                    {
                        let mut g = self.lock();
                        g.nodes.retain(|_, n| n.res != res);
                        g.nodes.extend(fresh.clone());
                    }
                    fresh.keys().for_each(|u| self.queue.add(u.clone()));
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Apply(o) => {
                    if let Some((uid, node)) = to_node(res, &o) {
                        let owners: Vec<String> =
                            node.owners.iter().map(|o| o.uid.clone()).collect();
                        self.lock().nodes.insert(uid.clone(), node);
                        self.queue.add(uid);
                        owners.into_iter().for_each(|u| self.queue.add(u));
                    }
                }
                Event::Delete(o) => {
                    if let Some((uid, node)) = to_node(res, &o) {
                        let dependents = {
                            let mut g = self.lock();
                            g.nodes.remove(&uid);
                            g.dependents(&uid)
                        };
                        dependents.into_iter().for_each(|(u, _)| self.queue.add(u));
                        node.owners
                            .iter()
                            .for_each(|o| self.queue.add(o.uid.clone()));
                    }
                }
            }
        }
    }

    fn api(&self, node: &Node) -> Option<Api<DynamicObject>> {
        let ar = self.resources.get(node.res)?;
        Some(Api::namespaced_with(
            self.client.clone(),
            &node.namespace,
            ar,
        ))
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
        info!(kind = RESOURCES[node.res].2, namespace = %node.namespace, name = %node.name, ?policy, "deleting dependent");
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
                let Some(res) = RESOURCES.iter().position(|(g, v, k, _)| {
                    let api_version = if g.is_empty() {
                        v.to_string()
                    } else {
                        format!("{g}/{v}")
                    };
                    *k == owner.kind && api_version == owner.api_version
                }) else {
                    // A kind we do not track: never delete on its account.
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
                match api.get_opt(&owner.name).await? {
                    Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                        to_node(res, &o).map(|(_, n)| n)
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
        remove_finalizer(api, node, FOREGROUND).await?;
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
        remove_finalizer(api, node, ORPHAN).await?;
        Ok(None)
    }
}

enum OwnerState {
    Solid,
    Waiting,
    Absent,
}

async fn remove_finalizer(api: &Api<DynamicObject>, node: &Node, finalizer: &str) -> Result<()> {
    let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
    let rest = if rest.is_empty() {
        serde_json::Value::Null
    } else {
        json!(rest)
    };
    let patch = json!({"metadata": {"finalizers": rest}});
    info!(kind = RESOURCES[node.res].2, namespace = %node.namespace, name = %node.name, finalizer, "removing finalizer");
    ignore_not_found(
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    )?;
    Ok(())
}

fn to_node(res: usize, o: &DynamicObject) -> Option<(String, Node)> {
    let m = &o.metadata;
    Some((
        m.uid.clone()?,
        Node {
            res,
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone()?,
            owners: m.owner_references.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
        },
    ))
}
