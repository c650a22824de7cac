//! Pod workers: a watch of this node's pods, one task per pod feeding [`crate::pods::sync_pod`],
//! and the garbage collection of containers and pod dirs whose pod is gone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::pods::{key, kill_pod, sync_pod, PodState};
use crate::{Kubelet, LABEL_NODE, LABEL_POD_UID};

/// How often a worker re-syncs without an API event (container exits are polled).
const RESYNC: Duration = Duration::from_secs(1);

/// The pod as a worker holds it: shared, so a resync borrows it instead of deep-copying it.
type SharedPod = Arc<Pod>;

struct Worker {
    tx: watch::Sender<Option<SharedPod>>,
    task: JoinHandle<()>,
}

/// Owns the per-pod workers.
#[derive(Clone)]
pub(crate) struct PodManager {
    k: Arc<Kubelet>,
    workers: Arc<Mutex<HashMap<String, Worker>>>,
}

impl PodManager {
    pub(crate) fn new(k: Arc<Kubelet>) -> Self {
        Self {
            k,
            workers: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pods this kubelet currently runs.
    pub(crate) fn pods(&self) -> Vec<Pod> {
        self.lock()
            .values()
            .filter_map(|w| w.tx.borrow().as_deref().cloned())
            .collect()
    }

    /// Stops every worker task (containers keep running).
    pub(crate) fn abort_all(&self) {
        for w in self.lock().values() {
            w.task.abort();
        }
    }

    /// The kubelet this manager runs pods for.
    pub(crate) fn kubelet(&self) -> Arc<Kubelet> {
        self.k.clone()
    }

    /// Starts or updates the worker of a pod. A mirror pod is not run: its status is handed to
    /// the static pod's worker, whose later status writes compare against it.
    pub(crate) fn upsert(&self, pod: Pod) {
        if crate::static_pods::is_mirror(&pod) {
            let hash = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::static_pods::ANNOTATION_MIRROR))
                .cloned()
                .unwrap_or_default();
            if let Some(w) = self.lock().get(&hash) {
                w.tx.send_if_modified(|cur| match cur {
                    Some(p) if p.status != pod.status => {
                        Arc::make_mut(p).status.clone_from(&pod.status);
                        true
                    }
                    _ => false,
                });
            }
            return;
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(without_managed_fields(pod));
        let mut workers = self.lock();
        if let Some(w) = workers.get(&uid) {
            w.tx.send_replace(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let task = tokio::spawn(worker(self.k.clone(), uid.clone(), rx));
        workers.insert(uid, Worker { tx, task });
    }

    /// Stops the worker of a pod that is gone; it kills the pod's containers.
    pub(crate) fn gone(&self, uid: &str) {
        if let Some(w) = self.lock().remove(uid) {
            w.tx.send_replace(None);
        }
    }

    /// Watches this node's pods until aborted.
    pub(crate) async fn run(self) {
        let api: Api<Pod> = Api::all(self.k.client.clone());
        let cfg = watcher::Config::default()
            .fields(&format!("spec.nodeName={}", self.k.config.node_name));
        let mut stream = watcher(api, cfg).boxed();
        let mut init: HashSet<String> = HashSet::new();
        let gc = tokio::spawn(gc_loop(self.clone()));
        let statics = self
            .k
            .config
            .pod_manifest_path
            .clone()
            .map(|dir| tokio::spawn(crate::static_pods::run(self.clone(), dir)));
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => init.clear(),
                Ok(watcher::Event::InitApply(p)) => {
                    init.extend(p.metadata.uid.clone());
                    self.upsert(p);
                }
                Ok(watcher::Event::InitDone) => {
                    // Pods that vanished while the watch was down.
                    let stale: Vec<String> = self
                        .lock()
                        .iter()
                        .filter(|(u, w)| {
                            // Static pods come from disk, not from this list.
                            !init.contains(*u)
                                && !w
                                    .tx
                                    .borrow()
                                    .as_deref()
                                    .is_some_and(crate::static_pods::is_static)
                        })
                        .map(|(u, _)| u.clone())
                        .collect();
                    for uid in stale {
                        self.gone(&uid);
                    }
                }
                Ok(watcher::Event::Apply(p)) => self.upsert(p),
                Ok(watcher::Event::Delete(p)) => {
                    if let Some(uid) = p.metadata.uid.as_deref() {
                        self.gone(uid);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "pod watch failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        gc.abort();
        if let Some(t) = statics {
            t.abort();
        }
    }
}

/// Removes containers of this node whose pod has no worker (deleted while the kubelet was down).
async fn gc_loop(m: PodManager) {
    // Give the initial list time to create workers before judging containers orphaned.
    tokio::time::sleep(Duration::from_secs(5)).await;
    loop {
        let node = m.k.config.node_name.clone();
        match m.k.runtime.list(&[(LABEL_NODE, &node)]).await {
            Ok(all) => {
                let known: HashSet<String> = m.lock().keys().cloned().collect();
                for c in all {
                    let uid = c.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
                    if !known.contains(&uid) {
                        info!(container = %c.id, pod_uid = %uid, "removing orphaned container");
                        let _ = m.k.runtime.stop(&c.id, 2).await;
                        let _ = m.k.runtime.remove(&c.id).await;
                    }
                }
                // Pod dirs (volumes, resolv.conf) of pods this kubelet no longer runs.
                let dir = m.k.config.root_dir.join("pods");
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let uid = e.file_name().to_string_lossy().into_owned();
                    // Re-checked now: a worker registers before it creates its pod dir, so a
                    // pod added since `known` was taken is never mistaken for an orphan.
                    if !known.contains(&uid) && !m.lock().contains_key(&uid) {
                        info!(pod_uid = %uid, "removing orphaned pod dir");
                        crate::volumes::teardown(&m.k, None, &uid).await;
                    }
                }
            }
            Err(e) => warn!(error = %e, "container gc failed"),
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// The pod without `metadata.managedFields`: the kubelet never reads them, and as JSON values
/// they are most of a pod's heap (upstream's informers strip them the same way,
/// `cache.TransformStripManagedFields`).
fn without_managed_fields(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    pod
}

async fn worker(k: Arc<Kubelet>, uid: String, mut rx: watch::Receiver<Option<SharedPod>>) {
    let mut state = PodState::default();
    let mut last: Option<SharedPod> = None;
    loop {
        let pod = rx.borrow_and_update().clone();
        if pod.is_some() {
            last.clone_from(&pod);
        }
        match pod {
            None => {
                // Boxed, as the sync below: a pod's task lives as long as the pod, and the
                // sync futures (~15 KB) need only exist while a sync runs.
                if let Err(e) = Box::pin(kill_pod(&k, last.as_deref(), &uid, 2)).await {
                    warn!(pod_uid = %uid, error = %e, "cleanup of removed pod failed");
                }
                return;
            }
            Some(pod) => {
                if let Err(e) = Box::pin(sync_pod(&k, &pod, &mut state)).await {
                    warn!(pod = %key(&pod), error = %e, "pod sync failed");
                }
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;
    use crate::Config;

    fn manager() -> PodManager {
        // Never reached in this test: status writes fail and are retried, which is fine here.
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(cfg).expect("client");
        PodManager::new(Arc::new(Kubelet {
            client: client.clone(),
            config: Config::new("n1"),
            runtime: Arc::new(FakeRuntime::with_images(&[crate::PAUSE_IMAGE, "busybox"])),
            port: 10250,
            events: crate::events::Recorder::spawn(client),
        }))
    }

    #[tokio::test]
    async fn workers_keep_pods_without_managed_fields() {
        let m = manager();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:containers": {}}}}
            ]},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox"}]}
        }))
        .expect("pod");
        m.upsert(pod.clone());
        let mut relabelled = pod;
        relabelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        m.upsert(relabelled);
        let pods = m.pods();
        m.abort_all();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.managed_fields, None);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("p"));
        assert_eq!(
            pods[0].metadata.labels.as_ref().and_then(|l| l.get("a")),
            Some(&"b".to_string()),
            "an update replaces the worker's pod"
        );
    }
}
