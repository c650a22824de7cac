//! Container lifecycle against a real apiserver and real Docker: init containers (order,
//! failure, kubectl's Init:x/y column), probes (httpGet/tcpSocket/exec, readiness, liveness
//! restarts), postStart/preStop hooks and termination order, securityContext and hostPort.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::DeleteParams;
use serde_json::json;

use common::{main_status, phase, ready, Harness, BUSYBOX};

fn init_statuses(
    p: &k8s_openapi::api::core::v1::Pod,
) -> Vec<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap_or_default()
}

fn condition(p: &k8s_openapi::api::core::v1::Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn init_containers_run_in_order_before_apps() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let name = h
        .run_pod(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inits", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1,
                "initContainers": [
                    {"name": "one", "image": BUSYBOX, "command": ["sh", "-c", "sleep 4; echo one >> /w/log"],
                     "volumeMounts": [{"name": "w", "mountPath": "/w"}]},
                    {"name": "two", "image": BUSYBOX, "command": ["sh", "-c", "echo two >> /w/log"],
                     "volumeMounts": [{"name": "w", "mountPath": "/w"}]}
                ],
                "containers": [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "echo app >> /w/log; sleep 3600"],
                    "volumeMounts": [{"name": "w", "mountPath": "/w"}]}],
                "volumes": [{"name": "w", "emptyDir": {}}]}
        }))
        .await?;
    // While the first init container runs, kubectl shows Init:0/2 and the pod is not initialized.
    let p = h
        .wait_pod(&name, 30, "initializing", |p| {
            init_statuses(p)
                .first()
                .and_then(|s| s.state.clone())
                .is_some_and(|s| s.running.is_some())
        })
        .await?;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("False"));
    let waiting = init_statuses(&p)[1]
        .state
        .clone()
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason);
    assert_eq!(waiting.as_deref(), Some("PodInitializing"));
    let app_waiting = main_status(&p)
        .and_then(|s| s.state)
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason);
    assert_eq!(app_waiting.as_deref(), Some("PodInitializing"));
    let table = h.kubectl(&["get", "pod", &name, "--no-headers"]).await?;
    assert!(table.contains("Init:0/2"), "{table}");
    let p = h
        .wait_pod(&name, 60, "Running", |p| phase(p) == "Running")
        .await?;
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    for s in init_statuses(&p) {
        let t = s
            .state
            .and_then(|s| s.terminated)
            .context("init not terminated")?;
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (0, Some("Completed")),
            "{}",
            s.name
        );
    }
    h.wait_exec(&name, "app", &["cat", "/w/log"], 20, |o| {
        o == "one\ntwo\napp\n"
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_init_container_fails_a_never_pod_and_retries_otherwise() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let pod = |name: &str, policy: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"restartPolicy": policy, "terminationGracePeriodSeconds": 1,
                "initContainers": [{"name": "bad", "image": BUSYBOX, "command": ["sh", "-c", "exit 3"]}],
                "containers": [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}]}
        })
    };
    let never = h.run_pod(pod("never", "Never")).await?;
    let retry = h.run_pod(pod("retry", "Always")).await?;
    let p = h
        .wait_pod(&never, 60, "Failed", |p| phase(p) == "Failed")
        .await?;
    let t = init_statuses(&p)[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .context("terminated")?;
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("False"));
    let table = h.kubectl(&["get", "pod", &never, "--no-headers"]).await?;
    assert!(table.contains("Init:Error"), "{table}");
    // The app container never ran.
    let app = main_status(&p).context("app status")?;
    assert!(app.container_id.is_none() && app.restart_count == 0);
    // Always: the init container is retried with back-off, the app still waits.
    let p = h
        .wait_pod(&retry, 60, "init restarted", |p| {
            init_statuses(p)
                .first()
                .is_some_and(|s| s.restart_count >= 1)
        })
        .await?;
    assert_eq!(phase(&p), "Pending");
    let app = main_status(&p).context("app status")?;
    assert!(app.container_id.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_gate_readiness_and_liveness_restarts() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let name = h
        .run_pod(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "web", "image": BUSYBOX,
                "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && touch /tmp/alive && httpd -f -p 8080 -h /www"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 30},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                    "periodSeconds": 1, "failureThreshold": 1},
                "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}
            }]}
        }))
        .await?;
    let p = h.wait_pod(&name, 60, "Ready", ready).await?;
    assert_eq!(main_status(&p).and_then(|s| s.started), Some(true));
    // Readiness follows the HTTP endpoint.
    h.exec(&name, "web", &["rm", "/www/healthz"]).await?;
    h.wait_pod(&name, 30, "not Ready", |p| {
        !ready(p) && phase(p) == "Running"
    })
    .await?;
    let evs = h.events(&name, "Unhealthy").await?;
    assert!(
        evs.iter().any(|e| e
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("Readiness probe failed")),
        "{evs:?}"
    );
    h.exec(&name, "web", &["sh", "-c", "echo ok > /www/healthz"])
        .await?;
    h.wait_pod(&name, 30, "Ready again", ready).await?;
    // A failing liveness probe restarts the container.
    h.exec(&name, "web", &["rm", "/tmp/alive"]).await?;
    let p = h
        .wait_pod(&name, 60, "restarted", |p| {
            main_status(p).is_some_and(|s| s.restart_count >= 1)
        })
        .await?;
    let last = main_status(&p)
        .and_then(|s| s.last_state)
        .and_then(|s| s.terminated);
    assert!(last.is_some(), "lastState.terminated after a liveness kill");
    let evs = h.events(&name, "Unhealthy").await?;
    assert!(
        evs.iter().any(|e| e
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("Liveness probe failed")),
        "{evs:?}"
    );
    let evs = h.events(&name, "Killing").await?;
    assert!(
        evs.iter().any(|e| e.message.as_deref()
            == Some("Container web failed liveness probe, will be restarted")),
        "{evs:?}"
    );
    // The fresh container passes its probes again.
    h.wait_pod(&name, 60, "Ready after restart", ready).await?;
    Ok(())
}

