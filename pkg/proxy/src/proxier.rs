//! The sync loop: reflectors for Services and EndpointSlices wake it, it waits out
//! `min_sync_period` since the last sync (so bursts of changes become one batch), recomputes
//! the desired state and applies it (iptables batch, or userspace listeners).

use std::collections::{BTreeMap, BTreeSet};
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
use crate::host::{Host, HostError};
use crate::model::{service_ports, ServicePort};
use crate::userspace::Userspace;
use crate::{conntrack, netif, rules, Config, Error, Mode, Result};

const ROUTE_LOCALNET: &str = "net/ipv4/conf/all/route_localnet";

enum Backend {
    Iptables {
        route_localnet_done: bool,
        /// What the last successful sync left installed (None: read it back first).
        installed: Option<Installed>,
        /// When the tables were last read back and compared with `installed`.
        last_check: Option<Instant>,
        /// The service ports of the last successful sync (kept across a failed one, so the
        /// UDP conntrack cleanup still sees what changed since).
        synced: Option<Vec<ServicePort>>,
    },
    Userspace(Userspace),
}

/// The proxy's memory of its own rules, so a sync writes only what changed without reading
/// the tables back: `iptables-save` of a large ruleset costs more than the change itself.
struct Installed {
    /// Our chains and jumps as the last batch left them.
    existing: Existing,
    /// Content hash per chain, for the next partial render.
    chains: BTreeMap<String, u64>,
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
            installed: None,
            last_check: None,
            synced: None,
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
            installed,
            last_check,
            synced,
        } => {
            // Read the tables back only at start, after a failure, and every sync_period (to
            // notice chains or jumps someone else removed); otherwise trust our own record.
            let check =
                installed.is_none() || last_check.is_none_or(|t| t.elapsed() >= config.sync_period);
            let mut known = installed.take();
            let existing = if check {
                let save = host.iptables_save().await?;
                let seen = Existing::parse(&save, &config.chain_prefix);
                *last_check = Some(Instant::now());
                if let Some(k) = known.as_mut() {
                    if !k.existing.same_shape(&seen) {
                        warn!(
                            "our iptables chains or jumps changed behind our back, rewriting all"
                        );
                        k.chains.clear();
                    }
                }
                seen
            } else {
                known
                    .as_ref()
                    .map(|k| k.existing.clone())
                    .unwrap_or_default()
            };
            let previous = known.as_ref().map(|k| &k.chains);
            let plan = rules::render_partial(&config.rule_config(), ports, &existing, previous);
            if plan.has_node_ports && !*route_localnet_done {
                if host.read_sysctl(ROUTE_LOCALNET).await.ok().as_deref() != Some("1") {
                    host.write_sysctl(ROUTE_LOCALNET, "1").await?;
                    info!(
                        "set net.ipv4.conf.all.route_localnet=1 so NodePorts answer on 127.0.0.1"
                    );
                }
                *route_localnet_done = true;
            }
            // On failure `installed` stays None: the retry reads the tables back and writes
            // everything.
            host.iptables_restore(&plan.text).await?;
            // The first sync has nothing to compare with: flushing then would cut the UDP
            // flows a restarted proxy is meant to keep.
            if let Some(old) = synced.replace(ports.to_vec()) {
                flush_conntrack(host, &conntrack::stale(&old, ports)).await;
            }
            *installed = Some(Installed {
                existing: plan.installed,
                chains: plan.chains,
            });
            Ok(plan.rules)
        }
    }
}

