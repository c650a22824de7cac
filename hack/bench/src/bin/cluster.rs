//! Dev-cluster benchmark: runs the real `kubelite up` as a child process and measures the time
//! from starting it to the API answering `/readyz` and to the node reporting Ready, and the
//! resident memory of the whole cluster (the sum of VmRSS over the kubelite process tree, from
//! /proc) idle, with N real pods (a Deployment of `kubelite/pause`), and with M pods on hollow
//! nodes. Every cluster gets its own data dir, pod network, chain prefix and interface, and is
//! removed with `kubelite down` (also when the run fails half way).
//!
//! Upstream distributions are not installable here, so the comparison is with the figures they
//! publish (printed at the end).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "bench-cluster",
    about = "kubelite up: start-up time and memory"
)]
struct Args {
    /// The kubelite binary to run.
    #[arg(long, default_value = "target/release/kubelite")]
    kubelite: PathBuf,
    /// Real pods (pause containers in Docker) for the second measurement.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods on hollow nodes for the third measurement (0 skips it).
    #[arg(long, default_value_t = 1000)]
    hollow_pods: usize,
    /// Hollow nodes to spread them over (each takes at most 110 pods).
    #[arg(long, default_value_t = 10)]
    hollow_nodes: usize,
    /// How long the cluster settles before each memory sample, in seconds.
    #[arg(long, default_value_t = 15)]
    settle: u64,
    /// Start-up repetitions (fresh data dir each; the median is reported).
    #[arg(long, default_value_t = 3)]
    starts: usize,
    /// A few-second smoke run: 10 pods, 100 hollow pods on 1 hollow node, 1 start, 3 s settle.
    #[arg(long)]
    quick: bool,
}

/// One `kubelite up` child and what it owns.
struct Cluster {
    kubelite: PathBuf,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    url: String,
    node: String,
    network: String,
    chain_prefix: String,
    interface: String,
    hollow_nodes: usize,
    http: reqwest::Client,
    /// Whether `down` ran (the guard runs it otherwise).
    cleaned: bool,
}

