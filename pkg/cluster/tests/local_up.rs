//! The same end-to-end suite as `up.rs`, against the separate binaries `hack/local-up` starts
//! over a real etcd (Debian's): the script runs on free ports with names of its own (node, pod
//! network and subnet, kube-dns ClusterIP, proxy chains and interface) and this run's debug
//! binaries; after the examples it is stopped with SIGTERM, its `--cleanup` removes what the
//! cluster made, and the leak check proves it.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::{Cleanup, Kubectl, Unique};

/// The component binaries hack/local-up runs.
const PACKAGES: [&str; 6] = [
    "kubelite-apiserver-bin",
    "kubelite-scheduler-bin",
    "kubelite-controller-manager-bin",
    "kubelite-kubelet-bin",
    "kubelite-dns-bin",
    "kubelite-proxy-bin",
];
const BINARIES: [&str; 6] = [
    "kubelite-apiserver",
    "kubelite-scheduler",
    "kubelite-controller-manager",
    "kubelite-kubelet",
    "kubelite-dns",
    "kubelite-proxy",
];

/// The running `hack/local-up`: on drop (a failed test) it is stopped like a user would with
/// SIGTERM, and its whole process group killed if that does not end it.
struct LocalUp {
    child: Child,
}

impl LocalUp {
    fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then wait up to `timeout` for the script (which stops the components and
    /// cleans up) to exit. `Ok(None)` when it did not.
    fn terminate(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(Some(status));
        }
        self.signal("-TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(None)
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        if !matches!(self.terminate(Duration::from_secs(90)), Ok(Some(_))) {
            // The script leads its own process group: this reaches every component it started.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// `n` distinct free ports on 127.0.0.1 (all held open until each is known, so none repeats).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?)
}

/// Builds the component binaries with the profile and target dir of this test binary (a
/// no-op when they are fresh) and returns their directory. At test run time cargo's build
/// lock is free, so a nested cargo works; it only waits when someone else is building.
fn build_binaries() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/deps/local_up-<hash>
    let bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary outside <target>/<profile>/deps")?
        .to_path_buf();
    let target_dir = bin_dir.parent().context("no target dir")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    // Drop what `cargo test` sets for this test's package: build scripts watch some of these
    // (ring reruns on CARGO_MANIFEST_DIR), and inheriting them would rebuild the dependency
    // tree here and again in the developer's next plain `cargo build`.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(common::root())
        .args(["build", "--locked"])
        .arg("--target-dir")
        .arg(target_dir);
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    let started = Instant::now();
    let status = cmd.status().context("running cargo build")?;
    ensure!(
        status.success(),
        "cargo build of the component binaries failed"
    );
    eprintln!("component binaries ready in {:?}", started.elapsed());
    for b in BINARIES {
        ensure!(
            bin_dir.join(b).exists(),
            "{} missing after the build",
            bin_dir.join(b).display()
        );
    }
    Ok(bin_dir)
}

/// The last lines of every log the script wrote, for a failure's diagnosis.
fn dump_logs(work: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("==== {} (last {} lines)", path.display(), tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

/// Polls `probe` until it holds, failing early when the script has exited.
async fn wait_running<F, Fut>(
    what: &str,
    up: &mut LocalUp,
    timeout: Duration,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(status) = up.child.try_wait()? {
            bail!("hack/local-up exited ({status}) before {what}");
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_up_runs_the_examples_and_cleans_up() -> Result<()> {
    if !kubelite_cluster::can_run_cluster() {
        eprintln!("SKIP: needs root and a running Docker");
        return Ok(());
    }
    if std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: needs Debian's etcd (hack/test installs etcd-server)");
        return Ok(());
    }
    common::build_images()?;
    let bin_dir = build_binaries()?;

    let names = Unique::new("local");
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("local-up");
    // A kube-dns ClusterIP of its own in the service range, so a concurrent cluster's rules for
    // 10.96.0.10 never catch this one's DNS traffic.
    let dns_ip = format!(
        "10.{}.{}.{}",
        97 + rand::random::<u8>() % 14,
        rand::random::<u8>(),
        10 + rand::random::<u8>() % 200
    );
    let proxy = kubelite_proxy::Config {
        service_cidr: "10.96.0.0/12".into(),
        cluster_cidr: Some(names.subnet.clone()),
        chain_prefix: names.chain_prefix.clone(),
        interface: names.interface.clone(),
        ..kubelite_proxy::Config::default()
    };
    // Dropped after the script's guard: removes what a failed run left.
    let _cleanup = Cleanup {
        node: names.node.clone(),
        network: names.network.clone(),
        proxy: proxy.clone(),
    };
    let ports = free_ports(6)?;
    let child = std::process::Command::new(common::root().join("hack/local-up"))
        .arg("--cleanup")
        .env("LOCAL_UP_DIR", &work)
        .env("LOCAL_UP_BIN_DIR", &bin_dir)
        .env("LOCAL_UP_ETCD_PORT", ports[0].to_string())
        .env("LOCAL_UP_ETCD_PEER_PORT", ports[1].to_string())
        .env("LOCAL_UP_API_PORT", ports[2].to_string())
        .env("LOCAL_UP_KUBELET_PORT", ports[3].to_string())
        .env("LOCAL_UP_SCHEDULER_HEALTHZ_PORT", ports[4].to_string())
        .env("LOCAL_UP_PROXY_HEALTHZ_PORT", ports[5].to_string())
        .env("LOCAL_UP_NODE", &names.node)
        .env("LOCAL_UP_POD_NETWORK", &names.network)
        .env("LOCAL_UP_POD_SUBNET", &names.subnet)
        .env("LOCAL_UP_SERVICE_CIDR", &proxy.service_cidr)
        .env("LOCAL_UP_DNS_IP", &dns_ip)
        .env("LOCAL_UP_PROXY_CHAIN_PREFIX", &names.chain_prefix)
        .env("LOCAL_UP_PROXY_INTERFACE", &names.interface)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        // Its own process group: the guard can reach every component if all else fails.
        .process_group(0)
        .spawn()
        .context("starting hack/local-up")?;
    let mut up = LocalUp { child };

    let result = exercise(&mut up, &names, &work, ports[2], &dns_ip, &proxy).await;
    if result.is_err() {
        dump_logs(&work);
    }
    result
}

async fn exercise(
    up: &mut LocalUp,
    names: &Unique,
    work: &Path,
    api_port: u16,
    dns_ip: &str,
    proxy: &kubelite_proxy::Config,
) -> Result<()> {
    let node = names.node.as_str();
    let started = Instant::now();
    let readyz = format!("http://127.0.0.1:{api_port}/readyz");
    wait_running("apiserver /readyz", up, Duration::from_secs(120), || {
        let url = readyz.clone();
        async move { Ok(common::http_get(&url).await.is_ok()) }
    })
    .await?;
    let kubeconfig = work.join("kubeconfig");
    wait_running("kubeconfig written", up, Duration::from_secs(30), || {
        let p = kubeconfig.clone();
        async move { Ok(p.exists()) }
    })
    .await?;
    let k = Kubectl {
        kubeconfig,
        context: "local-up".into(),
    };
    let ready = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
    wait_running("node Ready", up, Duration::from_secs(120), || async {
        Ok(k.ok(&["get", "node", node, "-o", ready]).await? == "True")
    })
    .await?;
    wait_running(
        "kube-dns published",
        up,
        Duration::from_secs(60),
        || async {
            let args = ["-n", "kube-system", "get", "svc", "kube-dns"];
            let (found, _, _) = k.run(&args, None).await?;
            Ok(found)
        },
    )
    .await?;
    eprintln!("local-up ready in {:?}", started.elapsed());
    let nodes = k.ok(&["get", "nodes", "-o", "name"]).await?;
    ensure!(nodes.trim() == format!("node/{node}"), "{nodes}");

    common::run_examples(&k, node, dns_ip).await?;

    // The bridge's name is only known while the network exists.
    let bridge = common::network_bridge(&names.network).context("the pod network's bridge")?;
    // SIGTERM: the script stops every component, then `--cleanup` removes what they made.
    let status = up
        .terminate(Duration::from_secs(120))?
        .context("hack/local-up did not exit within 120s of SIGTERM")?;
    // The script exits 143 on SIGTERM, after its cleanup ran.
    ensure!(
        status.code() == Some(143),
        "hack/local-up exited with {status}"
    );
    common::assert_clean(node, &names.network, &bridge, proxy)
}
