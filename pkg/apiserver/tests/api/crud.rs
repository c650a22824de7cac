//! Create/get/update/patch/delete and their Status errors.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn configmap_crud_and_errors() {
    configmap_crud_and_errors_flow(&Api::start().await).await;
}

pub async fn configmap_crud_and_errors_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/configmaps";
    let (code, created) = api.post(base, cm("a", json!({"k": "v"}))).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["kind"], "ConfigMap");
    assert!(created["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(created["metadata"]["creationTimestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(created["metadata"].get("generation").is_none());

    let (code, got) = api.get(&format!("{base}/a")).await;
    assert_eq!(code, 200);
    assert_eq!(got, created);

    // AlreadyExists
    let (code, st) = api.post(base, cm("a", json!({}))).await;
    assert_eq!(code, 409);
    assert_eq!(st["reason"], "AlreadyExists");
    assert_eq!(st["message"], "configmaps \"a\" already exists");
    assert_eq!(st["kind"], "Status");

    // NotFound
    let (code, st) = api.get(&format!("{base}/nope")).await;
    assert_eq!(code, 404);
    assert_eq!(st["message"], "configmaps \"nope\" not found");
    assert_eq!(st["details"]["name"], "nope");
    assert_eq!(st["details"]["kind"], "configmaps");

    // Update, then a stale update → 409 Conflict.
    let mut upd = got.clone();
    upd["data"]["k"] = json!("v2");
    let (code, updated) = api.put(&format!("{base}/a"), upd.clone()).await;
    assert_eq!(code, 200, "{updated}");
    assert!(rv(&updated) > rv(&created));
    let (code, st) = api.put(&format!("{base}/a"), upd).await;
    assert_eq!(code, 409);
    assert_eq!(st["reason"], "Conflict");
    assert_eq!(
        st["message"],
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // Name mismatch, wrong kind, malformed JSON, unsupported media type.
    let (code, st) = api.put(&format!("{base}/b"), cm("a", json!({}))).await;
    assert_eq!(code, 400);
    assert_eq!(
        st["message"],
        "the name of the object (a) does not match the name on the URL (b)"
    );
    let (code, _) = api
        .post(
            base,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(code, 400);
    let (code, st, _) = api
        .send(
            api.http
                .post(api.url(base))
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await;
    assert_eq!(code, 400, "{st}");
    let (code, _, _) = api
        .send(
            api.http
                .post(api.url(base))
                .header("content-type", "text/csv")
                .body("a,b"),
        )
        .await;
    assert_eq!(code, 415);
    let mut other_ns = cm("z", json!({}));
    other_ns["metadata"]["namespace"] = json!("kube-system");
    let (code, _) = api.post(base, other_ns).await;
    assert_eq!(code, 400);

    // YAML body.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  x: y\n";
    let (code, v, _) = api
        .send(
            api.http
                .post(api.url(base))
                .header("content-type", "application/yaml")
                .body(yaml),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["data"]["x"], "y");

    // Too large.
    let big = "x".repeat(4 * 1024 * 1024);
    let (code, st) = api.post(base, cm("big", json!({"k": big}))).await;
    assert_eq!(code, 413, "{st}");

    // Delete: Status for configmaps, then 404.
    let (code, st) = api
        .delete(
            &format!("{base}/a"),
            Some(json!({"propagationPolicy": "Background"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(st["status"], "Success");
    assert_eq!(st["details"]["uid"], created["metadata"]["uid"]);
    let (code, _) = api.get(&format!("{base}/a")).await;
    assert_eq!(code, 404);
    let (code, st) = api.delete(&format!("{base}/a"), None).await;
    assert_eq!(code, 404, "{st}");
}

#[tokio::test]
async fn generate_name_and_validation() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-"}});
    let (code, v) = api.post(base, body.clone()).await;
    assert_eq!(code, 201, "{v}");
    let name = v["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    let (_, v2) = api.post(base, body).await;
    assert_ne!(v2["metadata"]["name"], v["metadata"]["name"]);

    let (code, st) = api.post(base, cm("Bad_Name", json!({}))).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name");
    assert!(
        st["message"].as_str().expect("msg").starts_with(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ),
        "{st}"
    );
}

/// A pod's status is not settable on create (upstream's PrepareForCreate): it starts Pending,
/// with the QoS class computed from its spec, whatever the body said.
#[tokio::test]
async fn pod_create_resets_status() {
    let api = Api::start().await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "qosClass": "Guaranteed", "podIP": "10.0.0.9"},
    });
    let (code, p) = api.post("/api/v1/namespaces/default/pods", pod).await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(
        p["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
    let (_, stored) = api.get("/api/v1/namespaces/default/pods/p").await;
    assert_eq!(stored["status"], p["status"]);
}

#[tokio::test]
async fn generation_status_and_noop() {
    generation_status_and_noop_flow(&Api::start().await).await;
}

pub async fn generation_status_and_noop_flow(api: &Api) {
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let (code, d) = api.post(base, deployment("web", 1)).await;
    assert_eq!(code, 201, "{d}");
    assert_eq!(d["metadata"]["generation"], 1);

    // Label change: no generation bump.
    let (code, d2) = api
        .patch(
            &format!("{base}/web"),
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await;
    assert_eq!(code, 200, "{d2}");
    assert_eq!(d2["metadata"]["generation"], 1);
    // Spec change: bump.
    let (_, d3) = api
        .patch(
            &format!("{base}/web"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(d3["metadata"]["generation"], 2);
    // No-op patch: same resourceVersion.
    let (_, d4) = api
        .patch(
            &format!("{base}/web"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(
        d4["metadata"]["resourceVersion"],
        d3["metadata"]["resourceVersion"]
    );

    // Status is ignored on the main resource...
    let (_, d5) = api
        .patch(
            &format!("{base}/web"),
            "application/merge-patch+json",
            json!({"status": {"replicas": 7}}),
        )
        .await;
    assert!(d5["status"].get("replicas").is_none(), "{d5}");
    // ...and only status changes through /status.
    let (code, d6) = api
        .patch(
            &format!("{base}/web/status"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 9}, "status": {"replicas": 7, "observedGeneration": 2}}),
        )
        .await;
    assert_eq!(code, 200, "{d6}");
    assert_eq!(d6["status"]["replicas"], 7);
    assert_eq!(d6["spec"]["replicas"], 3);
    assert_eq!(d6["metadata"]["generation"], 2);

    // Strategic merge patch of containers by name.
    let (code, d7) = api.patch(&format!("{base}/web"), "application/strategic-merge-patch+json",
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "c"}], "containers": [{"name": "c", "image": "nginx:2"}]}}}})).await;
    assert_eq!(code, 200, "{d7}");
    assert_eq!(
        d7["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(d7["metadata"]["generation"], 3);

    // JSON patch.
    let (code, d8) = api
        .patch(
            &format!("{base}/web"),
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]),
        )
        .await;
    assert_eq!(code, 200, "{d8}");
    assert_eq!(d8["spec"]["replicas"], 5);
    // Server-side apply: the JSON patch above owns spec.replicas now, so taking it needs force;
    // apply also creates a missing object.
    let (code, d9) = api.patch(&format!("{base}/web?fieldManager=kubectl&force=true"), "application/apply-patch+yaml",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 6}})).await;
    assert_eq!(code, 200, "{d9}");
    assert_eq!(d9["spec"]["replicas"], 6);
    assert_eq!(
        d9["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: fresh\nspec:\n  selector:\n    matchLabels: {app: fresh}\n  template:\n    metadata:\n      labels: {app: fresh}\n    spec:\n      containers:\n      - {name: c, image: nginx}\n";
    let (code, fresh, _) = api
        .send(
            api.http
                .patch(api.url(&format!("{base}/fresh?fieldManager=kubectl")))
                .header("content-type", "application/apply-patch+yaml")
                .body(yaml),
        )
        .await;
    assert_eq!(code, 201, "{fresh}");
    assert_eq!(fresh["spec"]["replicas"], 1, "defaulted");
}

#[tokio::test]
async fn scale_subresource() {
    scale_subresource_flow(&Api::start().await).await;
}

pub async fn scale_subresource_flow(api: &Api) {
    let base = "/apis/apps/v1/namespaces/default/deployments";
    api.post(base, deployment("web", 1)).await;
    let (code, s) = api.get(&format!("{base}/web/scale")).await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["kind"], "Scale");
    assert_eq!(s["apiVersion"], "autoscaling/v1");
    assert_eq!(s["spec"]["replicas"], 1);
    assert_eq!(s["status"]["selector"], "app=web");
    let (code, s2) = api
        .patch(
            &format!("{base}/web/scale"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 4}}),
        )
        .await;
    assert_eq!(code, 200, "{s2}");
    assert_eq!(s2["kind"], "Scale", "{s2}");
    assert_eq!(s2["spec"]["replicas"], 4);
    let (_, d) = api.get(&format!("{base}/web")).await;
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);
    // PUT with a stale resourceVersion.
    let mut stale = s.clone();
    stale["spec"]["replicas"] = json!(2);
    let (code, _) = api.put(&format!("{base}/web/scale"), stale).await;
    assert_eq!(code, 409);
}

