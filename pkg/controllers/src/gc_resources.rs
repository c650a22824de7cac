//! The garbage collector's view of the API: which resources it watches. Discovery runs at start,
//! every [`REDISCOVER_PERIOD`] and shortly after a CustomResourceDefinition changes; every
//! resource that supports list, watch and delete gets a metadata-only watch feeding the graph
//! (upstream's GC monitors), and resources that disappear stop being watched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, PartialObjectMeta};
use kube::discovery::Scope;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::discovery::discover;
use crate::gc::{Collector, Node};

/// How often the collector re-reads discovery.
pub const REDISCOVER_PERIOD: Duration = Duration::from_secs(30);
/// Pause after a CRD change before re-reading discovery (the CRD's API must be served first).
const CRD_SETTLE: Duration = Duration::from_millis(300);
/// Longest wait for one resource's first list at start.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Resources upstream's GC ignores: events are many, short-lived and never owners.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// One resource the collector knows; indexes into the table stay stable for the graph.
pub(crate) struct Tracked {
    /// The resource.
    pub ar: ApiResource,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    watch: Option<tokio::task::AbortHandle>,
}

/// The resource table: index -> resource, with watch handles.
#[derive(Default)]
pub(crate) struct Resources {
    table: Mutex<Vec<Tracked>>,
}

/// `group` of an ownerReference's `apiVersion`.
fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

impl Resources {
    fn lock(&self) -> MutexGuard<'_, Vec<Tracked>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource at `res` and whether it is namespaced, while it is watched.
    pub fn get(&self, res: usize) -> Option<(ApiResource, bool)> {
        let t = self.lock();
        let r = t.get(res).filter(|r| r.watch.is_some())?;
        Some((r.ar.clone(), r.namespaced))
    }

    /// Kind name of `res`, for logs.
    pub fn kind(&self, res: usize) -> String {
        self.lock()
            .get(res)
            .map(|r| r.ar.kind.clone())
            .unwrap_or_default()
    }

    /// The watched resource serving `kind` in the group of `api_version` (any version: the
    /// object is the same whichever version names it).
    pub fn find(&self, api_version: &str, kind: &str) -> Option<usize> {
        let group = group_of(api_version);
        self.lock()
            .iter()
            .position(|r| r.watch.is_some() && r.ar.kind == kind && r.ar.group == group)
    }

    /// Stops every watch.
    pub fn stop(&self) {
        for r in self.lock().iter_mut() {
            if let Some(w) = r.watch.take() {
                w.abort();
            }
        }
    }
}

/// Reads discovery and reconciles the watches with it. Returns receivers that fire when the
/// newly started watches have loaded their first list.
pub(crate) async fn sync_resources(c: &Arc<Collector>) -> Vec<oneshot::Receiver<()>> {
    let found = match discover(&c.client).await {
        Ok(found) => found,
        Err(err) => {
            warn!(error = %err, "garbage collector discovery failed");
            return Vec::new();
        }
    };
    let wanted: Vec<(ApiResource, bool)> = found
        .collectable()
        .into_iter()
        .filter(|(ar, _)| !IGNORED.contains(&(ar.group.as_str(), ar.plural.as_str())))
        .map(|(ar, caps)| (ar, caps.scope == Scope::Namespaced))
        .collect();
    let mut ready = Vec::new();
    let mut stopped = Vec::new();
    {
        let mut table = c.resources.lock();
        let key = |ar: &ApiResource| (ar.group.clone(), ar.version.clone(), ar.plural.clone());
        let wanted_keys: HashMap<_, _> = wanted.iter().map(|(ar, n)| (key(ar), *n)).collect();
        // A partial discovery must not make us forget resources of the groups that failed.
        if found.failed.is_empty() {
            for (i, r) in table.iter_mut().enumerate() {
                if r.watch.is_some() && !wanted_keys.contains_key(&key(&r.ar)) {
                    if let Some(w) = r.watch.take() {
                        w.abort();
                    }
                    info!(resource = %r.ar.plural, group = %r.ar.group, "no longer collecting");
                    stopped.push(i);
                }
            }
        }
        for (ar, namespaced) in wanted {
            let existing = table.iter().position(|r| key(&r.ar) == key(&ar));
            if existing.is_some_and(|i| table[i].watch.is_some()) {
                continue;
            }
            let res = existing.unwrap_or(table.len());
            let (tx, rx) = oneshot::channel();
            ready.push(rx);
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(c.client.clone(), &ar);
            let handle = tokio::spawn(watch(c.clone(), res, ar.clone(), api, tx)).abort_handle();
            debug!(resource = %ar.plural, group = %ar.group, "collecting");
            let tracked = Tracked {
                ar,
                namespaced,
                watch: Some(handle),
            };
            match existing {
                Some(i) => table[i] = tracked,
                None => table.push(tracked),
            }
        }
    }
    if !stopped.is_empty() {
        c.lock().nodes.retain(|_, n| !stopped.contains(&n.res));
    }
    ready
}

