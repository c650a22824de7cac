//! Lists: selectors, pagination, resourceVersion semantics, Tables.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn selectors() {
    selectors_flow(&Api::start().await).await;
}

pub async fn selectors_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/configmaps";
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let mut o = cm(name, json!({}));
        o["metadata"]["labels"] = json!({"tier": tier, "n": name});
        assert_eq!(api.post(base, o).await.0, 201);
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().expect("name").to_string())
            .collect()
    };
    let (_, l) = api.get(&format!("{base}?labelSelector=tier%3Dweb")).await;
    assert_eq!(names(&l), ["a", "c"]);
    let (_, l) = api
        .get(&format!("{base}?labelSelector=tier%20in%20(db),n!%3Dx"))
        .await;
    assert_eq!(names(&l), ["b"]);
    let (_, l) = api.get(&format!("{base}?labelSelector=!tier")).await;
    assert!(names(&l).is_empty());
    let (_, l) = api
        .get(&format!("{base}?fieldSelector=metadata.name%3Db"))
        .await;
    assert_eq!(names(&l), ["b"]);
    let (_, l) = api
        .get(&format!("{base}?fieldSelector=metadata.name!%3Db"))
        .await;
    assert_eq!(names(&l), ["a", "c"]);
    let (code, st) = api
        .get(&format!("{base}?fieldSelector=spec.bogus%3Dx"))
        .await;
    assert_eq!(code, 400);
    assert_eq!(st["message"], "field label not supported: spec.bogus");
    // All namespaces, and a missing namespace lists empty.
    let (_, l) = api.get("/api/v1/configmaps?labelSelector=tier").await;
    assert_eq!(l["kind"], "ConfigMapList");
    assert_eq!(names(&l).len(), 3);
    let (code, l) = api.get("/api/v1/namespaces/missing/configmaps").await;
    assert_eq!(code, 200);
    assert_eq!(l["items"], json!([]));
    // Pods: spec.nodeName and status.phase are selectable.
    let (code, _) = api
        .get("/api/v1/pods?fieldSelector=spec.nodeName%3D,status.phase!%3DRunning")
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn pagination_is_consistent_across_writes() {
    pagination_is_consistent_across_writes_flow(&Api::start().await).await;
}