/// Runs the flushes; failures are logged, not fatal (as upstream: the rules are right, only
/// old flows may linger until they time out).
async fn flush_conntrack(host: &dyn Host, flushes: &BTreeSet<conntrack::Flush>) {
    for f in flushes {
        let args = f.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match host.conntrack(&args).await {
            Ok(()) => debug!(args = %args.join(" "), "flushed conntrack entries"),
            Err(e @ HostError::Spawn { .. }) => {
                warn!(error = %e, "conntrack tool unusable; stale UDP flows stay until they time out");
                return;
            }
            Err(e) => warn!(error = %e, "conntrack flush failed"),
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::host::{Call, RecordingHost};
    use crate::model::{Endpoint, Protocol};

    fn udp(eps: &[u8]) -> ServicePort {
        ServicePort {
            namespace: "ns".into(),
            name: "dns".into(),
            port_name: "dns".into(),
            protocol: Protocol::Udp,
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
            port: 53,
            node_port: None,
            affinity_seconds: None,
            endpoints: eps
                .iter()
                .map(|i| Endpoint {
                    ip: Ipv4Addr::new(10, 244, 0, *i),
                    port: 53,
                })
                .collect(),
        }
    }

    fn backend() -> Backend {
        Backend::Iptables {
            route_localnet_done: false,
            installed: None,
            last_check: None,
            synced: None,
        }
    }

    fn count(h: &RecordingHost, f: impl Fn(&Call) -> bool) -> usize {
        h.calls().iter().filter(|c| f(c)).count()
    }

    fn last_restore(h: &RecordingHost) -> String {
        h.calls()
            .into_iter()
            .rev()
            .find_map(|c| match c {
                Call::Restore(t) => Some(t),
                _ => None,
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn syncs_read_the_tables_back_only_at_start_after_failure_and_per_period() {
        let h = RecordingHost::default();
        let config = Config {
            chain_prefix: "KL-".into(),
            ..Config::default()
        };
        let mut b = backend();
        let other = ServicePort {
            name: "other".into(),
            cluster_ip: Ipv4Addr::new(10, 96, 0, 11),
            ..udp(&[5])
        };
        let ports = vec![udp(&[1, 2]), other.clone()];
        apply(&h, &config, &mut b, &ports).await.expect("first");
        assert_eq!(count(&h, |c| *c == Call::Save), 1);
        let first = last_restore(&h);
        assert!(first.contains("-I PREROUTING 1"), "{first}");

        // One endpoint gone: no iptables-save, only the changed chains, the stale SEP chain
        // deleted, and the UDP flows to the removed endpoint flushed.
        let ports = vec![udp(&[1]), other.clone()];
        apply(&h, &config, &mut b, &ports).await.expect("partial");
        assert_eq!(count(&h, |c| *c == Call::Save), 1);
        let partial = last_restore(&h);
        assert!(!partial.contains("-I PREROUTING"), "{partial}");
        assert!(
            !partial.contains("10.244.0.5"),
            "unchanged service rewritten: {partial}"
        );
        assert!(partial.contains("-X KL-SEP-"), "{partial}");
        let flushes: Vec<Call> = h
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Conntrack(_)))
            .collect();
        assert_eq!(
            flushes,
            [Call::Conntrack(
                "-D --orig-dst 10.96.0.10 --dst-nat 10.244.0.2 -p udp"
                    .split(' ')
                    .map(str::to_string)
                    .collect()
            )]
        );

        // A failed restore: the next sync reads back and writes everything again, and still
        // flushes the flows of the endpoint removed since the last successful sync.
        *h.fail_restore.lock().expect("lock") = true;
        let ports = vec![udp(&[3]), other.clone()];
        assert!(apply(&h, &config, &mut b, &ports).await.is_err());
        apply(&h, &config, &mut b, &ports).await.expect("retry");
        assert_eq!(count(&h, |c| *c == Call::Save), 2);
        assert!(last_restore(&h).contains("10.244.0.5"));
        assert!(h.calls().iter().any(|c| matches!(c, Call::Conntrack(a)
            if a.join(" ") == "-D --orig-dst 10.96.0.10 --dst-nat 10.244.0.1 -p udp")));

        // Past sync_period the tables are read back; the fake shows none of our chains (as if
        // someone flushed them), so everything is rewritten, jumps included.
        let config = Config {
            sync_period: Duration::ZERO,
            ..config
        };
        apply(&h, &config, &mut b, &ports).await.expect("resync");
        assert_eq!(count(&h, |c| *c == Call::Save), 3);
        let full = last_restore(&h);
        assert!(
            full.contains("-I PREROUTING 1") && full.contains("10.244.0.5"),
            "{full}"
        );
    }
}
