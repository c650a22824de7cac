//! Preemption end to end against a real apiserver with Node objects only. No kubelet runs, so
//! a preempted (bound) pod stays terminating after the scheduler's graceful DELETE; the tests
//! finish the deletion with grace 0, as the kubelet would once the containers stopped.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kubelite_apiserver::testing::TestServer;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

async fn get(c: &kube::Client, name: &str) -> anyhow::Result<Pod> {
    Ok(Api::<Pod>::namespaced(c.clone(), "default")
        .get(name)
        .await?)
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn nominated(p: &Pod) -> Option<String> {
    p.status
        .as_ref()
        .and_then(|s| s.nominated_node_name.clone())
}

#[tokio::test]
async fn high_priority_pod_preempts_the_cheapest_victim_and_schedules() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "n1", "1", json!({}), json!([])).await?;
    node(&c, "n2", "1", json!({}), json!([])).await?;
    // n1 holds a priority-0 pod, n2 a priority-50 one: n1's victim is the cheaper one.
    pod(
        &c,
        "low",
        "600m",
        json!({}),
        json!({"nodeName": "n1", "priority": 0}),
    )
    .await?;
    pod(
        &c,
        "mid",
        "600m",
        json!({}),
        json!({"nodeName": "n2", "priority": 50}),
    )
    .await?;
    let _sched = start(c.clone(), config());
    pod(&c, "high", "600m", json!({}), json!({"priority": 100})).await?;

    let high = eventually(T, "high nominated", || async {
        let p = get(&c, "high").await?;
        Ok(nominated(&p).is_some().then_some(p))
    })
    .await?;
    assert_eq!(nominated(&high).as_deref(), Some("n1"));
    let low = eventually(T, "low terminating", || async {
        let p = get(&c, "low").await?;
        Ok(terminating(&p).then_some(p))
    })
    .await?;
    // Graceful: the bound victim waits for its kubelet with the pod's 30 s grace period.
    assert_eq!(low.metadata.deletion_grace_period_seconds, Some(30));
    let disruption = low
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .map(|c| (c.status, c.reason.unwrap_or_default()));
    assert_eq!(
        disruption,
        Some(("True".into(), "PreemptionByScheduler".into()))
    );
    let high_uid = high.metadata.uid.clone().unwrap_or_default();
    let evs = eventually(T, "Preempted event", || async {
        let evs = events_for(&c, "low").await?;
        Ok(evs.iter().any(|e| e.1 == "Preempted").then_some(evs))
    })
    .await?;
    assert!(
        evs.contains(&(
            "Normal".into(),
            "Preempted".into(),
            format!("Preempted by pod {high_uid} on node n1")
        )),
        "{evs:?}"
    );
    assert!(!terminating(&get(&c, "mid").await?), "mid must survive");
    // While the victim terminates the preemptor waits (its room is not free yet).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node_of(&c, "high").await?, None);

    // The "kubelet" finishes the deletion; the preemptor lands on its nominated node.
    Api::<Pod>::namespaced(c.clone(), "default")
        .delete("low", &DeleteParams::default().grace_period(0))
        .await?;
    assert_eq!(bound(&c, "high", T).await?, "n1");
    assert_eq!(node_of(&c, "mid").await?.as_deref(), Some("n2"));
    Ok(())
}

#[tokio::test]
async fn lower_or_equal_priority_and_policy_never_do_not_preempt() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "n1", "1", json!({}), json!([])).await?;
    pod(
        &c,
        "busy",
        "800m",
        json!({}),
        json!({"nodeName": "n1", "priority": 10}),
    )
    .await?;
    let _sched = start(c.clone(), config());
    pod(
        &c,
        "polite",
        "500m",
        json!({}),
        json!({"priority": 100, "preemptionPolicy": "Never"}),
    )
    .await?;
    pod(&c, "peer", "500m", json!({}), json!({"priority": 10})).await?;

    let polite = eventually(T, "polite unschedulable", || async {
        Ok(scheduled_condition(&c, "polite")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(
        polite.2,
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: not eligible due to preemptionPolicy=Never."
    );
    let peer = eventually(T, "peer unschedulable", || async {
        Ok(scheduled_condition(&c, "peer")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(
        peer.2,
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    let busy = get(&c, "busy").await?;
    assert!(!terminating(&busy));
    assert_eq!(nominated(&get(&c, "polite").await?), None);
    Ok(())
}
