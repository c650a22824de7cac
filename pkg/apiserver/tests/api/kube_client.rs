//! kube-rs against the server: typed CRUD and the runtime watcher.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use crate::common::{pod, TIMEOUT};

#[tokio::test]
async fn kube_rs_crud_and_watcher() {
    tokio::time::timeout(Duration::from_secs(120), kube_rs_flow())
        .await
        .expect("kube-rs flow finished in time");
}

async fn kube_rs_flow() {
    let api = crate::common::Api::start().await;
    let client = api.srv.client();
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let mut events = watcher(pods.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let created = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod("kr")).expect("pod"),
        )
        .await
        .expect("create");
    assert_eq!(created.metadata.name.as_deref(), Some("kr"));
    let seen = tokio::time::timeout(TIMEOUT, events.try_next())
        .await
        .expect("watch timely")
        .expect("watch ok")
        .expect("event");
    assert_eq!(seen.metadata.name.as_deref(), Some("kr"));

    let got = pods.get("kr").await.expect("get");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    let patched = pods
        .patch(
            "kr",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(
        patched
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("x"))
            .map(String::as_str),
        Some("y")
    );
    let modified = tokio::time::timeout(TIMEOUT, events.try_next())
        .await
        .expect("timely")
        .expect("ok")
        .expect("event");
    assert_eq!(
        modified
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("x"))
            .map(String::as_str),
        Some("y")
    );

    // Streaming-list watcher (sendInitialEvents) also works.
    let mut streaming = watcher(pods.clone(), watcher::Config::default().streaming_lists())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(TIMEOUT, streaming.try_next())
        .await
        .expect("timely")
        .expect("ok")
        .expect("event");
    assert_eq!(first.metadata.name.as_deref(), Some("kr"));

    let mut raw = watcher(pods.clone(), watcher::Config::default()).boxed();
    // The watcher is lazy: let it finish its initial list before deleting.
    loop {
        let ev = tokio::time::timeout(TIMEOUT, raw.try_next())
            .await
            .expect("init timely")
            .expect("ok");
        if matches!(ev, Some(watcher::Event::InitDone)) {
            break;
        }
    }
    pods.delete("kr", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = tokio::time::timeout(remaining.max(Duration::from_millis(1)), raw.try_next())
            .await
            .expect("delete seen in time")
            .expect("ok");
        if let Some(watcher::Event::Delete(p)) = ev {
            assert_eq!(p.metadata.name.as_deref(), Some("kr"));
            break;
        }
    }
    assert!(pods.get_opt("kr").await.expect("get_opt").is_none());
}
