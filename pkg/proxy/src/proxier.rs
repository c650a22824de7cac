//! The sync loop: reflectors for Services and EndpointSlices wake it, it waits out
//! `min_sync_period` since the last sync (so bursts of changes become one batch), recomputes
//! the desired state and applies it (iptables batch, or userspace listeners).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::chains::Existing;
use crate::host::Host;
use crate::model::{service_ports, ServicePort};
use crate::userspace::Userspace;
use crate::{netif, rules, Config, Error, Mode, Result};

const ROUTE_LOCALNET: &str = "net/ipv4/conf/all/route_localnet";

enum Backend {
    Iptables {
        route_localnet_done: bool,
        /// Chain hashes of the last applied batch (None: next sync writes everything).
        previous: Option<BTreeMap<String, u64>>,
        last_full: Option<Instant>,
    },
    Userspace(Userspace),
}

/// Picks the mode: iptables when `iptables-save` runs.
async fn choose(host: &dyn Host, config: &Config) -> Result<Backend> {
    let iptables = match config.mode {
        Mode::Userspace => false,
        Mode::Iptables => {
            host.iptables_save().await?;
            true
        }
        Mode::Auto => match host.iptables_save().await {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "iptables unusable, falling back to userspace (TCP NodePorts only)");
                false
            }
        },
    };
    config.metrics.set_mode(iptables);
    Ok(if iptables {
        info!(prefix = %config.chain_prefix, "proxy mode: iptables");
        Backend::Iptables {
            route_localnet_done: false,
            previous: None,
            last_full: None,
        }
    } else {
        info!(bind = %config.userspace_bind, "proxy mode: userspace (TCP NodePorts only, no ClusterIPs)");
        Backend::Userspace(Userspace::new(config.userspace_bind))
    })
}

fn spawn_reflector<K>(
    tasks: &mut JoinSet<()>,
    client: kube::Client,
    notify: Arc<Notify>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tasks.spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                debug!(error = %e, "watch error (retrying)");
            }
            notify.notify_one();
        }
    });
    store
}

/// Applies `ports` once. Returns the number of rules written.
async fn apply(
    host: &dyn Host,
    config: &Config,
    backend: &mut Backend,
    ports: &[ServicePort],
) -> Result<usize> {
    match backend {
        Backend::Userspace(u) => {
            u.sync(ports).await;
            Ok(u.ports().len())
        }
        Backend::Iptables {
            route_localnet_done,
            previous,
            last_full,
        } => {
            let save = host.iptables_save().await?;
            let existing = Existing::parse(&save, &config.chain_prefix);
            // Every sync_period all chains are rewritten, repairing edits made by others.
            let full = last_full.is_none_or(|t| t.elapsed() >= config.sync_period);
            let base = if full { None } else { previous.take() };
            let plan =
                rules::render_partial(&config.rule_config(), ports, &existing, base.as_ref());
            if plan.has_node_ports && !*route_localnet_done {
                if host.read_sysctl(ROUTE_LOCALNET).await.ok().as_deref() != Some("1") {
                    host.write_sysctl(ROUTE_LOCALNET, "1").await?;
                    info!(
                        "set net.ipv4.conf.all.route_localnet=1 so NodePorts answer on 127.0.0.1"
                    );
                }
                *route_localnet_done = true;
            }
            // On failure `previous` stays None, so the retry writes everything.
            host.iptables_restore(&plan.text).await?;
            *previous = Some(plan.chains);
            if full {
                *last_full = Some(Instant::now());
            }
            Ok(plan.rules)
        }
    }
}

pub(crate) async fn run(
    host: Arc<dyn Host>,
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    let mut backend = choose(&*host, &config).await?;
    if let Some(addr) = config.healthz_bind_address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        info!(addr = %local, "serving /healthz and /metrics");
        let router = crate::router(config.metrics.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
    }
    if matches!(backend, Backend::Iptables { .. }) {
        if let Err(e) = netif::ensure(&*host, &config.interface, &config.service_cidr).await {
            warn!(interface = %config.interface, error = %e,
                "cannot route the service CIDR locally; unrouted ClusterIP traffic may leave the node");
        }
    }

    // The tasks live in the set, so returning stops the watches.
    let mut tasks = JoinSet::new();
    let notify = Arc::new(Notify::new());
    let services: Store<Service> = spawn_reflector(&mut tasks, client.clone(), notify.clone());
    let slices: Store<EndpointSlice> = spawn_reflector(&mut tasks, client, notify.clone());
    // Syncing before both lists are in would briefly drop the rules of a restarted proxy.
    tokio::select! {
        _ = &mut shutdown => return Ok(()),
        r = async { tokio::join!(services.wait_until_ready(), slices.wait_until_ready()) } => {
            if r.0.is_err() || r.1.is_err() {
                warn!("reflector stopped before its first list");
            }
        }
    }
    info!("caches synced, proxying");

    let mut last_sync: Option<Instant> = None;
    loop {
        let earliest = last_sync
            .map(|t| tokio::time::Instant::from_std(t + config.min_sync_period))
            .unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(earliest) => {}
        }
        let start = Instant::now();
        last_sync = Some(start);
        let svcs = services.state();
        let eps = slices.state();
        let ports = service_ports(svcs.iter().map(|s| &**s), eps.iter().map(|s| &**s));
        match apply(&*host, &config, &mut backend, &ports).await {
            Ok(rules) => {
                let took = start.elapsed();
                config.metrics.synced(took, rules, ports.len());
                debug!(
                    service_ports = ports.len(),
                    rules,
                    took_ms = took.as_millis() as u64,
                    "synced"
                );
            }
            Err(e) => {
                // Retried after min_sync_period (the top of the loop waits it out).
                config.metrics.sync_failed();
                warn!(error = %e, "sync failed, retrying");
                continue;
            }
        }
        let resync_at = tokio::time::Instant::now() + config.sync_period;
        tokio::select! {
            _ = &mut shutdown => break,
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(resync_at) => {}
        }
    }
    info!("proxy stopped (rules left in place)");
    Ok(())
}
