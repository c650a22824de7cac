//! The operator against a real kubelite API server (kubelite-envtest) with the garbage
//! collector: create, update, scale, delete and finalizer cleanup. No kubelet runs, so the test
//! plays the Deployment controller where pods matter by writing the Deployment's status.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use kubelite_envtest::{wait_for, TestEnv};
use serde_json::json;
use website_operator::{Website, WebsiteSpec, DIRECTORY, FINALIZER};

const T: Duration = Duration::from_secs(30);

/// The operator as a task on the test's runtime; stopped on drop.
struct Operator(tokio::task::JoinHandle<()>);

impl Drop for Operator {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An API server with the garbage collector, the Website CRD, and the operator running.
async fn start() -> anyhow::Result<(TestEnv, Operator)> {
    // `RUST_LOG=website_operator=debug cargo test -p website-operator` shows every pass.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let env = TestEnv::builder().garbage_collector().start().await?;
    env.install_crd(&Website::crd()).await?;
    let operator = Operator(tokio::spawn(website_operator::run(
        env.client(),
        std::future::pending(),
    )));
    Ok((env, operator))
}

fn website(name: &str, replicas: i32, message: &str) -> Website {
    Website::new(
        name,
        WebsiteSpec {
            replicas,
            message: message.into(),
            image: None,
        },
    )
}

/// Waits until the object `name` satisfies `pred`, returning it.
async fn wait_obj<K, P>(api: &Api<K>, name: &str, what: &str, pred: P) -> anyhow::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    P: Fn(&K) -> bool,
{
    Ok(wait_for(what, T, || async {
        Ok::<_, kube::Error>(api.get_opt(name).await?.filter(|o| pred(o)))
    })
    .await?)
}

async fn wait_gone<K>(api: &Api<K>, name: &str, what: &str) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(wait_for(what, T, || async {
        Ok::<_, kube::Error>(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await?)
}

fn ready(w: &Website) -> Option<&str> {
    w.condition("Ready").map(|c| c.status.as_str())
}

async fn has_event(events: &Api<Event>, site: &str, reason: &str) -> anyhow::Result<bool> {
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(site)
                && e.reporting_controller.as_deref() == Some("website-operator")
        }))
}

