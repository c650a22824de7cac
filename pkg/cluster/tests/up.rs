//! The dev cluster end to end, as a user drives it: `kubelite up` on a temp data dir (its own
//! pod network, iptables prefix and interface), the examples applied with the real kubectl,
//! traffic through a NodePort (proxy), between pods by Service name (cluster DNS + proxy) and
//! through `kubectl port-forward`, logs, exec, self-healing, scaling, a Job, namespace
//! deletion; then shutdown, `kubelite down`'s cleanup and a leak check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::process::Command;

/// Removes what the cluster may leave if the test fails half way.
struct Cleanup {
    node: String,
    network: String,
    proxy: kubelite_proxy::Config,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=kubelite.io/node={}", self.node),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
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

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
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

    async fn ok(&self, args: &[&str]) -> Result<String> {
        let (ok, out, err) = self.run(args, None).await?;
        ensure!(ok, "kubectl {args:?} failed: {out}{err}");
        Ok(out)
    }

    async fn apply(&self, yaml: &str) -> Result<String> {
        let (ok, out, err) = self.run(&["apply", "-f", "-"], Some(yaml)).await?;
        ensure!(ok, "kubectl apply failed: {out}{err}");
        Ok(out)
    }
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<()>
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

async fn http_get(url: &str) -> Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let resp = client.get(url).send().await?;
    ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.text().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_cluster_runs_the_examples_and_cleans_up() -> Result<()> {
    let docker_ok = std::process::Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !is_root() || !docker_ok {
        eprintln!("SKIP: needs root and a running Docker");
        return Ok(());
    }
    ensure!(
        std::process::Command::new(root().join("hack/images"))
            .status()?
            .success(),
        "hack/images failed"
    );
    let tag: u32 = rand::random::<u32>() % 100_000;
    let node = format!("kl-up-{tag}");
    let network = format!("kubelite-up-{tag}");
    // A /24 outside the service CIDR (10.96.0.0/12) and the default pod subnet.
    let subnet = format!(
        "10.{}.{}.0/24",
        120 + rand::random::<u8>() % 90,
        rand::random::<u8>()
    );
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let config = kubelite_cluster::UpConfig {
        data_dir: dir.path().join("data"),
        etcd_servers: Vec::new(),
        kubeconfig: kubeconfig.clone(),
        context: "kubelite".into(),
        listen: "127.0.0.1:0".parse()?,
        reset: false,
        node_name: node.clone(),
        kubelet_listen: "127.0.0.1:0".parse()?,
        proxy: true,
        hollow_nodes: 1,
        pod_network: network.clone(),
        pod_subnet: subnet,
        service_cidr: "10.96.0.0/12".into(),
        proxy_chain_prefix: format!("KLU{tag:05}-"),
        proxy_interface: format!("klu{tag}"),
    };
    let _cleanup = Cleanup {
        node: node.clone(),
        network: network.clone(),
        proxy: config.proxy_config(),
    };
    let proxy_config = config.proxy_config();
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

    // Stop, then `down`'s cleanup: no container, chain or interface is left.
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(60), up)
        .await
        .context("kubelite up did not stop")???;
    let down = kubelite_cluster::down::DownConfig {
        data_dir: dir.path().join("data"),
        node_names: vec![node.clone(), format!("{node}-hollow-0")],
        proxy: proxy_config.clone(),
        timeout: Duration::from_secs(10),
    };
    kubelite_cluster::down::down(&down).await?;
    let left = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=kubelite.io/node={node}"),
        ])
        .output()?;
    ensure!(
        left.stdout.is_empty(),
        "containers left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let rules = std::process::Command::new("iptables-save").output()?;
    let rules = String::from_utf8_lossy(&rules.stdout);
    ensure!(!rules.contains(&proxy_config.chain_prefix), "chains left");
    let links = std::process::Command::new("ip")
        .args(["link", "show"])
        .output()?;
    ensure!(
        !String::from_utf8_lossy(&links.stdout).contains(&format!(" {}:", proxy_config.interface)),
        "interface left"
    );
    Ok(())
}
