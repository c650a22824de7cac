//! End-to-end scheduling against a real apiserver with Node objects only (no kubelet).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kubelite_apiserver::testing::TestServer;
use kubelite_scheduler::metrics::AttemptResult;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn spreads_pods_across_nodes_and_records_scheduled_events() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    for n in ["n1", "n2", "n3"] {
        node(&c, n, "4", json!({}), json!([])).await?;
    }
    let sched = start(c.clone(), config());
    for i in 0..6 {
        pod(&c, &format!("p{i}"), "100m", json!({}), json!({})).await?;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        *per_node
            .entry(bound(&c, &format!("p{i}"), T).await?)
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_node:?}"
    );

    let node0 = bound(&c, "p0", T).await?;
    let want = format!("Successfully assigned default/p0 to {node0}");
    let evs = eventually(T, "Scheduled event", || async {
        let evs = events_for(&c, "p0").await?;
        Ok(evs.iter().any(|e| e.1 == "Scheduled").then_some(evs))
    })
    .await?;
    assert!(
        evs.contains(&("Normal".into(), "Scheduled".into(), want)),
        "{evs:?}"
    );
    let cond = scheduled_condition(&c, "p0").await?;
    assert_eq!(cond.map(|c| c.0), Some("True".to_string()));
    assert_eq!(sched.metrics.attempts(AttemptResult::Scheduled), 6);
    Ok(())
}