#[tokio::test]
async fn dry_run_and_field_validation() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let (code, v) = api
        .post(&format!("{base}?dryRun=All"), cm("dry", json!({})))
        .await;
    assert_eq!(code, 201, "{v}");
    let (code, _) = api.get(&format!("{base}/dry")).await;
    assert_eq!(code, 404);

    let mut unknown = cm("u", json!({}));
    unknown["spec"] = json!({"foo": 1});
    let (code, st) = api
        .post(&format!("{base}?fieldValidation=Strict"), unknown.clone())
        .await;
    assert_eq!(code, 400, "{st}");
    assert_eq!(
        st["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\""
    );
    // Patches report the bare strict error.
    api.post(base, cm("p", json!({}))).await;
    let (code, st) = api
        .patch(
            &format!("{base}/p?fieldValidation=Strict"),
            "application/merge-patch+json",
            json!({"spec": {"foo": 1}}),
        )
        .await;
    assert_eq!(code, 400, "{st}");
    assert_eq!(
        st["message"],
        "strict decoding error: unknown field \"spec\""
    );
    let (code, _, headers) = api
        .send(
            api.http
                .post(api.url(&format!("{base}?fieldValidation=Warn")))
                .json(&unknown),
        )
        .await;
    assert_eq!(code, 201);
    let warning = headers
        .get("warning")
        .expect("warning header")
        .to_str()
        .expect("ascii");
    assert_eq!(warning, "299 - \"unknown field \\\"spec\\\"\"");
    let (_, stored) = api.get(&format!("{base}/u")).await;
    assert!(stored.get("spec").is_none(), "unknown fields are pruned");

    // dryRun delete keeps the object.
    let (code, _) = api.delete(&format!("{base}/u?dryRun=All"), None).await;
    assert_eq!(code, 200);
    let (code, _) = api.get(&format!("{base}/u")).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn protobuf_request_body() {
    use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message;

    let api = Api::start().await;
    let cm = k8s_pb::api::core::v1::ConfigMap {
        metadata: Some(ObjectMeta {
            name: Some("pb".into()),
            ..Default::default()
        }),
        data: [("k".to_string(), "v".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
        }),
        raw: Some(cm.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    let rb = api
        .http
        .post(api.url("/api/v1/namespaces/default/configmaps"))
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .header(
            "accept",
            "application/vnd.kubernetes.protobuf,application/json",
        )
        .body(body);
    let (code, v, headers) = api.send(rb).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(v["data"]["k"], "v");
    assert_eq!(v["metadata"]["name"], "pb");
    let (code, _, _) = api
        .send(
            api.http
                .post(api.url("/api/v1/namespaces/default/configmaps"))
                .header("content-type", "application/vnd.kubernetes.protobuf")
                .body("k8s\0garbage"),
        )
        .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn duplicate_fields_are_reported() {
    let api = Api::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},"data":{"a":"1","a":"2"}}"#;
    let rb = api
        .http
        .post(api.url(&format!("{base}?fieldValidation=Strict")))
        .header("content-type", "application/json")
        .body(body);
    let (code, st, _) = api.send(rb).await;
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"]
            .as_str()
            .expect("msg")
            .ends_with("strict decoding error: duplicate field \"data.a\""),
        "{st}"
    );
    let rb = api
        .http
        .post(api.url(base))
        .header("content-type", "application/json")
        .body(body);
    let (code, v, headers) = api.send(rb).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["data"]["a"], "2", "the last value wins");
    assert_eq!(
        headers["warning"],
        "299 - \"duplicate field \\\"data.a\\\"\""
    );
}

