//! `bench-kubelet`: pod start latency and throughput of one kubelet over real Docker, against an
//! in-process API server on the embedded store, with the Docker API itself as the floor, in one
//! run:
//! - baseline: the same pause + busybox container pairs created and started directly through
//!   the Docker API (what the kubelet does per pod, without any API server or sync loop), one by
//!   one (p50/p99 per pair) and all at once (pairs/s);
//! - kubelet, one by one: each pod created already bound (`spec.nodeName`), timed from the create
//!   call to `phase: Running` as seen by a watch, before the next pod is created;
//! - kubelet, batch: all pods created at once; p50/p99 of the same latency and pods/s;
//! - the kubelet's resident memory (VmRSS) with `--density` pods running.
//!
//! The kubelet runs as a child process, so its RSS is its own: by default this binary
//! re-executed with `kubelet-child`; with `--kubelet-bin` the shipped `kubelite-kubelet` binary,
//! whose RSS is what a node pays (this binary's text also holds the API server, and its runtime
//! and allocator are not the kubelet's). Prints one markdown table. `--quick` is a smoke run.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use kubelite_kubelet::docker::DockerRuntime;
use kubelite_kubelet::runtime::{ContainerSpec, Runtime};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Kubelet pod start latency and throughput vs the Docker API, and its RSS")]
struct Args {
    /// Smoke run: 10 pods, 20 for the memory figure.
    #[arg(long)]
    quick: bool,
    /// Pods in the one-by-one and the batch runs.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Running pods for the resident memory figure.
    #[arg(long, default_value_t = 100)]
    density: usize,
    /// Run this kubelet binary (e.g. `target/release/kubelite-kubelet`, built with
    /// `cargo build --release -p kubelite-kubelet-bin`) instead of the kubelet built into this
    /// benchmark, so the RSS figure is the shipped binary's.
    #[arg(long)]
    kubelet_bin: Option<std::path::PathBuf>,
    #[command(subcommand)]
    child: Option<Child_>,
}

#[derive(Subcommand, Debug)]
enum Child_ {
    /// Internal: run the kubelet under test (started by the benchmark itself).
    #[command(hide = true)]
    KubeletChild {
        #[arg(long)]
        kubeconfig: std::path::PathBuf,
        #[arg(long)]
        node: String,
        #[arg(long)]
        network: String,
        #[arg(long)]
        subnet: String,
        #[arg(long)]
        root: std::path::PathBuf,
    },
}

const PAUSE: &str = "kubelite/pause:v1";
const BUSYBOX: &str = "kubelite/busybox:v1";