#[tokio::test]
async fn resource_exhaustion_sets_unschedulable_condition_and_event() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "a", "1", json!({}), json!([])).await?;
    node(&c, "b", "1", json!({}), json!([])).await?;
    node(
        &c,
        "t",
        "4",
        json!({}),
        json!([{"key": "key", "value": "value", "effect": "NoSchedule"}]),
    )
    .await?;
    let _sched = start(c.clone(), config());
    pod(&c, "fill-a", "800m", json!({}), json!({"nodeName": "a"})).await?;
    pod(&c, "fill-b", "800m", json!({}), json!({"nodeName": "b"})).await?;
    pod(&c, "big", "500m", json!({}), json!({})).await?;

    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 Insufficient cpu. \
                preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
                2 No preemption victims found for incoming pod.";
    let cond = eventually(T, "PodScheduled=False", || async {
        Ok(scheduled_condition(&c, "big")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(cond, ("False".into(), "Unschedulable".into(), want.into()));
    let evs = eventually(T, "FailedScheduling event", || async {
        let evs = events_for(&c, "big").await?;
        Ok(evs.iter().any(|e| e.1 == "FailedScheduling").then_some(evs))
    })
    .await?;
    assert!(
        evs.contains(&("Warning".into(), "FailedScheduling".into(), want.into())),
        "{evs:?}"
    );
    assert_eq!(node_of(&c, "big").await?, None);

    // Freeing capacity (a pod deleted) retries the parked pod.
    Api::<Pod>::namespaced(c.clone(), "default")
        .delete("fill-a", &DeleteParams::default().grace_period(0))
        .await?;
    assert_eq!(bound(&c, "big", T).await?, "a");
    Ok(())
}

#[tokio::test]
async fn taints_and_tolerations() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(
        &c,
        "gpu",
        "4",
        json!({}),
        json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]),
    )
    .await?;
    node(&c, "plain", "4", json!({}), json!([])).await?;
    let _sched = start(c.clone(), config());
    let tol = json!({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
                     "nodeSelector": {"kubernetes.io/hostname": "gpu"}});
    pod(&c, "tolerant", "100m", json!({}), tol).await?;
    for i in 0..4 {
        pod(&c, &format!("plain{i}"), "100m", json!({}), json!({})).await?;
    }
    assert_eq!(bound(&c, "tolerant", T).await?, "gpu");
    for i in 0..4 {
        assert_eq!(bound(&c, &format!("plain{i}"), T).await?, "plain");
    }
    // A pod that must go to the tainted node but does not tolerate it stays pending.
    pod(
        &c,
        "intolerant",
        "100m",
        json!({}),
        json!({"nodeSelector": {"kubernetes.io/hostname": "gpu"}}),
    )
    .await?;
    let cond = eventually(T, "unschedulable", || async {
        Ok(scheduled_condition(&c, "intolerant")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(
        cond.2,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {gpu: true}. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    Ok(())
}

#[tokio::test]
async fn pod_affinity_and_anti_affinity() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    for (n, zone) in [("n1", "z1"), ("n2", "z1"), ("n3", "z2")] {
        node(&c, n, "4", json!({"zone": zone}), json!([])).await?;
    }
    let _sched = start(c.clone(), config());
    // Three replicas that refuse to share a host: one per node, the fourth pends.
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..4 {
        pod(
            &c,
            &format!("web{i}"),
            "100m",
            json!({"app": "web"}),
            anti.clone(),
        )
        .await?;
    }
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(bound(&c, &format!("web{i}"), T).await?);
    }
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2", "n3"]);
    let cond = eventually(T, "web3 unschedulable", || async {
        Ok(scheduled_condition(&c, "web3")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(
        cond.2,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );

    // A cache pod that must share a zone with db, which runs on n3 (zone z2).
    pod(
        &c,
        "db",
        "100m",
        json!({"app": "db"}),
        json!({"nodeName": "n3"}),
    )
    .await?;
    let aff = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}});
    pod(&c, "cache", "100m", json!({}), aff).await?;
    assert_eq!(bound(&c, "cache", T).await?, "n3");
    Ok(())
}

#[tokio::test]
async fn node_added_later_unblocks_pending_pod() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "small", "1", json!({}), json!([])).await?;
    let sched = start(c.clone(), config());
    pod(&c, "big", "2", json!({}), json!({})).await?;
    let cond = eventually(T, "unschedulable", || async {
        Ok(scheduled_condition(&c, "big")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(
        cond.2,
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    // Parked, not retried in a hot loop: few attempts over a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = sched.metrics.attempts(AttemptResult::Unschedulable);
    assert!((1..=3).contains(&attempts), "attempts: {attempts}");

    node(&c, "large", "4", json!({}), json!([])).await?;
    assert_eq!(bound(&c, "big", T).await?, "large");
    Ok(())
}

#[tokio::test]
async fn pods_for_other_schedulers_are_ignored() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "n1", "4", json!({}), json!([])).await?;
    let _sched = start(c.clone(), config());
    pod(
        &c,
        "other",
        "100m",
        json!({}),
        json!({"schedulerName": "someone-else"}),
    )
    .await?;
    pod(&c, "mine", "100m", json!({}), json!({})).await?;
    assert_eq!(bound(&c, "mine", T).await?, "n1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node_of(&c, "other").await?, None);
    Ok(())
}

#[tokio::test]
async fn health_and_metrics_endpoints() -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let metrics = std::sync::Arc::new(kubelite_scheduler::Metrics::default());
    metrics.attempt(AttemptResult::Scheduled);
    let app = kubelite_scheduler::router(metrics);
    let get = |path: &str| {
        axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
    };
    let res = within(T, app.clone().oneshot(get("/healthz")?)).await??;
    assert_eq!(res.status(), 200);
    let res = within(T, app.oneshot(get("/metrics")?)).await??;
    let body = res.into_body().collect().await?.to_bytes();
    let text = String::from_utf8(body.to_vec())?;
    assert!(
        text.contains("scheduler_schedule_attempts_total{result=\"scheduled\"} 1"),
        "{text}"
    );
    assert!(text.contains("scheduler_pending_pods{queue=\"unschedulable\"} 0"));
    Ok(())
}

#[tokio::test]
async fn topology_spread_do_not_schedule_balances_zones() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    for (n, zone) in [("n1", "z1"), ("n2", "z1"), ("n3", "z2")] {
        node(&c, n, "4", json!({"zone": zone}), json!([])).await?;
    }
    let _sched = start(c.clone(), config());
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "s"}}}]});
    let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
    // One at a time, so each decision sees the previous placement through the watch or the
    // assume cache either way.
    for i in 0..4 {
        pod(
            &c,
            &format!("s{i}"),
            "100m",
            json!({"app": "s"}),
            spread.clone(),
        )
        .await?;
        let n = bound(&c, &format!("s{i}"), T).await?;
        *zones
            .entry(if n == "n3" { "z2" } else { "z1" })
            .or_default() += 1;
    }
    assert_eq!(zones.get("z1"), Some(&2), "{zones:?}");
    assert_eq!(zones.get("z2"), Some(&2), "{zones:?}");
    Ok(())
}

