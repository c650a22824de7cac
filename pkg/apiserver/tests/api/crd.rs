//! CustomResourceDefinitions: serving, conditions, discovery, schema validation, pruning and
//! defaults, status and scale subresources, printer columns, several versions, and deletion.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

pub fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
                {
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                    "replicas": {"type": "integer"},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                                },
                            },
                            "status": {"type": "object", "properties": {
                                "replicas": {"type": "integer"},
                                "selector": {"type": "string"},
                                "phase": {"type": "string"},
                            }},
                        },
                    }},
                    "subresources": {
                        "status": {},
                        "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"},
                    },
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                },
                {
                    "name": "v2", "served": true, "storage": false,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                },
            ],
        },
    })
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
}

/// Poll `path` until it answers 200 (the CRD is served), within 5 s.
pub async fn wait_served(api: &Api, path: &str) -> Duration {
    let start = Instant::now();
    loop {
        let (code, _) = api.get(path).await;
        if code == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{path} not served: {code}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn crd_lifecycle_and_custom_resources() {
    let api = Api::start().await;
    let (code, crd) = api.post(CRDS, widget_crd()).await;
    assert_eq!(code, 201, "{crd}");
    assert_eq!(
        crd["metadata"]["finalizers"],
        json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
    let took = wait_served(&api, WIDGETS).await;
    assert!(took < Duration::from_secs(1), "served after {took:?}");

    // Established and NamesAccepted.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, crd) = api.get(&format!("{CRDS}/widgets.example.com")).await;
        let conds = crd["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let is_true = |t: &str| {
            conds
                .iter()
                .any(|c| c["type"] == t && c["status"] == "True")
        };
        if is_true("Established") && is_true("NamesAccepted") {
            assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
            assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
            break;
        }
        assert!(Instant::now() < deadline, "not established: {crd}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Discovery: legacy and aggregated.
    let (code, list) = api.get("/apis/example.com/v1").await;
    assert_eq!(code, 200);
    let res = list["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "widgets"))
        .cloned()
        .expect("widgets in discovery");
    assert_eq!(res["shortNames"], json!(["wd"]));
    assert_eq!(res["categories"], json!(["all"]));
    assert_eq!(res["namespaced"], true);
    let (code, groups) = api.get("/apis").await;
    assert_eq!(code, 200);
    let group = groups["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "example.com"))
        .cloned()
        .expect("group");
    assert_eq!(group["preferredVersion"]["version"], "v1");

    // Create with defaults and pruning.
    let mut w = widget(
        "a",
        json!({"size": 3, "unknown": 1, "free": {"x": {"y": 1}}}),
    );
    w["extra"] = json!(true);
    let (code, a) = api.post(WIDGETS, w).await;
    assert_eq!(code, 201, "{a}");
    assert_eq!(a["spec"]["color"], "red", "default applied: {a}");
    assert!(a["spec"].get("unknown").is_none(), "pruned: {a}");
    assert!(a.get("extra").is_none(), "pruned: {a}");
    assert_eq!(a["spec"]["free"], json!({"x": {"y": 1}}));
    assert_eq!(a["metadata"]["generation"], 1);

    // Strict field validation reports pruned fields.
    let (code, st) = api
        .post(
            &format!("{WIDGETS}?fieldValidation=Strict"),
            widget("s", json!({"size": 3, "nope": 1})),
        )
        .await;
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field \"spec.nope\"")),
        "{st}"
    );

    // Schema violations: 422 with causes.
    let (code, st) = api
        .post(
            WIDGETS,
            widget("b", json!({"size": "big", "color": "green"})),
        )
        .await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["reason"], "Invalid");
    let causes = st["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(causes.iter().any(|c| c["field"] == "spec.size"), "{st}");
    assert!(
        causes
            .iter()
            .any(|c| c["field"] == "spec.color" && c["reason"] == "FieldValueNotSupported"),
        "{st}"
    );
    let (code, st) = api.post(WIDGETS, widget("c", json!({}))).await;
    assert_eq!(code, 422, "{st}");
    assert!(
        st["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.size: Required value")),
        "{st}"
    );
    let (code, st) = api.post(WIDGETS, widget("d", json!({"size": 11}))).await;
    assert_eq!(code, 422, "{st}");

    // Main resource ignores status; status subresource ignores spec.
    let mut upd = a.clone();
    upd["status"] = json!({"phase": "Ready"});
    upd["spec"]["size"] = json!(4);
    let (code, u) = api.put(&format!("{WIDGETS}/a"), upd).await;
    assert_eq!(code, 200, "{u}");
    assert!(u.get("status").is_none(), "{u}");
    assert_eq!(u["metadata"]["generation"], 2);
    let mut st_upd = u.clone();
    st_upd["status"] = json!({"phase": "Ready", "replicas": 2, "selector": "app=w"});
    st_upd["spec"]["size"] = json!(9);
    let (code, s) = api.put(&format!("{WIDGETS}/a/status"), st_upd).await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["status"]["phase"], "Ready");
    assert_eq!(s["spec"]["size"], 4);
    assert_eq!(
        s["metadata"]["generation"], 2,
        "status does not bump generation"
    );

    // Scale subresource.
    let (code, scale) = api.get(&format!("{WIDGETS}/a/scale")).await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["status"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=w");
    let (code, scale) = api
        .patch(
            &format!("{WIDGETS}/a/scale"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 5);
    let (_, got) = api.get(&format!("{WIDGETS}/a")).await;
    assert_eq!(got["spec"]["replicas"], 5);

    // Merge patch works, strategic merge patch is 415 as upstream.
    let (code, p) = api
        .patch(
            &format!("{WIDGETS}/a"),
            "application/merge-patch+json",
            json!({"spec": {"color": "blue"}}),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["spec"]["color"], "blue");
    let (code, st) = api
        .patch(
            &format!("{WIDGETS}/a"),
            "application/strategic-merge-patch+json",
            json!({"spec": {"color": "red"}}),
        )
        .await;
    assert_eq!(code, 415, "{st}");

    // Table with the printer columns.
    let (code, table, _) = api
        .send(
            api.http
                .get(api.url(WIDGETS))
                .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io"),
        )
        .await;
    assert_eq!(code, 200, "{table}");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["Name", "Size", "Color", "Age"], "{table}");
    assert_eq!(table["rows"][0]["cells"][1], 4);
    assert_eq!(table["rows"][0]["cells"][2], "blue");

    // The same object through v2 (conversion None: apiVersion rewritten).
    let (code, v2) = api
        .get("/apis/example.com/v2/namespaces/default/widgets/a")
        .await;
    assert_eq!(code, 200, "{v2}");
    assert_eq!(v2["apiVersion"], "example.com/v2");
    assert_eq!(v2["spec"]["size"], 4);

    // Label selectors and metadata.name field selectors.
    let (code, list) = api
        .get(&format!("{WIDGETS}?fieldSelector=metadata.name%3Da"))
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["kind"], "WidgetList");

    // Deleting the CRD deletes its objects, then stops serving.
    let (code, _) = api
        .delete(&format!("{CRDS}/widgets.example.com"), None)
        .await;
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (crd_code, _) = api.get(&format!("{CRDS}/widgets.example.com")).await;
        let (list_code, _) = api.get(WIDGETS).await;
        if crd_code == 404 && list_code == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CRD still there: {crd_code} {list_code}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Re-creating it serves an empty collection (the objects went with it).
    let (code, _) = api.post(CRDS, widget_crd()).await;
    assert_eq!(code, 201);
    wait_served(&api, WIDGETS).await;
    let (_, list) = api.get(WIDGETS).await;
    assert_eq!(list["items"], json!([]), "{list}");
}

#[tokio::test]
async fn crd_validation_and_conflicts() {
    let api = Api::start().await;
    // Name must be <plural>.<group>.
    let mut bad = widget_crd();
    bad["metadata"]["name"] = json!("gadgets.example.com");
    let (code, st) = api.post(CRDS, bad).await;
    assert_eq!(code, 422, "{st}");
    // Two storage versions.
    let mut bad = widget_crd();
    bad["spec"]["versions"][1]["storage"] = json!(true);
    let (code, st) = api.post(CRDS, bad).await;
    assert_eq!(code, 422, "{st}");
    // A cluster-scoped CRD is served at the cluster path.
    let mut cluster = widget_crd();
    cluster["metadata"]["name"] = json!("gizmos.example.com");
    cluster["spec"]["names"] = json!({"plural": "gizmos", "kind": "Gizmo"});
    cluster["spec"]["scope"] = json!("Cluster");
    let (code, c) = api.post(CRDS, cluster).await;
    assert_eq!(code, 201, "{c}");
    wait_served(&api, "/apis/example.com/v1/gizmos").await;
    let (code, g) = api
        .post(
            "/apis/example.com/v1/gizmos",
            json!({"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"size": 1}}),
        )
        .await;
    assert_eq!(code, 201, "{g}");
    assert!(g["metadata"].get("namespace").is_none());
    // served=false hides a version.
    let (_, mut crd) = api.get(&format!("{CRDS}/gizmos.example.com")).await;
    crd["spec"]["versions"][1]["served"] = json!(false);
    let (code, u) = api.put(&format!("{CRDS}/gizmos.example.com"), crd).await;
    assert_eq!(code, 200, "{u}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.get("/apis/example.com/v2/gizmos").await.0 != 404 {
        assert!(Instant::now() < deadline, "v2 still served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(api.get("/apis/example.com/v1/gizmos/g").await.0, 200);
}
