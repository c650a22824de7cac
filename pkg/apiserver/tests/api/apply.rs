//! Server-side apply and field ownership against a real server: `metadata.managedFields`
//! after every kind of write, pruning, conflicts (409 Status) and force, and associative
//! lists of a custom resource from its CRD schema.

use serde_json::{json, Value};

use crate::common::{cm, Api};
use crate::crd::wait_served;

const APPLY: &str = "application/apply-patch+yaml";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn apply(api: &Api, path: &str, query: &str, body: Value) -> (u16, Value) {
    api.patch(&format!("{path}?{query}"), APPLY, body).await
}

/// `(manager, operation, subresource)` of every entry, in order.
fn managers(obj: &Value) -> Vec<(String, String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                    (s("manager"), s("operation"), s("subresource"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no entry for {manager} in {obj}"))
}

fn mgr(m: &str, op: &str, sub: &str) -> (String, String, String) {
    (m.into(), op.into(), sub.into())
}

#[tokio::test]
async fn apply_creates_reapplies_and_prunes() {
    let api = Api::start().await;
    let path = format!("{CMS}/cfg");
    // No field manager: upstream's 422 on PatchOptions.
    let (code, st) = apply(&api, &path, "", cm("cfg", json!({"a": "1"}))).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );

    // Apply on a missing object creates it, owned by the applier.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  labels:\n    app: web\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let rb = api
        .http
        .patch(api.url(&format!("{path}?fieldManager=alice")))
        .header("content-type", APPLY)
        .body(yaml);
    let (code, created, _) = api.send(rb).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(managers(&created), vec![mgr("alice", "Apply", "")]);
    let e = entry(&created, "alice");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    );
    let time = e["time"].as_str().expect("time");
    assert!(time.ends_with('Z') && time.len() == 20, "{time}");

    // Re-applying the same configuration changes nothing, not even the resourceVersion.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"a": "1", "b": "2"}});
    let (code, again) = apply(&api, &path, "fieldManager=alice", same).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(
        again["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    // Dropping a field (and the label) from the configuration removes it from the object.
    let (code, pruned) = apply(
        &api,
        &path,
        "fieldManager=alice",
        cm("cfg", json!({"a": "1"})),
    )
    .await;
    assert_eq!(code, 200, "{pruned}");
    assert_eq!(pruned["data"], json!({"a": "1"}));
    assert!(pruned["metadata"].get("labels").is_none(), "{pruned}");
    assert_eq!(
        entry(&pruned, "alice")["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
    // A field the applier never owned stays: set by an update, then not applied.
    let (code, _) = api
        .patch(
            &format!("{path}?fieldManager=editor"),
            "application/merge-patch+json",
            json!({"data": {"c": "3"}}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, kept) = apply(
        &api,
        &path,
        "fieldManager=alice",
        cm("cfg", json!({"a": "1"})),
    )
    .await;
    assert_eq!(code, 200, "{kept}");
    assert_eq!(kept["data"], json!({"a": "1", "c": "3"}));
}

#[tokio::test]
async fn conflicting_managers_get_409_until_forced() {
    let api = Api::start().await;
    let path = format!("{CMS}/shared");
    let (code, _) = apply(
        &api,
        &path,
        "fieldManager=alice",
        cm("shared", json!({"key": "a"})),
    )
    .await;
    assert_eq!(code, 201);
    let (code, st) = apply(
        &api,
        &path,
        "fieldManager=bob",
        cm("shared", json!({"key": "b"})),
    )
    .await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "Conflict");
    assert_eq!(
        st["message"],
        "Apply failed with 1 conflict: conflict with \"alice\": .data.key"
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".data.key"}])
    );
    // Applying the value alice set shares ownership instead of conflicting.
    let (code, both) = apply(
        &api,
        &path,
        "fieldManager=bob",
        cm("shared", json!({"key": "a"})),
    )
    .await;
    assert_eq!(code, 200, "{both}");
    assert_eq!(
        managers(&both),
        vec![mgr("alice", "Apply", ""), mgr("bob", "Apply", "")]
    );
    // An update takes the field from both appliers; the next apply conflicts with it.
    let (code, edited) = api
        .patch(
            &format!("{path}?fieldManager=kubectl-edit"),
            "application/merge-patch+json",
            json!({"data": {"key": "e"}}),
        )
        .await;
    assert_eq!(code, 200, "{edited}");
    assert_eq!(managers(&edited), vec![mgr("kubectl-edit", "Update", "")]);
    let (code, st) = apply(
        &api,
        &path,
        "fieldManager=alice",
        cm("shared", json!({"key": "a"})),
    )
    .await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(
        st["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.key"
    );
    // Force moves ownership to the applier.
    let (code, forced) = apply(
        &api,
        &path,
        "fieldManager=alice&force=true",
        cm("shared", json!({"key": "a"})),
    )
    .await;
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["data"]["key"], "a");
    assert_eq!(managers(&forced), vec![mgr("alice", "Apply", "")]);
}

#[tokio::test]
async fn updates_record_their_manager() {
    let api = Api::start().await;
    // POST: the creator owns every field it set.
    let (code, created) = api
        .post(
            &format!("{CMS}?fieldManager=creator"),
            cm("u", json!({"a": "1"})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(managers(&created), vec![mgr("creator", "Update", "")]);
    assert_eq!(
        entry(&created, "creator")["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}}})
    );
    // PUT by another manager: it gains the field it added, the creator keeps the rest.
    let mut body = created.clone();
    body["data"]["b"] = json!("2");
    body["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("managedFields");
    let (code, put) = api
        .put(&format!("{CMS}/u?fieldManager=replacer"), body)
        .await;
    assert_eq!(code, 200, "{put}");
    let got = managers(&put);
    assert!(got.contains(&mgr("creator", "Update", "")), "{got:?}");
    assert!(got.contains(&mgr("replacer", "Update", "")), "{got:?}");
    assert_eq!(
        entry(&put, "replacer")["fieldsV1"],
        json!({"f:data": {"f:b": {}}})
    );
    // A merge patch changing the creator's field takes it over.
    let (code, patched) = api
        .patch(
            &format!("{CMS}/u?fieldManager=patcher"),
            "application/merge-patch+json",
            json!({"data": {"a": "9"}}),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(
        entry(&patched, "patcher")["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
    assert_eq!(
        entry(&patched, "creator")["fieldsV1"],
        json!({"f:data": {}})
    );

    // Status writes are recorded with their subresource.
    let dep = crate::common::deployment("d", 1);
    let (code, _) = api
        .post(
            "/apis/apps/v1/namespaces/default/deployments?fieldManager=creator",
            dep,
        )
        .await;
    assert_eq!(code, 201);
    let (code, st) = api
        .patch(
            "/apis/apps/v1/namespaces/default/deployments/d/status?fieldManager=controller",
            "application/merge-patch+json",
            json!({"status": {"replicas": 1}}),
        )
        .await;
    assert_eq!(code, 200, "{st}");
    assert!(
        managers(&st).contains(&mgr("controller", "Update", "status")),
        "{st}"
    );
    assert_eq!(
        entry(&st, "controller")["fieldsV1"],
        json!({"f:status": {"f:replicas": {}}})
    );
    // The creator never owned status (the main resource cannot set it).
    assert!(entry(&st, "creator")["fieldsV1"].get("f:status").is_none());
    // Scale writes land on the parent under subresource `scale`.
    let (code, _) = api
        .patch(
            "/apis/apps/v1/namespaces/default/deployments/d/scale?fieldManager=scaler",
            "application/merge-patch+json",
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(code, 200);
    let (_, d) = api
        .get("/apis/apps/v1/namespaces/default/deployments/d")
        .await;
    assert_eq!(
        entry(&d, "scaler")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert_eq!(entry(&d, "scaler")["subresource"], "scale");
}

fn gadget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {
                                "name": {"type": "string"},
                                "port": {"type": "integer"},
                            }},
                        },
                        "tags": {"type": "array", "items": {"type": "string"}},
                    }},
                }}},
            }],
        },
    })
}