/// Start-up timings, from spawning the process.
struct Startup {
    api_ready: Duration,
    node_ready: Duration,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// Spawns `kubelite up` on a fresh data dir and waits for /readyz and the node's Ready.
    async fn start(kubelite: &Path, hollow_nodes: usize) -> Result<(Self, Startup)> {
        let tag = std::process::id() % 10_000 * 10 + rand_digit();
        let dir = tempfile::tempdir()?;
        let api_port = free_port()?;
        let kubelet_port = free_port()?;
        let node = format!("kl-bench-{tag}");
        let network = format!("kubelite-bench-{tag}");
        // A /16 outside the service CIDR (10.96.0.0/12), the default pod subnet and the /24s
        // the tests pick (10.120-209.x.0/24).
        let subnet = format!("10.{}.0.0/16", 230 + tag % 20);
        let mut cluster = Cluster {
            kubelite: kubelite.to_path_buf(),
            child: None,
            url: format!("http://127.0.0.1:{api_port}"),
            node: node.clone(),
            network: network.clone(),
            chain_prefix: format!("KLB{tag:05}-"),
            interface: format!("klb{tag}"),
            hollow_nodes,
            cleaned: false,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let started = Instant::now();
        let child = std::process::Command::new(kubelite)
            .arg("up")
            .arg("--data-dir")
            .arg(cluster.dir.path().join("data"))
            .arg("--kubeconfig")
            .arg(cluster.dir.path().join("kubeconfig"))
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .args(["--kubelet-listen", &format!("127.0.0.1:{kubelet_port}")])
            .args(["--node-name", &node, "--pod-network", &network])
            .args(["--pod-subnet", &subnet])
            .args(["--proxy-chain-prefix", &cluster.chain_prefix])
            .args(["--proxy-interface", &cluster.interface])
            .args(["--nodes", &hollow_nodes.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", kubelite.display()))?;
        cluster.child = Some(child);
        let api_ready = cluster
            .wait("API /readyz", Duration::from_secs(60), |c| async move {
                let r = c.http.get(format!("{}/readyz", c.url)).send().await?;
                Ok(r.status().is_success())
            })
            .await?
            .duration_since(started);
        let node_ready = cluster
            .wait("node Ready", Duration::from_secs(60), |c| async move {
                let n = c.get(&format!("/api/v1/nodes/{}", c.node)).await?;
                Ok(condition_true(&n, "Ready"))
            })
            .await?
            .duration_since(started);
        Ok((
            cluster,
            Startup {
                api_ready,
                node_ready,
            },
        ))
    }

    /// Polls `probe` every 10 ms until it says yes; returns when.
    async fn wait<'a, F, Fut>(&'a self, what: &str, timeout: Duration, probe: F) -> Result<Instant>
    where
        F: Fn(&'a Self) -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(true) = probe(self).await {
                return Ok(Instant::now());
            }
            if let Some(child) = &self.child {
                ensure!(alive(child.id()), "kubelite up exited before {what}");
            }
            if Instant::now() >= deadline {
                bail!("{what} not reached within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let r = self.http.get(format!("{}{path}", self.url)).send().await?;
        ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<()> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "POST {path}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Creates a Deployment of `replicas` pause pods and waits until all are ready.
    async fn run_pods(
        &self,
        name: &str,
        replicas: usize,
        affinity: Value,
        timeout: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "affinity": affinity,
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "pause",
                            "image": "kubelite/pause:v1",
                            "imagePullPolicy": "Never",
                        }],
                    },
                },
            },
        });
        self.post("/apis/apps/v1/namespaces/default/deployments", &deployment)
            .await?;
        let path = format!("/apis/apps/v1/namespaces/default/deployments/{name}");
        let mut last_report = Instant::now();
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.get(&path).await?;
            let ready = d["status"]["readyReplicas"].as_u64().unwrap_or(0) as usize;
            if ready >= replicas {
                return Ok(started.elapsed());
            }
            ensure!(
                Instant::now() < deadline,
                "{name}: {ready}/{replicas} ready after {timeout:?}"
            );
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("    {name}: {ready}/{replicas} ready");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Resident memory of the kubelite process tree, in KiB.
    fn rss_kib(&self) -> u64 {
        self.child
            .as_ref()
            .map(|c| tree_rss_kib(c.id()))
            .unwrap_or(0)
    }

    /// The median of a few samples, a second apart, after `settle`.
    async fn settled_rss_kib(&self, settle: Duration) -> u64 {
        tokio::time::sleep(settle).await;
        let mut samples = Vec::new();
        for _ in 0..5 {
            samples.push(self.rss_kib());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        samples.sort_unstable();
        samples[samples.len() / 2]
    }

    /// Resident memory of the pods' processes and their containerd shims, in KiB: what the
    /// runtime spends on them, outside kubelite.
    fn pods_rss_kib(&self) -> u64 {
        let ids = std::process::Command::new("docker")
            .args(["ps", "-q", "--filter"])
            .arg(format!("label=kubelite.io/node={}", self.node))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return 0;
        }
        let pids = std::process::Command::new("docker")
            .args(["inspect", "--format", "{{.State.Pid}}"])
            .args(&ids)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let parents = parent_map();
        let mut total = 0;
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            total += tree_rss_kib(pid);
            // The shim that holds the container (its parent).
            if let Some(&shim) = parents.get(&pid) {
                total += rss_of(shim);
            }
        }
        total
    }

    /// Stops the process as `kubelite down` would (SIGTERM), reaps it, then runs `kubelite
    /// down` to remove containers, network, rules and interface. Reaping first matters: an
    /// unreaped child still has a /proc entry, which `down` would wait on.
    fn down(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let status = std::process::Command::new(&self.kubelite)
            .arg("down")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--node-name", &self.node, "--pod-network", &self.network])
            .args(["--nodes", &self.hollow_nodes.to_string()])
            .args(["--proxy-chain-prefix", &self.chain_prefix])
            .args(["--proxy-interface", &self.interface])
            .stdout(Stdio::null())
            .status()?;
        self.cleaned = true;
        ensure!(status.success(), "kubelite down failed");
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.cleaned {
            if let Err(e) = self.down() {
                eprintln!("cleanup: {e:#}");
            }
        }
    }
}

