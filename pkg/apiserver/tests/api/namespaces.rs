//! Namespace lifecycle, pods (graceful deletion, binding, eviction), finalizers, services.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

async fn wait_gone(api: &Api, path: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (code, _) = api.get(path).await;
        if code == 404 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never went away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn namespace_lifecycle() {
    namespace_lifecycle_flow(&Api::start().await).await;
}

pub async fn namespace_lifecycle_flow(api: &Api) {
    // Built-ins exist.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let (code, v) = api.get(&format!("/api/v1/namespaces/{ns}")).await;
        assert_eq!(code, 200);
        assert_eq!(v["status"]["phase"], "Active");
    }
    // Missing namespace → 404 with the namespace's name.
    let (code, st) = api
        .post("/api/v1/namespaces/nope/configmaps", cm("a", json!({})))
        .await;
    assert_eq!(code, 404);
    assert_eq!(st["message"], "namespaces \"nope\" not found");

    let (code, ns) = api
        .post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        )
        .await;
    assert_eq!(code, 201, "{ns}");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    api.post("/api/v1/namespaces/team/configmaps", cm("a", json!({})))
        .await;
    let (code, _) = api.post("/api/v1/namespaces/team/pods", pod("p")).await;
    assert_eq!(code, 201);

    let (code, del) = api.delete("/api/v1/namespaces/team", None).await;
    assert_eq!(code, 200);
    assert_eq!(del["status"]["phase"], "Terminating");
    assert!(del["metadata"]["deletionTimestamp"].is_string());
    // Creating in a terminating namespace → 403 (unless the sweep already finished).
    let (code, st) = api
        .post("/api/v1/namespaces/team/configmaps", cm("b", json!({})))
        .await;
    assert!(code == 403 || code == 404, "{st}");
    if code == 403 {
        assert_eq!(
            st["message"],
            "configmaps \"b\" is forbidden: \
             unable to create new content in namespace team because it is being terminated"
        );
        assert_eq!(st["reason"], "Forbidden");
    }
    wait_gone(api, "/api/v1/namespaces/team").await;
    let (_, l) = api.get("/api/v1/namespaces/team/configmaps").await;
    assert_eq!(l["items"], json!([]));
    // default may not be deleted.
    let (code, _) = api.delete("/api/v1/namespaces/default", None).await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn pod_graceful_deletion_binding_and_eviction() {
    pod_graceful_deletion_binding_and_eviction_flow(&Api::start().await).await;
}

