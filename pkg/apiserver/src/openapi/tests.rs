//! Tests for the OpenAPI documents: what kubectl's validation and explain paths look for.

use super::*;
use kubelite_api::resource::builtin_resources;

fn all_docs() -> Vec<(String, Value)> {
    let root = v3_root(builtin_resources());
    root["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|p| {
            (
                p.clone(),
                v3_group_version(builtin_resources(), p).expect("served gv"),
            )
        })
        .collect()
}

#[test]
fn root_lists_every_group_version_with_content_hash() {
    let root = v3_root(builtin_resources());
    let paths = root["paths"].as_object().expect("paths");
    for p in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/discovery.k8s.io/v1",
        "apis/coordination.k8s.io/v1",
        "apis/events.k8s.io/v1",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    for (p, entry) in paths {
        assert!(!p.starts_with('/'), "{p} has a leading slash");
        let url = entry["serverRelativeURL"].as_str().expect("url");
        let doc = v3_group_version(builtin_resources(), p).expect("doc");
        assert_eq!(url, format!("/openapi/v3/{p}?hash={}", doc_hash(&doc)));
    }
    // Deterministic: the same table gives the same root.
    assert_eq!(root, v3_root(builtin_resources()));
    assert!(v3_group_version(builtin_resources(), "apis/nope/v1").is_none());
    assert!(v3_group_version(builtin_resources(), "/api/v1").is_some());
}

#[test]
fn every_patch_has_field_validation_and_gvk_object() {
    let mut patches = 0;
    for (gv, doc) in all_docs() {
        assert_eq!(doc["openapi"], "3.0.0");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            assert!(path.starts_with('/'), "{path}");
            for (method, op) in item.as_object().expect("item") {
                if method == "parameters" {
                    continue;
                }
                let gvk = &op["x-kubernetes-group-version-kind"];
                assert!(gvk.is_object(), "{gv} {path} {method}: gvk {gvk}");
                assert!(
                    gvk["kind"].is_string()
                        && gvk["version"].is_string()
                        && gvk["group"].is_string()
                );
                if method != "patch" {
                    continue;
                }
                patches += 1;
                let params = op["parameters"].as_array().expect("params");
                for name in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                    assert!(
                        params.iter().any(|p| p["name"] == name
                            && p["in"] == "query"
                            && p["schema"]["type"].is_string()),
                        "{path} patch lacks {name}"
                    );
                }
                let content = op["requestBody"]["content"].as_object().expect("content");
                assert!(!content.contains_key("application/strategic-merge-patch+json"));
                assert!(content.contains_key("application/merge-patch+json"));
                assert!(content.contains_key("application/json-patch+json"));
                assert!(content.contains_key("application/apply-patch+yaml"));
            }
        }
    }
    assert!(patches > 20, "only {patches} patch operations");
}

#[test]
fn paths_and_gvks_of_apps() {
    let doc = v3_group_version(builtin_resources(), "apis/apps/v1").expect("apps");
    let paths = &doc["paths"];
    let item = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(
        item["patch"]["operationId"],
        "patchAppsV1NamespacedDeployment"
    );
    for m in ["get", "put", "delete"] {
        assert!(item[m].is_object(), "{m}");
    }
    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    let status = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"];
    assert_eq!(
        status["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert!(paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"].is_object());
    assert!(paths["/apis/apps/v1/deployments"]["get"].is_object());

    let schemas = &doc["components"]["schemas"];
    let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        deploy["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
    // Every $ref resolves inside the document.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().expect("name");
        assert!(schemas.get(name).is_some(), "dangling ref {name}");
    }
}

#[test]
fn core_paths_are_cluster_or_namespace_scoped() {
    let doc = v3_group_version(builtin_resources(), "api/v1").expect("core");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/v1/namespaces/{name}"));
    assert!(paths.contains_key("/api/v1/nodes/{name}/status"));
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}"));
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/eviction"));
    assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/exec"));
    let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(
        eviction["x-kubernetes-group-version-kind"],
        json!({"group": "policy", "kind": "Eviction", "version": "v1"})
    );
    let ns_params = paths["/api/v1/namespaces/{name}"]["parameters"]
        .as_array()
        .expect("params");
    assert!(!ns_params.iter().any(|p| p["name"] == "namespace"));
}

#[test]
fn schema_names_follow_upstream() {
    assert_eq!(schema_name("", "v1", "Pod"), "io.k8s.api.core.v1.Pod");
    assert_eq!(
        schema_name("apps", "v1", "Deployment"),
        "io.k8s.api.apps.v1.Deployment"
    );
    assert_eq!(
        schema_name("discovery.k8s.io", "v1", "EndpointSlice"),
        "io.k8s.api.discovery.v1.EndpointSlice"
    );
    assert_eq!(
        schema_name("stable.example.com", "v1", "CronTab"),
        "com.example.stable.v1.CronTab"
    );
}

#[test]
fn builtin_kinds_have_generated_schemas_for_explain() {
    let doc = v3_group_version(builtin_resources(), "api/v1").expect("core");
    let schemas = &doc["components"]["schemas"];
    let pod = &schemas["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert_eq!(
        pod["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodSpec"
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["type"], "array");
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        schemas["io.k8s.api.core.v1.PodSpec"]["required"],
        json!(["containers"])
    );
    let container = &schemas["io.k8s.api.core.v1.Container"];
    assert!(container["properties"]["image"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("image")));
    // Inline Go structs are flattened: Volume carries its sources, Probe its handlers.
    assert!(schemas["io.k8s.api.core.v1.Volume"]["properties"]["configMap"].is_object());
    assert!(schemas["io.k8s.api.core.v1.Probe"]["properties"]["httpGet"].is_object());
    assert!(schemas["io.k8s.api.core.v1.ConfigMapKeySelector"]["properties"]["name"].is_object());
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    // Only what the core group needs: no apps kinds.
    assert!(schemas.get("io.k8s.api.apps.v1.Deployment").is_none());
    let apps = v3_group_version(builtin_resources(), "apis/apps/v1").expect("apps");
    let scale = &apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"];
    assert_eq!(scale["x-kubernetes-group-version-kind"][0]["kind"], "Scale");
    assert!(scale["properties"]["spec"].is_object());
}

#[test]
fn prebuilt_documents_match_the_functions() {
    let set = V3Documents::build(builtin_resources());
    assert_eq!(set.root(), &v3_root(builtin_resources()));
    let doc = v3_group_version(builtin_resources(), "apis/apps/v1").expect("apps");
    assert_eq!(set.document("apis/apps/v1"), Some(doc.to_string().as_str()));
    assert_eq!(set.document("/apis/apps/v1/"), set.document("apis/apps/v1"));
    assert_eq!(set.hash("apis/apps/v1"), Some(doc_hash(&doc).as_str()));
    assert!(set.document("apis/nope/v1").is_none());
}