/// Real gRPC probes: `grpc.health.v1.Health/Check` against the pod's port, served by the
/// grpc-health-fixture binary (this crate's) imported into an image for this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_probes_call_the_health_service() -> Result<()> {
    // Declared first so it drops last, after the harness removed the containers using it.
    let mut tags = common::ImageTags::default();
    let Some(h) = Harness::start(|_| {}).await? else {
        anyhow::bail!("docker is unreachable");
    };
    let image = format!("kubelite-test/grpc-health-{}:1", h.node);
    tags.0.push(image.clone());
    common::import_binary_image(env!("CARGO_BIN_EXE_grpc-health-fixture"), &image)?;
    let pod = |name: &str, service: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "grpc", "image": image, "imagePullPolicy": "Never",
                "ports": [{"containerPort": 50051}],
                "readinessProbe": {"grpc": {"port": 50051, "service": service},
                    "periodSeconds": 1, "failureThreshold": 1}
            }]}
        })
    };
    h.run_pod(pod("grpc-ok", "")).await?;
    h.run_pod(pod("grpc-sick", "sick")).await?;
    h.wait_pod("grpc-ok", 60, "Ready", ready).await?;
    h.wait_pod("grpc-sick", 60, "Running", |p| phase(p) == "Running")
        .await?;
    let want = "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let evs = h.events("grpc-sick", "Unhealthy").await?;
        if evs.iter().any(|e| e.message.as_deref() == Some(want)) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("no Unhealthy event {want:?}: {evs:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let p = h.pods().get("grpc-sick").await?;
    assert!(
        !ready(&p),
        "a NOT_SERVING service must keep the pod unready"
    );
    // The whole-server status is SERVING: grpc-ok never saw NOT_SERVING (a probe before the
    // server listened may have failed to connect, which is fine).
    let evs = h.events("grpc-ok", "Unhealthy").await?;
    assert!(
        !evs.iter().any(|e| e.message.as_deref() == Some(want)),
        "{evs:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hooks_run_and_termination_is_prestop_then_sigterm() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let data = h.root.path().join("data");
    std::fs::create_dir_all(&data)?;
    let name = h
        .run_pod(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hooked", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 10, "containers": [{
                "name": "c", "image": BUSYBOX,
                "command": ["sh", "-c", "trap 'echo term >> /d/log; exit 0' TERM; while true; do sleep 0.2; done"],
                "volumeMounts": [{"name": "d", "mountPath": "/d"}],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo post >> /d/log"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo pre >> /d/log; sleep 1"]}}
                }
            }], "volumes": [{"name": "d", "hostPath": {"path": data.to_string_lossy()}}]}
        }))
        .await?;
    h.wait_pod(&name, 60, "Running", |p| phase(p) == "Running")
        .await?;
    assert_eq!(std::fs::read_to_string(data.join("log"))?, "post\n");
    h.pods().delete(&name, &DeleteParams::default()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.pods().get_opt(&name).await?.is_some() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "pod not deleted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        std::fs::read_to_string(data.join("log"))?,
        "post\npre\nterm\n"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn security_context_and_host_port() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let name = h
        .run_pod(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "secure", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1, "securityContext": {"runAsUser": 1000, "runAsGroup": 3000},
                "containers": [
                    {"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                     "securityContext": {"readOnlyRootFilesystem": true}},
                    {"name": "root", "image": BUSYBOX,
                     "command": ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && httpd -f -p 8080 -h /www"],
                     "ports": [{"containerPort": 8080, "hostPort": port, "hostIP": "127.0.0.1"}],
                     "securityContext": {"runAsUser": 0, "capabilities": {"drop": ["CHOWN"], "add": ["NET_ADMIN"]}}}
                ]}
        }))
        .await?;
    h.wait_pod(&name, 60, "Running", |p| phase(p) == "Running")
        .await?;
    assert_eq!(h.exec(&name, "c", &["id", "-u"]).await?.trim(), "1000");
    assert_eq!(h.exec(&name, "c", &["id", "-g"]).await?.trim(), "3000");
    assert!(
        h.exec(&name, "c", &["touch", "/x"]).await.is_err(),
        "root filesystem is writable"
    );
    assert_eq!(h.exec(&name, "root", &["id", "-u"]).await?.trim(), "0");
    assert!(
        h.exec(&name, "root", &["chown", "1:1", "/www/index.html"])
            .await
            .is_err(),
        "CHOWN not dropped"
    );
    // hostPort: the sandbox publishes the port on the host.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let r = tokio::time::timeout(Duration::from_secs(2), async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            anyhow::Ok(out)
        })
        .await;
        if let Ok(Ok(out)) = r {
            if out.contains("200") {
                break out;
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "hostPort {port} not answering"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(body.ends_with("hi\n"), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oom_killed_reason_comes_from_docker() -> Result<()> {
    let Some(h) = Harness::start(|_| {}).await? else {
        return Ok(());
    };
    // One 64 MiB buffer filled at once overshoots the 16 MiB limit in a single read, so the
    // kernel kills at once. `head -c 400m /dev/zero | tail` grew its line buffer a chunk at a
    // time and could sit for over a minute reclaiming busybox's own pages just under the limit
    // (a CI run saw it still Running after 60 s).
    let name = h
        .run_pod(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "oom", "namespace": "default"},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": BUSYBOX,
                "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"],
                "resources": {"limits": {"memory": "16Mi"}}
            }]}
        }))
        .await?;
    let p = h
        .wait_pod(&name, 60, "Failed", |p| phase(p) == "Failed")
        .await?;
    let t = main_status(&p)
        .and_then(|s| s.state)
        .and_then(|s| s.terminated)
        .context("terminated")?;
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"), "{t:?}");
    Ok(())
}
