//! Helpers shared by the dev-cluster tests: unique names per run, a cleanup guard, kubectl,
//! polling with a deadline, the leak check that follows `kubelite down`, and the examples suite
//! (`run_examples`) that `up.rs` and `local_up.rs` both run.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::process::Command;

/// Names no other test (or a developer's cluster) uses: node, pod network and its /24, the
/// proxy's chain prefix and interface.
pub struct Unique {
    pub tag: u32,
    pub node: String,
    pub network: String,
    pub subnet: String,
    pub chain_prefix: String,
    pub interface: String,
}

impl Unique {
    pub fn new(short: &str) -> Self {
        let tag: u32 = rand::random::<u32>() % 100_000;
        Self {
            tag,
            node: format!("kl-{short}-{tag}"),
            network: format!("kubelite-{short}-{tag}"),
            // A /24 outside the service CIDR (10.96.0.0/12) and the default pod subnet.
            subnet: format!(
                "10.{}.{}.0/24",
                120 + rand::random::<u8>() % 90,
                rand::random::<u8>()
            ),
            chain_prefix: format!("KL{}{tag:05}-", short[..1].to_ascii_uppercase()),
            interface: format!("kl{}{tag}", &short[..1]),
        }
    }

    /// An `up` configuration on `dir` with these names.
    pub fn up_config(
        &self,
        dir: &Path,
        hollow_nodes: usize,
        proxy: bool,
    ) -> Result<kubelite_cluster::UpConfig> {
        Ok(kubelite_cluster::UpConfig {
            data_dir: dir.join("data"),
            etcd_servers: Vec::new(),
            kubeconfig: dir.join("kubeconfig"),
            context: "kubelite".into(),
            listen: "127.0.0.1:0".parse()?,
            reset: false,
            node_name: self.node.clone(),
            kubelet_listen: "127.0.0.1:0".parse()?,
            proxy,
            hollow_nodes,
            pod_network: self.network.clone(),
            pod_subnet: self.subnet.clone(),
            service_cidr: "10.96.0.0/12".into(),
            proxy_chain_prefix: self.chain_prefix.clone(),
            proxy_interface: self.interface.clone(),
        })
    }
}

/// Removes what the cluster may leave if the test fails half way.
pub struct Cleanup {
    pub node: String,
    pub network: String,
    pub proxy: kubelite_proxy::Config,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in containers(&self.node) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &id])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        let proxy = self.proxy.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(kubelite_proxy::cleanup(&proxy));
            }
        })
        .join();
    }
}

/// Ids of every container (running or not) the kubelet of `node` created.
pub fn containers(node: &str) -> Vec<String> {
    docker_lines(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=kubelite.io/node={node}"),
    ])
}

/// Ids of the running ones.
pub fn running_containers(node: &str) -> Vec<String> {
    let mut ids = docker_lines(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=kubelite.io/node={node}"),
    ]);
    ids.sort();
    ids
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The Linux bridge Docker made for `network` (`br-<first 12 of its id>`), if it exists.
pub fn network_bridge(network: &str) -> Option<String> {
    let id = docker_lines(&["network", "inspect", "--format", "{{.Id}}", network]);
    id.first()
        .map(|id| format!("br-{}", &id[..12.min(id.len())]))
}

/// After `kubelite down`: no container of `node`, no pod network or its bridge, no chain of
/// the proxy's prefix (in any table), no proxy interface.
pub fn assert_clean(
    node: &str,
    network: &str,
    bridge: &str,
    proxy: &kubelite_proxy::Config,
) -> Result<()> {
    let left = containers(node);
    ensure!(left.is_empty(), "containers left: {left:?}");
    let net = std::process::Command::new("docker")
        .args(["network", "inspect", network])
        .output()?;
    ensure!(!net.status.success(), "pod network {network} left");
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()?;
    let links = String::from_utf8_lossy(&links.stdout);
    for name in [bridge, proxy.interface.as_str()] {
        ensure!(
            !links.lines().any(|l| l
                .split(':')
                .nth(1)
                .map(str::trim)
                .map(|n| n.split('@').next() == Some(name))
                .unwrap_or(false)),
            "interface {name} left"
        );
    }
    for save in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = std::process::Command::new(save).output() {
            let rules = String::from_utf8_lossy(&out.stdout);
            ensure!(
                !rules.contains(&proxy.chain_prefix),
                "{save}: chains of {} left",
                proxy.chain_prefix
            );
            ensure!(!rules.contains(bridge), "{save}: rules for {bridge} left");
        }
    }
    Ok(())
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the example images (pause, busybox, ...) offline.
pub fn build_images() -> Result<()> {
    ensure!(
        std::process::Command::new(root().join("hack/images"))
            .status()?
            .success(),
        "hack/images failed"
    );
    Ok(())
}

pub struct Kubectl {
    pub kubeconfig: PathBuf,
    /// The context to use in it (`kubelite` for `up`, `local-up` for hack/local-up).
    pub context: String,
}

impl Kubectl {
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--context")
            .arg(&self.context)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawning kubectl")?;
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut pipe = child.stdin.take().context("stdin")?;
            pipe.write_all(input.as_bytes()).await?;
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
            .await
            .with_context(|| format!("kubectl {args:?} timed out"))??;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let (ok, out, err) = self.run(args, None).await?;
        ensure!(ok, "kubectl {args:?} failed: {out}{err}");
        Ok(out)
    }

    pub async fn apply(&self, yaml: &str) -> Result<String> {
        let (ok, out, err) = self.run(&["apply", "-f", "-"], Some(yaml)).await?;
        ensure!(ok, "kubectl apply failed: {out}{err}");
        Ok(out)
    }
}

pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match probe().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("{what} not reached within {timeout:?} {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for `path` to appear (`up` writes the kubeconfig once the node is Ready).
pub async fn wait_for_file(path: &Path, timeout: Duration) -> Result<()> {
    wait_until("kubeconfig written", timeout, || {
        let p = path.to_path_buf();
        async move { Ok(p.exists()) }
    })
    .await
}

pub async fn http_get(url: &str) -> Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let resp = client.get(url).send().await?;
    ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.text().await?)
}

/// The examples as a user drives them, against any cluster whose kubeconfig `k` names and whose
/// real node is `node`: kube-dns on `dns_ip`, friendlyhello (web + redis) through a NodePort, by
/// Service name between pods and through `kubectl port-forward`, logs, exec, self-healing,
/// scaling, a Job and namespace deletion. `kubelite up` and `hack/local-up` both run it.
pub async fn run_examples(k: &Kubectl, node: &str, dns_ip: &str) -> Result<()> {
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
    ensure!(svc == dns_ip, "kube-dns ClusterIP {svc}, want {dns_ip}");

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
            &k.context,
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

    Ok(())
}
