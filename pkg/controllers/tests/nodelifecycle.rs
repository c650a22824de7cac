//! Node lifecycle controller against a real apiserver: an expired lease taints the node and
//! evicts pods that do not tolerate it; a renewed lease clears the taint.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{obj, start, wait_for};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kubelite_controllers::testing::AgentOptions;
use kubelite_controllers::Config;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn pod(name: &str, toleration_seconds: Option<i64>) -> Pod {
    let tolerations = match toleration_seconds {
        Some(s) => json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                           "effect": "NoExecute", "tolerationSeconds": s}]),
        None => json!([]),
    };
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": "node-1", "tolerations": tolerations,
                 "containers": [{"name": "c", "image": "nginx"}]}
    }))
}

fn ready(p: &Pod) -> bool {
    kubelite_controllers::util::pod_is_ready(p)
}

fn node_state(n: &Node) -> (Option<String>, bool) {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    let tainted = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
        });
    (ready, tainted)
}

#[tokio::test]
async fn unreachable_node_is_tainted_and_pods_evicted() -> anyhow::Result<()> {
    let config = Config {
        controllers: vec!["nodelifecycle".into()],
        node_monitor_grace_period: Duration::from_secs(1),
        node_monitor_period: Duration::from_millis(100),
        pod_eviction_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let h = start(config, AgentOptions::default()).await?;
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let nodes: Api<Node> = Api::all(h.client.clone());
    pods.create(&PostParams::default(), &pod("evictme", Some(1)))
        .await?;
    pods.create(&PostParams::default(), &pod("tolerant", Some(3600)))
        .await?;
    wait_for("pods ready", T, || async {
        Ok(
            (ready(&pods.get("evictme").await?) && ready(&pods.get("tolerant").await?))
                .then_some(()),
        )
    })
    .await?;
    // Healthy node: not tainted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        node_state(&nodes.get("node-1").await?),
        (Some("True".into()), false)
    );

    h.agent.as_ref().unwrap().set_renew_leases(false);
    wait_for("node unknown and tainted", T, || async {
        let s = node_state(&nodes.get("node-1").await?);
        Ok((s == (Some("Unknown".into()), true)).then_some(()))
    })
    .await?;
    wait_for("pods marked not ready", T, || async {
        Ok((!ready(&pods.get("tolerant").await?)).then_some(()))
    })
    .await?;
    wait_for("intolerant pod evicted", T, || async {
        Ok(pods
            .get("evictme")
            .await?
            .metadata
            .deletion_timestamp
            .map(|_| ()))
    })
    .await?;
    assert!(pods
        .get("tolerant")
        .await?
        .metadata
        .deletion_timestamp
        .is_none());

    h.agent.as_ref().unwrap().set_renew_leases(true);
    wait_for("node recovered", T, || async {
        let s = node_state(&nodes.get("node-1").await?);
        Ok((s == (Some("True".into()), false)).then_some(()))
    })
    .await?;
    wait_for("tolerant pod ready again", T, || async {
        Ok(ready(&pods.get("tolerant").await?).then_some(()))
    })
    .await?;
    Ok(())
}
