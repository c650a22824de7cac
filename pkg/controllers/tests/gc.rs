//! Garbage collector against a real apiserver: Background, Foreground and Orphan deletion.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{obj, only, start, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kubelite_controllers::testing::AgentOptions;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn rs(name: &str) -> ReplicaSet {
    obj(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
}

async fn pods_of(pods: &Api<Pod>, app: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items)
}

async fn wait_pods(pods: &Api<Pod>, app: &str, n: usize) -> anyhow::Result<()> {
    wait_for(&format!("{n} pods of {app}"), T, || async {
        Ok((pods_of(pods, app).await?.len() == n).then_some(()))
    })
    .await
}

fn config() -> kubelite_controllers::Config {
    only(&["replicaset", "deployment", "garbagecollector"])
}

#[tokio::test]
async fn background_deletes_dependents() -> anyhow::Result<()> {
    let h = start(config(), AgentOptions::default()).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    rs_api.create(&PostParams::default(), &rs("bg")).await?;
    wait_pods(&pods, "bg", 2).await?;
    rs_api.delete("bg", &DeleteParams::background()).await?;
    wait_for("rs gone", T, || async {
        Ok(rs_api.get_opt("bg").await?.is_none().then_some(()))
    })
    .await?;
    wait_pods(&pods, "bg", 0).await?;
    Ok(())
}

#[tokio::test]
async fn foreground_deletes_dependents_first() -> anyhow::Result<()> {
    let h = start(config(), AgentOptions::default()).await?;
    let d_api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let d: Deployment = obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "fg", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fg"}},
                 "template": {"metadata": {"labels": {"app": "fg"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }));
    d_api.create(&PostParams::default(), &d).await?;
    wait_pods(&pods, "fg", 2).await?;
    d_api.delete("fg", &DeleteParams::foreground()).await?;
    // While dependents remain the deployment stays, marked for deletion.
    let d = d_api.get_opt("fg").await?;
    if let Some(d) = d {
        assert!(d.metadata.deletion_timestamp.is_some());
    }
    wait_for("deployment gone", T, || async {
        Ok(d_api.get_opt("fg").await?.is_none().then_some(()))
    })
    .await?;
    // Foreground: by the time the owner is gone, its dependents are gone.
    let sets = rs_api
        .list(&ListParams::default().labels("app=fg"))
        .await?
        .items;
    assert!(sets.is_empty(), "replica sets left: {}", sets.len());
    assert!(pods_of(&pods, "fg").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn orphan_keeps_dependents_without_owner() -> anyhow::Result<()> {
    let h = start(config(), AgentOptions::default()).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    rs_api.create(&PostParams::default(), &rs("orph")).await?;
    wait_pods(&pods, "orph", 2).await?;
    rs_api.delete("orph", &DeleteParams::orphan()).await?;
    wait_for("rs gone", T, || async {
        Ok(rs_api.get_opt("orph").await?.is_none().then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = pods_of(&pods, "orph").await?;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|p| p
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(|r| r.is_empty())));
    assert!(left.iter().all(|p| p.metadata.deletion_timestamp.is_none()));
    Ok(())
}

#[tokio::test]
async fn collects_any_discovered_kind_including_cluster_scoped_owners() -> anyhow::Result<()> {
    // ServiceAccount and Node owners were outside the old fixed list: discovery finds them.
    use k8s_openapi::api::core::v1::{ConfigMap, Node, ServiceAccount};
    let h = start(only(&["garbagecollector"]), AgentOptions::default()).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(h.client.clone(), "default");
    let nodes: Api<Node> = Api::all(h.client.clone());
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let sa = sas
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "owner-sa"}})),
        )
        .await?;
    let node = nodes
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "owner-node"}})),
        )
        .await?;
    let owned = |name: &str, api_version: &str, kind: &str, owner: &str, uid: &str| -> ConfigMap {
        obj(json!({"metadata": {"name": name, "ownerReferences": [
            {"apiVersion": api_version, "kind": kind, "name": owner, "uid": uid}]}}))
    };
    let sa_uid = sa.metadata.uid.unwrap();
    let node_uid = node.metadata.uid.unwrap();
    cms.create(
        &PostParams::default(),
        &owned("by-sa", "v1", "ServiceAccount", "owner-sa", &sa_uid),
    )
    .await?;
    cms.create(
        &PostParams::default(),
        &owned("by-node", "v1", "Node", "owner-node", &node_uid),
    )
    .await?;
    // An owner that never existed: the dependent is collected too.
    cms.create(
        &PostParams::default(),
        &owned("dangling", "v1", "ServiceAccount", "ghost", "no-such-uid"),
    )
    .await?;
    wait_for("dangling collected", T, || async {
        Ok(cms.get_opt("dangling").await?.is_none().then_some(()))
    })
    .await?;
    // Live owners keep their dependents.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get_opt("by-sa").await?.is_some());
    assert!(cms.get_opt("by-node").await?.is_some());
    sas.delete("owner-sa", &DeleteParams::background()).await?;
    nodes
        .delete("owner-node", &DeleteParams::background())
        .await?;
    wait_for("dependents collected", T, || async {
        let left = cms.get_opt("by-sa").await?.is_some() || cms.get_opt("by-node").await?.is_some();
        Ok((!left).then_some(()))
    })
    .await?;
    Ok(())
}
