//! The Website reconciler on `kube-runtime`'s `Controller`.
//!
//! Each pass is level-triggered and idempotent: it server-side applies the three children
//! (owned by the Website, so the garbage collector removes them with it), records the site in
//! a shared directory ConfigMap, and writes `status` only when it changed (so a pass that
//! changes nothing does not wake the controller again). The directory entry is state outside
//! the owner tree, which is what a finalizer is for: on delete the entry is removed before the
//! Website is allowed to go.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::{conditions, wait, watcher};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::crd::{Condition, Website, WebsiteStatus};

/// The finalizer guarding the directory entry.
pub const FINALIZER: &str = "examples.kubelite.dev/directory-entry";
/// Field manager (server-side apply) and event reporter name.
pub const FIELD_MANAGER: &str = "website-operator";
/// The ConfigMap, one per namespace, listing every site: `data[<website>] = <url>`.
pub const DIRECTORY: &str = "website-directory";

/// Label on every child; the controller watches only labelled objects.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Pod template annotation with a hash of the page, so a new message rolls the pods.
const PAGE_HASH: &str = "examples.kubelite.dev/page-hash";
/// Re-check a healthy site this often (drift that no watch reports).
const RESYNC: Duration = Duration::from_secs(300);
/// Retry a failed pass after this long.
const RETRY: Duration = Duration::from_secs(2);
/// How long [`install_crd`] waits for the CRD to be Established.
const CRD_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of a reconcile pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer, or the pass inside it, failed.
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// The Website lacks a namespace or uid (never true for a stored object).
    #[error("website {0} has no {1}")]
    Incomplete(String, &'static str),
    /// The CRD did not become Established in time.
    #[error("waiting for the Website CRD: {0}")]
    Crd(String),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every pass shares.
struct Context {
    client: Client,
    recorder: Recorder,
}

/// Server-side apply the Website CRD and wait until it is Established (what the binary does
/// at start; tests use `kubelite_envtest::TestEnv::install_crd`).
pub async fn install_crd(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Website::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let established = wait::await_condition(crds, &name, conditions::is_crd_established());
    match tokio::time::timeout(CRD_TIMEOUT, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Crd(e.to_string())),
        Err(_) => Err(Error::Crd(format!(
            "not established within {CRD_TIMEOUT:?}"
        ))),
    }
}

/// Runs the controller over Websites in every namespace until `shutdown` completes (then lets
/// running passes finish).
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let children = watcher::Config::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}"));
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: None,
            },
        ),
        client: client.clone(),
    });
    info!("starting website controller");
    Controller::new(
        Api::<Website>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<ConfigMap>::all(client.clone()), children.clone())
    .owns(Api::<Deployment>::all(client.clone()), children.clone())
    .owns(Api::<Service>::all(client), children)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok((site, _)) => debug!(website = %site, "reconciled"),
            Err(e) => warn!(error = %e, "reconcile failed"),
        }
    })
    .await;
    info!("website controller stopped");
}

async fn reconcile(site: Arc<Website>, ctx: Arc<Context>) -> Result<Action> {
    let ns = site
        .namespace()
        .ok_or_else(|| Error::Incomplete(site.name_any(), "namespace"))?;
    let api: Api<Website> = Api::namespaced(ctx.client.clone(), &ns);
    // `finalizer` adds the finalizer before the first Apply and, once the Website is being
    // deleted, runs Cleanup and removes it.
    finalizer(&api, FINALIZER, site, move |event| async move {
        match event {
            finalizer::Event::Apply(site) => apply(&site, &ns, &ctx).await,
            finalizer::Event::Cleanup(site) => cleanup(&site, &ns, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(site: Arc<Website>, err: &Error, _ctx: Arc<Context>) -> Action {
    warn!(website = %site.name_any(), error = %err, "reconcile failed, retrying");
    Action::requeue(RETRY)
}

/// One pass for a live Website.
async fn apply(site: &Website, ns: &str, ctx: &Context) -> Result<Action> {
    let name = site.name_any();
    let owner = site
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Incomplete(name.clone(), "uid"))?;
    let owner = serde_json::to_value(owner).unwrap_or(Value::Null);
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    let url = format!("http://{name}.{ns}.svc/");

    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    cms.patch(&name, &ssa, &Patch::Apply(config_map(site, &owner)))
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let deployment = deployments
        .patch(&name, &ssa, &Patch::Apply(deployment(site, &owner)))
        .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    services
        .patch(&name, &ssa, &Patch::Apply(service(site, &owner)))
        .await?;
    // One field manager per site: each owns only its own key of the shared directory, so
    // sites never conflict and applying without the key (cleanup) removes exactly it.
    cms.patch(
        DIRECTORY,
        &PatchParams::apply(&directory_manager(&name)).force(),
        &Patch::Apply(directory(ns, Some((&name, &url)))),
    )
    .await?;

    let status = desired_status(site, &deployment, url);
    if site.status.as_ref() != Some(&status) {
        let generation_changed =
            site.status.as_ref().and_then(|s| s.observed_generation) != site.metadata.generation;
        let api: Api<Website> = Api::namespaced(ctx.client.clone(), ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
        if generation_changed {
            let note = format!(
                "applied ConfigMap, Deployment and Service for generation {} ({} replicas)",
                site.metadata.generation.unwrap_or_default(),
                site.spec.replicas
            );
            publish(ctx, site, EventType::Normal, "Reconciled", "Apply", note).await;
        }
        info!(website = %name, namespace = %ns, ready = %ready_status(&status), "status updated");
    }
    Ok(Action::requeue(RESYNC))
}

/// The finalizer's cleanup: remove the site's directory entry (the children go with their
/// owner through the garbage collector).
async fn cleanup(site: &Website, ns: &str, ctx: &Context) -> Result<Action> {
    let name = site.name_any();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    cms.patch(
        DIRECTORY,
        &PatchParams::apply(&directory_manager(&name)).force(),
        &Patch::Apply(directory(ns, None)),
    )
    .await?;
    publish(
        ctx,
        site,
        EventType::Normal,
        "Deleted",
        "Cleanup",
        format!("removed from {DIRECTORY}"),
    )
    .await;
    info!(website = %name, namespace = %ns, "cleaned up");
    Ok(Action::await_change())
}

/// Events are best effort: a failure to record one must not fail the pass.
async fn publish(
    ctx: &Context,
    site: &Website,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &site.object_ref(&())).await {
        warn!(website = %site.name_any(), error = %e, "recording event");
    }
}

fn directory_manager(site: &str) -> String {
    format!("{FIELD_MANAGER}/{site}")
}

fn labels(site: &Website) -> Value {
    json!({
        "app.kubernetes.io/name": "website",
        "app.kubernetes.io/instance": site.name_any(),
        MANAGED_BY: FIELD_MANAGER,
    })
}

fn selector(site: &Website) -> Value {
    json!({"app.kubernetes.io/name": "website", "app.kubernetes.io/instance": site.name_any()})
}

fn config_map(site: &Website, owner: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": site.name_any(), "labels": labels(site), "ownerReferences": [owner]},
        "data": {"index.html": format!("{}\n", site.spec.message)},
    })
}

fn deployment(site: &Website, owner: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": site.name_any(), "labels": labels(site), "ownerReferences": [owner]},
        "spec": {
            "replicas": site.spec.replicas,
            "selector": {"matchLabels": selector(site)},
            "template": {
                "metadata": {
                    "labels": labels(site),
                    "annotations": {PAGE_HASH: format!("{:016x}", fnv1a(&site.spec.message))},
                },
                "spec": {
                    "containers": [{
                        "name": "httpd",
                        "image": site.image(),
                        // Local images (hack/images) are never pulled.
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "volumeMounts": [{"name": "page", "mountPath": "/www", "readOnly": true}],
                    }],
                    "volumes": [{"name": "page", "configMap": {"name": site.name_any()}}],
                },
            },
        },
    })
}

