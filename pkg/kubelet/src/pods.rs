//! Pod workers: a watch of this node's pods, one task per pod, and the idempotent sync of a pod.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::runtime::{ContainerInfo, RunState};
use crate::status::{self, Observed};
use crate::{spec, Kubelet, LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_NODE, LABEL_POD_UID, SANDBOX};

/// How often a worker re-syncs without an API event (container exits are polled).
const RESYNC: Duration = Duration::from_secs(1);
const BACKOFF_START: i64 = 10;
const BACKOFF_MAX: i64 = 300;

struct Worker {
    tx: watch::Sender<Option<Pod>>,
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
            .filter_map(|w| w.tx.borrow().clone())
            .collect()
    }

    /// Stops every worker task (containers keep running).
    pub(crate) fn abort_all(&self) {
        for w in self.lock().values() {
            w.task.abort();
        }
    }

    fn upsert(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut workers = self.lock();
        if let Some(w) = workers.get(&uid) {
            w.tx.send_replace(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let task = tokio::spawn(worker(self.k.clone(), uid.clone(), rx));
        workers.insert(uid, Worker { tx, task });
    }

    fn gone(&self, uid: &str) {
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
                        .keys()
                        .filter(|u| !init.contains(*u))
                        .cloned()
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
            }
            Err(e) => warn!(error = %e, "container gc failed"),
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn worker(k: Arc<Kubelet>, uid: String, mut rx: watch::Receiver<Option<Pod>>) {
    let mut state = PodState::default();
    loop {
        let pod = rx.borrow_and_update().clone();
        match pod {
            None => {
                if let Err(e) = kill_pod(&k, &uid, 2).await {
                    warn!(pod_uid = %uid, error = %e, "cleanup of removed pod failed");
                }
                return;
            }
            Some(pod) => {
                if let Err(e) = sync_pod(&k, &pod, &mut state).await {
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

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Per-pod memory between syncs.
#[derive(Debug, Default)]
pub(crate) struct PodState {
    /// Failed image lookups per container, for ErrImagePull → ImagePullBackOff.
    pull_failures: HashMap<String, u32>,
    /// Probe results per container.
    probes: crate::probe::Probes,
    /// Set once the pod was deleted from the API.
    finished: bool,
}

/// Errors of one sync; logged and retried on the next resync.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error(transparent)]
    Runtime(#[from] crate::RuntimeError),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("pause image {0} is missing: run hack/images")]
    NoPause(String),
}

fn attempt(c: &ContainerInfo) -> i32 {
    c.labels
        .get(LABEL_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// Containers of one name in the pod, newest attempt last.
fn of(all: &[ContainerInfo], name: &str) -> Vec<ContainerInfo> {
    let mut v: Vec<ContainerInfo> = all
        .iter()
        .filter(|c| c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(name))
        .cloned()
        .collect();
    v.sort_by_key(attempt);
    v
}

/// Stops (with this grace) and removes every container of the pod.
pub(crate) async fn kill_pod(k: &Kubelet, uid: &str, grace: i64) -> Result<(), SyncError> {
    let node = &k.config.node_name;
    let all = k
        .runtime
        .list(&[(LABEL_NODE, node), (LABEL_POD_UID, uid)])
        .await?;
    let (sandboxes, apps): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|c| c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(SANDBOX));
    // App containers first and in parallel, so each gets the full grace period; the sandbox last.
    let stops = apps
        .iter()
        .filter(|c| c.state == RunState::Running)
        .map(|c| k.runtime.stop(&c.id, grace));
    for r in futures::future::join_all(stops).await {
        r?;
    }
    for c in apps.iter().chain(sandboxes.iter()) {
        k.runtime.stop(&c.id, 0).await?;
        k.runtime.remove(&c.id).await?;
    }
    Ok(())
}

fn backoff(restarts: i32) -> i64 {
    let exp = restarts.clamp(0, 10) as u32;
    (BACKOFF_START * 2i64.pow(exp)).min(BACKOFF_MAX)
}

/// Brings the runtime in line with the pod and writes its status when it changed.
pub(crate) async fn sync_pod(
    k: &Kubelet,
    pod: &Pod,
    state: &mut PodState,
) -> Result<(), SyncError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(
        k.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let name = pod.metadata.name.clone().unwrap_or_default();
    if state.finished {
        return Ok(());
    }
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        kill_pod(k, &uid, grace).await?;
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        info!(pod = %key(pod), "pod deleted");
        state.finished = true;
        return Ok(());
    }
    let old_status = pod.status.clone().unwrap_or_default();
    let Some(r) = reconcile(k, pod, state).await? else {
        return Ok(());
    };
    let new = status::pod_status(
        &old_status,
        &r.observed,
        &r.restart_policy,
        r.pod_ip.as_deref(),
        &k.config.node_ip,
    );
    if serde_json::to_value(&new).ok() != serde_json::to_value(&old_status).ok() {
        pods.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": new })),
        )
        .await?;
    }
    Ok(())
}

/// The outcome of [`reconcile`]: what each spec container looks like now.
#[derive(Debug)]
pub(crate) struct Reconciled {
    pub observed: Vec<Observed>,
    pub pod_ip: Option<String>,
    pub restart_policy: String,
}

/// Makes the runtime match a live (not deleted) pod: sandbox, app containers, restarts with
/// back-off. Idempotent; finds everything by labels. `None` for terminal pods.
pub(crate) async fn reconcile(
    k: &Kubelet,
    pod: &Pod,
    state: &mut PodState,
) -> Result<Option<Reconciled>, SyncError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let node = k.config.node_name.clone();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec_ = pod.spec.clone().unwrap_or_default();
    let old_status = pod.status.clone().unwrap_or_default();
    let phase = old_status.phase.as_deref().unwrap_or("Pending");
    let all = k
        .runtime
        .list(&[(LABEL_NODE, &node), (LABEL_POD_UID, &uid)])
        .await?;
    let sandboxes = of(&all, SANDBOX);
    if phase == "Succeeded" || phase == "Failed" {
        // Terminal pods keep their containers for logs but release the sandbox.
        for s in sandboxes.iter().filter(|s| s.state == RunState::Running) {
            k.runtime.stop(&s.id, 0).await?;
        }
        return Ok(None);
    }
    let host_network = spec_.host_network.unwrap_or(false);
    let mut sandbox = sandboxes.last().cloned();
    if sandbox
        .as_ref()
        .is_none_or(|s| s.state != RunState::Running)
    {
        // A dead sandbox takes the pod's network with it: start over with a fresh one.
        let next = sandbox.as_ref().map(|s| attempt(s) + 1).unwrap_or(0);
        for c in &all {
            k.runtime.stop(&c.id, 0).await?;
            k.runtime.remove(&c.id).await?;
        }
        if !host_network {
            // Retried here because Docker may have been down when the kubelet started.
            k.runtime
                .ensure_network(&k.config.pod_network, &k.config.pod_subnet)
                .await?;
        }
        if !k.runtime.image_present(&k.config.pause_image).await? {
            return Err(SyncError::NoPause(k.config.pause_image.clone()));
        }
        let s = spec::sandbox(
            &node,
            pod,
            &k.config.pause_image,
            &k.config.pod_network,
            next,
        );
        let id = k.runtime.create(&s).await?;
        k.runtime.start(&id).await?;
        info!(pod = %key(pod), sandbox = %id, "started sandbox");
        sandbox = Some(k.runtime.inspect(&id, None).await?);
    }
    let sandbox_id = sandbox.map(|s| s.id).unwrap_or_default();
    let pod_ip = if host_network {
        Some(k.config.node_ip.clone())
    } else {
        k.runtime
            .inspect(&sandbox_id, Some(&k.config.pod_network))
            .await?
            .ip
    };
    let policy = spec_
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let all = k
        .runtime
        .list(&[(LABEL_NODE, &node), (LABEL_POD_UID, &uid)])
        .await?;
    let mut observed = Vec::new();
    for c in &spec_.containers {
        let mut o = Observed {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mine = of(&all, &c.name);
        let latest = mine.last().cloned();
        o.previous = mine.len().checked_sub(2).and_then(|i| mine.get(i).cloned());
        o.restart_count = latest.as_ref().map(attempt).unwrap_or(0);
        let start_attempt = match &latest {
            None => Some(0),
            Some(l) => match l.state {
                RunState::Running => None,
                RunState::Created => {
                    k.runtime.start(&l.id).await?;
                    None
                }
                RunState::Exited { code, .. } => {
                    let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                    if !restart {
                        None
                    } else {
                        let finished = status::time(&l.finished_at)
                            .map(|t| t.0.as_second())
                            .unwrap_or(0);
                        let wait = backoff(attempt(l));
                        if Timestamp::now().as_second() >= finished + wait {
                            Some(attempt(l) + 1)
                        } else {
                            o.waiting = Some((
                                "CrashLoopBackOff".into(),
                                format!(
                                    "back-off {wait}s restarting failed container={} pod={}",
                                    c.name, name
                                ),
                            ));
                            None
                        }
                    }
                }
            },
        };
        if let Some(n) = start_attempt {
            let image = c.image.clone().unwrap_or_default();
            // No registry is reachable: every pull policy uses local images only.
            if !k.runtime.image_present(&image).await? {
                let failures = state.pull_failures.entry(c.name.clone()).or_insert(0);
                *failures += 1;
                let reason = if *failures <= 1 {
                    "ErrImagePull"
                } else {
                    "ImagePullBackOff"
                };
                o.waiting = Some((
                    reason.into(),
                    format!("image {image} is not present locally and cannot be pulled"),
                ));
            } else {
                state.pull_failures.remove(&c.name);
                match spec::env(
                    &k.client,
                    pod,
                    c,
                    pod_ip.as_deref().unwrap_or_default(),
                    &k.config.node_ip,
                )
                .await
                {
                    Err(msg) => o.waiting = Some(("CreateContainerConfigError".into(), msg)),
                    Ok(env) => {
                        let s = spec::app_container(&node, pod, c, n, &sandbox_id, env);
                        let id = k.runtime.create(&s).await?;
                        k.runtime.start(&id).await?;
                        info!(pod = %key(pod), container = %c.name, attempt = n, "started container");
                        // Keep only the previous attempt, for lastState and `logs --previous`.
                        for old in mine.iter().filter(|m| attempt(m) < n - 1) {
                            k.runtime.remove(&old.id).await?;
                        }
                        o.previous = latest.clone();
                        o.restart_count = n;
                        o.ready = Some(c.readiness_probe.is_none());
                        o.current = Some(k.runtime.inspect(&id, None).await?);
                        observed.push(o);
                        continue;
                    }
                }
            }
        }
        o.current = match latest {
            Some(l) => Some(k.runtime.inspect(&l.id, None).await?),
            None => None,
        };
        if let Some(cur) = o.current.as_ref().filter(|c| c.state == RunState::Running) {
            let (ready, dead) =
                crate::probe::check(k.runtime.as_ref(), &mut state.probes, c, &cur.id).await;
            o.ready = Some(ready);
            if dead {
                info!(pod = %key(pod), container = %c.name, "liveness probe failed, killing container");
                let grace = spec_.termination_grace_period_seconds.unwrap_or(30);
                k.runtime.stop(&cur.id, grace).await?;
            }
        }
        observed.push(o);
    }
    Ok(Some(Reconciled {
        observed,
        pod_ip,
        restart_policy: policy,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::{Call, FakeRuntime};
    use crate::Config;

    fn kubelet(fake: &FakeRuntime) -> Kubelet {
        // Never contacted: these pods have no configMap/secret env.
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Kubelet {
            client: kube::Client::try_from(cfg).unwrap(),
            config: Config::new("n1"),
            runtime: Arc::new(fake.clone()),
            port: 10250,
        }
    }

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1", "restartPolicy": policy, "containers": [
                {"name": "app", "image": "busybox", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}
            ]}
        }))
        .unwrap()
    }

    fn creates(calls: &[Call]) -> Vec<ContainerSpec> {
        calls
            .iter()
            .filter_map(|c| {
                if let Call::Create(s) = c {
                    Some((**s).clone())
                } else {
                    None
                }
            })
            .collect()
    }
    use crate::runtime::ContainerSpec;

    #[tokio::test]
    async fn first_sync_starts_sandbox_then_app_and_second_is_a_no_op() {
        let fake = FakeRuntime::with_images(&[crate::PAUSE_IMAGE, "busybox"]);
        let k = kubelet(&fake);
        let mut st = PodState::default();
        let r = reconcile(&k, &pod("Always"), &mut st)
            .await
            .unwrap()
            .unwrap();
        let created = creates(&fake.calls());
        assert_eq!(created.len(), 2);
        assert_eq!(
            created[0].labels.get(LABEL_CONTAINER).map(String::as_str),
            Some(SANDBOX)
        );
        assert_eq!(created[0].hostname.as_deref(), Some("p"));
        assert_eq!(created[0].network_mode.as_deref(), Some("kubelite-pods"));
        let app = &created[1];
        assert_eq!(app.network_mode.as_deref(), Some("container:c1"));
        assert_eq!(app.ipc_mode.as_deref(), Some("container:c1"));
        assert_eq!(app.memory, Some(64 * 1024 * 1024));
        assert_eq!(app.cpu_quota, Some(50_000));
        assert_eq!(r.pod_ip.as_deref(), Some("10.0.0.2"));
        let before = fake.calls().len();
        reconcile(&k, &pod("Always"), &mut st).await.unwrap();
        assert_eq!(
            fake.calls().len(),
            before,
            "second sync must not touch the runtime"
        );
    }

    #[tokio::test]
    async fn restart_policy_decides_restarts() {
        for (policy, code, restarts) in [
            ("Never", 1, false),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Always", 0, true),
        ] {
            let fake = FakeRuntime::with_images(&[crate::PAUSE_IMAGE, "busybox"]);
            let k = kubelet(&fake);
            let mut st = PodState::default();
            reconcile(&k, &pod(policy), &mut st).await.unwrap();
            // The fake's exit time lies far in the past, so any back-off has expired.
            fake.exit("c2", code);
            let r = reconcile(&k, &pod(policy), &mut st).await.unwrap().unwrap();
            assert_eq!(
                creates(&fake.calls()).len() == 3,
                restarts,
                "{policy} exit {code}"
            );
            assert_eq!(r.observed[0].restart_count, i32::from(restarts));
        }
    }

    #[tokio::test]
    async fn missing_image_waits_with_pull_errors() {
        let fake = FakeRuntime::with_images(&[crate::PAUSE_IMAGE]);
        let k = kubelet(&fake);
        let mut st = PodState::default();
        let r = reconcile(&k, &pod("Always"), &mut st)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            r.observed[0].waiting.as_ref().map(|w| w.0.as_str()),
            Some("ErrImagePull")
        );
        let r = reconcile(&k, &pod("Always"), &mut st)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            r.observed[0].waiting.as_ref().map(|w| w.0.as_str()),
            Some("ImagePullBackOff")
        );
    }

    #[tokio::test]
    async fn missing_pause_image_names_hack_images() {
        let fake = FakeRuntime::with_images(&["busybox"]);
        let err = reconcile(&kubelet(&fake), &pod("Always"), &mut PodState::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("hack/images"), "{err}");
    }

    #[tokio::test]
    async fn kill_pod_stops_apps_with_grace_then_removes_everything() {
        let fake = FakeRuntime::with_images(&[crate::PAUSE_IMAGE, "busybox"]);
        let k = kubelet(&fake);
        reconcile(&k, &pod("Always"), &mut PodState::default())
            .await
            .unwrap();
        kill_pod(&k, "u1", 7).await.unwrap();
        assert!(fake.calls().contains(&Call::Stop("c2".into(), 7)));
        assert!(fake.containers().is_empty());
    }
}