/// Removes every container labelled with one of these node names, and the network, on drop.
struct Cleanup {
    nodes: Vec<String>,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for node in &self.nodes {
            let out = Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label=kubelite.io/node={node}"))
                .output();
            let ids: Vec<String> = out
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v"])
                    .args(&ids)
                    .output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// The kubelet child process, killed on drop.
struct KubeletProcess(Child);

impl Drop for KubeletProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.child {
        Some(Child_::KubeletChild {
            kubeconfig,
            node,
            network,
            subnet,
            root,
        }) => rt.block_on(kubelet_child(kubeconfig, node, network, subnet, root)),
        None => rt.block_on(bench(args)),
    }
}

async fn kubelet_child(
    kubeconfig: std::path::PathBuf,
    node: String,
    network: String,
    subnet: String,
    root: std::path::PathBuf,
) -> anyhow::Result<()> {
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(cfg)?;
    let mut config = kubelite_kubelet::Config::new(node);
    config.listen = "127.0.0.1:0".parse()?;
    config.pod_network = network;
    config.pod_subnet = subnet;
    config.root_dir = root;
    kubelite_kubelet::run(client, config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// Creates a private bridge network on a free /24 and returns its subnet.
fn create_network(name: &str) -> anyhow::Result<String> {
    for i in 0..40u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        let subnet = format!(
            "10.{}.{}.0/24",
            120 + (nanos + i * 7) % 90,
            (nanos / 7 + i * 13) % 256
        );
        let ok = Command::new("docker")
            .args([
                "network", "create", "--driver", "bridge", "--subnet", &subnet, name,
            ])
            .output()?
            .status
            .success();
        if ok {
            return Ok(subnet);
        }
    }
    bail!("no free subnet for network {name}")
}

fn labels(node: &str, pod: &str, container: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("kubelite.io/node", node),
        ("kubelite.io/pod-name", pod),
        ("kubelite.io/container", container),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// One pause + busybox pair straight through the Docker API, as the kubelet creates them.
async fn docker_pair(
    rt: &DockerRuntime,
    node: &str,
    network: &str,
    i: usize,
) -> anyhow::Result<()> {
    let pod = format!("{node}-{i}");
    let pause = ContainerSpec {
        name: format!("{pod}-pause"),
        image: PAUSE.into(),
        labels: labels(node, &pod, "POD"),
        hostname: Some(pod.clone()),
        network_mode: Some(network.into()),
        ipc_mode: Some("shareable".into()),
        ..Default::default()
    };
    let id = rt.create(&pause).await?;
    rt.start(&id).await?;
    let app = ContainerSpec {
        name: format!("{pod}-app"),
        image: BUSYBOX.into(),
        entrypoint: Some(vec!["sleep".into(), "3600".into()]),
        labels: labels(node, &pod, "app"),
        network_mode: Some(format!("container:{id}")),
        ipc_mode: Some(format!("container:{id}")),
        ..Default::default()
    };
    let app_id = rt.create(&app).await?;
    rt.start(&app_id).await?;
    Ok(())
}

async fn remove_node_containers(rt: &DockerRuntime, node: &str) -> anyhow::Result<()> {
    let all = rt.list(&[("kubelite.io/node", node)]).await?;
    futures::future::try_join_all(all.iter().map(|c| rt.remove(&c.id))).await?;
    Ok(())
}

/// Watches the run's pods and records when each is first seen Running.
fn watch_running(pods: Api<Pod>, run: &str) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let out = seen.clone();
    let cfg = watcher::Config::default().labels(&format!("bench={run}"));
    tokio::spawn(async move {
        let mut stream = watcher(pods, cfg).boxed();
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            let p = match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running {
                let name = p.metadata.name.unwrap_or_default();
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name)
                    .or_insert(now);
            }
        }
    });
    out
}

fn pod_body(name: &str, node: &str, run: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"bench": run}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app", "image": BUSYBOX,
                // The image is local (hack/images): no registry round trip in the timing.
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"]
            }]
        }
    }))?)
}

