//! The watch-fed cache DNS answers come from: Services, EndpointSlices and Namespaces, reduced
//! to what a name lookup needs and indexed by `(namespace, service)`.
//!
//! kube-runtime's `reflector::Store` keys objects by their own name only; a headless lookup
//! needs "every slice of service X", so the watcher events feed this index instead (one writer
//! task per kind, readers take a short read lock and never wait on the network).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tracing::warn;

/// `(namespace, name)`.
pub(crate) type Key = (String, String);

/// The label an EndpointSlice names its Service with.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A service port as DNS sees it (SRV records and `_port._proto` matching).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The port name ("" when unnamed).
    pub name: String,
    /// Lowercase protocol: `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The port number.
    pub port: u16,
}

/// What kind of answer a Service gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SvcKind {
    /// A virtual IP per family (`spec.clusterIPs`).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the ready endpoint addresses.
    Headless,
    /// A CNAME to `spec.externalName` (lowercase, no trailing dot).
    ExternalName(String),
}

/// A Service reduced to its DNS-relevant fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Svc {
    /// How the service name resolves.
    pub kind: SvcKind,
    /// `spec.ports`.
    pub ports: Vec<Port>,
}

/// One ready endpoint address of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ep {
    /// The address.
    pub ip: IpAddr,
    /// The DNS label of this endpoint: `hostname` if set, else the dashed IP (CoreDNS).
    pub label: String,
    /// The slice's ports.
    pub ports: Arc<[Port]>,
}

/// The index itself; [`Cache`] guards it.
#[derive(Debug, Default)]
pub struct Index {
    /// Namespaces that exist.
    pub namespaces: HashSet<String>,
    /// Services by `(namespace, name)`.
    pub services: HashMap<Key, Svc>,
    /// Ready endpoints by `(namespace, service)`, then by slice name.
    pub endpoints: HashMap<Key, BTreeMap<String, Vec<Ep>>>,
    /// `(namespace, slice)` → the service it is filed under, so a relabelled slice moves.
    slice_owner: HashMap<Key, String>,
}

impl Index {
    /// Every ready endpoint of a service, in slice-name order.
    pub fn endpoints_of(&self, ns: &str, svc: &str) -> impl Iterator<Item = &Ep> {
        self.endpoints
            .get(&(ns.to_string(), svc.to_string()))
            .into_iter()
            .flat_map(|slices| slices.values().flatten())
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&mut self, svc: &Service) {
        let key = (svc.namespace().unwrap_or_default(), svc.name_any());
        self.services.insert(key, svc_from(svc));
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        self.delete_slice(slice);
        let ns = slice.namespace().unwrap_or_default();
        let Some(owner) = slice.labels().get(SERVICE_NAME_LABEL).cloned() else {
            return;
        };
        let eps = slice_endpoints(slice);
        self.slice_owner
            .insert((ns.clone(), slice.name_any()), owner.clone());
        self.endpoints
            .entry((ns, owner))
            .or_default()
            .insert(slice.name_any(), eps);
    }

    fn delete_slice(&mut self, slice: &EndpointSlice) {
        let ns = slice.namespace().unwrap_or_default();
        let Some(owner) = self.slice_owner.remove(&(ns.clone(), slice.name_any())) else {
            return;
        };
        let key = (ns, owner);
        if let Some(slices) = self.endpoints.get_mut(&key) {
            slices.remove(&slice.name_any());
            if slices.is_empty() {
                self.endpoints.remove(&key);
            }
        }
    }
}

