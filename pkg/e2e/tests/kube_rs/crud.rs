//! Typed CRUD with kube-rs: create/get/list/replace/patch/delete, typed API errors, defaults,
//! delete propagation, `get_opt`/`entry`, discovery.

use std::collections::BTreeMap;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Discovery, ResourceExt as _};
use kubelite_e2e::{wait_until, Env};
use serde_json::json;

use crate::{api_error, configmap, create_namespace, web_deployment, STEP};

/// `apiserver_version` reports v1.33.0.
pub async fn server_version(env: Env) -> Result<()> {
    let info = env.client.apiserver_version().await?;
    ensure!(info.git_version == "v1.33.0", "{info:?}");
    ensure!(info.major == "1" && info.minor == "33", "{info:?}");
    Ok(())
}

/// Create/get/list with selectors/replace (409 on a stale RV)/patch (merge, strategic, JSON)/
/// delete, with kube-rs's typed errors.
pub async fn configmap_crud_and_conflicts(env: Env) -> Result<()> {
    create_namespace(&env.client, &env.ns).await?;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let pp = PostParams::default();

    let one = cms
        .create(&pp, &configmap("one", &[("app", "x")], &[("k", "1")]))
        .await?;
    ensure!(one.uid().is_some(), "{one:?}");
    ensure!(one.resource_version().is_some(), "{one:?}");
    ensure!(one.metadata.creation_timestamp.is_some(), "{one:?}");
    cms.create(&pp, &configmap("two", &[("app", "y")], &[]))
        .await?;

    let dup = api_error(cms.create(&pp, &configmap("one", &[], &[])).await)?;
    ensure!(dup.code == 409 && dup.reason == "AlreadyExists", "{dup:?}");
    ensure!(
        dup.message == "configmaps \"one\" already exists",
        "{dup:?}"
    );

    let got = cms.get("one").await?;
    ensure!(got.data == one.data, "{got:?}");

    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items.iter().map(|c| c.name_any()).collect()
    };
    ensure!(names(cms.list(&ListParams::default().labels("app=x")).await?) == ["one"]);
    ensure!(
        names(
            cms.list(&ListParams::default().labels("app in (x,y)"))
                .await?
        ) == ["one", "two"]
    );
    ensure!(names(cms.list(&ListParams::default().labels("app!=x")).await?) == ["two"]);
    ensure!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=two"))
                .await?
        ) == ["two"]
    );
    let page = cms.list(&ListParams::default().limit(1)).await?;
    ensure!(page.items.len() == 1, "limit 1: {:?}", page.items);
    let token = page.metadata.continue_.clone().unwrap_or_default();
    ensure!(!token.is_empty(), "no continue token: {:?}", page.metadata);
    let rest = cms
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await?;
    ensure!(names(rest) == ["two"]);

    // Someone else writes: our copy's resourceVersion is now stale.
    let mut stale = got.clone();
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await?;
    stale.data = Some(BTreeMap::from([("k".to_string(), "3".to_string())]));
    let conflict = api_error(cms.replace("one", &pp, &stale).await)?;
    ensure!(
        conflict.code == 409 && conflict.reason == "Conflict",
        "{conflict:?}"
    );
    ensure!(
        conflict.message.contains("the object has been modified"),
        "{conflict:?}"
    );
    let mut fresh = cms.get("one").await?;
    ensure!(
        fresh
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str)
            == Some("2")
    );
    fresh.data = Some(BTreeMap::from([("k".to_string(), "3".to_string())]));
    let replaced = cms.replace("one", &pp, &fresh).await?;
    ensure!(replaced.resource_version() != fresh.resource_version());

    let patched = cms
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"s": "1"}, "metadata": {"labels": {"p": "s"}}})),
        )
        .await?;
    ensure!(
        patched.data
            == Some(BTreeMap::from([
                ("k".to_string(), "3".to_string()),
                ("s".to_string(), "1".to_string())
            ])),
        "{patched:?}"
    );
    let ops: json_patch_kube::Patch = serde_json::from_value(json!([
        {"op": "remove", "path": "/data/s"},
        {"op": "add", "path": "/data/j", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/p"}
    ]))?;
    let patched = cms
        .patch("one", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await?;
    ensure!(
        patched.data
            == Some(BTreeMap::from([
                ("j".to_string(), "1".to_string()),
                ("k".to_string(), "3".to_string())
            ])),
        "{patched:?}"
    );
    ensure!(patched.labels().get("p").is_none(), "{patched:?}");

    cms.delete("one", &DeleteParams::default()).await?;
    ensure!(cms.get_opt("one").await?.is_none());
    let missing = api_error(cms.get("one").await)?;
    ensure!(
        missing.code == 404 && missing.reason == "NotFound",
        "{missing:?}"
    );
    ensure!(
        missing.message == "configmaps \"one\" not found",
        "{missing:?}"
    );
    Ok(())
}

/// Defaults on create, strategic merge by container name, JSON patch, and delete propagation.
pub async fn deployment_patches_and_deletion(env: Env) -> Result<()> {
    create_namespace(&env.client, &env.ns).await?;
    let deploys: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let created = deploys
        .create(&PostParams::default(), &web_deployment()?)
        .await?;
    let spec = created.spec.clone().context("spec")?;
    ensure!(spec.revision_history_limit == Some(10), "{spec:?}");
    ensure!(spec.progress_deadline_seconds == Some(600), "{spec:?}");
    ensure!(
        spec.strategy.and_then(|s| s.type_) == Some("RollingUpdate".into()),
        "strategy defaulted"
    );

    let patched = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "side", "image": "busybox:1.37"}
            ]}}}})),
        )
        .await?;
    let images: Vec<(String, Option<String>)> = patched
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone()))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        images
            == [
                ("web".to_string(), Some("nginx:1.25".to_string())),
                ("side".to_string(), Some("busybox:1.37".to_string()))
            ],
        "{images:?}"
    );
    ensure!(
        patched.metadata.generation == Some(2),
        "{:?}",
        patched.metadata
    );

    let ops: json_patch_kube::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]))?;
    let patched = deploys
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await?;
    ensure!(patched.spec.and_then(|s| s.replicas) == Some(4));
    let listed = deploys
        .list(&ListParams::default().labels("app=web"))
        .await?;
    ensure!(listed.items.len() == 1);

    // Foreground deletion: the server marks the owner and leaves it to the garbage collector.
    let deleted = deploys.delete("web", &DeleteParams::foreground()).await?;
    let marked = deleted
        .left()
        .context("foreground delete returns the still-present object")?;
    ensure!(
        marked.metadata.deletion_timestamp.is_some(),
        "{:?}",
        marked.metadata
    );
    ensure!(
        marked.finalizers() == ["foregroundDeletion"],
        "{:?}",
        marked.metadata.finalizers
    );
    // Dropping the last finalizer deletes the object, and then upstream answers the PATCH with
    // a Success Status rather than a Deployment, which the typed `Api::patch` cannot decode:
    // send it raw.
    let request =
        kube::core::Request::new(format!("/apis/apps/v1/namespaces/{}/deployments", env.ns))
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )?;
    let answer: serde_json::Value = serde_json::from_str(&env.client.request_text(request).await?)?;
    ensure!(
        answer["kind"] == "Status" && answer["status"] == "Success",
        "PATCH that empties the finalizers of a deleted object: {answer}"
    );
    wait_until(STEP, || async {
        Ok(deploys.get_opt("web").await?.is_none().then_some(()))
    })
    .await
    .context("deployment still present after its last finalizer went")?;

    // Background (the default): gone at once.
    deploys
        .create(&PostParams::default(), &web_deployment()?)
        .await?;
    deploys.delete("web", &DeleteParams::background()).await?;
    ensure!(deploys.get_opt("web").await?.is_none());
    Ok(())
}