async fn wait_running(
    seen: &Arc<Mutex<HashMap<String, Instant>>>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(*t);
        }
        if Instant::now() > deadline {
            bail!("pod {name} not Running within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Deletes the run's pods and waits until the kubelet removed them from the API.
async fn delete_all(pods: &Api<Pod>, run: &str) -> anyhow::Result<()> {
    let lp = ListParams::default().labels(&format!("bench={run}"));
    pods.delete_collection(&DeleteParams::default().grace_period(0), &lp)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods.list(&lp).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("pods of {run} were not deleted within 120s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS missing")
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let (n, density) = if args.quick {
        (10, 20)
    } else {
        (args.pods, args.density)
    };
    let id = format!("{}", std::process::id());
    let node = format!("bench-kubelet-{id}");
    let base_node = format!("bench-docker-{id}");
    let network = format!("kubelite-bench-{id}");
    let subnet = create_network(&network)?;
    let _cleanup = Cleanup {
        nodes: vec![node.clone(), base_node.clone()],
        network: network.clone(),
    };
    let docker = DockerRuntime::connect()?;
    for image in [PAUSE, BUSYBOX] {
        if !docker.image_present(image).await? {
            bail!("{image} is missing: run hack/images");
        }
    }

    // Baseline: the Docker API alone.
    let mut base_one = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        docker_pair(&docker, &base_node, &network, i).await?;
        base_one.push(t.elapsed());
    }
    remove_node_containers(&docker, &base_node).await?;
    let t = Instant::now();
    futures::future::try_join_all(
        (0..n).map(|i| docker_pair(&docker, &base_node, &network, n + i)),
    )
    .await?;
    let base_batch = t.elapsed();
    remove_node_containers(&docker, &base_node).await?;

    // The kubelet, as its own process.
    let server = TestServer::start().await?;
    let client = server.client();
    let root = tempfile::tempdir()?;
    let mut cmd = match &args.kubelet_bin {
        // The shipped binary's own flags; port 0 picks a free kubelet API port.
        Some(bin) => {
            let mut c = Command::new(bin);
            c.arg("--kubeconfig")
                .arg(server.kubeconfig_path())
                .args(["--node-name", &node, "--node-ip", "127.0.0.1"])
                .args(["--port", "0"])
                .args(["--pod-network", &network, "--pod-subnet", &subnet])
                .arg("--root-dir")
                .arg(root.path());
            c
        }
        None => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("kubelet-child")
                .arg("--kubeconfig")
                .arg(server.kubeconfig_path())
                .args(["--node", &node, "--network", &network, "--subnet", &subnet])
                .arg("--root")
                .arg(root.path());
            c
        }
    };
    let child = cmd
        .env("RUST_LOG", "warn")
        .spawn()
        .context("starting the kubelet child")?;
    let kubelet = KubeletProcess(child);
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.get_opt(&node).await?.is_none() {
        if Instant::now() > deadline {
            bail!("the kubelet did not register node {node}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let timeout = Duration::from_secs(60);

    let run = "serial";
    let seen = watch_running(pods.clone(), run);
    let mut serial = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("serial-{i}");
        let body = pod_body(&name, &node, run)?;
        let t = Instant::now();
        pods.create(&pp, &body).await?;
        serial.push(wait_running(&seen, &name, timeout).await? - t);
    }
    delete_all(&pods, run).await?;

    let run = "batch";
    let seen = watch_running(pods.clone(), run);
    let bodies: Vec<Pod> = (0..n)
        .map(|i| pod_body(&format!("batch-{i}"), &node, run))
        .collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    let created: Vec<Instant> = futures::future::try_join_all(bodies.iter().map(|b| {
        let pods = pods.clone();
        let pp = pp.clone();
        async move {
            let at = Instant::now();
            pods.create(&pp, b).await.map(|_| at)
        }
    }))
    .await?;
    let mut batch = Vec::with_capacity(n);
    for (i, at) in created.iter().enumerate() {
        batch.push(wait_running(&seen, &format!("batch-{i}"), timeout * 3).await? - *at);
    }
    let batch_total = t.elapsed();
    delete_all(&pods, run).await?;

    let run = "density";
    let seen = watch_running(pods.clone(), run);
    let idle_rss = rss_kib(kubelet.0.id())?;
    for chunk in (0..density).collect::<Vec<_>>().chunks(20) {
        futures::future::try_join_all(chunk.iter().map(|i| {
            let pods = pods.clone();
            let pp = pp.clone();
            let node = &node;
            async move {
                let body = pod_body(&format!("density-{i}"), node, "density")?;
                pods.create(&pp, &body).await?;
                anyhow::Ok(())
            }
        }))
        .await?;
    }
    for i in 0..density {
        wait_running(&seen, &format!("density-{i}"), timeout * 5).await?;
    }
    // Let a few resyncs pass so the figure is the steady state, not the start burst.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dense_rss = rss_kib(kubelet.0.id())?;
    delete_all(&pods, run).await?;
    drop(kubelet);

    for v in [&mut base_one, &mut serial, &mut batch] {
        v.sort();
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let base_rate = n as f64 / base_batch.as_secs_f64();
    let rate = n as f64 / batch_total.as_secs_f64();
    println!("| {n} pods, one node | kubelet | Docker API pairs (floor) | ratio |");
    println!("|---|---|---|---|");
    for (what, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (k, b) = (percentile(&serial, p), percentile(&base_one, p));
        println!(
            "| one by one, start latency {what} | {} | {} | {:.1}x |",
            ms(k),
            ms(b),
            ratio(k, b)
        );
    }
    for (what, p) in [("p50", 0.5), ("p99", 0.99)] {
        println!(
            "| batch, start latency {what} | {} | – | – |",
            ms(percentile(&batch, p))
        );
    }
    println!(
        "| batch throughput | {rate:.1} pods/s | {base_rate:.1} pairs/s | {:.2}x |",
        rate / base_rate
    );
    let which = match &args.kubelet_bin {
        Some(bin) => format!("`{}`", bin.display()),
        None => "in this binary".to_string(),
    };
    println!(
        "| kubelet RSS ({which}), idle → {density} running pods | {:.1} MiB → {:.1} MiB | – | – |",
        idle_rss as f64 / 1024.0,
        dense_rss as f64 / 1024.0
    );
    Ok(())
}