/// Reduces a Service to its DNS fields.
fn svc_from(svc: &Service) -> Svc {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(Port {
                name: p.name.unwrap_or_default(),
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.unwrap_or_default();
        SvcKind::ExternalName(target.trim_end_matches('.').to_lowercase())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        SvcKind::Headless
    } else {
        let ips = spec.cluster_ips.filter(|ips| !ips.is_empty());
        let ips = ips.unwrap_or_else(|| spec.cluster_ip.into_iter().collect());
        SvcKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
    };
    Svc { kind, ports }
}

/// The ready endpoint addresses of a slice. A nil `ready` counts as ready (the API says
/// consumers should read "unknown" as ready); FQDN slices have no address DNS can serve.
fn slice_endpoints(slice: &EndpointSlice) -> Vec<Ep> {
    let ports: Arc<[Port]> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(Port {
                name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    let mut out = Vec::new();
    for ep in &slice.endpoints {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        if !ready {
            continue;
        }
        for addr in &ep.addresses {
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            let label = match &ep.hostname {
                Some(h) if !h.is_empty() => h.to_lowercase(),
                _ => dashed(ip),
            };
            out.push(Ep {
                ip,
                label,
                ports: ports.clone(),
            });
        }
    }
    out
}

/// `10.0.0.1` → `10-0-0-1`, `fd00::1` → `fd00--1` (CoreDNS's endpoint hostname for addresses
/// without `hostname`).
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The shared cache: the index, a serial for the SOA, and which kinds have listed once.
#[derive(Debug)]
pub struct Cache {
    index: RwLock<Index>,
    serial: AtomicU32,
    synced: watch::Sender<u8>,
}

/// Bits in `synced`, one per watched kind.
const ALL_SYNCED: u8 = 0b111;

impl Default for Cache {
    fn default() -> Self {
        Self {
            index: RwLock::default(),
            serial: AtomicU32::new(now_serial()),
            synced: watch::Sender::new(0),
        }
    }
}

impl Cache {
    /// A read view. Never held across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        // A panic under the lock can't leave the maps half-updated in a way lookups can't
        // read, so poisoning is ignored.
        let guard = self.index.write().unwrap_or_else(|e| e.into_inner());
        self.serial.store(now_serial(), Ordering::Relaxed);
        guard
    }

    /// The SOA serial: the time of the last change, in Unix seconds (as CoreDNS).
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }

    /// Whether every kind has completed its first list.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow() == ALL_SYNCED
    }

    /// Waits until every kind has completed its first list.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives in `self`, so this can't fail while we borrow it.
        let _ = rx.wait_for(|bits| *bits == ALL_SYNCED).await;
    }

    /// Feeds the cache from the apiserver until the streams end (they retry with backoff, so in
    /// practice until the task is dropped).
    pub async fn run(self: Arc<Self>, client: kube::Client) {
        let services = self.clone().feed(
            watcher(Api::<Service>::all(client.clone())),
            0b001,
            |idx| idx.services.clear(),
            |idx, s: &Service| idx.apply_service(s),
            |idx, s: &Service| {
                idx.services
                    .remove(&(s.namespace().unwrap_or_default(), s.name_any()));
            },
        );
        let slices = self.clone().feed(
            watcher(Api::<EndpointSlice>::all(client.clone())),
            0b010,
            |idx| {
                idx.endpoints.clear();
                idx.slice_owner.clear();
            },
            |idx, s: &EndpointSlice| idx.apply_slice(s),
            |idx, s: &EndpointSlice| idx.delete_slice(s),
        );
        let namespaces = self.clone().feed(
            watcher(Api::<Namespace>::all(client)),
            0b100,
            |idx| idx.namespaces.clear(),
            |idx, n: &Namespace| {
                idx.namespaces.insert(n.name_any());
            },
            |idx, n: &Namespace| {
                idx.namespaces.remove(&n.name_any());
            },
        );
        tokio::join!(services, slices, namespaces);
    }

    /// Applies one kind's watch events. A relist (`Init` … `InitDone`) is buffered and swapped
    /// in at once, so lookups never see a half-listed kind.
    async fn feed<K, S>(
        self: Arc<Self>,
        stream: S,
        bit: u8,
        clear: fn(&mut Index),
        apply: fn(&mut Index, &K),
        delete: fn(&mut Index, &K),
    ) where
        S: Stream<Item = Result<Event<K>, watcher::Error>>,
    {
        let mut stream = std::pin::pin!(stream);
        let mut buffer: Vec<K> = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => buffer.clear(),
                Ok(Event::InitApply(obj)) => buffer.push(obj),
                Ok(Event::InitDone) => {
                    {
                        let mut idx = self.write();
                        clear(&mut idx);
                        for obj in buffer.drain(..) {
                            apply(&mut idx, &obj);
                        }
                    }
                    self.synced.send_modify(|bits| *bits |= bit);
                }
                Ok(Event::Apply(obj)) => apply(&mut self.write(), &obj),
                Ok(Event::Delete(obj)) => delete(&mut self.write(), &obj),
                Err(e) => warn!(error = %e, "dns cache watch failed; retrying"),
            }
        }
    }
}

fn watcher<K>(api: Api<K>) -> impl Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

fn now_serial() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a test failure
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, svc: &str, body: serde_json::Value) -> EndpointSlice {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns",
            "labels": {SERVICE_NAME_LABEL: svc}}, "addressType": "IPv4"});
        if let (Some(v), Some(b)) = (v.as_object_mut(), body.as_object()) {
            v.extend(b.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn service_kinds() {
        let cases = [
            (
                json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"]}),
                SvcKind::ClusterIp(vec![
                    "10.96.0.5".parse().unwrap(),
                    "fd00::5".parse().unwrap(),
                ]),
            ),
            (
                json!({"clusterIP": "10.96.0.6"}),
                SvcKind::ClusterIp(vec!["10.96.0.6".parse().unwrap()]),
            ),
            (json!({"clusterIP": "None"}), SvcKind::Headless),
            (
                json!({"type": "ExternalName", "externalName": "Example.COM."}),
                SvcKind::ExternalName("example.com".into()),
            ),
        ];
        for (spec, want) in cases {
            let svc: Service = serde_json::from_value(
                json!({"metadata": {"name": "s", "namespace": "ns"}, "spec": spec}),
            )
            .unwrap();
            assert_eq!(svc_from(&svc).kind, want, "{spec}");
        }
    }

    #[test]
    fn slices_keep_ready_endpoints_and_move_on_relabel() {
        let mut idx = Index::default();
        let s = slice(
            "web-1",
            "web",
            json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "hostname": "Web-0"},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true}},
            ]}),
        );
        idx.apply_slice(&s);
        let got: Vec<_> = idx
            .endpoints_of("ns", "web")
            .map(|e| (e.ip.to_string(), e.label.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1".into(), "web-0".into()),
                ("10.0.0.3".into(), "10-0-0-3".into())
            ]
        );
        assert_eq!(
            idx.endpoints_of("ns", "web").next().unwrap().ports[0].protocol,
            "tcp"
        );

        idx.apply_slice(&slice(
            "web-1",
            "other",
            json!({"endpoints": [{"addresses": ["10.0.0.9"]}]}),
        ));
        assert_eq!(idx.endpoints_of("ns", "web").count(), 0);
        assert_eq!(idx.endpoints_of("ns", "other").count(), 1);
        idx.delete_slice(&slice("web-1", "other", json!({})));
        assert!(idx.endpoints.is_empty() && idx.slice_owner.is_empty());
    }
}
