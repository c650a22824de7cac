//! Shared harness of the pod-feature tests: a real apiserver, an in-process kubelet over real
//! Docker on a private network, a temp root dir, and Drop cleanup of every container, memory
//! volume and network the test made.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use serde_json::json;
use tokio::sync::oneshot;

/// Whether Docker answers.
pub fn docker_ok() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
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

/// Removes the node's containers, the pods' memory volumes and the network, even on panic.
struct Cleanup {
    node: String,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=kubelite.io/node={}", self.node),
        ]);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
        // Memory emptyDirs are named kubelite-<uid>-<volume>; only this node's pods made them,
        // and their uids are unknown here, so remove the ones no container uses any more that
        // carry the kubelite label and were created during this test.
        for v in docker_lines(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=kubelite.io/volume=emptydir",
            "--filter",
            "dangling=true",
        ]) {
            let _ = Command::new("docker").args(["volume", "rm", &v]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// One apiserver plus one kubelet.
pub struct Harness {
    pub server: TestServer,
    pub client: kube::Client,
    pub node: String,
    pub config: kubelite_kubelet::Config,
    pub root: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _cleanup: Cleanup,
}

impl Harness {
    /// Starts everything; `None` (test skipped) without Docker. `tweak` adjusts the Config.
    pub async fn start(tweak: impl FnOnce(&mut kubelite_kubelet::Config)) -> Result<Option<Self>> {
        if !docker_ok() {
            eprintln!("SKIP: docker is unreachable");
            return Ok(None);
        }
        let images = concat!(env!("CARGO_MANIFEST_DIR"), "/../../hack/images");
        if !Command::new(images)
            .status()
            .context("running hack/images")?
            .success()
        {
            bail!("hack/images failed");
        }
        let suffix: u32 = rand::random::<u32>() % 1_000_000;
        let node = format!("kf-{suffix}");
        let network = format!("kubelite-test-{suffix}");
        let cleanup = Cleanup {
            node: node.clone(),
            network: network.clone(),
        };
        let mut subnet = None;
        for _ in 0..20 {
            let candidate = format!(
                "10.{}.{}.0/24",
                120 + rand::random::<u8>() % 90,
                rand::random::<u8>()
            );
            let ok = Command::new("docker")
                .args([
                    "network", "create", "--driver", "bridge", "--subnet", &candidate, &network,
                ])
                .output()?
                .status
                .success();
            if ok {
                subnet = Some(candidate);
                break;
            }
        }
        let subnet = subnet.context("no free subnet")?;
        let server = TestServer::start().await?;
        let client = server.client();
        let root = tempfile::tempdir()?;
        let mut config = kubelite_kubelet::Config::new(node.clone());
        config.listen = "127.0.0.1:0".parse()?;
        config.pod_network = network;
        config.pod_subnet = subnet;
        config.lease_interval = Duration::from_secs(1);
        config.root_dir = root.path().join("kubelet");
        tweak(&mut config);
        let mut h = Harness {
            server,
            client,
            node,
            config,
            root,
            stop: None,
            task: None,
            _cleanup: cleanup,
        };
        h.start_kubelet();
        Ok(Some(h))
    }

    /// (Re)starts the kubelet task with `config`.
    pub fn start_kubelet(&mut self) {
        let (tx, rx) = oneshot::channel();
        let (client, config) = (self.client.clone(), self.config.clone());
        self.task = Some(tokio::spawn(async move {
            let r = kubelite_kubelet::run(client, config, async {
                let _ = rx.await;
            })
            .await;
            if let Err(e) = r {
                eprintln!("kubelet failed: {e}");
            }
        }));
        self.stop = Some(tx);
    }

    /// Stops the kubelet (containers stay for the Drop cleanup).
    pub async fn stop_kubelet(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates the pod and binds it to this node.
    pub async fn run_pod(&self, pod: serde_json::Value) -> Result<String> {
        let pod: Pod = serde_json::from_value(pod)?;
        let name = pod.metadata.name.clone().context("name")?;
        self.pods().create(&PostParams::default(), &pod).await?;
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        });
        self.pods()
            .create_subresource::<serde_json::Value, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await?;
        Ok(name)
    }

    /// Polls the pod until `f` holds, failing with its last status after `secs`.
    pub async fn wait_pod(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        f: impl Fn(&Pod) -> bool,
    ) -> Result<Pod> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.pods().get_opt(name).await?;
            if let Some(p) = &p {
                if f(p) {
                    return Ok(p.clone());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "timeout waiting for pod {name} {what}: {}",
                    serde_json::to_string(&p.map(|p| p.status))?
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits for `cond` to hold on the output of `docker exec` in the pod's container.
    pub async fn wait_exec(
        &self,
        pod: &str,
        container: &str,
        cmd: &[&str],
        secs: u64,
        cond: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.exec(pod, container, cmd).await.unwrap_or_default();
            if cond(&out) {
                return Ok(out);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timeout: {cmd:?} in {pod}/{container} printed {out:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `docker exec` in the running container `container` of pod `pod`; stdout.
    pub async fn exec(&self, pod: &str, container: &str, cmd: &[&str]) -> Result<String> {
        let ids = docker_lines(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=kubelite.io/node={}", self.node),
            "--filter",
            &format!("label=kubelite.io/pod-name={pod}"),
            "--filter",
            &format!("label=kubelite.io/container={container}"),
        ]);
        let id = ids.first().context("container not running")?;
        let out = tokio::process::Command::new("docker")
            .arg("exec")
            .arg(id)
            .args(cmd)
            .output()
            .await?;
        if !out.status.success() {
            bail!("exec failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Container ids of this node (any state), sorted.
    pub fn containers(&self) -> Vec<String> {
        let mut ids = docker_lines(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=kubelite.io/node={}", self.node),
        ]);
        ids.sort();
        ids
    }

    /// Runs kubectl against the test apiserver without blocking the runtime (the in-process
    /// kubelet serves its requests), feeding `stdin` when given; the whole output.
    pub async fn kubectl_output(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output> {
        use tokio::io::AsyncWriteExt;
        let cache = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig_path())
            .arg("--cache-dir")
            .arg(cache.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut pipe = child.stdin.take().context("stdin")?;
        if let Some(data) = stdin {
            pipe.write_all(data).await?;
        }
        drop(pipe);
        Ok(
            tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .context("kubectl timed out")??,
        )
    }

    /// Events about the pod with this reason.
    pub async fn events(&self, pod: &str, reason: &str) -> Result<Vec<Event>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(pod)
                    && e.reason.as_deref() == Some(reason)
            })
            .collect())
    }

    /// Runs kubectl against the test apiserver; its stdout.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl_output(args, None).await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The pod's phase.
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod's Ready condition is True.
pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The first app container's status.
pub fn main_status(p: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

pub const BUSYBOX: &str = "kubelite/busybox:v1";

/// Where Debian's `docker-registry` package puts the registry binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A local Docker registry (Debian's `docker-registry`) on a free loopback port, killed and its
/// storage removed on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`, the image reference prefix.
    pub addr: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts the registry and waits until it answers `/v2/`. Fails (never skips) when the
    /// binary is missing, so a machine without it cannot pass the pull tests by accident.
    pub async fn start() -> Result<Self> {
        if !std::path::Path::new(REGISTRY_BIN).exists() {
            bail!(
                "{REGISTRY_BIN} not found: install Debian's docker-registry package \
                 (hack/test does it through ensure_packages)"
            );
        }
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting docker-registry")?;
        let reg = Registry {
            addr,
            child,
            _dir: dir,
        };
        let url = format!("http://{}/v2/", reg.addr);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ok = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(reg);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("registry at {url} did not come up");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Image references to `docker rmi` on drop, even when the test fails.
#[derive(Default)]
pub struct ImageTags(pub Vec<String>);

impl Drop for ImageTags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", t]).output();
        }
    }
}

/// Runs `docker` with these arguments, failing with its stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker").args(args).output()?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Imports a one-binary image `tag` holding `bin` (at `/<file name>`, its entrypoint) and the
/// shared libraries `ldd` names, as hack/images does for redis. The caller owns the tag.
pub fn import_binary_image(bin: &str, tag: &str) -> Result<()> {
    let root = tempfile::tempdir()?;
    let name = std::path::Path::new(bin)
        .file_name()
        .context("binary name")?
        .to_string_lossy()
        .into_owned();
    std::fs::copy(bin, root.path().join(&name))?;
    let ldd = Command::new("ldd").arg(bin).output()?;
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dest = root.path().join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().context("lib dir")?)?;
        std::fs::copy(lib, &dest)?;
    }
    let tar = root.path().with_extension("tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()?
        .success();
    if !ok {
        bail!("tar of {bin} failed");
    }
    let entry = format!("ENTRYPOINT [\"/{name}\"]");
    let r = docker(&["import", "--change", &entry, &tar.to_string_lossy(), tag]);
    let _ = std::fs::remove_file(&tar);
    r.map(|_| ())
}

/// The waiting reason of the pod's first app container, or "".
pub fn waiting_reason(p: &Pod) -> String {
    main_status(p)
        .and_then(|s| s.state)
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason)
        .unwrap_or_default()
}