fn rand_digit() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 10)
        .unwrap_or(0)
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) still has a /proc entry: read its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// pid → parent pid for every process.
fn parent_map() -> HashMap<u32, u32> {
    let mut parents = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return parents;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parents.insert(pid, ppid);
        }
    }
    parents
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// VmRSS summed over `root` and all its descendants.
fn tree_rss_kib(root: u32) -> u64 {
    let parents = parent_map();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in &parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut stack = vec![root];
    let mut total = 0;
    while let Some(pid) = stack.pop() {
        total += rss_of(pid);
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids);
        }
    }
    total
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.pods = 10;
        args.hollow_pods = 100;
        args.hollow_nodes = 1;
        args.settle = 3;
        args.starts = 1;
    }
    ensure!(
        args.kubelite.exists(),
        "{} not found (build it: cargo build --release -p kubelite)",
        args.kubelite.display()
    );
    ensure!(
        args.hollow_pods <= args.hollow_nodes * 110,
        "{} hollow pods need at least {} hollow nodes (110 pods each)",
        args.hollow_pods,
        args.hollow_pods.div_ceil(110)
    );
    let settle = Duration::from_secs(args.settle);

    // Start-up, on a fresh data dir each time.
    let (mut api, mut node) = (Vec::new(), Vec::new());
    for i in 0..args.starts.max(1) {
        let (mut cluster, startup) = Cluster::start(&args.kubelite, 0).await?;
        println!(
            "start {}: API ready {:>5} ms, node Ready {:>5} ms",
            i + 1,
            startup.api_ready.as_millis(),
            startup.node_ready.as_millis()
        );
        api.push(startup.api_ready);
        node.push(startup.node_ready);
        cluster.down()?;
    }

    // Memory: idle, then with real pods.
    let (mut cluster, _) = Cluster::start(&args.kubelite, 0).await?;
    let idle = cluster.settled_rss_kib(settle).await;
    println!("idle: kubelite {:.1} MiB", mib(idle));
    let real_time = cluster
        .run_pods(
            "bench-real",
            args.pods,
            Value::Null,
            Duration::from_secs(600),
        )
        .await?;
    let real = cluster.settled_rss_kib(settle).await;
    let real_pods = cluster.pods_rss_kib();
    println!(
        "{} real pods ready in {:.1} s: kubelite {:.1} MiB; in Docker, the pods' processes + \
         their containerd shims {:.1} MiB (RSS summed per process, shared pages counted each time)",
        args.pods,
        real_time.as_secs_f64(),
        mib(real),
        mib(real_pods)
    );
    cluster.down()?;
    drop(cluster);

    // Pods on hollow nodes (kept off the real node, which runs real containers).
    let hollow = if args.hollow_pods > 0 {
        let (mut cluster, _) = Cluster::start(&args.kubelite, args.hollow_nodes).await?;
        let hollow_idle = cluster.settled_rss_kib(settle).await;
        let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "NotIn", "values": [cluster.node],
            }]}],
        }}});
        let took = cluster
            .run_pods(
                "bench-hollow",
                args.hollow_pods,
                affinity,
                Duration::from_secs(900),
            )
            .await?;
        let with = cluster.settled_rss_kib(settle).await;
        println!(
            "{} hollow pods on {} hollow nodes ready in {:.1} s: kubelite {:.1} MiB (idle with those nodes {:.1} MiB)",
            args.hollow_pods,
            args.hollow_nodes,
            took.as_secs_f64(),
            mib(with),
            mib(hollow_idle)
        );
        cluster.down()?;
        Some((hollow_idle, with, took))
    } else {
        None
    };

    let k3s_mib = 1596.0;
    let k0s_mib = 510.0;
    println!();
    println!("| measurement | kubelite | published baseline | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| `up` → API /readyz (median of {}) | {} ms | | |",
        api.len(),
        median(api).as_millis()
    );
    println!(
        "| `up` → node Ready (median of {}) | {} ms | | |",
        node.len(),
        median(node).as_millis()
    );
    println!(
        "| RSS idle (whole cluster, one process) | {:.1} MiB | k0s controller idle ~{k0s_mib} MB | {:.1}x smaller |",
        mib(idle),
        k0s_mib / mib(idle)
    );
    println!(
        "| RSS with {} real pods | {:.1} MiB (Docker side, not counted: {:.1} MiB pods + shims) | k3s server with a workload {k3s_mib} MB | {:.1}x smaller |",
        args.pods,
        mib(real),
        mib(real_pods),
        k3s_mib / mib(real)
    );
    if let Some((hollow_idle, with, _)) = hollow {
        println!(
            "| RSS with {} pods on {} hollow nodes | {:.1} MiB (idle with those nodes {:.1} MiB) | k3s server with a workload {k3s_mib} MB | {:.1}x smaller |",
            args.hollow_pods,
            args.hollow_nodes,
            mib(with),
            mib(hollow_idle),
            k3s_mib / mib(with)
        );
    }
    Ok(())
}
