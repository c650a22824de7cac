//! Real kubectl against the controllers: `rollout status`, `get deploy` columns and
//! `rollout undo`. Skipped when kubectl is not installed.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{only, start};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kubelite_controllers::testing::AgentOptions;

const KUBECTL: &str = "/usr/bin/kubectl";

async fn kubectl(h: &common::Harness, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(h.kubeconfig())
            .args(args)
            .output(),
    )
    .await??;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn kubectl_rollout_status_get_and_undo() -> anyhow::Result<()> {
    if !std::path::Path::new(KUBECTL).exists() {
        eprintln!("kubectl not installed, skipping");
        return Ok(());
    }
    let h = start(only(&["replicaset", "deployment"]), AgentOptions::default()).await?;
    kubectl(
        &h,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1",
            "--replicas=3",
        ],
    )
    .await?;
    let out = kubectl(
        &h,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    )
    .await?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let get = kubectl(&h, &["get", "deploy", "web", "--no-headers"]).await?;
    let cols: Vec<&str> = get.split_whitespace().collect();
    assert_eq!(&cols[..4], ["web", "3/3", "3", "3"], "{get}");

    kubectl(&h, &["set", "image", "deployment/web", "nginx=nginx:2"]).await?;
    let out = kubectl(
        &h,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    )
    .await?;
    assert!(out.contains("successfully rolled out"), "{out}");

    kubectl(&h, &["rollout", "undo", "deployment/web"]).await?;
    let out = kubectl(
        &h,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    )
    .await?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let d = api.get("web").await?;
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1"));
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "3"
    );
    let history = kubectl(&h, &["rollout", "history", "deployment/web"]).await?;
    assert!(history.contains('2') && history.contains('3'), "{history}");
    Ok(())
}