/// Plays the Deployment controller and kubelet: `n` pods exist and are available.
async fn set_available(deployments: &Api<Deployment>, name: &str, n: i32) -> anyhow::Result<()> {
    let status = json!({"status": {"replicas": n, "readyReplicas": n, "availableReplicas": n,
                                   "updatedReplicas": n, "observedGeneration": 1}});
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

#[tokio::test]
async fn create_update_scale_delete() -> anyhow::Result<()> {
    let (env, _operator) = start().await?;
    let client = env.client();
    let sites: Api<Website> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");

    // Create: three owned children, the finalizer, a status and an event.
    let created = sites
        .create(
            &PostParams::default(),
            &website("hello", 2, "hello, kubelite"),
        )
        .await?;
    let uid = created.uid().unwrap();
    let cm = wait_obj(&cms, "hello", "the page ConfigMap", |_| true).await?;
    assert_eq!(cm.data.unwrap()["index.html"], "hello, kubelite\n");
    let d = wait_obj(&deployments, "hello", "the Deployment", |_| true).await?;
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    let svc = wait_obj(&services, "hello", "the Service", |_| true).await?;
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 80);
    for owners in [
        cm.metadata.owner_references,
        d.metadata.owner_references.clone(),
    ] {
        let owner = &owners.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Website", uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
    }
    let site = wait_obj(&sites, "hello", "status of generation 1", |w| {
        w.status.as_ref().and_then(|s| s.observed_generation) == Some(1)
    })
    .await?;
    assert_eq!(site.finalizers(), [FINALIZER.to_string()]);
    assert_eq!(
        ready(&site),
        Some("False"),
        "no pods yet: {:?}",
        site.status
    );
    let dir = wait_obj(&cms, DIRECTORY, "the directory entry", |_| true).await?;
    assert_eq!(dir.data.unwrap()["hello"], "http://hello.default.svc/");
    wait_for("a Reconciled event", T, || async {
        Ok::<_, anyhow::Error>(
            has_event(&events, "hello", "Reconciled")
                .await?
                .then_some(()),
        )
    })
    .await?;

    // Pods become available: Ready turns True.
    set_available(&deployments, "hello", 2).await?;
    let site = wait_obj(&sites, "hello", "Ready=True", |w| ready(w) == Some("True")).await?;
    assert_eq!(site.status.as_ref().unwrap().replicas, 2);

    // Settled: passes that change nothing write nothing (no hot loop through the watches).
    let before = (
        cms.get("hello").await?.resource_version(),
        deployments.get("hello").await?.resource_version(),
        sites.get("hello").await?.resource_version(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = (
        cms.get("hello").await?.resource_version(),
        deployments.get("hello").await?.resource_version(),
        sites.get("hello").await?.resource_version(),
    );
    assert_eq!(before, after, "the operator keeps rewriting a settled site");

    // Update the message: the page changes and the pod template rolls.
    let old_template = d.spec.unwrap().template.metadata.unwrap().annotations;
    sites
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"message": "changed"}})),
        )
        .await?;
    wait_obj(&cms, "hello", "the new page", |cm| {
        cm.data
            .as_ref()
            .and_then(|d| d.get("index.html"))
            .map(String::as_str)
            == Some("changed\n")
    })
    .await?;
    let d = deployments.get("hello").await?;
    assert_ne!(
        d.spec.unwrap().template.metadata.unwrap().annotations,
        old_template
    );

    // Scale through the Website's /scale subresource (what `kubectl scale` does).
    sites
        .patch_scale(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    wait_obj(&deployments, "hello", "3 replicas", |d| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(3)
    })
    .await?;
    let site = wait_obj(&sites, "hello", "status of generation 3", |w| {
        w.status.as_ref().and_then(|s| s.observed_generation) == Some(3)
    })
    .await?;
    assert_eq!(
        ready(&site),
        Some("False"),
        "2 of 3 pods: {:?}",
        site.status
    );
    let scale = sites.get_scale("hello").await?;
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(scale.status.unwrap().replicas, 2);

    // A second site shares the directory.
    sites
        .create(&PostParams::default(), &website("other", 1, "another site"))
        .await?;
    wait_obj(&cms, DIRECTORY, "both directory entries", |cm| {
        cm.data
            .as_ref()
            .is_some_and(|d| d.contains_key("hello") && d.contains_key("other"))
    })
    .await?;

    // Delete: the finalizer's cleanup removes only this site's entry, then the Website goes
    // and the garbage collector removes its children.
    sites.delete("hello", &DeleteParams::default()).await?;
    wait_gone(&sites, "hello", "the Website to be deleted").await?;
    let dir = cms.get(DIRECTORY).await?.data.unwrap_or_default();
    assert!(!dir.contains_key("hello"), "entry left behind: {dir:?}");
    assert!(
        dir.contains_key("other"),
        "the other site's entry went too: {dir:?}"
    );
    assert!(has_event(&events, "hello", "Deleted").await?);
    wait_gone(&cms, "hello", "the page ConfigMap to be collected").await?;
    wait_gone(&deployments, "hello", "the Deployment to be collected").await?;
    wait_gone(&services, "hello", "the Service to be collected").await?;
    assert!(deployments.get_opt("other").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn invalid_spec_is_rejected_by_the_generated_schema() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    env.install_crd(&Website::crd()).await?;
    let sites: Api<Website> = Api::namespaced(env.client(), "default");
    let err = sites
        .create(&PostParams::default(), &website("bad", -1, "x"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("want an API error, got {err}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("spec.replicas"),
        "{}",
        status.message
    );
    Ok(())
}
