//! Namespace controller against a real apiserver: content of a Terminating namespace is
//! deleted through discovery, objects with finalizers keep it waiting with upstream's
//! conditions, and the `kubernetes` finalizer is removed through `finalize`.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{obj, only, start, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, NamespaceCondition, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelite_controllers::testing::AgentOptions;
use serde_json::json;

const T: Duration = Duration::from_secs(30);
const HOLD: &str = "example.com/hold";

fn condition(ns: &Namespace, t: &str) -> Option<NamespaceCondition> {
    ns.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .cloned()
}

async fn create_ns(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
    nss.create(&PostParams::default(), &ns).await?;
    Ok(())
}

#[tokio::test]
async fn deletes_content_then_namespace() -> anyhow::Result<()> {
    let h = start(
        only(&["namespace", "replicaset", "deployment", "garbagecollector"]),
        AgentOptions::default(),
    )
    .await?;
    create_ns(&h.client, "doomed").await?;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "doomed");
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "doomed");
    let deps: Api<Deployment> = Api::namespaced(h.client.clone(), "doomed");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "doomed");
    for i in 0..3 {
        let cm: ConfigMap =
            obj(json!({"metadata": {"name": format!("cm{i}")}, "data": {"k": "v"}}));
        cms.create(&PostParams::default(), &cm).await?;
    }
    let s: Secret = obj(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}));
    secrets.create(&PostParams::default(), &s).await?;
    let d: Deployment = obj(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }));
    deps.create(&PostParams::default(), &d).await?;
    wait_for("2 pods", T, || async {
        Ok((pods.list(&ListParams::default()).await?.items.len() == 2).then_some(()))
    })
    .await?;

    let nss: Api<Namespace> = Api::all(h.client.clone());
    nss.delete("doomed", &DeleteParams::default()).await?;
    wait_for("namespace gone", T, || async {
        Ok(nss.get_opt("doomed").await?.is_none().then_some(()))
    })
    .await?;
    // Nothing was left behind.
    assert!(cms.list(&ListParams::default()).await?.items.is_empty());
    assert!(pods.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn finalizers_keep_namespace_with_conditions() -> anyhow::Result<()> {
    let h = start(only(&["namespace"]), AgentOptions::default()).await?;
    create_ns(&h.client, "held").await?;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "held");
    let held: ConfigMap = obj(json!({"metadata": {"name": "held", "finalizers": [HOLD]}}));
    cms.create(&PostParams::default(), &held).await?;
    let free: ConfigMap = obj(json!({"metadata": {"name": "free"}}));
    cms.create(&PostParams::default(), &free).await?;

    let nss: Api<Namespace> = Api::all(h.client.clone());
    nss.delete("held", &DeleteParams::default()).await?;
    let ns = wait_for("finalizer conditions", T, || async {
        let ns = nss.get("held").await?;
        let ok = condition(&ns, "NamespaceFinalizersRemaining").is_some_and(|c| c.status == "True");
        Ok(ok.then_some(ns))
    })
    .await?;
    assert_eq!(
        ns.status.as_ref().unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let fins = condition(&ns, "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(fins.reason.as_deref(), Some("SomeFinalizersRemain"));
    assert_eq!(
        fins.message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    );
    let rem = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(rem.status, "True");
    assert_eq!(rem.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        rem.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    let disc = condition(&ns, "NamespaceDeletionDiscoveryFailure").unwrap();
    assert_eq!(disc.status, "False");
    assert_eq!(disc.reason.as_deref(), Some("ResourcesDiscovered"));
    let content = condition(&ns, "NamespaceDeletionContentFailure").unwrap();
    assert_eq!(content.status, "False");
    // The free object went; the held one waits, marked for deletion; the namespace stays.
    assert!(cms.get_opt("free").await?.is_none());
    let cm = cms.get("held").await?;
    assert!(cm.metadata.deletion_timestamp.is_some());
    let spec_fins = ns.spec.as_ref().unwrap().finalizers.clone().unwrap();
    assert_eq!(spec_fins, vec!["kubernetes".to_string()]);

    // Releasing the finalizer lets the namespace finish.
    let patch = json!({"metadata": {"finalizers": null}});
    // The apiserver completes the delete on this write and answers with a Status, which the
    // typed client cannot decode; the namespace disappearing below is what is checked.
    match cms
        .patch("held", &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) | Err(kube::Error::SerdeError(_)) => {}
        Err(e) => return Err(e.into()),
    }
    wait_for("namespace gone", T, || async {
        Ok(nss.get_opt("held").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn finalize_removes_only_kubernetes() -> anyhow::Result<()> {
    // A second spec finalizer (another party's) stays; ours goes once the namespace is empty.
    let h = start(only(&["namespace"]), AgentOptions::default()).await?;
    let nss: Api<Namespace> = Api::all(h.client.clone());
    let ns: Namespace = obj(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "two"}, "spec": {"finalizers": ["kubernetes", "example.com/other"]}}));
    nss.create(&PostParams::default(), &ns).await?;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "two");
    let cm: ConfigMap = obj(json!({"metadata": {"name": "c"}}));
    cms.create(&PostParams::default(), &cm).await?;
    nss.delete("two", &DeleteParams::default()).await?;
    let ns = wait_for("kubernetes finalizer removed", T, || async {
        let Some(ns) = nss.get_opt("two").await? else {
            anyhow::bail!("namespace deleted although example.com/other remains");
        };
        let fins = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        Ok((!fins.iter().any(|f| f == "kubernetes")).then_some(ns))
    })
    .await?;
    assert_eq!(
        ns.spec.clone().unwrap().finalizers.unwrap(),
        vec!["example.com/other".to_string()]
    );
    assert!(cms.get_opt("c").await?.is_none());
    let rem = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(rem.status, "False");
    assert_eq!(rem.reason.as_deref(), Some("ContentRemoved"));
    Ok(())
}
