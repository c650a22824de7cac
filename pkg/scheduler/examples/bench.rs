//! Scheduler benchmark: (1) the in-memory decision path (schedule + assume) over N nodes, and
//! (2) end to end against a real apiserver (Node objects only; pods created concurrently;
//! timed until every pod is bound).
//!
//! `cargo run --release -p kubelite-scheduler --example bench -- [--nodes 5000] [--pods 30000]
//! [--quick] [--in-memory-only]`; `--quick` is the CI smoke (100 nodes, 500 pods).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kubelite_apiserver::testing::TestServer;
use kubelite_scheduler::algorithm::{schedule, Selection};
use kubelite_scheduler::cache::Cache;
use kubelite_scheduler::framework::Framework;
use kubelite_scheduler::metrics::AttemptResult;
use kubelite_scheduler::podinfo::PodInfo;
use kubelite_scheduler::{Config, Metrics, PluginWeights};
use serde_json::json;

fn node(i: usize) -> anyhow::Result<Node> {
    let res = json!({"cpu": "32", "memory": "128Gi", "pods": "110"});
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"),
                     "labels": {"kubernetes.io/hostname": format!("node-{i}"),
                                "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"capacity": res, "allocatable": res},
    }))?)
}

fn pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "pause",
                  "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))?)
}

fn in_memory(nodes: usize, pods: usize) -> anyhow::Result<()> {
    let mut cache = Cache::default();
    for i in 0..nodes {
        cache.upsert_node(&node(i)?);
    }
    let fw = Framework::new(&PluginWeights::default());
    let mut sel = Selection::default();
    let infos: Vec<PodInfo> = (0..pods)
        .map(|i| pod(i).map(|p| PodInfo::from_pod(&p)))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    for info in infos {
        let Ok(n) = schedule(&fw, &cache, &info, 0, &mut sel) else {
            bail!("pod {} did not fit", info.key);
        };
        cache.assume(Arc::new(info), &n);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "in-memory: {pods} pods over {nodes} nodes in {secs:.3} s = {:.0} pods/s ({:.1} us/pod)",
        pods as f64 / secs,
        secs * 1e6 / pods as f64
    );
    Ok(())
}

async fn end_to_end(nodes: usize, pods: usize) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let node_api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                api.create(&PostParams::default(), &node(i)?)
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let metrics = Arc::new(Metrics::default());
    let config = Config {
        metrics: metrics.clone(),
        ..Config::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(kubelite_scheduler::run(
        client.clone(),
        config,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            async move {
                api.create(&PostParams::default(), &pod(i)?)
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let created = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while metrics.attempts(AttemptResult::Scheduled) < pods as u64 {
        if Instant::now() > deadline {
            bail!(
                "timed out: {} of {pods} bound",
                metrics.attempts(AttemptResult::Scheduled)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), sched)
        .await
        .context("scheduler stop")?;
    println!(
        "end-to-end: {pods} pods over {nodes} nodes bound in {secs:.2} s = {:.0} pods/s \
         (creating the pods alone took {:.2} s)",
        pods as f64 / secs,
        created.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| -> anyhow::Result<Option<usize>> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(Some(args.get(i + 1).context("missing value")?.parse()?)),
            None => Ok(None),
        }
    };
    let quick = args.iter().any(|a| a == "--quick");
    let nodes = flag("--nodes")?.unwrap_or(if quick { 100 } else { 5000 });
    let pods = flag("--pods")?.unwrap_or(if quick { 500 } else { 30000 });
    in_memory(nodes, pods)?;
    if args.iter().any(|a| a == "--in-memory-only") {
        return Ok(());
    }
    end_to_end(nodes, pods).await
}
