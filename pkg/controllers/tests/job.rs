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

fn labelled_pods(pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test]
async fn indexed_job_runs_each_index_once() -> anyhow::Result<()> {
    let h = start(only(&["job"]), AgentOptions::default()).await?;
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let mut j = job("idx", "succeed", 3, 2, 6);
    j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
    jobs.create(&PostParams::default(), &j).await?;
    let j = wait_for("indexed job complete", T, || async {
        let j = jobs.get("idx").await?;
        Ok(condition(&j, "Complete").then_some(j))
    })
    .await?;
    let st = j.status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(st.succeeded, Some(3));
    let list = labelled_pods(
        pods.list(&ListParams::default().labels("job-name=idx"))
            .await?
            .items,
    );
    let mut seen = Vec::new();
    for p in &list {
        let key = "batch.kubernetes.io/job-completion-index";
        let ann = p
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(key)
            .unwrap()
            .clone();
        let label = p.metadata.labels.as_ref().unwrap().get(key).unwrap();
        assert_eq!(&ann, label);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("idx-{ann}").as_str())
        );
        assert!(p
            .metadata
            .name
            .as_ref()
            .unwrap()
            .starts_with(&format!("idx-{ann}-")));
        let env = spec.containers[0].env.as_ref().unwrap();
        let var = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .unwrap();
        let field = var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, format!("metadata.annotations['{key}']"));
        seen.push(ann);
    }
    seen.sort();
    assert_eq!(seen, vec!["0", "1", "2"]);
    Ok(())
}

#[tokio::test]
async fn failed_pods_back_off_exponentially() -> anyhow::Result<()> {
    let mut cfg = only(&["job"]);
    cfg.job_backoff_base = Duration::from_secs(2);
    let h = start(cfg, AgentOptions::default()).await?;
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    jobs.create(&PostParams::default(), &job("flaky", "fail", 1, 1, 2))
        .await?;
    // Record when each pod is first seen; creation timestamps only have second precision.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(String, std::time::Instant)>::new(),
    ));
    let j = wait_for("job failed", Duration::from_secs(40), || {
        let (jobs, pods, seen) = (jobs.clone(), pods.clone(), seen.clone());
        async move {
            for p in pods
                .list(&ListParams::default().labels("job-name=flaky"))
                .await?
                .items
            {
                let name = p.metadata.name.unwrap();
                let mut seen = seen.lock().unwrap();
                if !seen.iter().any(|(n, _)| *n == name) {
                    seen.push((name, std::time::Instant::now()));
                }
            }
            let j = jobs.get("flaky").await?;
            Ok(condition(&j, "Failed").then_some(j))
        }
    })
    .await?;
    assert_eq!(j.status.unwrap().failed, Some(3));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "pods: {seen:?}");
    let gap1 = seen[1].1 - seen[0].1;
    let gap2 = seen[2].1 - seen[1].1;
    // 2 s then 4 s after each failure (less up to 1 s of timestamp truncation).
    assert!(
        gap1 >= Duration::from_millis(1000),
        "first backoff {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(3000),
        "second backoff {gap2:?}"
    );
    assert!(gap2 > gap1);
    Ok(())
}

#[tokio::test]
async fn deadline_exceeded_then_ttl_deletes() -> anyhow::Result<()> {
    let h = start(only(&["job", "garbagecollector"]), AgentOptions::default()).await?;
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let mut j = job("slow", "never-ready", 2, 2, 6);
    let spec = j.spec.as_mut().unwrap();
    spec.active_deadline_seconds = Some(2);
    spec.ttl_seconds_after_finished = Some(1);
    jobs.create(&PostParams::default(), &j).await?;
    wait_for("2 running pods", T, || async {
        let n = pods
            .list(&ListParams::default().labels("job-name=slow"))
            .await?
            .items
            .len();
        Ok((n == 2).then_some(()))
    })
    .await?;
    let j = wait_for("job failed", T, || async {
        let j = jobs.get("slow").await?;
        Ok(condition(&j, "Failed").then_some(j))
    })
    .await?;
    let failed = j
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    // ttlSecondsAfterFinished: the job and its pods go.
    wait_for("job deleted after ttl", T, || async {
        Ok(jobs.get_opt("slow").await?.is_none().then_some(()))
    })
    .await?;
    wait_for("pods deleted", T, || async {
        let n = pods
            .list(&ListParams::default().labels("job-name=slow"))
            .await?
            .items
            .len();
        Ok((n == 0).then_some(()))
    })
    .await?;
    Ok(())
}