#[tokio::test]
async fn uncordoning_a_node_unblocks_pending_pod() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Patch, PatchParams};
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "n1", "4", json!({}), json!([])).await?;
    let nodes: Api<Node> = Api::all(c.clone());
    let cordon = |on: bool| Patch::Merge(json!({"spec": {"unschedulable": on}}));
    nodes
        .patch("n1", &PatchParams::default(), &cordon(true))
        .await?;
    let _sched = start(c.clone(), config());
    pod(&c, "p", "100m", json!({}), json!({})).await?;
    let cond = eventually(T, "unschedulable", || async {
        Ok(scheduled_condition(&c, "p")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(
        cond.2,
        "0/1 nodes are available: 1 node(s) were unschedulable. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    nodes
        .patch("n1", &PatchParams::default(), &cordon(false))
        .await?;
    assert_eq!(bound(&c, "p", T).await?, "n1");
    assert_eq!(
        scheduled_condition(&c, "p").await?.map(|c| c.0),
        Some("True".into())
    );
    Ok(())
}

#[tokio::test]
async fn pod_affinity_namespace_selector_follows_namespace_labels() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PostParams;
    let server = TestServer::start().await?;
    let c = server.client();
    for n in ["n1", "n2", "n3"] {
        node(&c, n, "4", json!({}), json!([])).await?;
    }
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team-a", "labels": {"team": "a"}}}))?;
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let db: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "team-a", "labels": {"app": "db"}},
        "spec": {"nodeName": "n2", "containers": [{"name": "c", "image": "nginx"}]}}))?;
    Api::<Pod>::namespaced(c.clone(), "team-a")
        .create(&PostParams::default(), &db)
        .await?;
    let _sched = start(c.clone(), config());
    let term = |ns_sel: serde_json::Value| {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "namespaceSelector": ns_sel,
             "topologyKey": "kubernetes.io/hostname"}]}}})
    };
    // Selects team-a by its labels: lands next to db.
    pod(
        &c,
        "near",
        "100m",
        json!({}),
        term(json!({"matchLabels": {"team": "a"}})),
    )
    .await?;
    assert_eq!(bound(&c, "near", T).await?, "n2");
    // Selects a team no namespace has: pending ...
    pod(
        &c,
        "far",
        "100m",
        json!({}),
        term(json!({"matchLabels": {"team": "b"}})),
    )
    .await?;
    let cond = eventually(T, "far unschedulable", || async {
        Ok(scheduled_condition(&c, "far")
            .await?
            .filter(|c| c.0 == "False"))
    })
    .await?;
    assert!(
        cond.2
            .starts_with("0/3 nodes are available: 3 node(s) didn't match pod affinity rules."),
        "{}",
        cond.2
    );
    // ... until team-a is relabelled to match: the namespace event retries it.
    Api::<Namespace>::all(c.clone())
        .patch(
            "team-a",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"team": "b"}}})),
        )
        .await?;
    assert_eq!(bound(&c, "far", T).await?, "n2");
    Ok(())
}

#[tokio::test]
async fn scheduling_gates_hold_a_pod_until_removed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "n1", "4", json!({}), json!([])).await?;
    let sched = start(c.clone(), config());
    pod(
        &c,
        "gated",
        "100m",
        json!({}),
        json!({"schedulingGates": [{"name": "example.com/quota"}]}),
    )
    .await?;
    pod(&c, "free", "100m", json!({}), json!({})).await?;
    // The ungated pod, created after the gated one, is bound, so the gated one was seen (the
    // watch is in order) and, had it been queued, tried first; its binding would be done by
    // now.
    bound(&c, "free", T).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node_of(&c, "gated").await?, None);
    assert_eq!(sched.metrics.attempts(AttemptResult::Scheduled), 1);
    let cond = scheduled_condition(&c, "gated").await?;
    assert_eq!(
        cond.map(|(status, reason, _)| (status, reason)),
        Some(("False".to_string(), "SchedulingGated".to_string()))
    );
    // Held, not tried: no failed attempt for it.
    assert_eq!(sched.metrics.attempts(AttemptResult::Unschedulable), 0);

    // Removing the last gate makes it schedulable.
    Api::<Pod>::namespaced(c.clone(), "default")
        .patch(
            "gated",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedulingGates": null}})),
        )
        .await?;
    assert_eq!(bound(&c, "gated", T).await?, "n1");
    Ok(())
}

/// How many LISTs the API server has read from storage (`/metrics`).
async fn storage_lists(client: &kube::Client) -> anyhow::Result<u64> {
    let req = axum::http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let line = text
        .lines()
        .find(|l| l.starts_with("apiserver_storage_duration_seconds_count{operation=\"list\"}"));
    Ok(match line.and_then(|l| l.rsplit(' ').next()) {
        Some(n) => n.parse()?,
        None => 0,
    })
}

/// The informers' initial state comes from the API server's watch cache (streaming lists):
/// starting a scheduler reads nothing from storage. (With kube-runtime's default paged
/// lists, `resourceVersion=0` is dropped and every start read every pod from storage.)
#[tokio::test]
async fn initial_lists_come_from_the_watch_cache() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "n1", "4", json!({}), json!([])).await?;
    for i in 0..3 {
        pod(&c, &format!("early{i}"), "100m", json!({}), json!({})).await?;
    }
    let before = storage_lists(&c).await?;
    let _sched = start(c.clone(), config());
    for i in 0..3 {
        bound(&c, &format!("early{i}"), T).await?;
    }
    pod(&c, "late", "100m", json!({}), json!({})).await?;
    assert_eq!(bound(&c, "late", T).await?, "n1");
    assert_eq!(storage_lists(&c).await?, before);
    Ok(())
}
