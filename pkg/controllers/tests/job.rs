//! Job controller against a real apiserver: completion, failure after backoffLimit, and
//! `kubectl wait --for=condition=complete`.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{obj, only, start, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kubelite_controllers::testing::AgentOptions;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn job(name: &str, image: &str, completions: i32, parallelism: i32, backoff: i32) -> Job {
    obj(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": image}]}}}
    }))
}

fn condition(j: &Job, t: &str) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == t && c.status == "True"))
}

#[tokio::test]
async fn job_runs_to_completion() -> anyhow::Result<()> {
    let h = start(only(&["job"]), AgentOptions::default()).await?;
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    jobs.create(&PostParams::default(), &job("pi", "succeed", 3, 2, 6))
        .await?;
    // Never more than `parallelism` pods running at once.
    let max_active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let j = wait_for("job complete", T, || {
        let (jobs, pods, max_active) = (jobs.clone(), pods.clone(), max_active.clone());
        async move {
            let list = pods
                .list(&ListParams::default().labels("job-name=pi"))
                .await?;
            let running = list
                .items
                .iter()
                .filter(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
                .count();
            max_active.fetch_max(running, std::sync::atomic::Ordering::SeqCst);
            let j = jobs.get("pi").await?;
            Ok(condition(&j, "Complete").then_some(j))
        }
    })
    .await?;
    let max_active = max_active.load(std::sync::atomic::Ordering::SeqCst);
    assert!(max_active <= 2, "ran {max_active} pods at once");
    assert!(condition(&j, "SuccessCriteriaMet"));
    let st = j.status.unwrap();
    assert_eq!(st.succeeded, Some(3));
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    assert_eq!(st.active, None);

    // kubectl sees it too.
    if std::path::Path::new("/usr/bin/kubectl").exists() {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(h.kubeconfig())
                .args([
                    "wait",
                    "--for=condition=complete",
                    "job/pi",
                    "--timeout=20s",
                ])
                .output(),
        )
        .await??;
        assert!(
            out.status.success(),
            "kubectl wait failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::test]
async fn job_fails_after_backoff_limit() -> anyhow::Result<()> {
    let h = start(only(&["job"]), AgentOptions::default()).await?;
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), "default");
    jobs.create(&PostParams::default(), &job("bad", "fail", 1, 1, 1))
        .await?;
    let j = wait_for("job failed", T, || async {
        let j = jobs.get("bad").await?;
        Ok(condition(&j, "Failed").then_some(j))
    })
    .await?;
    assert!(condition(&j, "FailureTarget"));
    assert!(!condition(&j, "Complete"));
    let st = j.status.unwrap();
    assert_eq!(st.failed, Some(2));
    let failed = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    Ok(())
}
