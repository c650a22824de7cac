//! kube-rs (the client controller authors use) against a real kubelite API server, on both
//! storage backends: typed CRUD, conflicts, the three patch types, server-side apply, watchers
//! (list+watch and streaming lists), reflectors, metadata-only requests, subresources,
//! `get_opt`/`entry`, discovery, and a `Controller` with owned objects.
//!
//! Run: `cargo test -p kubelite-e2e --test kube_rs`.

mod controller;
mod crud;
mod subresources;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::core::Status;
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

/// How long one step (an event, a convergence) may take.
pub const STEP: Duration = Duration::from_secs(10);

kubelite_e2e::e2e_main!(
    crud::server_version,
    crud::configmap_crud_and_conflicts,
    crud::deployment_patches_and_deletion,
    crud::get_opt_and_entry,
    crud::discovery_finds_builtins,
    crud::lease_optimistic_concurrency,
    watch::watcher_sees_changes,
    watch::watcher_streaming_lists,
    watch::reflector_store_converges,
    subresources::server_side_apply_creates_and_updates,
    subresources::metadata_and_subresources,
    controller::controller_reconciles,
);

/// Creates namespace `name`.
pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// A ConfigMap with the given labels and data.
pub fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(map(labels)),
            ..Default::default()
        },
        data: Some(map(data)),
        ..Default::default()
    }
}

/// The API error inside a kube error, or a failure naming what happened instead.
pub fn api_error<T: std::fmt::Debug>(res: kube::Result<T>) -> Result<Box<Status>> {
    match res {
        Err(kube::Error::Api(status)) => Ok(status),
        other => bail!("expected an API error, got {other:?}"),
    }
}

/// The next watcher event, within [`STEP`].
pub async fn next_event<S, K>(stream: &mut S) -> Result<watcher::Event<K>>
where
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Unpin,
{
    tokio::time::timeout(STEP, stream.next())
        .await
        .context("no watcher event within the step timeout")?
        .context("watcher stream ended")?
        .map_err(|e| anyhow::anyhow!("watcher error: {e}"))
}

/// A two-container Deployment `web` (app=web).
pub fn web_deployment() -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.25"},
                    {"name": "side", "image": "busybox:1.36"}
                ]}
            }
        }
    }))?)
}
