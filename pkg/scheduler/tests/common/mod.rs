//! Helpers for the scheduler's integration tests: a real apiserver, Node objects, pods, a
//! scheduler task that stops on drop, and polling with deadlines.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kubelite_scheduler::{Config, Metrics};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running scheduler; dropping it stops the task.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<kubelite_scheduler::Result<()>>,
    pub metrics: Arc<Metrics>,
}

impl Running {
    /// Abrupt death: the task is aborted (no lease release).
    pub fn kill(self) {
        self.task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Test config: fast backoff so retries stay well inside test timeouts.
pub fn config() -> Config {
    Config {
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        ..Config::default()
    }
}

/// Starts `kubelite_scheduler::run` in a task.
pub fn start(client: kube::Client, config: Config) -> Running {
    let (tx, rx) = oneshot::channel::<()>();
    let metrics = config.metrics.clone();
    let task = tokio::spawn(kubelite_scheduler::run(client, config, async move {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        task,
        metrics,
    }
}

/// Creates a Node with allocatable cpu/memory/pods, labels and taints.
pub async fn node(
    client: &kube::Client,
    name: &str,
    cpu: &str,
    labels: Value,
    taints: Value,
) -> anyhow::Result<()> {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let res = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
    let n: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"capacity": res, "allocatable": res,
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await?;
    Ok(())
}

/// Creates a pod in `default` requesting `cpu`, merging `extra_spec` into its spec.
pub async fn pod(
    client: &kube::Client,
    name: &str,
    cpu: &str,
    labels: Value,
    extra_spec: Value,
) -> anyhow::Result<()> {
    let mut spec = json!({"containers": [{"name": "c", "image": "nginx",
        "resources": {"requests": {"cpu": cpu}}}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": spec,
    }))?;
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &p)
        .await?;
    Ok(())
}

/// Polls `f` until it returns `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node a pod is bound to, if any.
pub async fn node_of(client: &kube::Client, name: &str) -> anyhow::Result<Option<String>> {
    let p = Api::<Pod>::namespaced(client.clone(), "default")
        .get(name)
        .await?;
    Ok(p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
}

/// Waits until the pod is bound; returns the node.
pub async fn bound(client: &kube::Client, name: &str, within: Duration) -> anyhow::Result<String> {
    eventually(within, &format!("pod {name} bound"), || {
        node_of(client, name)
    })
    .await
}

/// The pod's PodScheduled condition as (status, reason, message).
pub async fn scheduled_condition(
    client: &kube::Client,
    name: &str,
) -> anyhow::Result<Option<(String, String, String)>> {
    let p = Api::<Pod>::namespaced(client.clone(), "default")
        .get(name)
        .await?;
    let cond = p
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled");
    Ok(cond.map(|c| {
        (
            c.status,
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default(),
        )
    }))
}

/// Events about a pod as (type, reason, message).
pub async fn events_for(
    client: &kube::Client,
    pod: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let list = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .context("list events")?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect())
}

/// Runs `fut` with a timeout.
pub async fn within<T>(d: Duration, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(d, fut).await.context("timed out")
}
