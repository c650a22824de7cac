//! Restarting `kubelite up` on the same data dir brings back the same cluster: the objects
//! (same uids), the running pod adopted without a restart (same container ids, restartCount
//! 0) and exactly one Node. The first run is stopped as Ctrl-C stops it (not `kubelite down`),
//! so its containers keep running in between.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{wait_for_file, wait_until, Cleanup, Unique};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::Api;

/// A kube client for the cluster `up` wrote into `kubeconfig`.
async fn client(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The pod's first container id and restart count, once it is Running.
fn running_container(pod: &Pod) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let c = status.container_statuses.as_ref()?.first()?;
    Some((c.container_id.clone()?, c.restart_count))
}

type Stop = tokio::sync::oneshot::Sender<()>;
type Running = tokio::task::JoinHandle<kubelite_cluster::Result<()>>;

/// Starts `up` and waits until it has written the kubeconfig (node Ready).
async fn start(config: &kubelite_cluster::UpConfig) -> Result<(Stop, Running, kube::Client)> {
    let _ = std::fs::remove_file(&config.kubeconfig);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let up = tokio::spawn(kubelite_cluster::up(config.clone(), async move {
        let _ = stop_rx.await;
    }));
    wait_for_file(&config.kubeconfig, Duration::from_secs(60)).await?;
    let client = client(&config.kubeconfig).await?;
    Ok((stop_tx, up, client))
}

/// Stops `up` the way Ctrl-C does and waits for it to finish.
async fn stop(stop_tx: Stop, up: Running) -> Result<()> {
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(60), up)
        .await
        .context("kubelite up did not stop")???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_on_the_same_data_dir_adopts_the_running_pod() -> Result<()> {
    if !kubelite_cluster::can_run_cluster() {
        eprintln!("SKIP: needs root and a running Docker");
        return Ok(());
    }
    common::build_images()?;
    let names = Unique::new("restart");
    let dir = tempfile::tempdir()?;
    // No proxy: nothing here routes Services, and it keeps iptables out of this test.
    let config = names.up_config(dir.path(), 0, false)?;
    let _cleanup = Cleanup {
        node: names.node.clone(),
        network: names.network.clone(),
        proxy: config.proxy_config(),
    };

    let (stop_tx, up, client) = start(&config).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "settings"},
        "data": {"greeting": "hello"},
    }))?;
    let cm = config_maps.create(&PostParams::default(), &cm).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleeper"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": names.node},
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "kubelite/busybox:v1",
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    }))?;
    let pod = pods.create(&PostParams::default(), &pod).await?;
    wait_until("the pod Running", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move { Ok(running_container(&pods.get("sleeper").await?).is_some()) }
    })
    .await?;
    let (container_id, restarts) =
        running_container(&pods.get("sleeper").await?).context("no longer running")?;
    ensure!(restarts == 0, "restartCount {restarts} before the restart");
    let docker_before = common::running_containers(&names.node);
    ensure!(
        docker_before.len() == 2,
        "sandbox + container expected: {docker_before:?}"
    );
    ensure!(
        docker_before
            .iter()
            .any(|id| container_id.ends_with(id.as_str())),
        "{container_id} not among {docker_before:?}"
    );

    // Stop as Ctrl-C does: the containers keep running while the cluster is down.
    stop(stop_tx, up).await?;
    ensure!(
        common::running_containers(&names.node) == docker_before,
        "containers changed while the cluster was stopped"
    );

    let (stop_tx, up, client) = start(&config).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm_after = config_maps.get("settings").await?;
    ensure!(
        cm_after.metadata.uid == cm.metadata.uid,
        "ConfigMap recreated"
    );
    ensure!(
        cm_after.data == cm.data,
        "ConfigMap data changed: {:?}",
        cm_after.data
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let node_names: Vec<_> = nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    ensure!(
        node_names == [names.node.clone()],
        "exactly one Node expected: {node_names:?}"
    );
    // The new kubelet syncs the adopted pod: it stays Running, on the same containers, and
    // nothing is started again (watched for a while, since a restart would come
    // asynchronously).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let now = pods.get("sleeper").await?;
        ensure!(now.metadata.uid == pod.metadata.uid, "Pod recreated");
        let current = running_container(&now).context("pod no longer Running")?;
        ensure!(
            current == (container_id.clone(), 0),
            "container replaced or restarted: {current:?}, was {container_id}"
        );
        ensure!(
            common::running_containers(&names.node) == docker_before,
            "containers changed after the restart: {:?} vs {docker_before:?}",
            common::running_containers(&names.node)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = common::containers(&names.node);
    ensure!(
        all.len() == docker_before.len(),
        "new containers were created: {all:?}"
    );

    // Then `down` removes everything.
    stop(stop_tx, up).await?;
    let bridge = common::network_bridge(&names.network).context("the pod network's bridge")?;
    // What `kubelite down --data-dir` alone uses: the record `up` left there.
    let down = kubelite_cluster::down::DownConfig::recorded(&config.data_dir)
        .context("up recorded what it created")?;
    ensure!(
        down.node_names == config.node_names()
            && down.pod_network.as_deref() == Some(names.network.as_str())
            && down.proxy.chain_prefix == names.chain_prefix,
        "recorded {down:?}"
    );
    kubelite_cluster::down::down(&down).await?;
    common::assert_clean(&names.node, &names.network, &bridge, &config.proxy_config())
}
