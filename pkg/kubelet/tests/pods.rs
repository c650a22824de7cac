//! Kubelet against a real apiserver and real Docker: node registration, pod lifecycle, logs, deletion.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use serde_json::json;
use tokio::sync::oneshot;

fn docker_ok() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Removes every container of the node and the network, even when the test panics.
struct Cleanup {
    node: String,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=kubelite.io/node={}", self.node),
            ])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
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

struct Harness {
    server: TestServer,
    client: kube::Client,
    node: String,
    config: kubelite_kubelet::Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _cleanup: Cleanup,
    /// The kubelet's root dir (pod volumes, resolv.conf, hosts).
    _root: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Result<Option<Self>> {
        if !docker_ok() {
            eprintln!("SKIP: docker is unreachable");
            return Ok(None);
        }
        let images = concat!(env!("CARGO_MANIFEST_DIR"), "/../../hack/images");
        let st = Command::new(images)
            .status()
            .context("running hack/images")?;
        if !st.success() {
            bail!("hack/images failed");
        }
        let suffix: u32 = rand::random::<u32>() % 1_000_000;
        let node = format!("kt-{suffix}");
        let network = format!("kubelite-test-{suffix}");
        let cleanup = Cleanup {
            node: node.clone(),
            network: network.clone(),
        };
        // Pick a free 10.x.y.0/24 subnet; Docker refuses overlapping ones, so retry.
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
        let mut config = kubelite_kubelet::Config::new(node.clone());
        config.listen = "127.0.0.1:0".parse()?;
        config.pod_network = network;
        config.pod_subnet = subnet;
        config.lease_interval = Duration::from_secs(1);
        let root = tempfile::tempdir()?;
        config.root_dir = root.path().to_path_buf();
        let mut h = Harness {
            server,
            client,
            node,
            config,
            stop: None,
            task: None,
            _cleanup: cleanup,
            _root: root,
        };
        h.start_kubelet();
        Ok(Some(h))
    }

