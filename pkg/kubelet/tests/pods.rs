//! Kubelet against a real apiserver and real Docker: node registration, pod lifecycle, logs, deletion.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

mod common;
use common::Harness;

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
    let Some(h) = Harness::start(|_| {}).await? else {
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
    let Some(h) = Harness::start(|_| {}).await? else {
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
        let out = h
            .kubectl_output(&["logs", "duo", "-c", "client"], None)
            .await?;
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
        .kubectl_output(
            &[
                "exec",
                "duo",
                "-c",
                "client",
                "--",
                "sh",
                "-c",
                "echo out-$POD_NAME; echo err >&2; exit 3",
            ],
            None,
        )
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
        .kubectl_output(&["exec", "duo", "-c", "server", "--", "hostname"], None)
        .await?;
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "duo\n");
    assert_eq!(ok.status.code(), Some(0));
    // stdin reaches the process and its close ends it.
    let cat = h
        .kubectl_output(
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
    let Some(h) = Harness::start(|_| {}).await? else {
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
        let out = h.kubectl_output(&["logs", "cmenv"], None).await?;
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
    let Some(h) = Harness::start(|_| {}).await? else {
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
    let Some(mut h) = Harness::start(|_| {}).await? else {
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
    let Some(h) = Harness::start(|_| {}).await? else {
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
        .kubectl_output(&["exec", "probed", "--", "touch", "/tmp/ready"], None)
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
    let Some(h) = Harness::start(|_| {}).await? else {
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
    let out = h.kubectl_output(&["logs", "-f", "counter"], None).await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line1\nline2\nline3\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_pod("counter", 30, "Succeeded", |p| phase(p) == "Succeeded")
        .await?;
    let tail = h
        .kubectl_output(&["logs", "--tail=1", "counter"], None)
        .await?;
    assert_eq!(String::from_utf8_lossy(&tail.stdout), "line3\n");
    let ts = h
        .kubectl_output(&["logs", "--timestamps", "--tail=1", "counter"], None)
        .await?;
    let line = String::from_utf8_lossy(&ts.stdout).to_string();
    assert!(
        line.ends_with(" line3\n") && line.starts_with("20"),
        "{line}"
    );
    Ok(())
}