#[tokio::test]
async fn concurrent_patches_are_not_lost() {
    concurrent_patches_are_not_lost_flow(&Api::start().await).await;
}

pub async fn concurrent_patches_are_not_lost_flow(api: &Api) {
    let base = "/api/v1/namespaces/default/configmaps";
    api.post(base, cm("race", json!({}))).await;
    let patches = (0..40).map(|i| async move {
        let body = json!({"metadata": {"labels": {format!("k{i}"): "v"}}});
        api.patch(
            &format!("{base}/race"),
            "application/merge-patch+json",
            body,
        )
        .await
    });
    for (code, v) in futures::future::join_all(patches).await {
        assert_eq!(code, 200, "{v}");
    }
    let (_, got) = api.get(&format!("{base}/race")).await;
    assert_eq!(
        got["metadata"]["labels"].as_object().map(|m| m.len()),
        Some(40)
    );
    // Unconditional PUTs race too, but each lands; a PUT with a stale resourceVersion does not.
    let mut stale = got.clone();
    api.patch(
        &format!("{base}/race"),
        "application/merge-patch+json",
        json!({"data": {"x": "1"}}),
    )
    .await;
    stale["data"] = json!({"y": "2"});
    let (code, _) = api.put(&format!("{base}/race"), stale).await;
    assert_eq!(code, 409);
}

#[tokio::test]
async fn put_creates_leases_but_not_configmaps() {
    let api = Api::start().await;
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}});
    let (code, v) = api
        .put(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            lease,
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let (code, _) = api
        .put(
            "/api/v1/namespaces/default/configmaps/nope",
            cm("nope", json!({})),
        )
        .await;
    assert_eq!(code, 404);
}