    fn start_kubelet(&mut self) {
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

    async fn stop_kubelet(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates the pod unscheduled, then binds it to this node through pods/binding.
    async fn run_pod(&self, pod: serde_json::Value) -> Result<String> {
        let pod: Pod = serde_json::from_value(pod)?;
        let name = pod.metadata.name.clone().context("name")?;
        self.pods().create(&PostParams::default(), &pod).await?;
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name},
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

    async fn wait_pod(
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

    fn containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("label=kubelite.io/node={}", self.node),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        v.sort();
        v
    }

    /// Runs kubectl without blocking the runtime (the in-process kubelet serves its requests).
    async fn kubectl(&self, args: &[&str]) -> Result<std::process::Output> {
        self.kubectl_stdin(args, None).await
    }

    /// Runs kubectl, feeding `stdin` when given.
    async fn kubectl_stdin(
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
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn busybox(name: &str, policy: &str, script: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"restartPolicy": policy, "terminationGracePeriodSeconds": 2, "containers": [{
            "name": "main", "image": "kubelite/busybox:v1", "command": ["sh", "-c", script],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        }]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_registers_ready_and_renews_lease() -> Result<()> {
    let Some(h) = Harness::start().await? else {
        return Ok(());
    };
    let nodes: Api<Node> = Api::all(h.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let node = loop {
        if let Some(n) = nodes.get_opt(&h.node).await? {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.clone());
            if ready.as_deref() == Some("True") {
                break n;
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("node never became ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname"), Some(&h.node));
    let status = node.status.context("status")?;
    assert_eq!(
        status
            .capacity
            .as_ref()
            .and_then(|c| c.get("pods"))
            .map(|q| q.0.as_str()),
        Some("110")
    );
    let info = status.node_info.context("nodeInfo")?;
    assert!(
        info.container_runtime_version.starts_with("docker://"),
        "{}",
        info.container_runtime_version
    );
    assert_eq!(info.kubelet_version, "v1.33.0");
    assert!(
        status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port)
            .unwrap_or(0)
            > 0
    );
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), "kube-node-lease");
    let first = leases
        .get(&h.node)
        .await?
        .spec
        .and_then(|s| s.renew_time)
        .context("renewTime")?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = leases
        .get(&h.node)
        .await?
        .spec
        .and_then(|s| s.renew_time)
        .context("renewTime")?;
    assert!(second.0 > first.0, "lease not renewed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_runs_with_ip_shares_localhost_and_logs() -> Result<()> {
    let Some(h) = Harness::start().await? else {
        return Ok(());
    };
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "duo", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [
            {"name": "server", "image": "kubelite/busybox:v1",
             "command": ["sh", "-c", "while true; do echo hello-from-server | nc -l -p 8080; done"]},
            {"name": "client", "image": "kubelite/busybox:v1",
             "command": ["sh", "-c", "echo name=$POD_NAME host=$(hostname); while true; do nc 127.0.0.1 8080 </dev/null && sleep 1000; sleep 1; done"],
             "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
        ]}
    });
    h.run_pod(pod).await?;
    let p = h
        .wait_pod("duo", 60, "Running", |p| phase(p) == "Running")
        .await?;
    let st = p.status.context("status")?;
    let ip = st.pod_ip.context("podIP")?;
    assert!(ip.starts_with("10."), "{ip}");
    let cs = st.container_statuses.context("containerStatuses")?;
    assert_eq!(cs.len(), 2);
    assert!(cs.iter().all(|c| c.ready
        && c.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("docker://"))));
    // The client reached the server over the pod's shared localhost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = h.kubectl(&["logs", "duo", "-c", "client"]).await?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("hello-from-server") {
            assert!(text.contains("name=duo host=duo"), "{text}");
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "client never reached server: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // kubectl exec: output, stderr and the exit code travel over the v5 WebSocket protocol.
    let out = h
        .kubectl(&[
            "exec",
            "duo",
            "-c",
            "client",
            "--",
            "sh",
            "-c",
            "echo out-$POD_NAME; echo err >&2; exit 3",
        ])
        .await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-duo\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = h
        .kubectl(&["exec", "duo", "-c", "server", "--", "hostname"])
        .await?;
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "duo\n");
    assert_eq!(ok.status.code(), Some(0));
    // stdin reaches the process and its close ends it.
    let cat = h
        .kubectl_stdin(
            &["exec", "-i", "duo", "-c", "server", "--", "cat"],
            Some(b"piped-input\n"),
        )
        .await?;
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "piped-input\n",
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(cat.status.code(), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_image_configmap_env_and_force_delete() -> Result<()> {
    let Some(h) = Harness::start().await? else {
        return Ok(());
    };
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(h.client.clone(), "default");
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg"}, "data": {"greeting": "hi-from-cm"}
    }))?;
    cms.create(&PostParams::default(), &cm).await?;
    h.run_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "noimage", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "kubelite/does-not-exist:1"}]}
    }))
    .await?;
    let reason = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .unwrap_or_default()
    };
    h.wait_pod("noimage", 30, "ImagePullBackOff", |p| {
        reason(p) == "ImagePullBackOff"
    })
    .await?;
    let p = h.pods().get("noimage").await?;
    assert_eq!(phase(&p), "Pending");
    h.run_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cmenv", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "kubelite/busybox:v1",
            "command": ["sh", "-c", "echo greeting=$GREETING ip=$MY_IP; sleep 1000"],
            "env": [
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
            ]
        }]}
    }))
    .await?;
    let p = h
        .wait_pod("cmenv", 60, "Running", |p| phase(p) == "Running")
        .await?;
    let ip = p.status.and_then(|s| s.pod_ip).context("podIP")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = h.kubectl(&["logs", "cmenv"]).await?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("greeting=") {
            assert_eq!(text, format!("greeting=hi-from-cm ip={ip}\n"));
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no env output: {text}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A pod removed from the API without the kubelet's help still loses its containers.
    let uid = h.pods().get("cmenv").await?.metadata.uid.context("uid")?;
    h.pods()
        .delete(
            "cmenv",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=kubelite.io/pod-uid={uid}"),
            ])
            .output()?;
        if out.stdout.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("containers of force-deleted pod remain");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_policy_succeeds_or_fails_and_on_failure_restarts() -> Result<()> {
    let Some(h) = Harness::start().await? else {
        return Ok(());
    };
    h.run_pod(busybox("ok", "Never", "exit 0")).await?;
    h.run_pod(busybox("bad", "Never", "exit 1")).await?;
    h.run_pod(busybox("flaky", "OnFailure", "echo run; exit 3"))
        .await?;
    let ok = h
        .wait_pod("ok", 60, "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let t = ok
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first().cloned())
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .context("terminated")?;
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    let bad = h
        .wait_pod("bad", 60, "Failed", |p| phase(p) == "Failed")
        .await?;
    let t = bad
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first().cloned())
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .context("terminated")?;
    assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
    let flaky = h
        .wait_pod("flaky", 60, "restarted", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .is_some_and(|c| c.restart_count >= 1)
        })
        .await?;
    assert_eq!(phase(&flaky), "Running");
    h.wait_pod("flaky", 30, "CrashLoopBackOff", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            == Some("CrashLoopBackOff")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_delete_and_restart_adoption() -> Result<()> {
    let Some(mut h) = Harness::start().await? else {
        return Ok(());
    };
    h.run_pod(busybox(
        "sleeper",
        "Always",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ))
    .await?;
    h.wait_pod("sleeper", 60, "Running", |p| phase(p) == "Running")
        .await?;
    let before = h.containers();
    assert_eq!(before.len(), 2, "sandbox + app container");
    // A restarted kubelet adopts the running containers instead of recreating them.
    h.stop_kubelet().await;
    h.start_kubelet();
    tokio::time::sleep(Duration::from_secs(4)).await;
    h.wait_pod("sleeper", 30, "Running", |p| phase(p) == "Running")
        .await?;
    assert_eq!(h.containers(), before);
    // The apiserver only marks the pod; the kubelet stops it and makes the final delete.
    let marked = h.pods().delete("sleeper", &DeleteParams::default()).await?;
    let marked = marked.left().context("graceful delete returns the pod")?;
    assert!(marked.metadata.deletion_timestamp.is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.pods().get_opt("sleeper").await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("pod never deleted");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        h.containers().is_empty(),
        "containers left: {:?}",
        h.containers()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_readiness_probe_gates_ready() -> Result<()> {
    let Some(h) = Harness::start().await? else {
        return Ok(());
    };
    h.run_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probed", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "kubelite/busybox:v1", "command": ["sleep", "1000"],
            "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1}
        }]}
    }))
    .await?;
    let cond = |p: &Pod, t: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == t))
            .map(|c| c.status.clone())
            .unwrap_or_default()
    };
    let p = h
        .wait_pod("probed", 60, "Running", |p| phase(p) == "Running")
        .await?;
    assert_eq!(cond(&p, "Ready"), "False");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cond(&h.pods().get("probed").await?, "Ready"), "False");
    let out = h
        .kubectl(&["exec", "probed", "--", "touch", "/tmp/ready"])
        .await?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_pod("probed", 20, "Ready", |p| cond(p, "Ready") == "True")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_follow_and_tail() -> Result<()> {
    let Some(h) = Harness::start().await? else {
        return Ok(());
    };
    h.run_pod(busybox(
        "counter",
        "Never",
        "for i in 1 2 3; do echo line$i; sleep 1; done",
    ))
    .await?;
    h.wait_pod("counter", 60, "Running", |p| phase(p) == "Running")
        .await?;
    // -f streams until the container exits.
    let out = h.kubectl(&["logs", "-f", "counter"]).await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line1\nline2\nline3\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_pod("counter", 30, "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let tail = h.kubectl(&["logs", "--tail=1", "counter"]).await?;
    assert_eq!(String::from_utf8_lossy(&tail.stdout), "line3\n");
    let ts = h
        .kubectl(&["logs", "--timestamps", "--tail=1", "counter"])
        .await?;
    let line = String::from_utf8_lossy(&ts.stdout).to_string();
    assert!(
        line.ends_with(" line3\n") && line.starts_with("20"),
        "{line}"
    );
    Ok(())
}
