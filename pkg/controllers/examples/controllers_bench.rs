//! Controller benchmark (run by `hack/bench/controllers`): a real apiserver, the controllers and
//! a FakeNodeAgent in one process. Measures a 1,000-replica Deployment becoming available, a
//! 100-replica rolling update, and Endpoints latency after pod readiness flips, against a floor
//! of creating the same pods directly with a plain client (and the agent making them ready).
//!
//! Usage: `controllers_bench [--replicas N] [--rolling N] [--flips N]`.

#![allow(clippy::unwrap_used)] // a benchmark: a panic is a failed run

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelite_apiserver::testing::TestServer;
use kubelite_controllers::testing::{AgentOptions, FakeNodeAgent, READY_ANNOTATION};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(600);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn poll<F, Fut>(what: &str, every: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !f().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
    Ok(())
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    nss.create(&PostParams::default(), &ns).await?;
    Ok(())
}

fn pod_spec() -> serde_json::Value {
    json!({"containers": [{"name": "c", "image": "kubelite/pause:latest"}]})
}

/// Floor: the same pods created directly (16 requests in flight), then until all are ready.
async fn baseline(client: &kube::Client, n: usize) -> anyhow::Result<(Duration, Duration)> {
    namespace(client, "floor").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "floor");
    let t0 = Instant::now();
    let mut made = 0;
    while made < n {
        let batch = (n - made).min(16);
        let futs = (made..made + batch).map(|i| {
            let pods = pods.clone();
            async move {
                let p: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p-{i}"), "labels": {"app": "floor"}},
                    "spec": pod_spec()
                }))?;
                pods.create(&PostParams::default(), &p).await?;
                anyhow::Ok(())
            }
        });
        for r in futures::future::join_all(futs).await {
            r?;
        }
        made += batch;
    }
    let created = t0.elapsed();
    poll("floor pods ready", Duration::from_millis(50), || async {
        let list = pods.list(&ListParams::default()).await?.items;
        Ok(list.iter().filter(|p| ready(p)).count() == n)
    })
    .await?;
    let all_ready = t0.elapsed();
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await?;
    poll("floor pods gone", Duration::from_millis(100), || async {
        Ok(pods.list(&ListParams::default()).await?.items.is_empty())
    })
    .await?;
    Ok((created, all_ready))
}

fn deployment(name: &str, replicas: usize) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec()}}
    }))
    .unwrap()
}

async fn wait_rolled_out(api: &Api<Deployment>, name: &str, n: usize) -> anyhow::Result<()> {
    let n = i32::try_from(n)?;
    poll(
        "deployment available",
        Duration::from_millis(20),
        || async {
            let d = api.get(name).await?;
            let gen = d.metadata.generation;
            let st = d.status.unwrap_or_default();
            Ok(st.observed_generation == gen
                && st.updated_replicas == Some(n)
                && st.available_replicas == Some(n)
                && st.replicas == Some(n))
        },
    )
    .await
}

async fn endpoints_latency(client: &kube::Client, flips: usize) -> anyhow::Result<Vec<Duration>> {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    deps.create(&PostParams::default(), &deployment("ep", 10))
        .await?;
    wait_rolled_out(&deps, "ep", 10).await?;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "bench");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "ep"},
        "spec": {"selector": {"app": "ep"}, "ports": [{"port": 80}]}
    }))?;
    svcs.create(&PostParams::default(), &svc).await?;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "bench");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let ready_ips = |e: &Endpoints| -> Vec<String> {
        e.subsets
            .iter()
            .flatten()
            .flat_map(|s| s.addresses.iter().flatten())
            .map(|a| a.ip.clone())
            .collect()
    };
    poll("endpoints populated", Duration::from_millis(20), || async {
        Ok(eps
            .get_opt("ep")
            .await?
            .is_some_and(|e| ready_ips(&e).len() == 10))
    })
    .await?;
    let victim = pods
        .list(&ListParams::default().labels("app=ep"))
        .await?
        .items[0]
        .clone();
    let name = victim.metadata.name.clone().unwrap();
    let ip = victim.status.and_then(|s| s.pod_ip).unwrap();
    let mut out = Vec::new();
    for i in 0..flips {
        let want_ready = i % 2 == 1;
        let value = if want_ready { "true" } else { "false" };
        let patch = json!({"metadata": {"annotations": {READY_ANNOTATION: value}}});
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // Clock starts when the pod's readiness has changed in the API (the agent's part is
        // not the controller's), and stops when Endpoints reflect it.
        poll(
            "pod readiness flipped",
            Duration::from_millis(2),
            || async { Ok(ready(&pods.get(&name).await?) == want_ready) },
        )
        .await?;
        let t0 = Instant::now();
        poll("endpoints updated", Duration::from_millis(2), || async {
            let e = eps.get("ep").await?;
            Ok(ready_ips(&e).contains(&ip) == want_ready)
        })
        .await?;
        out.push(t0.elapsed());
    }
    Ok(out)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let replicas = arg("--replicas", 1000);
    let rolling = arg("--rolling", 100);
    let flips = arg("--flips", 20);
    let server = TestServer::start().await?;
    let client = server.client();
    let agent_opts = AgentOptions {
        ready_delay: Duration::ZERO,
        tick: Duration::from_millis(20),
    };
    let nodes = ["node-1", "node-2", "node-3", "node-4"];
    let _agent = FakeNodeAgent::start(client.clone(), &nodes, agent_opts).await?;

    let (floor_created, floor_ready) = baseline(&client, replicas).await?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let c = client.clone();
    let config = kubelite_controllers::Config {
        controllers: ["replicaset", "deployment", "endpoint", "endpointslice"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    };
    let controllers = tokio::spawn(async move {
        let _ = kubelite_controllers::run(c, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    namespace(&client, "bench").await?;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "bench");

    let t0 = Instant::now();
    deps.create(&PostParams::default(), &deployment("big", replicas))
        .await?;
    wait_rolled_out(&deps, "big", replicas).await?;
    let big = t0.elapsed();
    deps.delete("big", &DeleteParams::default()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await?;

    deps.create(&PostParams::default(), &deployment("roll", rolling))
        .await?;
    wait_rolled_out(&deps, "roll", rolling).await?;
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}});
    let t0 = Instant::now();
    deps.patch("roll", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_rolled_out(&deps, "roll", rolling).await?;
    let roll = t0.elapsed();

    let mut lat = endpoints_latency(&client, flips).await?;
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;

    println!("| measurement | time | ratio to floor |");
    println!("|---|---|---|");
    println!(
        "| floor: {replicas} pods created directly (16 in flight) | {} | |",
        secs(floor_created)
    );
    println!(
        "| floor: {replicas} direct pods all ready (agent) | {} | 1.00x |",
        secs(floor_ready)
    );
    println!(
        "| Deployment {replicas} replicas fully available | {} | {:.2}x |",
        secs(big),
        big.as_secs_f64() / floor_ready.as_secs_f64()
    );
    println!(
        "| rolling update {rolling} replicas (25% surge/unavailable) | {} | {:.2}x of floor per pod |",
        secs(roll),
        (roll.as_secs_f64() / rolling as f64) / (floor_ready.as_secs_f64() / replicas as f64)
    );
    println!(
        "| Endpoints after readiness change ({} flips) | p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms | |",
        lat.len(),
        pct(50).as_secs_f64() * 1e3,
        pct(90).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