pub async fn pod_graceful_deletion_binding_and_eviction_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/pods";
    // Never scheduled: removed at once.
    api.post(base, pod("unbound")).await;
    let (code, body) = api.delete(&format!("{base}/unbound"), None).await;
    assert_eq!(code, 200);
    assert_eq!(body["kind"], "Pod");
    let (code, _) = api.get(&format!("{base}/unbound")).await;
    assert_eq!(code, 404);

    // Bind, then delete gracefully.
    let (_, p) = api.post(base, pod("web")).await;
    assert_eq!(p["status"]["phase"], "Pending");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, st) = api
        .post(&format!("{base}/web/binding"), binding.clone())
        .await;
    assert_eq!(code, 201, "{st}");
    let (_, bound) = api.get(&format!("{base}/web")).await;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    let (code, st) = api.post(&format!("{base}/web/binding"), binding).await;
    assert_eq!(code, 409);
    assert_eq!(
        st["message"],
        "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"n1\""
    );

    let (code, deleting) = api.delete(&format!("{base}/web"), None).await;
    assert_eq!(code, 200);
    assert_eq!(deleting["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    let (code, still) = api.get(&format!("{base}/web")).await;
    assert_eq!(code, 200);
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    // The kubelet finishes with grace 0.
    let (code, _) = api
        .delete(
            &format!("{base}/web"),
            Some(json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api.get(&format!("{base}/web")).await;
    assert_eq!(code, 404);

    // Eviction of an unbound pod deletes it.
    api.post(base, pod("ev")).await;
    let (code, st) = api
        .post(
            &format!("{base}/ev/eviction"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "ev"}}),
        )
        .await;
    assert_eq!(code, 201, "{st}");
    let (code, _) = api.get(&format!("{base}/ev")).await;
    assert_eq!(code, 404);

    // Streaming subresources answer with a clear Status for now.
    let (code, st) = api.get(&format!("{base}/missing/log")).await;
    assert_eq!(code, 404, "{st}");
}

#[tokio::test]
async fn finalizers_and_preconditions() {
    finalizers_and_preconditions_flow(&Api::start().await).await;
}

pub async fn finalizers_and_preconditions_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/configmaps";
    let mut o = cm("f", json!({}));
    o["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (_, created) = api.post(base, o).await;
    // Wrong UID precondition.
    let (code, st) = api
        .delete(
            &format!("{base}/f"),
            Some(json!({"preconditions": {"uid": "nope"}})),
        )
        .await;
    assert_eq!(code, 409, "{st}");
    let (code, marked) = api
        .delete(
            &format!("{base}/f"),
            Some(json!({"preconditions": {"uid": created["metadata"]["uid"]}})),
        )
        .await;
    assert_eq!(code, 200);
    // Deleting an object with finalizers answers with the object (it still exists).
    let (_, still) = api.get(&format!("{base}/f")).await;
    assert!(
        still["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    // Removing the last finalizer deletes it.
    let (code, _) = api
        .patch(
            &format!("{base}/f"),
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api.get(&format!("{base}/f")).await;
    assert_eq!(code, 404);

    // Foreground propagation adds the foregroundDeletion finalizer.
    api.post(base, cm("g", json!({}))).await;
    api.delete(
        &format!("{base}/g"),
        Some(json!({"propagationPolicy": "Foreground"})),
    )
    .await;
    let (_, g) = api.get(&format!("{base}/g")).await;
    assert_eq!(g["metadata"]["finalizers"], json!(["foregroundDeletion"]));

    // deletecollection with a label selector.
    for n in ["x1", "x2"] {
        let mut o = cm(n, json!({}));
        o["metadata"]["labels"] = json!({"batch": "x"});
        api.post(base, o).await;
    }
    let (code, l) = api
        .delete(&format!("{base}?labelSelector=batch%3Dx"), None)
        .await;
    assert_eq!(code, 200, "{l}");
    assert_eq!(l["items"].as_array().map(Vec::len), Some(2));
    let (_, l) = api.get(&format!("{base}?labelSelector=batch")).await;
    assert_eq!(l["items"], json!([]));
}

fn svc(name: &str, extra: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            s["spec"][k] = v;
        }
    }
    s
}

#[tokio::test]
async fn services_allocate_ips_and_ports() {
    services_allocate_ips_and_ports_flow(&Api::start().await).await;
}

pub async fn services_allocate_ips_and_ports_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/services";
    let (code, k) = api.get(&format!("{base}/kubernetes")).await;
    assert_eq!(code, 200);
    assert_eq!(k["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(k["spec"]["ports"][0]["port"], 443);
    let (code, ep) = api
        .get("/api/v1/namespaces/default/endpoints/kubernetes")
        .await;
    assert_eq!(code, 200);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    let (code, slice) = api
        .get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
        .await;
    assert_eq!(code, 200, "{slice}");
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(
        slice["ports"][0]["port"],
        ep["subsets"][0]["ports"][0]["port"]
    );

    let (code, a) = api.post(base, svc("a", json!({}))).await;
    assert_eq!(code, 201, "{a}");
    let ip = a["spec"]["clusterIP"].as_str().expect("ip").to_string();
    assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
    assert_eq!(a["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);

    let (code, st) = api.post(base, svc("b", json!({"clusterIP": ip}))).await;
    assert_eq!(code, 422, "{st}");
    let (code, _) = api
        .post(base, svc("c", json!({"clusterIP": "192.168.0.1"})))
        .await;
    assert_eq!(code, 422);
    let (code, h) = api
        .post(base, svc("headless", json!({"clusterIP": "None"})))
        .await;
    assert_eq!(code, 201);
    assert_eq!(h["spec"]["clusterIP"], "None");

    let (code, np) = api.post(base, svc("np", json!({"type": "NodePort"}))).await;
    assert_eq!(code, 201, "{np}");
    let port = np["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort");
    assert!((30000..=32767).contains(&port));
    let (code, _) = api
        .post(
            base,
            svc(
                "np2",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}),
            ),
        )
        .await;
    assert_eq!(code, 422);

    // Switching to NodePort allocates a node port; switching back releases it.
    let (code, sw) = api
        .patch(
            &format!("{base}/a"),
            "application/merge-patch+json",
            json!({"spec": {"type": "NodePort"}}),
        )
        .await;
    assert_eq!(code, 200, "{sw}");
    let swp = sw["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort after type change");
    let (code, back) = api
        .patch(
            &format!("{base}/a"),
            "application/merge-patch+json",
            json!({"spec": {"type": "ClusterIP"}}),
        )
        .await;
    assert_eq!(code, 200, "{back}");
    assert!(back["spec"]["ports"][0].get("nodePort").is_none());
    let (code, reuse) = api
        .post(
            base,
            svc(
                "reuse",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": swp}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{reuse}");

    // Updates keep the allocation; delete releases the IP for reuse.
    let (code, upd) = api
        .patch(
            &format!("{base}/a"),
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(upd["spec"]["clusterIP"], json!(ip));
    api.delete(&format!("{base}/a"), None).await;
    let (code, again) = api.post(base, svc("again", json!({"clusterIP": ip}))).await;
    assert_eq!(code, 201, "{again}");
}
