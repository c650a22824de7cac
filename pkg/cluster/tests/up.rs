//! The dev cluster end to end, as a user drives it: `kubelite up` on a temp data dir (its own
//! pod network, iptables prefix and interface), the examples applied with the real kubectl,
//! traffic through a NodePort (proxy), between pods by Service name (cluster DNS + proxy) and
//! through `kubectl port-forward`, logs, exec, self-healing, scaling, a Job, namespace
//! deletion; then shutdown, `kubelite down`'s cleanup and a leak check.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{wait_until, Cleanup, Kubectl, Unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_cluster_runs_the_examples_and_cleans_up() -> Result<()> {
    if !kubelite_cluster::can_run_cluster() {
        eprintln!("SKIP: needs root and a running Docker");
        return Ok(());
    }
    common::build_images()?;
    let names = Unique::new("up");
    let node = names.node.clone();
    let network = names.network.clone();
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let config = names.up_config(dir.path(), 1, true)?;
    let _cleanup = Cleanup {
        node: node.clone(),
        network: network.clone(),
        proxy: config.proxy_config(),
    };
    let proxy_config = config.proxy_config();
    let config_copy = config.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let up = tokio::spawn(kubelite_cluster::up(config, async move {
        let _ = stop_rx.await;
    }));

    // The kubeconfig appears once the node is Ready.
    let started = Instant::now();
    wait_until("kubeconfig written", Duration::from_secs(60), || {
        let p = kubeconfig.clone();
        async move { Ok(p.exists()) }
    })
    .await?;
    eprintln!("cluster up in {:?}", started.elapsed());
    let k = Kubectl {
        kubeconfig,
        context: "kubelite".into(),
    };
    let nodes = k.ok(&["get", "nodes", "-o", "name"]).await?;
    ensure!(nodes.contains(&format!("node/{node}")), "{nodes}");
    ensure!(nodes.contains(&format!("node/{node}-hollow-0")), "{nodes}");
    common::run_examples(&k, &node, "10.96.0.10").await?;

    // Stop, then `down`'s cleanup: no container, network, bridge, chain or interface is left.
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(60), up)
        .await
        .context("kubelite up did not stop")???;
    let bridge = common::network_bridge(&network).context("the pod network's bridge")?;
    let down = kubelite_cluster::down::DownConfig {
        timeout: Duration::from_secs(10),
        ..kubelite_cluster::down::DownConfig::for_cluster(&config_copy)
    };
    kubelite_cluster::down::down(&down).await?;
    common::assert_clean(&node, &network, &bridge, &proxy_config)
}
