//! Image pulls against a real local registry (Debian's `docker-registry` on a free loopback
//! port): policy Always pulls, a missing image goes ErrImagePull → ImagePullBackOff as
//! `kubectl get pods` shows it, Never refuses to pull, and the kubelet records upstream's
//! Pulling/Pulled/Created/Started/Failed/BackOff/Killing events; pod bridge ports are hairpin.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::{docker, phase, waiting_reason, Harness, ImageTags, Registry, BUSYBOX};
use kube::api::DeleteParams;
use serde_json::json;

/// Waits until the pod has an event with this reason whose message satisfies `f`.
async fn wait_event(
    h: &Harness,
    pod: &str,
    reason: &str,
    f: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let evs = h.events(pod, reason).await?;
        if let Some(m) = evs.iter().filter_map(|e| e.message.clone()).find(|m| f(m)) {
            return Ok(m);
        }
        if tokio::time::Instant::now() > deadline {
            let all: Vec<_> = evs.iter().filter_map(|e| e.message.clone()).collect();
            bail!("no {reason} event of {pod} as expected; saw {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulls_from_a_local_registry_and_reports_pull_errors() -> Result<()> {
    // Declared first so they drop last: after the harness removed the containers using them.
    let registry = Registry::start().await?;
    let mut tags = ImageTags::default();
    let Some(h) = Harness::start(|_| {}).await? else {
        bail!("docker is unreachable");
    };
    // A repository unique to this run, so concurrent tests never share an image.
    let repo = format!("{}/kubelite-test/{}", registry.addr, h.node);
    let image = format!("{repo}/busybox:v1");
    tags.0.push(image.clone());
    docker(&["tag", BUSYBOX, &image])?;
    docker(&["push", &image])?;
    // Only the registry has it now: the kubelet must pull.
    docker(&["rmi", &image])?;

    h.run_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pulled", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": image, "imagePullPolicy": "Always",
            "command": ["sleep", "1000"]
        }]}
    }))
    .await?;
    h.wait_pod("pulled", 60, "Running", |p| phase(p) == "Running")
        .await?;
    docker(&["image", "inspect", &image])?;
    // The sandbox's bridge port is in hairpin mode (a pod reaching itself via a ClusterIP).
    let id = docker(&["network", "inspect", "-f", "{{.Id}}", &h.config.pod_network])?;
    let brif = format!("/sys/class/net/br-{}/brif", &id.trim()[..12]);
    let ports: Vec<_> = std::fs::read_dir(&brif)?.flatten().collect();
    assert!(!ports.is_empty(), "no ports on {brif}");
    for port in ports {
        let mode = std::fs::read_to_string(port.path().join("hairpin_mode"))?;
        assert_eq!(mode.trim(), "1", "{:?}", port.path());
    }
    let pulling = format!("Pulling image \"{image}\"");
    wait_event(&h, "pulled", "Pulling", |m| m == pulling).await?;
    let pulled = format!("Successfully pulled image \"{image}\" in ");
    let m = wait_event(&h, "pulled", "Pulled", |m| m.starts_with(&pulled)).await?;
    assert!(m.contains("including waiting). Image size: "), "{m}");
    wait_event(&h, "pulled", "Created", |m| m == "Created container: main").await?;
    wait_event(&h, "pulled", "Started", |m| m == "Started container main").await?;
    let started = h.events("pulled", "Started").await?;
    assert_eq!(
        started[0].involved_object.field_path.as_deref(),
        Some("spec.containers{main}")
    );

    // A tag the registry does not have: ErrImagePull, then ImagePullBackOff.
    let missing = format!("{repo}/missing:v1");
    tags.0.push(missing.clone());
    h.run_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "missing", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": missing}]}
    }))
    .await?;
    // ErrImagePull lasts one sync (about a second) before the back-off shows; its events stay.
    h.wait_pod("missing", 30, "a pull error", |p| {
        matches!(
            waiting_reason(p).as_str(),
            "ErrImagePull" | "ImagePullBackOff"
        )
    })
    .await?;
    let failed = format!("Failed to pull image \"{missing}\": ");
    wait_event(&h, "missing", "Failed", |m| m.starts_with(&failed)).await?;
    wait_event(&h, "missing", "Failed", |m| m == "Error: ErrImagePull").await?;
    let p = h
        .wait_pod("missing", 30, "ImagePullBackOff", |p| {
            waiting_reason(p) == "ImagePullBackOff"
        })
        .await?;
    assert_eq!(phase(&p), "Pending");
    let msg = common::main_status(&p)
        .and_then(|s| s.state)
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
        .unwrap_or_default();
    assert!(
        msg.starts_with(&format!(
            "Back-off pulling image \"{missing}\": ErrImagePull: "
        )),
        "{msg}"
    );
    let backoff = format!("Back-off pulling image \"{missing}\"");
    wait_event(&h, "missing", "BackOff", |m| m == backoff).await?;
    // kubectl's STATUS column is the waiting reason.
    let out = h
        .kubectl(&["get", "pod", "missing", "--no-headers"])
        .await?;
    assert!(out.contains("ImagePullBackOff"), "{out}");

    // Never with an absent image: no pull at all.
    h.run_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "never", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": missing, "imagePullPolicy": "Never"}]}
    }))
    .await?;
    h.wait_pod("never", 30, "ErrImageNeverPull", |p| {
        waiting_reason(p) == "ErrImageNeverPull"
    })
    .await?;
    let never = format!("Container image \"{missing}\" is not present with pull policy of Never");
    wait_event(&h, "never", "ErrImageNeverPull", |m| m == never).await?;
    assert!(h.events("never", "Pulling").await?.is_empty());
    let out = h.kubectl(&["get", "pod", "never", "--no-headers"]).await?;
    assert!(out.contains("ErrImageNeverPull"), "{out}");

    // Deleting a running pod stops its container with a Killing event.
    h.pods().delete("pulled", &DeleteParams::default()).await?;
    wait_event(&h, "pulled", "Killing", |m| m == "Stopping container main").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.pods().get_opt("pulled").await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("pod pulled was not deleted");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}
