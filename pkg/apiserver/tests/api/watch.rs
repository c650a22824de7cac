//! Watches: initial events, from a list RV, 410 for compacted RVs, selectors, bookmarks, Tables.

use serde_json::json;

use crate::common::*;

const BASE: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn watch_from_zero_then_changes() {
    watch_from_zero_then_changes_flow(&Api::start().await).await;
}

pub async fn watch_from_zero_then_changes_flow(api: &Api) {
    api.post(BASE, cm("a", json!({}))).await;
    let mut w = api
        .watch(&format!("{BASE}?watch=true&resourceVersion=0"))
        .await;
    let ev = w.next().await.expect("event");
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "a");
    api.post(BASE, cm("b", json!({}))).await;
    let ev = w.next().await.expect("event");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
    api.patch(
        &format!("{BASE}/b"),
        "application/merge-patch+json",
        json!({"data": {"x": "1"}}),
    )
    .await;
    let ev = w.next().await.expect("event");
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["data"]["x"], "1");
    let (_, del) = api.delete(&format!("{BASE}/b"), None).await;
    let ev = w.next().await.expect("event");
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["name"], "b");
    assert_eq!(ev["object"]["kind"], "ConfigMap");
    let _ = del;
}

#[tokio::test]
async fn watch_from_list_rv_sees_only_later_changes() {
    watch_from_list_rv_sees_only_later_changes_flow(&Api::start().await).await;
}

pub async fn watch_from_list_rv_sees_only_later_changes_flow(api: &Api) {
    api.post(BASE, cm("a", json!({}))).await;
    let (_, list) = api.get(BASE).await;
    let mut w = api
        .watch(&format!("{BASE}?watch=1&resourceVersion={}", rv(&list)))
        .await;
    api.post(BASE, cm("b", json!({}))).await;
    let ev = w.next().await.expect("event");
    assert_eq!(ev["object"]["metadata"]["name"], "b");
    assert_eq!(ev["type"], "ADDED");
    // An older RV (still in history) replays a's creation... only from after that RV.
    let a_rv = rv(&list["items"][0]);
    let mut w2 = api
        .watch(&format!("{BASE}?watch=1&resourceVersion={a_rv}"))
        .await;
    let ev = w2.next().await.expect("event");
    assert_eq!(ev["object"]["metadata"]["name"], "b");
}

#[tokio::test]
async fn watch_with_selectors_and_timeout() {
    watch_with_selectors_and_timeout_flow(&Api::start().await).await;
}

pub async fn watch_with_selectors_and_timeout_flow(api: &Api) {
    let mut w = api
        .watch(&format!(
            "{BASE}?watch=true&labelSelector=app%3Dweb&timeoutSeconds=5"
        ))
        .await;
    let mut o = cm("a", json!({}));
    o["metadata"]["labels"] = json!({"app": "other"});
    api.post(BASE, o).await;
    // Starts matching → ADDED; stops matching → DELETED.
    api.patch(
        &format!("{BASE}/a"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await;
    let ev = w.next().await.expect("event");
    assert_eq!(ev["type"], "ADDED");
    api.patch(
        &format!("{BASE}/a"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"app": "no"}}}),
    )
    .await;
    let ev = w.next().await.expect("event");
    assert_eq!(ev["type"], "DELETED");
    // timeoutSeconds closes the stream.
    assert!(w.next().await.is_none());

    // Name-scoped watch as kubectl get NAME -w sends it.
    let mut w = api
        .watch(&format!(
            "{BASE}?watch=true&fieldSelector=metadata.name%3Da&resourceVersion=0&timeoutSeconds=3"
        ))
        .await;
    let ev = w.next().await.expect("initial");
    assert_eq!(ev["object"]["metadata"]["name"], "a");
}

#[tokio::test]
async fn compacted_rv_gets_410_error_event() {
    // A tiny watch cache, so old revisions fall through to the (compacted) store.
    let srv = kubelite_apiserver::testing::TestServer::start_embedded_configured(|c| {
        c.watch_cache_events = 2
    })
    .await
    .expect("server");
    let api = Api::with_server(srv).await;
    let (_, first) = api.post(BASE, cm("c0", json!({}))).await;
    for i in 1..4 {
        api.post(BASE, cm(&format!("c{i}"), json!({}))).await;
    }
    let (_, last) = api.post(BASE, cm("last", json!({}))).await;
    api.srv.storage().compact(rv(&last)).await.expect("compact");
    // An RV older than the cache's window and the store's history.
    let mut w = api
        .watch(&format!(
            "{BASE}?watch=true&resourceVersion={}",
            rv(&first) - 5
        ))
        .await;
    let ev = w.next().await.expect("event");
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert!(w.next().await.is_none(), "stream closes after the error");
}

#[tokio::test]
async fn bookmarks_and_initial_events_end() {
    let api = Api::start().await;
    api.post(BASE, cm("a", json!({}))).await;
    let mut w = api
        .watch(&format!("{BASE}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=3"))
        .await;
    let ev = w.next().await.expect("added");
    assert_eq!(ev["type"], "ADDED");
    let ev = w.next().await.expect("bookmark");
    assert_eq!(ev["type"], "BOOKMARK");
    assert_eq!(
        ev["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(ev["object"]["metadata"]["resourceVersion"].is_string());
    // Periodic bookmark (the test server sends one every second).
    let ev = w.next().await.expect("periodic bookmark");
    assert_eq!(ev["type"], "BOOKMARK");
    assert!(ev["object"]["metadata"].get("annotations").is_none());
}

#[tokio::test]
async fn table_watch_events() {
    let api = Api::start().await;
    api.post(BASE, cm("a", json!({}))).await;
    let resp = api
        .http
        .get(api.url(&format!(
            "{BASE}?watch=true&resourceVersion=0&timeoutSeconds=3"
        )))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .expect("watch");
    let body = tokio::time::timeout(TIMEOUT, async {
        api.post(BASE, cm("b", json!({}))).await;
        resp.text().await.expect("text")
    })
    .await
    .expect("timely");
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.len(), 2, "{body}");
    assert_eq!(events[0]["object"]["kind"], "Table");
    assert_eq!(events[0]["object"]["columnDefinitions"][0]["name"], "Name");
    assert!(events[1]["object"]["columnDefinitions"].is_null());
    assert_eq!(events[1]["object"]["rows"][0]["cells"][0], "b");
}

#[tokio::test]
async fn many_watchers_share_one_cache() {
    let api = Api::start().await;
    let mut watches = Vec::new();
    for _ in 0..100 {
        watches.push(
            api.watch(&format!(
                "{BASE}?watch=true&resourceVersion=0&timeoutSeconds=10"
            ))
            .await,
        );
    }
    api.post(BASE, cm("fanout", json!({}))).await;
    for w in &mut watches {
        let ev = w.next().await.expect("event");
        assert_eq!(ev["type"], "ADDED");
        assert_eq!(ev["object"]["metadata"]["name"], "fanout");
    }
    let metrics = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!metrics.is_empty());
}
