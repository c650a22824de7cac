//! Deployment controller against a real apiserver: rolling update availability, rollback,
//! Recreate, progress deadline, history limit and pause.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{obj, only, start, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubelite_controllers::testing::AgentOptions;
use serde_json::json;

const T: Duration = Duration::from_secs(30);
const REV: &str = "deployment.kubernetes.io/revision";

fn deploy(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    }))
}

fn ctrl() -> kubelite_controllers::Config {
    only(&["replicaset", "deployment"])
}

/// Waits for what `kubectl rollout status` waits for, plus the expected revision.
async fn wait_rolled_out(
    api: &Api<Deployment>,
    name: &str,
    rev: &str,
) -> anyhow::Result<Deployment> {
    wait_for(
        &format!("{name} rolled out at revision {rev}"),
        T,
        || async {
            let d = api.get(name).await?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let st = d.status.clone().unwrap_or_default();
            let progressing = st.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            });
            let done = st.observed_generation >= d.metadata.generation
                && st.updated_replicas == Some(want)
                && st.replicas == Some(want)
                && st.available_replicas == Some(want)
                && progressing
                && d.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REV))
                    .map(String::as_str)
                    == Some(rev);
            Ok(done.then_some(d))
        },
    )
    .await
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) -> anyhow::Result<()> {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

async fn owned_sets(api: &Api<ReplicaSet>, app: &str) -> anyhow::Result<Vec<ReplicaSet>> {
    Ok(api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items)
}

#[tokio::test]
async fn rolling_update_keeps_availability_and_rolls_back() -> anyhow::Result<()> {
    let h = start(ctrl(), AgentOptions::default()).await?;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    api.create(
        &PostParams::default(),
        &deploy("web", 4, "nginx:1", strategy),
    )
    .await?;
    wait_rolled_out(&api, "web", "1").await?;
    let first = owned_sets(&rs_api, "web").await?;
    assert_eq!(first.len(), 1);
    let first_name = first[0].metadata.name.clone().unwrap();
    let hash = first[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(first_name, format!("web-{hash}"));
    let p = pods.list(&ListParams::default().labels("app=web")).await?;
    assert!(p
        .items
        .iter()
        .all(|p| p.metadata.labels.as_ref().unwrap()["pod-template-hash"] == hash));

    // Watch availability continuously during the rollout.
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let max_pods = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (pods, min_ready, max_pods, stop) = (
            pods.clone(),
            min_ready.clone(),
            max_pods.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default().labels("app=web")).await {
                    let live: Vec<&Pod> = list
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .collect();
                    let ready = live
                        .iter()
                        .filter(|p| {
                            p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                        })
                        .count();
                    min_ready.fetch_min(ready as i64, Ordering::SeqCst);
                    max_pods.fetch_max(live.len() as i64, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    set_image(&api, "web", "nginx:2").await?;
    wait_rolled_out(&api, "web", "2").await?;
    stop.store(true, Ordering::SeqCst);
    monitor.await?;
    assert!(
        min_ready.load(Ordering::SeqCst) >= 3,
        "ready pods dropped to {}",
        min_ready.load(Ordering::SeqCst)
    );
    assert!(
        max_pods.load(Ordering::SeqCst) <= 5,
        "surged to {} pods",
        max_pods.load(Ordering::SeqCst)
    );
    let sets = owned_sets(&rs_api, "web").await?;
    assert_eq!(sets.len(), 2);
    let old = sets
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(first_name.as_str()))
        .unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));

    // `kubectl rollout undo`: the template goes back to the first set's; that set is reused.
    set_image(&api, "web", "nginx:1").await?;
    let d = wait_rolled_out(&api, "web", "3").await?;
    assert_eq!(d.status.unwrap().unavailable_replicas, Some(0));
    let sets = owned_sets(&rs_api, "web").await?;
    assert_eq!(sets.len(), 2);
    let reused = sets
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(first_name.as_str()))
        .unwrap();
    assert_eq!(reused.spec.as_ref().unwrap().replicas, Some(4));
    assert_eq!(reused.metadata.annotations.as_ref().unwrap()[REV], "3");

    let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
    let msgs: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
        .filter_map(|e| e.message)
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with(&format!("Scaled up replica set {first_name}"))),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("Scaled down replica set")),
        "{msgs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn recreate_never_mixes_old_and_new_pods() -> anyhow::Result<()> {
    let h = start(ctrl(), AgentOptions::default()).await?;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &deploy("rec", 3, "nginx:1", json!({"type": "Recreate"})),
    )
    .await?;
    wait_rolled_out(&api, "rec", "1").await?;
    let mixed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (pods, mixed, stop) = (pods.clone(), mixed.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default().labels("app=rec")).await {
                    let hashes: BTreeSet<String> = list
                        .items
                        .iter()
                        .filter_map(|p| {
                            p.metadata
                                .labels
                                .as_ref()?
                                .get("pod-template-hash")
                                .cloned()
                        })
                        .collect();
                    if hashes.len() > 1 {
                        mixed.store(true, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    set_image(&api, "rec", "nginx:2").await?;
    wait_rolled_out(&api, "rec", "2").await?;
    stop.store(true, Ordering::SeqCst);
    monitor.await?;
    assert!(!mixed.load(Ordering::SeqCst), "old and new pods coexisted");
    Ok(())
}

#[tokio::test]
async fn progress_deadline_exceeded() -> anyhow::Result<()> {
    let h = start(ctrl(), AgentOptions::default()).await?;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let mut d = deploy("stuck", 2, "never-ready", json!({"type": "RollingUpdate"}));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    api.create(&PostParams::default(), &d).await?;
    let d = wait_for("ProgressDeadlineExceeded", T, || async {
        let d = api.get("stuck").await?;
        let hit = d
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            });
        Ok(hit.then_some(d))
    })
    .await?;
    let st = d.status.unwrap();
    let available = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(available.status, "False");
    assert_eq!(
        available.reason.as_deref(),
        Some("MinimumReplicasUnavailable")
    );
    assert_eq!(st.unavailable_replicas, Some(2));
    Ok(())
}