fn gadget(ports: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
           "spec": {"ports": ports}})
}

#[tokio::test]
async fn custom_resource_map_lists_merge_by_key() {
    let api = Api::start().await;
    let (code, crd) = api
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            gadget_crd(),
        )
        .await;
    assert_eq!(code, 201, "{crd}");
    let gadgets = "/apis/example.com/v1/namespaces/default/gadgets";
    wait_served(&api, gadgets).await;
    let path = format!("{gadgets}/g");
    let (code, g) = apply(
        &api,
        &path,
        "fieldManager=alice",
        gadget(json!([{"name": "http", "port": 80}])),
    )
    .await;
    assert_eq!(code, 201, "{g}");
    assert_eq!(
        entry(&g, "alice")["fieldsV1"],
        json!({"f:spec": {"f:ports": {"k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}}}})
    );
    // Another manager adds its own item: the list merges by key instead of being replaced.
    let (code, g) = apply(
        &api,
        &path,
        "fieldManager=bob",
        gadget(json!([{"name": "https", "port": 443}])),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(
        g["spec"]["ports"],
        json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}])
    );
    // Changing alice's item's port conflicts on exactly that field.
    let (code, st) = apply(
        &api,
        &path,
        "fieldManager=bob",
        gadget(json!([{"name": "http", "port": 8080}, {"name": "https", "port": 443}])),
    )
    .await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(
        st["details"]["causes"][0]["field"],
        ".spec.ports[name=\"http\"].port"
    );
    // Alice dropping her item removes only hers.
    let (code, g) = apply(&api, &path, "fieldManager=alice", gadget(json!([]))).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["spec"]["ports"], json!([{"name": "https", "port": 443}]));
}