/// Waits for `ready` receivers, each at most [`SYNC_TIMEOUT`].
pub(crate) async fn wait_synced(ready: Vec<oneshot::Receiver<()>>) {
    for rx in ready {
        let _ = tokio::time::timeout(SYNC_TIMEOUT, rx).await;
    }
}

/// Re-runs discovery periodically and after CRD changes, forever.
pub(crate) async fn rediscover_loop(c: Arc<Collector>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REDISCOVER_PERIOD) => {}
            _ = c.rediscover.notified() => tokio::time::sleep(CRD_SETTLE).await,
        }
        let ready = sync_resources(&c).await;
        let fresh = !ready.is_empty();
        wait_synced(ready).await;
        if fresh {
            // Objects of new resources may point at owners long gone: check them all.
            let uids: Vec<String> = c.lock().nodes.keys().cloned().collect();
            uids.into_iter().for_each(|u| c.queue.add(u));
        }
    }
}

fn to_node(res: usize, m: &ObjectMeta) -> Option<(String, Node)> {
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

/// Metadata of an object as a graph node (for objects read outside the watches).
pub(crate) fn node_of(res: usize, m: &ObjectMeta) -> Option<Node> {
    to_node(res, m).map(|(_, n)| n)
}

/// Feeds one resource's objects into the graph until aborted.
async fn watch(
    c: Arc<Collector>,
    res: usize,
    ar: ApiResource,
    api: Api<PartialObjectMeta<DynamicObject>>,
    ready: oneshot::Sender<()>,
) {
    let is_crd = ar.group == "apiextensions.k8s.io" && ar.kind == "CustomResourceDefinition";
    let mut ready = Some(ready);
    let mut relist: Option<HashMap<String, Node>> = None;
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                debug!(resource = %ar.plural, error = %err, "gc watch failed");
                continue;
            }
        };
        match event {
            Event::Init => relist = Some(HashMap::new()),
            Event::InitApply(o) => {
                if let (Some(buf), Some((uid, node))) = (relist.as_mut(), to_node(res, &o.metadata))
                {
                    buf.insert(uid, node);
                }
            }
            Event::InitDone => {
                let fresh = relist.take().unwrap_or_default();
                {
                    let mut g = c.lock();
                    g.nodes.retain(|_, n| n.res != res);
                    g.nodes.extend(fresh.clone());
                }
                fresh.keys().for_each(|u| c.queue.add(u.clone()));
                if is_crd && !fresh.is_empty() {
                    // A CRD created between our discovery and this (re)list comes only as a
                    // list item, not as an Apply: rediscover now, not at the next period.
                    c.rediscover.notify_one();
                }
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Event::Apply(o) => {
                if is_crd {
                    c.rediscover.notify_one();
                }
                if let Some((uid, node)) = to_node(res, &o.metadata) {
                    let owners: Vec<String> = node.owners.iter().map(|o| o.uid.clone()).collect();
                    c.lock().nodes.insert(uid.clone(), node);
                    c.queue.add(uid);
                    owners.into_iter().for_each(|u| c.queue.add(u));
                }
            }
            Event::Delete(o) => {
                if is_crd {
                    c.rediscover.notify_one();
                }
                if let Some((uid, node)) = to_node(res, &o.metadata) {
                    let dependents = {
                        let mut g = c.lock();
                        g.nodes.remove(&uid);
                        g.dependents(&uid)
                    };
                    dependents.into_iter().for_each(|(u, _)| c.queue.add(u));
                    node.owners.iter().for_each(|o| c.queue.add(o.uid.clone()));
                }
            }
        }
    }
}
