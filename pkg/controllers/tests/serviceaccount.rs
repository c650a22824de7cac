//! ServiceAccount controller, run with every controller enabled (the default config): each
//! namespace gets a `default` ServiceAccount, recreated if deleted.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::Duration;

use common::{obj, start, wait_for};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kubelite_controllers::testing::AgentOptions;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_namespace_gets_default_service_account() -> anyhow::Result<()> {
    let h = start(
        kubelite_controllers::Config::default(),
        AgentOptions::default(),
    )
    .await?;
    let default_sa: Api<ServiceAccount> = Api::namespaced(h.client.clone(), "default");
    wait_for("default/default", T, || async {
        Ok(default_sa.get_opt("default").await?)
    })
    .await?;

    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    let ns: Namespace =
        obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}));
    namespaces.create(&PostParams::default(), &ns).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(h.client.clone(), "team-a");
    let first = wait_for("team-a/default", T, || async {
        Ok(sas.get_opt("default").await?)
    })
    .await?;

    sas.delete("default", &DeleteParams::default()).await?;
    let again = wait_for("team-a/default recreated", T, || async {
        Ok(sas
            .get_opt("default")
            .await?
            .filter(|sa| sa.metadata.uid != first.metadata.uid))
    })
    .await?;
    assert_eq!(again.metadata.name.as_deref(), Some("default"));
    Ok(())
}
