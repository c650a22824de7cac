//! kube-runtime against the server: `watcher` (list+watch and streaming lists) and reflectors.

use anyhow::{ensure, Context as _, Result};
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::ResourceExt as _;
use kubelite_e2e::{wait_until, Env};
use serde_json::json;

use crate::{configmap, create_namespace, next_event, STEP};

/// Expects the next events to be exactly `want` (kind of event, object name).
async fn expect_events<S>(stream: &mut S, want: &[(&str, &str)]) -> Result<()>
where
    S: Stream<Item = watcher::Result<watcher::Event<ConfigMap>>> + Unpin,
{
    for (kind, name) in want {
        let got = match next_event(stream).await? {
            watcher::Event::Apply(o) => ("Apply", o.name_any()),
            watcher::Event::Delete(o) => ("Delete", o.name_any()),
            watcher::Event::Init => ("Init", String::new()),
            watcher::Event::InitApply(o) => ("InitApply", o.name_any()),
            watcher::Event::InitDone => ("InitDone", String::new()),
        };
        ensure!(
            got.0 == *kind && got.1 == *name,
            "expected {kind} {name}, got {got:?}"
        );
    }
    Ok(())
}

/// A create → update → delete sequence through `watcher` with `config`; `pre` exists before.
async fn watch_sequence(env: &Env, config: watcher::Config) -> Result<()> {
    create_namespace(&env.client, &env.ns).await?;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let pp = PostParams::default();
    cms.create(&pp, &configmap("pre", &[("w", "1")], &[]))
        .await?;
    cms.create(&pp, &configmap("ignored", &[], &[])).await?;
    let mut stream = watcher(cms.clone(), config.labels("w=1")).boxed();
    expect_events(
        &mut stream,
        &[("Init", ""), ("InitApply", "pre"), ("InitDone", "")],
    )
    .await?;
    cms.create(&pp, &configmap("new", &[("w", "1")], &[("v", "1")]))
        .await?;
    cms.patch(
        "new",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await?;
    cms.create(&pp, &configmap("other", &[], &[])).await?;
    cms.delete("new", &DeleteParams::default()).await?;
    cms.delete("pre", &DeleteParams::default()).await?;
    expect_events(
        &mut stream,
        &[
            ("Apply", "new"),
            ("Apply", "new"),
            ("Delete", "new"),
            ("Delete", "pre"),
        ],
    )
    .await?;
    Ok(())
}

/// `watcher` with the default list-then-watch strategy.
pub async fn watcher_sees_changes(env: Env) -> Result<()> {
    watch_sequence(&env, watcher::Config::default()).await
}

/// `watcher` with streaming lists (`sendInitialEvents=true`, ended by the initial-events-end
/// bookmark).
pub async fn watcher_streaming_lists(env: Env) -> Result<()> {
    watch_sequence(&env, watcher::Config::default().streaming_lists()).await
}

/// A reflector's store follows creates and deletes.
pub async fn reflector_store_converges(env: Env) -> Result<()> {
    create_namespace(&env.client, &env.ns).await?;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let pp = PostParams::default();
    cms.create(&pp, &configmap("r0", &[], &[])).await?;
    let (reader, writer) = reflector::store::<ConfigMap>();
    let driver = tokio::spawn(
        reflector(writer, watcher(cms.clone(), watcher::Config::default()))
            .applied_objects()
            .for_each(|_| futures::future::ready(())),
    );
    let result = async {
        tokio::time::timeout(STEP, reader.wait_until_ready())
            .await
            .context("store never became ready")??;
        ensure!(reader.len() == 1, "initial store: {}", reader.len());
        for name in ["r1", "r2", "r3"] {
            cms.create(&pp, &configmap(name, &[], &[])).await?;
        }
        let names = |r: &reflector::Store<ConfigMap>| {
            let mut n: Vec<String> = r.state().iter().map(|c| c.name_any()).collect();
            n.sort();
            n
        };
        wait_until(STEP, || async {
            Ok((names(&reader) == ["r0", "r1", "r2", "r3"]).then_some(()))
        })
        .await
        .with_context(|| format!("store has {:?}", names(&reader)))?;
        cms.delete("r0", &DeleteParams::default()).await?;
        cms.patch(
            "r1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await?;
        wait_until(STEP, || async {
            let r1 = reader.get(&reflector::ObjectRef::new("r1").within(&env.ns));
            let updated = r1.is_some_and(|c| c.data.as_ref().is_some_and(|d| d.contains_key("x")));
            Ok((updated && names(&reader) == ["r1", "r2", "r3"]).then_some(()))
        })
        .await
        .with_context(|| format!("store has {:?}", names(&reader)))?;
        Ok(())
    }
    .await;
    driver.abort();
    result
}
