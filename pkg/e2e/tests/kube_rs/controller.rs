//! kube-runtime's `Controller` against the server: a reconciler keeps an owned mirror of every
//! ConfigMap labelled `role=source`, reacting to the source's creates and updates and to the
//! deletion of its mirror (through `owns`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource as _, ResourceExt as _};
use kubelite_e2e::{wait_until, Env};
use serde_json::json;

use crate::{configmap, create_namespace, STEP};

/// What the reconciler needs.
struct Ctx {
    api: Api<ConfigMap>,
}

/// Makes `<source>-mirror` exist with the source's data and a controller owner reference.
async fn reconcile(source: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let name = format!("{}-mirror", source.name_any());
    let owner = source.controller_owner_ref(&()).into_iter().collect();
    match ctx.api.get_opt(&name).await? {
        None => {
            let mirror = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: Some([("role".to_string(), "mirror".to_string())].into()),
                    owner_references: Some(owner),
                    ..Default::default()
                },
                data: source.data.clone(),
                ..Default::default()
            };
            ctx.api.create(&PostParams::default(), &mirror).await?;
        }
        Some(mut mirror) if mirror.data != source.data => {
            // Replace carries the mirror's resourceVersion: a concurrent change conflicts and
            // the error policy retries.
            mirror.data = source.data.clone();
            ctx.api
                .replace(&name, &PostParams::default(), &mirror)
                .await?;
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

fn retry(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

/// The mirror's data, or `None` while it does not exist.
async fn mirror_data(api: &Api<ConfigMap>, name: &str) -> Result<Option<serde_json::Value>> {
    Ok(api
        .get_opt(name)
        .await?
        .map(|cm| json!(cm.data.unwrap_or_default())))
}

/// Create, update and mirror deletion each converge through the controller.
pub async fn controller_reconciles(env: Env) -> Result<()> {
    create_namespace(&env.client, &env.ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let controller = Controller::new(
        api.clone(),
        watcher::Config::default().labels("role=source"),
    )
    .owns(
        api.clone(),
        watcher::Config::default().labels("role=mirror"),
    )
    .run(reconcile, retry, Arc::new(Ctx { api: api.clone() }))
    .for_each(|_| futures::future::ready(()));
    let task = tokio::spawn(controller);
    let result = async {
        let source = api
            .create(
                &PostParams::default(),
                &configmap("s1", &[("role", "source")], &[("v", "1")]),
            )
            .await?;
        wait_until(STEP, || async {
            Ok((mirror_data(&api, "s1-mirror").await? == Some(json!({"v": "1"}))).then_some(()))
        })
        .await
        .context("mirror never created")?;
        let mirror = api.get("s1-mirror").await?;
        let owner = mirror
            .owner_references()
            .first()
            .cloned()
            .context("no owner")?;
        anyhow::ensure!(
            Some(owner.uid.clone()) == source.uid() && owner.controller == Some(true),
            "{owner:?}"
        );

        api.patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await?;
        wait_until(STEP, || async {
            Ok((mirror_data(&api, "s1-mirror").await? == Some(json!({"v": "2"}))).then_some(()))
        })
        .await
        .context("mirror never followed the source's update")?;

        let old_uid = mirror.uid();
        api.delete("s1-mirror", &DeleteParams::default()).await?;
        wait_until(STEP, || async {
            let again = api.get_opt("s1-mirror").await?;
            Ok(again.filter(|m| m.uid() != old_uid).map(|_| ()))
        })
        .await
        .context("deleted mirror never recreated")?;
        Ok(())
    }
    .await;
    task.abort();
    result
}
