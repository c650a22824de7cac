//! Endpoints and EndpointSlice controllers against a real apiserver.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{obj, only, start, wait_for};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelite_controllers::testing::AgentOptions;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn pod(name: &str, port: i32) -> Pod {
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "ep"}},
        "spec": {"containers": [{"name": "c", "image": "nginx",
                                 "ports": [{"name": "http", "containerPort": port}]}]}
    }))
}

/// (ready IPs, not-ready IPs, ports) per subset, sorted.
fn summary(ep: &Endpoints) -> Vec<(usize, usize, Vec<i32>)> {
    let mut out: Vec<_> = ep
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            (
                s.addresses.as_ref().map_or(0, |a| a.len()),
                s.not_ready_addresses.as_ref().map_or(0, |a| a.len()),
                s.ports
                    .iter()
                    .flatten()
                    .map(|p| p.port)
                    .collect::<Vec<i32>>(),
            )
        })
        .collect();
    out.sort_by_key(|s| s.2.clone());
    out
}

#[tokio::test]
async fn endpoints_and_slices_follow_pods_and_readiness() -> anyhow::Result<()> {
    let h = start(
        only(&["endpoint", "endpointslice"]),
        AgentOptions::default(),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(h.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(h.client.clone(), "default");
    let svc: Service = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ep", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "ep"},
                 "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}
    }));
    svcs.create(&PostParams::default(), &svc).await?;
    pods.create(&PostParams::default(), &pod("a", 8080)).await?;
    pods.create(&PostParams::default(), &pod("b", 9090)).await?;

    let ep = wait_for("two ready addresses", T, || async {
        let ep = match eps.get_opt("ep").await? {
            Some(ep) => ep,
            None => return Ok(None),
        };
        Ok((summary(&ep) == vec![(1, 0, vec![8080]), (1, 0, vec![9090])]).then_some(ep))
    })
    .await?;
    let addr = &ep.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
    assert!(addr.node_name.is_some());
    let target = addr.target_ref.as_ref().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(ep.metadata.labels.as_ref().unwrap()["team"], "a");

    // Slices: one per port set, labelled, both endpoints ready.
    let lp = ListParams::default().labels("kubernetes.io/service-name=ep");
    wait_for("two slices", T, || async {
        let list = slices.list(&lp).await?.items;
        let ok = list.len() == 2
            && list.iter().all(|s| {
                s.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"]
                    == "endpointslice-controller.k8s.io"
                    && s.endpoints.len() == 1
                    && s.endpoints[0].conditions.as_ref().unwrap().ready == Some(true)
            });
        Ok(ok.then_some(()))
    })
    .await?;

    // Readiness flips: a moves to notReadyAddresses and its slice endpoint goes unready.
    let unready = Patch::Merge(json!({"metadata": {"annotations": {"fake-agent/ready": "false"}}}));
    pods.patch("a", &PatchParams::default(), &unready).await?;
    wait_for("a not ready in endpoints", T, || async {
        let ep = eps.get("ep").await?;
        Ok((summary(&ep) == vec![(0, 1, vec![8080]), (1, 0, vec![9090])]).then_some(()))
    })
    .await?;
    wait_for("a not ready in slice", T, || async {
        let list = slices.list(&lp).await?.items;
        let a = list
            .iter()
            .flat_map(|s| &s.endpoints)
            .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some("a"));
        Ok(
            a.filter(|e| e.conditions.as_ref().unwrap().ready == Some(false))
                .map(|_| ()),
        )
    })
    .await?;

    // Pod deleted: it leaves the endpoints.
    pods.delete("b", &DeleteParams::default()).await?;
    wait_for("b removed", T, || async {
        let ep = eps.get("ep").await?;
        Ok((summary(&ep) == vec![(0, 1, vec![8080])]).then_some(()))
    })
    .await?;

    // Service deleted: its endpoints go too.
    svcs.delete("ep", &DeleteParams::default()).await?;
    wait_for("endpoints deleted", T, || async {
        Ok(eps.get_opt("ep").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn headless_publish_not_ready() -> anyhow::Result<()> {
    let h = start(
        only(&["endpoint", "endpointslice"]),
        AgentOptions::default(),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(h.client.clone(), "default");
    let svc: Service = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hl"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "ep"}}
    }));
    svcs.create(&PostParams::default(), &svc).await?;
    let mut p = pod("x", 80);
    p.metadata.annotations = Some([("fake-agent/ready".to_string(), "false".to_string())].into());
    pods.create(&PostParams::default(), &p).await?;
    let ep = wait_for("not-ready pod published as ready", T, || async {
        let Some(ep) = eps.get_opt("hl").await? else {
            return Ok(None);
        };
        Ok((summary(&ep) == vec![(1, 0, vec![])]).then_some(ep))
    })
    .await?;
    assert!(ep
        .metadata
        .labels
        .unwrap()
        .contains_key("service.kubernetes.io/headless"));
    // The pod really is not ready.
    let pod = pods.get("x").await?;
    assert!(!pod
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));
    // The apiserver-managed `kubernetes` service is left alone.
    let k = eps.get_opt("kubernetes").await?;
    assert!(k.is_none_or(|e| !e
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key("service.kubernetes.io/headless")));
    Ok(())
}

#[tokio::test]
async fn slices_hold_at_most_100_endpoints_each() -> anyhow::Result<()> {
    let h = start(only(&["endpointslice"]), AgentOptions::default()).await?;
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(h.client.clone(), "default");
    let svc: Service = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "many"},
        "spec": {"selector": {"app": "ep"}, "ports": [{"port": 80}]}
    }));
    svcs.create(&PostParams::default(), &svc).await?;
    let n = 250;
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let creates = chunk.iter().map(|i| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod(&format!("p{i}"), 80))
                    .await
            }
        });
        for r in futures::future::join_all(creates).await {
            r?;
        }
    }
    let lp = ListParams::default().labels("kubernetes.io/service-name=many");
    // (slice sizes, ready endpoint names) once every pod is in, ready, exactly once.
    let settled = |want: usize| {
        let (slices, lp) = (slices.clone(), lp.clone());
        async move {
            let list = slices.list(&lp).await?.items;
            let sizes: Vec<usize> = list.iter().map(|s| s.endpoints.len()).collect();
            let mut names: Vec<String> = list
                .iter()
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone()))
                .collect();
            names.sort();
            names.dedup();
            let total: usize = sizes.iter().sum();
            anyhow::Ok((total == want && names.len() == want).then_some(sizes))
        }
    };
    let sizes = wait_for("250 ready endpoints", T, || settled(n)).await?;
    assert!(sizes.iter().all(|s| *s <= 100), "{sizes:?}");
    assert!(sizes.len() >= 3, "{sizes:?}");

    // A deleted pod leaves exactly one slice; the others keep their resourceVersion.
    let before: Vec<_> = slices
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|s| (s.metadata.name, s.metadata.resource_version))
        .collect();
    pods.delete("p7", &DeleteParams::default()).await?;
    wait_for("249 endpoints", T, || settled(n - 1)).await?;
    let after = slices.list(&lp).await?.items;
    let rewritten = after
        .iter()
        .filter(|s| {
            !before.contains(&(s.metadata.name.clone(), s.metadata.resource_version.clone()))
        })
        .count();
    assert_eq!(rewritten, 1);
    Ok(())
}