#[tokio::test]
async fn history_limit_pause_and_scale() -> anyhow::Result<()> {
    let h = start(ctrl(), AgentOptions::default()).await?;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let mut d = deploy("hist", 2, "nginx:1", json!({"type": "RollingUpdate"}));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    api.create(&PostParams::default(), &d).await?;
    wait_rolled_out(&api, "hist", "1").await?;
    set_image(&api, "hist", "nginx:2").await?;
    wait_rolled_out(&api, "hist", "2").await?;
    set_image(&api, "hist", "nginx:3").await?;
    wait_rolled_out(&api, "hist", "3").await?;
    wait_for("history cleanup to one old set", T, || async {
        Ok((owned_sets(&rs_api, "hist").await?.len() == 2).then_some(()))
    })
    .await?;

    // Paused: a template change does not roll, but scaling still applies.
    let pause = Patch::Merge(json!({"spec": {"paused": true}}));
    api.patch("hist", &PatchParams::default(), &pause).await?;
    set_image(&api, "hist", "nginx:4").await?;
    let scale = Patch::Merge(json!({"spec": {"replicas": 3}}));
    api.patch("hist", &PatchParams::default(), &scale).await?;
    let d = wait_for("paused condition and scale", T, || async {
        let d = api.get("hist").await?;
        let st = d.status.clone().unwrap_or_default();
        let paused = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        Ok((paused
            && st.available_replicas == Some(3)
            && st.observed_generation == d.metadata.generation)
            .then_some(d))
    })
    .await?;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REV], "3");
    assert_eq!(owned_sets(&rs_api, "hist").await?.len(), 2);

    let resume = Patch::Merge(json!({"spec": {"paused": false}}));
    api.patch("hist", &PatchParams::default(), &resume).await?;
    wait_rolled_out(&api, "hist", "4").await?;
    Ok(())
}
