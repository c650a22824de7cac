//! The idempotent sync of one pod: volumes, sandbox, init and app containers, status, and
//! graceful termination.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde_json::json;
use tracing::{info, warn};

use crate::containers::{sync_one, PodContext};
use crate::runtime::{ContainerInfo, RunState};
use crate::status::{self, Observed};
use crate::volumes::PodVolumes;
use crate::{spec, Kubelet, LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_NODE, LABEL_POD_UID, SANDBOX};

/// The worker owner lives in `workers`; the API server module still finds it here.
pub(crate) use crate::workers::PodManager;

/// How often configMap/secret/downwardAPI volumes are re-projected, so updates reach pods.
const VOLUME_RESYNC: Duration = Duration::from_secs(10);
/// The least time between two FailedMount events of one pod.
const MOUNT_EVENT_EVERY: Duration = Duration::from_secs(10);

/// `namespace/name` for logs.
pub(crate) fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Per-pod memory between syncs.
#[derive(Debug, Default)]
pub(crate) struct PodState {
    /// Failed pulls per image, for ErrImagePull → ImagePullBackOff.
    pub pulls: crate::images::Pulls,
    /// The restart attempt each crash-looping container last had its BackOff event for.
    pub backoff_noted: HashMap<String, i32>,
    /// Probe results per container.
    pub probes: crate::probe::Probes,
    /// Set once the pod was deleted from the API.
    finished: bool,
    /// The pod's volumes as of their last projection, and when that was.
    volumes: Option<(PodVolumes, Instant)>,
    /// When FailedMount was last recorded, to keep the event stream readable.
    mount_event: Option<Instant>,
    /// The running sandbox's id and its IP on the pod network: fixed for the sandbox's life,
    /// so a resync does not inspect it again.
    sandbox_ip: Option<(String, String)>,
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

/// The restart attempt a container was created for.
pub(crate) fn attempt(c: &ContainerInfo) -> i32 {
    c.labels
        .get(LABEL_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// Containers of one name in the pod, newest attempt last.
pub(crate) fn of(all: &[ContainerInfo], name: &str) -> Vec<ContainerInfo> {
    let mut v: Vec<ContainerInfo> = all
        .iter()
        .filter(|c| c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(name))
        .cloned()
        .collect();
    v.sort_by_key(attempt);
    v
}

/// Stops (with this grace) and removes every container of the pod, then its volumes. Running
/// containers get their preStop hook first, inside the grace period, as upstream.
pub(crate) async fn kill_pod(
    k: &Kubelet,
    pod: Option<&Pod>,
    uid: &str,
    grace: i64,
) -> Result<(), SyncError> {
    let node = &k.config.node_name;
    let all = k
        .runtime
        .list(&[(LABEL_NODE, node), (LABEL_POD_UID, uid)])
        .await?;
    let (sandboxes, apps): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|c| c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(SANDBOX));
    let pod_ip = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    // App containers first and in parallel, so each gets the full grace period; the sandbox last.
    let stops = apps
        .iter()
        .filter(|c| c.state == RunState::Running)
        .map(|c| {
            let spec_c = pod.and_then(|p| {
                let name = c.labels.get(LABEL_CONTAINER)?;
                crate::hooks::spec_container(p, name)
            });
            let pod_ip = pod_ip.clone();
            async move {
                let left = match spec_c {
                    Some(sc) => {
                        if let Some(p) = pod {
                            let msg = format!("Stopping container {}", sc.name);
                            let path = crate::events::container_path(false, &sc.name);
                            let r = crate::events::reason::KILLING;
                            crate::events::record(k, p, "Normal", r, &msg, path);
                        }
                        let (left, err) =
                            crate::hooks::pre_stop(k.runtime.as_ref(), sc, &c.id, &pod_ip, grace)
                                .await;
                        if let (Some(e), Some(p)) = (err, pod) {
                            let msg = format!("PreStopHook failed: {e}");
                            let path = crate::events::container_path(false, &sc.name);
                            crate::events::record(k, p, "Warning", "FailedPreStopHook", &msg, path);
                        }
                        left
                    }
                    None => grace,
                };
                k.runtime.stop(&c.id, left).await
            }
        });
    for r in futures::future::join_all(stops).await {
        r?;
    }
    for c in apps.iter().chain(sandboxes.iter()) {
        k.runtime.stop(&c.id, 0).await?;
        k.runtime.remove(&c.id).await?;
    }
    crate::volumes::teardown(k, pod, uid).await;
    Ok(())
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
        kill_pod(k, Some(pod), &uid, grace).await?;
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
        &r.init,
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
    pub init: Vec<Observed>,
    pub observed: Vec<Observed>,
    pub pod_ip: Option<String>,
    pub restart_policy: String,
}

/// Every container of the pod waiting with one reason (volumes not ready yet).
fn all_waiting(pod: &Pod, reason: &str) -> (Vec<Observed>, Vec<Observed>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
    let w = |c: &k8s_openapi::api::core::v1::Container, r: &str| {
        let mut o = crate::init::initializing(&c.name, c.image.as_ref());
        o.waiting = Some((r.into(), String::new()));
        o
    };
    let app_reason = if has_init { "PodInitializing" } else { reason };
    (
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| w(c, "PodInitializing"))
            .collect(),
        spec.containers.iter().map(|c| w(c, app_reason)).collect(),
    )
}

/// Projects the pod's volumes when due; `Err` is the FailedMount message.
async fn volumes(k: &Kubelet, pod: &Pod, state: &mut PodState) -> Result<PodVolumes, String> {
    if k.config.hollow {
        return Ok(PodVolumes::default());
    }
    if let Some((v, at)) = &state.volumes {
        if at.elapsed() < VOLUME_RESYNC {
            return Ok(v.clone());
        }
    }
    let (cpus, mem) = crate::node::capacity();
    let v = crate::volumes::setup(&k.client, &k.config.root_dir, pod, cpus, mem).await?;
    state.volumes = Some((v.clone(), Instant::now()));
    Ok(v)
}

/// Makes the runtime match a live (not deleted) pod: sandbox, volumes, init containers, app
/// containers, restarts with back-off. Idempotent; finds everything by labels. `None` for
/// terminal pods.
pub(crate) async fn reconcile(
    k: &Kubelet,
    pod: &Pod,
    state: &mut PodState,
) -> Result<Option<Reconciled>, SyncError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let node = k.config.node_name.clone();
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
    let policy = spec_
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    // Volumes come before the sandbox, as upstream: a pod whose volumes cannot mount stays
    // ContainerCreating with FailedMount events and no containers at all.
    let vols = match volumes(k, pod, state).await {
        Ok(v) => v,
        Err(msg) => {
            warn!(pod = %key(pod), error = %msg, "volume setup failed");
            if state
                .mount_event
                .is_none_or(|t| t.elapsed() >= MOUNT_EVENT_EVERY)
            {
                state.mount_event = Some(Instant::now());
                let text = format!("MountVolume.SetUp failed: {msg}");
                crate::events::record(k, pod, "Warning", "FailedMount", &text, None);
            }
            let (init, observed) = all_waiting(pod, "ContainerCreating");
            return Ok(Some(Reconciled {
                init,
                observed,
                pod_ip: None,
                restart_policy: policy,
            }));
        }
    };
    let host_network = spec_.host_network.unwrap_or(false);
    let mut sandbox = sandboxes.last().cloned();
    // Whether this sync changed the pod's containers, so the list above is out of date.
    let mut recreated = false;
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
        if !host_network {
            // The sandbox's veth is a new bridge port; without hairpin mode a pod cannot reach
            // itself through its Service's ClusterIP.
            if let Err(e) = k.runtime.enable_hairpin(&k.config.pod_network).await {
                tracing::debug!(error = %e, "hairpin mode not set");
            }
        }
        sandbox = Some(k.runtime.inspect(&id, None).await?);
        recreated = true;
    }
    let sandbox_id = sandbox.map(|s| s.id).unwrap_or_default();
    let pod_ip = if host_network {
        Some(k.config.node_ip.clone())
    } else {
        match &state.sandbox_ip {
            Some((id, ip)) if *id == sandbox_id => Some(ip.clone()),
            _ => {
                let ip = k
                    .runtime
                    .inspect(&sandbox_id, Some(&k.config.pod_network))
                    .await?
                    .ip;
                state.sandbox_ip = ip.clone().map(|ip| (sandbox_id.clone(), ip));
                ip
            }
        }
    };
    let common = if k.config.hollow {
        Vec::new()
    } else {
        match crate::dns::setup(k, pod, pod_ip.as_deref().unwrap_or_default()) {
            Ok(m) => m,
            Err(msg) => {
                warn!(pod = %key(pod), error = %msg, "writing resolv.conf/hosts failed");
                Vec::new()
            }
        }
    };
    let all = if recreated {
        k.runtime
            .list(&[(LABEL_NODE, &node), (LABEL_POD_UID, &uid)])
            .await?
    } else {
        all
    };
    let ctx = PodContext {
        k,
        pod,
        sandbox_id: &sandbox_id,
        pod_ip: pod_ip.as_deref().unwrap_or_default(),
        volumes: &vols,
        common: &common,
        all: &all,
    };
    let inits = crate::init::sync_inits(&ctx, &policy, state).await?;
    let mut observed = Vec::new();
    for c in &spec_.containers {
        if inits.done {
            observed.push(sync_one(&ctx, c, false, &policy, state).await?);
        } else {
            observed.push(crate::init::initializing(&c.name, c.image.as_ref()));
        }
    }
    Ok(Some(Reconciled {
        init: inits.observed,
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
        let client = kube::Client::try_from(cfg).unwrap();
        Kubelet {
            client: client.clone(),
            config: Config::new("n1"),
            runtime: std::sync::Arc::new(fake.clone()),
            port: 10250,
            events: crate::events::Recorder::spawn(client.clone()),
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
        // A steady pod costs one list: no inspections (the sandbox IP and the listed states
        // are what the last sync saw) and no changes.
        assert_eq!(
            fake.calls()[before..],
            [Call::List(vec![
                format!("{LABEL_NODE}=n1"),
                format!("{LABEL_POD_UID}=u1")
            ])],
            "second sync must only list"
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
        kill_pod(&k, None, "u1", 7).await.unwrap();
        assert!(fake.calls().contains(&Call::Stop("c2".into(), 7)));
        assert!(fake.containers().is_empty());
    }

    fn reasons(k: &Kubelet) -> Vec<(String, String)> {
        k.events.seen.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn pull_policies_pull_and_record_upstream_events() {
        let fake = FakeRuntime::with_images(&[crate::PAUSE_IMAGE]).with_registry(&["busybox"]);
        let k = kubelet(&fake);
        // Always (the default for an untagged image) pulls.
        reconcile(&k, &pod("Always"), &mut PodState::default())
            .await
            .unwrap();
        assert!(fake.calls().contains(&Call::Pull("busybox".into())));
        let got = reasons(&k);
        let want = [
            ("Pulling", "Pulling image \"busybox\""),
            ("Created", "Created container: app"),
            ("Started", "Started container app"),
        ];
        for (r, m) in want {
            assert!(got.contains(&(r.into(), m.into())), "{r} {m}: {got:?}");
        }
        assert!(got.iter().any(|(r, m)| r == "Pulled"
            && m.starts_with("Successfully pulled image \"busybox\" in ")
            && m.ends_with("Image size: 1024 bytes.")));

        // IfNotPresent with the image present: no pull, "already present".
        let fake = FakeRuntime::with_images(&[crate::PAUSE_IMAGE, "busybox:1"]);
        let k = kubelet(&fake);
        let mut p = pod("Always");
        p.spec.as_mut().unwrap().containers[0].image = Some("busybox:1".into());
        reconcile(&k, &p, &mut PodState::default()).await.unwrap();
        assert!(!fake.calls().iter().any(|c| matches!(c, Call::Pull(_))));
        assert!(reasons(&k).contains(&(
            "Pulled".into(),
            "Container image \"busybox:1\" already present on machine".into()
        )));

        // Never with the image absent: ErrImageNeverPull, no pull.
        let fake = FakeRuntime::with_images(&[crate::PAUSE_IMAGE]).with_registry(&["busybox"]);
        let k = kubelet(&fake);
        let mut p = pod("Always");
        p.spec.as_mut().unwrap().containers[0].image_pull_policy = Some("Never".into());
        let r = reconcile(&k, &p, &mut PodState::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            r.observed[0].waiting.as_ref().map(|w| w.0.as_str()),
            Some("ErrImageNeverPull")
        );
        assert!(!fake.calls().iter().any(|c| matches!(c, Call::Pull(_))));
    }
}
