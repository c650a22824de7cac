//! Static pods from a manifest dir (mirror pods in the API, removal when the file goes) over
//! real Docker, and the hollow runtime (no containers at all) against a real apiserver.

mod common;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use serde_json::json;

use common::{phase, ready, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_pod_runs_with_a_mirror_and_stops_when_its_file_goes() -> Result<()> {
    let manifests = tempfile::tempdir()?;
    let dir = manifests.path().to_path_buf();
    let Some(h) = Harness::start(|c| c.pod_manifest_path = Some(dir)).await? else {
        return Ok(());
    };
    let file = manifests.path().join("web.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    tier: static\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: kubelite/busybox:v1\n    command: [sleep, '3600']\n",
    )?;
    // Not a manifest: ignored.
    std::fs::write(manifests.path().join("README.txt"), "not a pod")?;
    let name = format!("web-{}", h.node);
    let p = h
        .wait_pod(&name, 60, "mirror Running", |p| {
            phase(p) == "Running" && ready(p)
        })
        .await?;
    let ann = p.metadata.annotations.clone().unwrap_or_default();
    let hash = ann
        .get("kubernetes.io/config.mirror")
        .context("mirror annotation")?;
    assert_eq!(ann.get("kubernetes.io/config.hash"), Some(hash));
    assert_eq!(
        ann.get("kubernetes.io/config.source").map(String::as_str),
        Some("file")
    );
    assert_ne!(
        p.metadata.uid.as_ref(),
        Some(hash),
        "the mirror has its own API uid"
    );
    let node: Node = Api::<Node>::all(h.client.clone()).get(&h.node).await?;
    let owner = p.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.len(), 1);
    assert_eq!((owner[0].kind.as_str(), &owner[0].name), ("Node", &h.node));
    assert_eq!(Some(&owner[0].uid), node.metadata.uid.as_ref());
    assert_eq!(
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(h.node.as_str())
    );
    // The container runs under the static pod's uid (the hash), not the mirror's.
    assert_eq!(h.exec(&name, "c", &["echo", "up"]).await?.trim(), "up");
    let listed = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=kubelite.io/pod-uid={hash}"),
        ])
        .output()?;
    assert!(!String::from_utf8_lossy(&listed.stdout).trim().is_empty());
    let table = h.kubectl(&["get", "pods", "--no-headers"]).await?;
    assert!(
        table.contains(&name) && table.contains("Running"),
        "{table}"
    );
    // A mirror deleted through the API comes back; the pod keeps running.
    let mirror_uid = p.metadata.uid.clone();
    h.pods().delete(&name, &Default::default()).await?;
    h.wait_pod(&name, 30, "mirror recreated", |p| {
        p.metadata.uid != mirror_uid
    })
    .await?;
    assert_eq!(h.exec(&name, "c", &["echo", "up"]).await?.trim(), "up");
    // Removing the file stops the pod and deletes its mirror.
    std::fs::remove_file(&file)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.pods().get_opt(&name).await?.is_some() || !h.containers().is_empty() {
        if tokio::time::Instant::now() > deadline {
            bail!("static pod not stopped: containers {:?}", h.containers());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hollow_node_reports_pods_running_without_containers() -> Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let root = tempfile::tempdir()?;
    let mut config = kubelite_kubelet::Config::new("hollow-1");
    config.listen = "127.0.0.1:0".parse()?;
    config.pod_subnet = "10.77.0.0/16".into();
    config.root_dir = root.path().to_path_buf();
    config.hollow = true;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let kubelet = tokio::spawn(kubelite_kubelet::run(client.clone(), config, async {
        let _ = rx.await;
    }));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("h{i}")},
            "spec": {"nodeName": "hollow-1", "containers": [{"name": "c", "image": "not/present:anywhere"}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ips = loop {
        let list = pods.list(&Default::default()).await?;
        let running: Vec<String> = list
            .items
            .iter()
            .filter(|p| phase(p) == "Running" && ready(p))
            .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .collect();
        if running.len() == 5 {
            break running;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("hollow pods not running: {} of 5", running.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(ips.iter().all(|ip| ip.starts_with("10.77.")), "{ips:?}");
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 5, "pod IPs must be unique");
    let node: Node = Api::<Node>::all(client.clone()).get("hollow-1").await?;
    let runtime = node
        .status
        .and_then(|s| s.node_info)
        .map(|i| i.container_runtime_version);
    assert_eq!(runtime.as_deref(), Some("hollow://1.0"));
    // Nothing was written for volumes or DNS: the root dir holds no pod dirs.
    assert!(!root.path().join("pods").exists());
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), kubelet)
        .await??
        .context("kubelet")?;
    Ok(())
}