/// `get_opt` and `entry` on a missing object, then `entry` creating and updating it.
pub async fn get_opt_and_entry(env: Env) -> Result<()> {
    create_namespace(&env.client, &env.ns).await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    ensure!(pods.get_opt("ghost").await?.is_none());
    let entry = pods.entry("ghost").await?;
    ensure!(
        matches!(entry, kube::api::entry::Entry::Vacant(_)),
        "missing pod gives a vacant entry"
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "ghost"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))?;
    let mut occupied = entry.or_insert(|| pod);
    occupied.commit(&PostParams::default()).await?;
    let stored = pods.get("ghost").await?;
    ensure!(stored.spec.as_ref().and_then(|s| s.restart_policy.clone()) == Some("Always".into()));
    // Occupied now: `or_insert` keeps the stored pod (the default is never used).
    let mut again = pods.entry("ghost").await?.or_insert(Pod::default);
    again
        .get_mut()
        .labels_mut()
        .insert("seen".into(), "yes".into());
    again.commit(&PostParams::default()).await?;
    ensure!(
        pods.get("ghost")
            .await?
            .labels()
            .get("seen")
            .map(String::as_str)
            == Some("yes")
    );
    Ok(())
}

/// Discovery finds apps/v1 Deployment and core v1 Pod with their plurals and scopes.
pub async fn discovery_finds_builtins(env: Env) -> Result<()> {
    let discovery = Discovery::new(env.client.clone()).run().await?;
    ensure!(discovery.has_group("apps"), "no apps group");
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .context("apps/v1 Deployment not discovered")?;
    ensure!(ar.plural == "deployments", "{ar:?}");
    ensure!(caps.scope == kube::discovery::Scope::Namespaced, "{caps:?}");
    ensure!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "scale"),
        "no scale subresource: {:?}",
        caps.subresources
            .iter()
            .map(|(s, _)| s.plural.clone())
            .collect::<Vec<_>>()
    );
    let (pod, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Pod"))
        .context("v1 Pod not discovered")?;
    ensure!(pod.plural == "pods", "{pod:?}");
    ensure!(caps.operations.iter().any(|v| v == "watch"), "{caps:?}");
    let (ns, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .context("v1 Namespace not discovered")?;
    ensure!(ns.plural == "namespaces" && caps.scope == kube::discovery::Scope::Cluster);
    let aggregated = Discovery::new(env.client.clone()).run_aggregated().await?;
    ensure!(
        aggregated
            .resolve_gvk(&GroupVersionKind::gvk("batch", "v1", "Job"))
            .is_some(),
        "aggregated discovery lacks batch/v1 Job"
    );
    Ok(())
}

/// Leader election's building block: a Lease updated with optimistic concurrency (the loser of a
/// race gets 409), with its microsecond renew time kept exactly.
pub async fn lease_optimistic_concurrency(env: Env) -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    create_namespace(&env.client, &env.ns).await?;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"},
        "spec": {
            "holderIdentity": "a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2025-01-01T00:00:00.000000Z",
            "renewTime": "2025-01-01T00:00:01.123456Z"
        }
    }))?;
    leases.create(&PostParams::default(), &lease).await?;
    let mut mine = leases.get("leader").await?;
    let mut theirs = mine.clone();
    let sent: Lease =
        serde_json::from_value(json!({"spec": {"renewTime": "2025-01-01T00:00:01.123456Z"}}))?;
    ensure!(
        mine.spec.as_ref().and_then(|s| s.renew_time.clone())
            == sent.spec.as_ref().and_then(|s| s.renew_time.clone()),
        "renewTime not kept to the microsecond: {:?}",
        mine.spec
    );

    if let Some(spec) = theirs.spec.as_mut() {
        spec.holder_identity = Some("b".into());
    }
    leases
        .replace("leader", &PostParams::default(), &theirs)
        .await?;
    if let Some(spec) = mine.spec.as_mut() {
        spec.lease_transitions = Some(1);
    }
    let lost = api_error(
        leases
            .replace("leader", &PostParams::default(), &mine)
            .await,
    )?;
    ensure!(lost.code == 409 && lost.reason == "Conflict", "{lost:?}");
    let now = leases.get("leader").await?;
    ensure!(
        now.spec.and_then(|s| s.holder_identity) == Some("b".into()),
        "the winner's write must stand"
    );
    Ok(())
}
