//! The test environment itself: CRD installation waits until objects can be created, the
//! garbage collector removes dependents of a deleted custom resource, and drop tears down.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kubelite_envtest::{wait_for, Error, TestEnv};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.envtest.kubelite.dev"},
        "spec": {"group": "envtest.kubelite.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}
    }))
    .unwrap()
}

fn widgets(env: &TestEnv) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "envtest.kubelite.dev".into(),
        version: "v1".into(),
        api_version: "envtest.kubelite.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(env.client(), "default", &ar)
}

#[tokio::test]
async fn install_crd_then_create_at_once() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let installed = env.install_crd(&crd()).await?;
    assert_eq!(installed.spec.names.kind, "Widget");
    // No retry: install_crd returned, so the resource is served.
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "envtest.kubelite.dev/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3, "dropped": true}
    }))?;
    let created = widgets(&env).create(&PostParams::default(), &w).await?;
    // The schema applies: the unknown field was pruned.
    assert_eq!(created.data["spec"], json!({"size": 3}));
    // Installing again (e.g. from a second test helper) replaces instead of failing.
    env.install_crd(&crd()).await?;
    assert!(env.kubeconfig()?.clusters[0].cluster.is_some());
    assert!(env.kubeconfig_path().exists());
    Ok(())
}

#[tokio::test]
async fn garbage_collector_removes_dependents_of_custom_resources() -> anyhow::Result<()> {
    let env = TestEnv::builder().garbage_collector().start().await?;
    env.install_crd(&crd()).await?;
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "envtest.kubelite.dev/v1", "kind": "Widget",
        "metadata": {"name": "owner"}, "spec": {"size": 1}
    }))?;
    let owner = widgets(&env).create(&PostParams::default(), &w).await?;
    let cms: Api<ConfigMap> = Api::namespaced(env.client(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "dependent", "ownerReferences": [{
            "apiVersion": "envtest.kubelite.dev/v1", "kind": "Widget", "name": "owner",
            "uid": owner.metadata.uid.clone().unwrap(), "controller": true}]},
        "data": {"k": "v"}
    }))?;
    cms.create(&PostParams::default(), &cm).await?;
    widgets(&env)
        .delete("owner", &DeleteParams::background())
        .await?;
    wait_for("the dependent ConfigMap to be collected", T, || async {
        Ok::<_, kube::Error>(cms.get_opt("dependent").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn wait_for_times_out_and_reports_errors() -> anyhow::Result<()> {
    let never = wait_for("never", Duration::from_millis(120), || async {
        Ok::<Option<()>, kube::Error>(None)
    })
    .await;
    assert!(matches!(never, Err(Error::Timeout { .. })), "{never:?}");
    let failing = wait_for("failing", T, || async {
        Err::<Option<()>, _>(std::io::Error::other("boom"))
    })
    .await;
    let msg = failing.unwrap_err().to_string();
    assert_eq!(msg, "checking failing: boom");
    Ok(())
}

#[tokio::test]
async fn drop_stops_the_server() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let url = env.url().to_string();
    drop(env);
    let probe = connect(&url).await;
    assert!(probe.is_err(), "server still answering at {url}");
    Ok(())
}

/// A raw TCP connect: after drop nothing listens on the port.
async fn connect(url: &str) -> std::io::Result<tokio::net::TcpStream> {
    let addr = url.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await
}
