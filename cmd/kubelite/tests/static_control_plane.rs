//! A piece of the control plane as a static pod: `kubelite up` (this binary, as a child
//! process) with `manifests/static/kube-scheduler.yaml` in its manifest dir runs the same
//! binary's `scheduler` subcommand in a host-network pod. The test checks the mirror pod and
//! that the static scheduler binds a pod that names it, then `kubelite down` and a leak check.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The cluster process and what `down` needs; stopped and cleaned up on drop, also when the
/// test fails half-way.
struct Cluster {
    child: Child,
    data_dir: PathBuf,
    node: String,
}

impl Cluster {
    fn down(&mut self) -> Result<Output> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(Command::new(env!("CARGO_BIN_EXE_kubelite"))
            .arg("down")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()?)
    }

    fn containers(&self) -> Result<String> {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=kubelite.io/node={}", self.node))
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.down();
        if let Ok(ids) = self.containers() {
            for id in ids.split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .context("running kubectl")?;
    ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Polls `check` every 250 ms until it returns `Some`, failing after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn scheduler_runs_as_a_static_pod_with_a_mirror() -> Result<()> {
    if !kubelite_cluster::can_run_cluster() {
        eprintln!("SKIP: needs root and a running Docker");
        return Ok(());
    }
    ensure!(
        Command::new(root().join("hack/images")).status()?.success(),
        "hack/images failed"
    );
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let kubeconfig = tmp.path().join("kubeconfig");
    let tag: u32 = std::process::id() % 100_000;
    let third = (std::process::id() % 200) as u8 + 20;
    let node = format!("kl-static-{tag}");
    let api_port = free_port()?;
    let healthz_port = free_port()?;

    // The shipped manifest, pointed at this build's binary, this cluster's API and a free
    // healthz port.
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_kubelite"));
    let bin_dir = binary.parent().context("binary dir")?.to_string_lossy();
    let manifest = std::fs::read_to_string(root().join("manifests/static/kube-scheduler.yaml"))?
        .replace("/opt/kubelite/bin", &bin_dir)
        .replace("127.0.0.1:6443", &format!("127.0.0.1:{api_port}"))
        .replace("10259", &healthz_port.to_string());
    std::fs::create_dir_all(data_dir.join("manifests"))?;
    std::fs::write(data_dir.join("manifests/kube-scheduler.yaml"), manifest)?;

    let log = std::fs::File::create(tmp.path().join("up.log"))?;
    let child = Command::new(&binary)
        .arg("up")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--kubelet-listen", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--node-name", &node, "--no-proxy"])
        .args(["--pod-network", &format!("kubelite-static-{tag}")])
        .args(["--pod-subnet", &format!("10.218.{third}.0/24")])
        .args(["--service-cidr", &format!("10.219.{third}.0/24")])
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    let mut cluster = Cluster {
        child,
        data_dir: data_dir.clone(),
        node: node.clone(),
    };
    let up_log = || std::fs::read_to_string(tmp.path().join("up.log")).unwrap_or_default();

    wait_for("node Ready", Duration::from_secs(60), || {
        let out = kubectl(
            &kubeconfig,
            &[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .ok()?;
        (out.trim() == "True").then_some(())
    })
    .with_context(up_log)?;

    // The mirror pod: named <pod>-<node>, in kube-system, Running, and marked as a mirror.
    let mirror = format!("kube-scheduler-{node}");
    wait_for("the mirror pod Running", Duration::from_secs(90), || {
        let phase = kubectl(
            &kubeconfig,
            &[
                "-n",
                "kube-system",
                "get",
                "pod",
                &mirror,
                "-o",
                "jsonpath={.status.phase}",
            ],
        )
        .ok()?;
        (phase.trim() == "Running").then_some(())
    })
    .with_context(up_log)?;
    let annotations = kubectl(
        &kubeconfig,
        &[
            "-n",
            "kube-system",
            "get",
            "pod",
            &mirror,
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    )?;
    ensure!(
        annotations.contains("kubernetes.io/config.mirror"),
        "not a mirror pod: {annotations}"
    );

    // The static scheduler does its job: a pod naming it gets bound to the node.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"by-static"},
        "spec":{"schedulerName":"static-scheduler","containers":[{"name":"c",
        "image":"kubelite/busybox:v1","command":["sleep","3600"]}]}}"#;
    let file = tmp.path().join("pod.json");
    std::fs::write(&file, pod)?;
    kubectl(&kubeconfig, &["create", "-f", &file.to_string_lossy()])?;
    wait_for(
        "the static scheduler to bind the pod",
        Duration::from_secs(60),
        || {
            let n = kubectl(
                &kubeconfig,
                &["get", "pod", "by-static", "-o", "jsonpath={.spec.nodeName}"],
            )
            .ok()?;
            (n.trim() == node).then_some(())
        },
    )
    .with_context(|| {
        let logs = kubectl(
            &kubeconfig,
            &["-n", "kube-system", "logs", &mirror, "--tail=30"],
        )
        .unwrap_or_default();
        format!("static scheduler logs:\n{logs}")
    })?;
    let events = wait_for("the Scheduled event", Duration::from_secs(20), || {
        let out = kubectl(
            &kubeconfig,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=by-static",
                "-o",
                "jsonpath={range .items[*]}{.reason}/{.source.component};{end}",
            ],
        )
        .ok()?;
        out.contains("Scheduled/").then_some(out)
    })?;
    ensure!(
        events.contains("Scheduled/static-scheduler;"),
        "the Scheduled event is not from static-scheduler: {events:?}"
    );

    // Down: nothing of this cluster is left in Docker.
    let out = cluster.down()?;
    ensure!(
        out.status.success(),
        "kubelite down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = cluster.containers()?;
    ensure!(left.is_empty(), "containers left: {left}");
    let network = Command::new("docker")
        .args(["network", "inspect", &format!("kubelite-static-{tag}")])
        .output()?;
    ensure!(!network.status.success(), "pod network left");
    Ok(())
}