pub async fn pagination_is_consistent_across_writes_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/configmaps";
    for i in 0..7 {
        api.post(base, cm(&format!("cm-{i}"), json!({}))).await;
    }
    let (_, p1) = api.get(&format!("{base}?limit=3")).await;
    assert_eq!(p1["items"].as_array().expect("items").len(), 3);
    assert_eq!(p1["metadata"]["remainingItemCount"], 4);
    let token = p1["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    // Writes between pages are not seen.
    api.post(base, cm("cm-9", json!({}))).await;
    api.delete(&format!("{base}/cm-5"), None).await;
    let mut names: Vec<String> = Vec::new();
    let mut page = p1;
    loop {
        for i in page["items"].as_array().expect("items") {
            names.push(i["metadata"]["name"].as_str().expect("name").to_string());
        }
        assert_eq!(
            page["metadata"]["resourceVersion"],
            json!(rv(&page).to_string())
        );
        let Some(c) = page["metadata"]["continue"].as_str().map(str::to_string) else {
            break;
        };
        let (code, next) = api
            .get(&format!("{base}?limit=3&continue={}", urlencode(&c)))
            .await;
        assert_eq!(code, 200, "{next}");
        page = next;
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    let _ = token;
    // A bogus token is a 400.
    let (code, _) = api.get(&format!("{base}?limit=3&continue=garbage")).await;
    assert_eq!(code, 400);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[tokio::test]
async fn list_resource_versions() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let (_, a) = api.post(base, cm("a", json!({}))).await;
    let (_, b) = api.post(base, cm("b", json!({}))).await;
    // Exact at a's revision: only a.
    let (code, l) = api
        .get(&format!(
            "{base}?resourceVersion={}&resourceVersionMatch=Exact",
            rv(&a)
        ))
        .await;
    assert_eq!(code, 200, "{l}");
    assert_eq!(l["items"].as_array().expect("items").len(), 1);
    // RV=0 from the cache eventually sees both.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (_, l) = api.get(&format!("{base}?resourceVersion=0")).await;
        if l["items"].as_array().expect("items").len() == 2 {
            assert!(rv(&l) >= rv(&b));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (code, _) = api.get(&format!("{base}?resourceVersionMatch=Exact")).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn tables_for_pods_and_deployments() {
    let api = Api::start().await;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    api.post("/api/v1/namespaces/default/pods", pod("p1")).await;
    api.post(
        "/apis/apps/v1/namespaces/default/deployments",
        deployment("d1", 2),
    )
    .await;
    let (code, t, _) = api
        .send(
            api.http
                .get(api.url("/api/v1/namespaces/default/pods?limit=500"))
                .header("accept", accept),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["rows"][0]["cells"][0], "p1");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "p1");
    assert!(t["metadata"]["resourceVersion"].is_string());
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(&cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(t["rows"][0]["cells"][1], "0/1");
    assert_eq!(t["rows"][0]["cells"][2], "Pending");

    let (_, t, _) = api
        .send(
            api.http
                .get(
                    api.url("/apis/apps/v1/namespaces/default/deployments/d1?includeObject=Object"),
                )
                .header("accept", accept),
        )
        .await;
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["rows"][0]["object"]["kind"], "Deployment");
    assert_eq!(t["rows"].as_array().expect("rows").len(), 1);
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        &cols[..5],
        ["Name", "Ready", "Up-to-date", "Available", "Age"]
    );
    assert_eq!(t["rows"][0]["cells"][1], "0/2");
}

#[tokio::test]
async fn expired_continue_token_is_410() {
    expired_continue_token_is_410_flow(&Api::start().await).await;
}

pub async fn expired_continue_token_is_410_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/configmaps";
    for i in 0..4 {
        api.post(base, cm(&format!("cm-{i}"), json!({}))).await;
    }
    let (_, p1) = api.get(&format!("{base}?limit=2")).await;
    let token = p1["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let (_, last) = api.post(base, cm("later", json!({}))).await;
    api.srv.storage().compact(rv(&last)).await.expect("compact");
    let (code, st) = api
        .get(&format!(
            "{base}?limit=2&continue={}",
            token.replace('=', "%3D")
        ))
        .await;
    assert_eq!(code, 410, "{st}");
    assert_eq!(st["reason"], "Expired");
    assert!(st["message"]
        .as_str()
        .expect("msg")
        .starts_with("The provided continue parameter is too old"));
}

#[tokio::test]
async fn core_event_lists_show_events_k8s_io_events() {
    let api = Api::start().await;
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "p.1"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Scheduled", "note": "Successfully assigned default/p to n1", "type": "Normal",
        "action": "Binding", "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-1"});
    let (code, created) = api
        .post("/apis/events.k8s.io/v1/namespaces/default/events", ev)
        .await;
    assert_eq!(code, 201, "{created}");
    let (code, l) = api
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp,involvedObject.kind%3DPod")
        .await;
    assert_eq!(code, 200, "{l}");
    assert_eq!(
        l["items"][0]["message"],
        "Successfully assigned default/p to n1"
    );
    assert_eq!(l["items"][0]["involvedObject"]["name"], "p");
    let (_, none) = api
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dq")
        .await;
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn expired_events_are_swept() {
    let srv = kubelite_apiserver::testing::TestServer::start_embedded_configured(|c| {
        c.event_ttl = std::time::Duration::from_secs(1)
    })
    .await
    .expect("server");
    let api = Api::with_server(srv).await;
    let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "old.1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Test", "message": "m", "type": "Normal", "source": {"component": "test"}});
    let (code, created) = api.post("/api/v1/namespaces/default/events", ev).await;
    assert_eq!(code, 201, "{created}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (code, _) = api.get("/api/v1/namespaces/default/events/old.1").await;
        if code == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
