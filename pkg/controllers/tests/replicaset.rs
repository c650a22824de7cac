//! ReplicaSet controller against a real apiserver: scale up/down, self-healing, adoption,
//! release and status.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{obj, only, start, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelite_controllers::testing::AgentOptions;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn rs(name: &str, replicas: i32) -> ReplicaSet {
    obj(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))
}

async fn active_pods(api: &Api<Pod>, app: &str) -> anyhow::Result<Vec<Pod>> {
    let pods = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

async fn wait_ready(rs_api: &Api<ReplicaSet>, name: &str, n: i32) -> anyhow::Result<ReplicaSet> {
    wait_for(&format!("{name} to have {n} ready replicas"), T, || async {
        let rs = rs_api.get(name).await?;
        let st = rs.status.clone().unwrap_or_default();
        let ok = st.replicas == n
            && st.ready_replicas.unwrap_or(0) == n
            && st.available_replicas.unwrap_or(0) == n
            && st.observed_generation == rs.metadata.generation;
        Ok(ok.then_some(rs))
    })
    .await
}

#[tokio::test]
async fn scales_up_and_down_with_owner_refs_and_status() -> anyhow::Result<()> {
    let h = start(only(&["replicaset"]), AgentOptions::default()).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let created = rs_api.create(&PostParams::default(), &rs("web", 3)).await?;
    let uid = created.metadata.uid.clone().unwrap();

    let status = wait_ready(&rs_api, "web", 3).await?.status.unwrap();
    assert_eq!(status.fully_labeled_replicas, Some(3));
    let list = active_pods(&pods, "web").await?;
    assert_eq!(list.len(), 3);
    for p in &list {
        assert!(p.metadata.name.as_deref().unwrap().starts_with("web-"));
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.kind.as_str(), r.uid.as_str()),
            ("ReplicaSet", uid.as_str())
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
    }

    let patch = Patch::Merge(json!({"spec": {"replicas": 5}}));
    rs_api.patch("web", &PatchParams::default(), &patch).await?;
    wait_ready(&rs_api, "web", 5).await?;
    assert_eq!(active_pods(&pods, "web").await?.len(), 5);

    // Scale down: the unready pod goes first.
    let victim = active_pods(&pods, "web").await?[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let unready = Patch::Merge(json!({"metadata": {"annotations": {"fake-agent/ready": "false"}}}));
    pods.patch(&victim, &PatchParams::default(), &unready)
        .await?;
    wait_for("pod to become unready", T, || async {
        let rs = rs_api.get("web").await?;
        Ok((rs.status.unwrap_or_default().ready_replicas == Some(4)).then_some(()))
    })
    .await?;
    let patch = Patch::Merge(json!({"spec": {"replicas": 2}}));
    rs_api.patch("web", &PatchParams::default(), &patch).await?;
    wait_ready(&rs_api, "web", 2).await?;
    let left = active_pods(&pods, "web").await?;
    assert_eq!(left.len(), 2);
    assert!(left
        .iter()
        .all(|p| p.metadata.name.as_deref() != Some(victim.as_str())));

    // Events were recorded.
    let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
    let reasons = wait_for("events", T, || async {
        let ev = events.list(&ListParams::default()).await?;
        let reasons: Vec<String> = ev.items.into_iter().filter_map(|e| e.reason).collect();
        Ok((reasons.iter().any(|r| r == "SuccessfulDelete")).then_some(reasons))
    })
    .await?;
    assert!(reasons.iter().any(|r| r == "SuccessfulCreate"));
    Ok(())
}

#[tokio::test]
async fn replaces_deleted_pods() -> anyhow::Result<()> {
    let h = start(only(&["replicaset"]), AgentOptions::default()).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    rs_api
        .create(&PostParams::default(), &rs("heal", 2))
        .await?;
    wait_ready(&rs_api, "heal", 2).await?;
    let before = active_pods(&pods, "heal").await?;
    let gone = before[0].metadata.name.clone().unwrap();
    pods.delete(&gone, &DeleteParams::default()).await?;
    wait_for("a replacement pod", T, || async {
        let now = active_pods(&pods, "heal").await?;
        let replaced = now.len() == 2
            && now
                .iter()
                .all(|p| p.metadata.name.as_deref() != Some(gone.as_str()));
        Ok(replaced.then_some(()))
    })
    .await?;
    wait_ready(&rs_api, "heal", 2).await?;
    // Never over-created: exactly two active pods.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(active_pods(&pods, "heal").await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn adopts_orphans_and_releases_non_matching() -> anyhow::Result<()> {
    let h = start(only(&["replicaset"]), AgentOptions::default()).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let orphan: Pod = obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}
    }));
    pods.create(&PostParams::default(), &orphan).await?;
    let created = rs_api
        .create(&PostParams::default(), &rs("adopt", 2))
        .await?;
    wait_ready(&rs_api, "adopt", 2).await?;
    let p = pods.get("orphan").await?;
    let owner = &p.metadata.owner_references.unwrap()[0];
    assert_eq!(Some(&owner.uid), created.metadata.uid.as_ref());
    assert_eq!(active_pods(&pods, "adopt").await?.len(), 2);

    // Relabel: the pod is released and replaced.
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}}));
    pods.patch("orphan", &PatchParams::default(), &relabel)
        .await?;
    wait_for("release", T, || async {
        let p = pods.get("orphan").await?;
        Ok(p.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
            .then_some(()))
    })
    .await?;
    // The status may still count the released pod for a moment: wait for the replacement.
    wait_for("replacement", T, || async {
        Ok((active_pods(&pods, "adopt").await?.len() == 2).then_some(()))
    })
    .await?;
    wait_ready(&rs_api, "adopt", 2).await?;
    assert_eq!(active_pods(&pods, "adopt").await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn replication_controller_shares_the_logic() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ReplicationController;
    let h = start(only(&["replicationcontroller"]), AgentOptions::default()).await?;
    let rcs: Api<ReplicationController> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let rc: ReplicationController = obj(json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "legacy"},
        "spec": {"replicas": 2, "selector": {"app": "legacy"},
                 "template": {"metadata": {"labels": {"app": "legacy"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }));
    rcs.create(&PostParams::default(), &rc).await?;
    wait_for("rc ready", T, || async {
        let rc = rcs.get("legacy").await?;
        let st = rc.status.unwrap_or_default();
        Ok((st.replicas == 2 && st.ready_replicas == Some(2)).then_some(()))
    })
    .await?;
    let list = active_pods(&pods, "legacy").await?;
    assert_eq!(list.len(), 2);
    let owner = &list[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "ReplicationController");
    assert_eq!(owner.api_version, "v1");
    Ok(())
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() -> anyhow::Result<()> {
    let h = start(only(&["replicaset"]), AgentOptions::default()).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let mut set = rs("slow", 2);
    set.spec.as_mut().unwrap().min_ready_seconds = Some(2);
    rs_api.create(&PostParams::default(), &set).await?;
    let start_at = std::time::Instant::now();
    wait_for("ready but not yet available", T, || async {
        let st = rs_api.get("slow").await?.status.unwrap_or_default();
        Ok((st.ready_replicas == Some(2) && st.available_replicas == Some(0)).then_some(()))
    })
    .await?;
    wait_ready(&rs_api, "slow", 2).await?;
    assert!(start_at.elapsed() >= Duration::from_secs(2));
    Ok(())
}