fn service(site: &Website, owner: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": site.name_any(), "labels": labels(site), "ownerReferences": [owner]},
        "spec": {
            "selector": selector(site),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    })
}

/// The directory apply configuration of one site's field manager: with `entry` it owns
/// `data[site]`, without it owns nothing and the server drops the key.
fn directory(ns: &str, entry: Option<(&str, &str)>) -> Value {
    let mut cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": DIRECTORY, "namespace": ns},
    });
    if let Some((site, url)) = entry {
        cm["data"] = json!({ site: url });
    }
    cm
}

/// The status a pass reports; `lastTransitionTime` is kept while the condition holds.
fn desired_status(site: &Website, deployment: &Deployment, url: String) -> WebsiteStatus {
    let ds = deployment.status.clone().unwrap_or_default();
    let available = ds.available_replicas.unwrap_or(0);
    let want = site.spec.replicas;
    let (status, reason) = if available >= want {
        ("True", "Available")
    } else {
        ("False", "Progressing")
    };
    let since = site
        .condition("Ready")
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    WebsiteStatus {
        observed_generation: site.metadata.generation,
        replicas: ds.replicas.unwrap_or(0),
        available_replicas: available,
        url: Some(url),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{available}/{want} pods available"),
            last_transition_time: since,
            observed_generation: site.metadata.generation,
        }],
    }
}

fn ready_status(status: &WebsiteStatus) -> &str {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map_or("Unknown", |c| c.status.as_str())
}

/// FNV-1a: a hash that is stable across Rust releases (unlike `DefaultHasher`), so the pod
/// template does not change when the operator is rebuilt.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WebsiteSpec;

    fn site(replicas: i32, status: Option<WebsiteStatus>) -> Website {
        let mut w = Website::new(
            "hello",
            WebsiteSpec {
                replicas,
                message: "hi".into(),
                image: None,
            },
        );
        w.metadata.namespace = Some("default".into());
        w.metadata.generation = Some(2);
        w.status = status;
        w
    }

    fn deployment_with(available: i32) -> Deployment {
        serde_json::from_value(
            json!({"status": {"replicas": available, "availableReplicas": available}}),
        )
        .unwrap_or_default()
    }

    #[test]
    fn ready_follows_available_pods_and_keeps_transition_time() {
        let s = desired_status(&site(2, None), &deployment_with(1), "u".into());
        assert_eq!(ready_status(&s), "False");
        assert_eq!(s.conditions[0].message, "1/2 pods available");
        assert_eq!(s.observed_generation, Some(2));
        let mut old = s.clone();
        old.conditions[0].last_transition_time = "2020-01-01T00:00:00Z".into();
        let again = desired_status(&site(2, Some(old.clone())), &deployment_with(1), "u".into());
        assert_eq!(again, old, "an unchanged pass reports an identical status");
        let ready = desired_status(&site(2, Some(old)), &deployment_with(2), "u".into());
        assert_eq!(ready_status(&ready), "True");
        assert_ne!(
            ready.conditions[0].last_transition_time,
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn directory_entry_is_per_site() {
        assert_eq!(
            directory("ns", Some(("a", "http://a.ns.svc/")))["data"],
            json!({"a": "http://a.ns.svc/"})
        );
        assert!(directory("ns", None).get("data").is_none());
        assert_eq!(directory_manager("a"), "website-operator/a");
    }

    #[test]
    fn page_hash_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
