//! ServiceAccount controller: makes sure every active namespace has a `default` ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};

use crate::informer::{Change, Informer};
use crate::queue::{run_workers, WorkQueue};
use crate::{Result, Shared};

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SA: &str = "default";

/// Registers the ServiceAccount controller; returns its worker loop.
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let namespaces = shared.informers.namespaces.clone();
    let accounts = shared.informers.serviceaccounts.clone();
    {
        let q = queue.clone();
        namespaces.on_change(move |ch| {
            if !matches!(ch, Change::Deleted(_)) {
                q.add(ch.object().metadata.name.clone().unwrap_or_default());
            }
        });
    }
    {
        let q = queue.clone();
        accounts.on_change(move |ch| {
            let sa = ch.object();
            if matches!(ch, Change::Deleted(_)) && sa.metadata.name.as_deref() == Some(DEFAULT_SA) {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        });
    }
    let client = shared.client.clone();
    let workers = shared.config.workers;
    Box::pin(run_workers("serviceaccount", queue, workers, move |ns| {
        let (client, namespaces, accounts) = (client.clone(), namespaces.clone(), accounts.clone());
        async move { sync(client, &namespaces, &accounts, &ns).await }
    }))
}

async fn sync(
    client: kube::Client,
    namespaces: &Arc<Informer<Namespace>>,
    accounts: &Arc<Informer<ServiceAccount>>,
    ns: &str,
) -> Result<Option<Duration>> {
    let Some(namespace) = namespaces.get(None, ns) else {
        return Ok(None);
    };
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating || accounts.get(Some(ns), DEFAULT_SA).is_some() {
        return Ok(None);
    }
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(DEFAULT_SA.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client, ns);
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(None),
        // Already there (our cache lags) or the namespace started terminating meanwhile.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => Ok(None),
        Err(err) => Err(err.into()),
    }
}
