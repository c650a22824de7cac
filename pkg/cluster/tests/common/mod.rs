//! Helpers shared by the dev-cluster tests: unique names per run, a cleanup guard, kubectl,
//! polling with a deadline, and the leak check that follows `kubelite down`.

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

/// Whether this test can run: root (iptables) and a reachable Docker.
pub fn can_run() -> bool {
    let docker_ok = std::process::Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    root && docker_ok
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
}

impl Kubectl {
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--context")
            .arg("kubelite")
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
