//! The dev cluster end to end, as a user drives it: `kubelite up` on a temp data dir (its own
//! pod network, iptables prefix and interface), the examples applied with the real kubectl,
//! traffic through a NodePort (proxy), between pods by Service name (cluster DNS + proxy) and
//! through `kubectl port-forward`, logs, exec, self-healing, scaling, a Job, namespace
//! deletion; then shutdown, `kubelite down`'s cleanup and a leak check.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{http_get, root, wait_until, Cleanup, Kubectl, Unique};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_cluster_runs_the_examples_and_cleans_up() -> Result<()> {
    if !common::can_run() {
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
    let k = Kubectl { kubeconfig };
    let nodes = k.ok(&["get", "nodes", "-o", "name"]).await?;
    ensure!(nodes.contains(&format!("node/{node}")), "{nodes}");
    ensure!(nodes.contains(&format!("node/{node}-hollow-0")), "{nodes}");
    let svc = k
        .ok(&[
            "-n",
            "kube-system",
            "get",
            "svc",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await?;
    ensure!(svc == "10.96.0.10", "{svc}");

    // friendlyhello: web + redis, with a NodePort of our own, pinned to the real node (the
    // hollow one runs nothing).
    let node_port = 30000 + rand::random::<u16>() % 2700;
    let yaml = std::fs::read_to_string(root().join("manifests/examples/friendlyhello.yaml"))?
        .replace("nodePort: 30080", &format!("nodePort: {node_port}"))
        .replace(
            "      containers:\n",
            &format!("      nodeSelector: {{kubernetes.io/hostname: {node}}}\n      containers:\n"),
        );
    k.apply(&yaml).await?;
    k.ok(&["rollout", "status", "deployment/redis", "--timeout=120s"])
        .await?;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=120s"])
        .await?;

    // Through the NodePort on 127.0.0.1: proxy to a web pod, which reaches redis by name
    // (cluster DNS → ClusterIP → proxy).
    let url = format!("http://127.0.0.1:{node_port}/");
    wait_until(
        "a counted visit through the NodePort",
        Duration::from_secs(90),
        || {
            let url = url.clone();
            async move {
                let body = http_get(&url).await?;
                Ok(body.contains("Hello kubelite!")
                    && body.contains("<b>Visits:</b> ")
                    && !body.contains("cannot connect"))
            }
        },
    )
    .await?;
    let first = http_get(&url).await?;
    let second = http_get(&url).await?;
    let visits =
        |b: &str| -> Option<u64> { b.rsplit("<b>Visits:</b> ").next()?.trim().parse().ok() };
    ensure!(visits(&second) > visits(&first), "{first} / {second}");

    // kubectl port-forward to the deployment.
    let mut pf = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .args([
            "--context",
            "kubelite",
            "port-forward",
            "deployment/web",
            ":80",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = pf.stdout.take().context("port-forward stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("port-forward did not start")??
        .context("port-forward exited")?;
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .context(line.clone())?;
    let body = http_get(&format!("http://127.0.0.1:{port}/")).await?;
    ensure!(body.contains("Hello kubelite!"), "{body}");
    let _ = pf.kill().await;

    // logs and exec.
    let logs = k.ok(&["logs", "deployment/redis"]).await?;
    ensure!(logs.contains("Ready to accept connections"), "{logs}");
    let out = k
        .ok(&[
            "exec",
            "deployment/web",
            "--",
            "nslookup",
            "redis.default.svc.cluster.local",
        ])
        .await?;
    ensure!(out.contains("10.9") || out.contains("10.1"), "{out}");

    // Self-healing: a deleted pod is replaced; scaling down.
    let pods = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .await?;
    k.ok(&["delete", "pod", &pods, "--wait=false"]).await?;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=120s"])
        .await?;
    wait_until(
        "3 ready web pods again",
        Duration::from_secs(60),
        || async {
            let r = k
                .ok(&[
                    "get",
                    "deployment",
                    "web",
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                ])
                .await?;
            Ok(r == "3")
        },
    )
    .await?;
    k.ok(&["scale", "deployment/web", "--replicas=1"]).await?;
    wait_until("1 web pod", Duration::from_secs(60), || async {
        let r = k
            .ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .await?;
        Ok(r.lines().count() == 1)
    })
    .await?;

    // A Job runs to completion.
    let job = std::fs::read_to_string(root().join("manifests/examples/job.yaml"))?.replace(
        "      restartPolicy: Never\n",
        &format!(
            "      restartPolicy: Never\n      nodeSelector: {{kubernetes.io/hostname: {node}}}\n"
        ),
    );
    k.apply(&job).await?;
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/countdown",
        "--timeout=120s",
    ])
    .await?;
    let logs = k.ok(&["logs", "job/countdown"]).await?;
    ensure!(logs.contains("liftoff"), "{logs}");

    // Deleting a namespace deletes what is in it.
    k.ok(&["create", "namespace", "scratch"]).await?;
    k.ok(&[
        "-n",
        "scratch",
        "create",
        "configmap",
        "c",
        "--from-literal=a=b",
    ])
    .await?;
    k.ok(&["delete", "namespace", "scratch", "--timeout=60s"])
        .await?;
    let (exists, _, _) = k.run(&["get", "namespace", "scratch"], None).await?;
    ensure!(!exists, "namespace scratch still there");

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
