//! Endpoints and EndpointSlice controllers: for every Service with a selector, publish the IPs
//! and resolved ports of the pods it selects, split by readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};

use crate::informer::{key_of, split_key, Informer};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{
    controller_owner_ref, ignore_not_found, labels_of, map_selector_matches, pod_is_ready,
};
use crate::{Result, Shared};

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller managing an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's managed-by value.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Most endpoints in one slice, as upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// (name, port, protocol, appProtocol) of one resolved service port.
type PortKey = (Option<String>, i32, String, Option<String>);

/// One pod's contribution: its ports and address data.
struct PodEndpoint {
    ip: String,
    ready: bool,
    serving: bool,
    terminating: bool,
    node: Option<String>,
    target: ObjectReference,
    ports: Vec<PortKey>,
}

struct Common {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    services: Arc<Informer<Service>>,
}

fn common(shared: &Shared, queue: &WorkQueue) -> Arc<Common> {
    let c = Arc::new(Common {
        client: shared.client.clone(),
        pods: shared.informers.pods.clone(),
        services: shared.informers.services.clone(),
    });
    {
        let q = queue.clone();
        c.services.on_change(move |ch| q.add(key_of(ch.object())));
    }
    {
        let (q, c2) = (queue.clone(), c.clone());
        c.pods.on_change(move |ch| {
            let mut keys = c2.services_for(ch.object());
            if let crate::informer::Change::Updated { old, .. } = ch {
                keys.extend(c2.services_for(old));
            }
            keys.into_iter().for_each(|k| q.add(k));
        });
    }
    c
}

impl Common {
    fn services_for(&self, pod: &Pod) -> BTreeSet<String> {
        let labels = labels_of(&pod.metadata);
        self.services
            .store()
            .state_filter(|s| {
                s.metadata.namespace == pod.metadata.namespace
                    && s.spec
                        .as_ref()
                        .and_then(|sp| sp.selector.as_ref())
                        .is_some_and(|sel| map_selector_matches(sel, &labels))
            })
            .iter()
            .map(|s| key_of(s.as_ref()))
            .collect()
    }

    /// The service if it is one whose endpoints this controller manages.
    fn managed_service(&self, key: &str) -> Option<Arc<Service>> {
        let (ns, name) = split_key(key);
        if ns == Some("default") && name == "kubernetes" {
            return None;
        }
        self.services.get(ns, name)
    }

    /// The pods backing `svc` with their resolved ports; terminating pods only if asked.
    fn pod_endpoints(&self, svc: &Service, include_terminating: bool) -> Vec<PodEndpoint> {
        let Some(spec) = svc.spec.as_ref() else {
            return Vec::new();
        };
        let Some(selector) = spec.selector.as_ref() else {
            return Vec::new();
        };
        let publish = spec.publish_not_ready_addresses.unwrap_or(false);
        let ns = svc.metadata.namespace.clone();
        let mut out: Vec<PodEndpoint> = self
            .pods
            .store()
            .state_filter(|p| {
                p.metadata.namespace == ns
                    && map_selector_matches(selector, &labels_of(&p.metadata))
            })
            .iter()
            .filter_map(|pod| {
                let status = pod.status.as_ref()?;
                if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                    return None;
                }
                let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
                let terminating = pod.metadata.deletion_timestamp.is_some();
                if terminating && !include_terminating && !publish {
                    return None;
                }
                let pod_ready = pod_is_ready(pod);
                let ports = spec
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|sp| {
                        let port = resolve_target_port(pod, sp.target_port.as_ref(), sp.port)?;
                        Some((
                            sp.name.clone().filter(|n| !n.is_empty()),
                            port,
                            sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                            sp.app_protocol.clone(),
                        ))
                    })
                    .collect();
                Some(PodEndpoint {
                    ip,
                    ready: publish || (pod_ready && !terminating),
                    serving: publish || pod_ready,
                    terminating,
                    node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                    target: ObjectReference {
                        kind: Some("Pod".into()),
                        namespace: pod.metadata.namespace.clone(),
                        name: pod.metadata.name.clone(),
                        uid: pod.metadata.uid.clone(),
                        ..Default::default()
                    },
                    ports,
                })
            })
            .collect();
        out.sort_by(|a, b| a.ip.cmp(&b.ip));
        out
    }
}

/// The container port a service targetPort names for this pod (numbers pass through).
fn resolve_target_port(pod: &Pod, target: Option<&IntOrString>, port: i32) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(0)) => Some(port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            if let Ok(p) = name.parse::<i32>() {
                return Some(p);
            }
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }
    }
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Registers the Endpoints controller; returns its worker loop.
pub fn register_endpoints(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let c = common(shared, &queue);
    let endpoints = shared.informers.endpoints.clone();
    {
        // Someone else touching our Endpoints: reconcile it back.
        let q = queue.clone();
        endpoints.on_change(move |ch| q.add(key_of(ch.object())));
    }
    let workers = shared.config.workers;
    Box::pin(run_workers("endpoint", queue, workers, move |key| {
        let (c, endpoints) = (c.clone(), endpoints.clone());
        async move { sync_endpoints(&c, &endpoints, &key).await }
    }))
}

async fn sync_endpoints(
    c: &Common,
    cache: &Informer<Endpoints>,
    key: &str,
) -> Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    if ns == Some("default") && name == "kubernetes" {
        return Ok(None);
    }
    let ns = ns.unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(c.client.clone(), ns);
    let Some(svc) = c.managed_service(key) else {
        if cache.get(Some(ns), name).is_some() {
            ignore_not_found(api.delete(name, &DeleteParams::default()).await)?;
        }
        return Ok(None);
    };
    if svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none()
    {
        return Ok(None);
    }
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    let headless_no_ports = is_headless(&svc)
        && svc
            .spec
            .as_ref()
            .is_none_or(|s| s.ports.as_ref().is_none_or(|p| p.is_empty()));
    for pe in c.pod_endpoints(&svc, false) {
        if pe.ports.is_empty() && !headless_no_ports {
            continue;
        }
        let addr = EndpointAddress {
            ip: pe.ip,
            node_name: pe.node,
            target_ref: Some(pe.target),
            hostname: None,
        };
        let entry = groups.entry(pe.ports).or_default();
        if pe.ready {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    let subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|(name, port, protocol, app_protocol)| EndpointPort {
                        name,
                        port,
                        protocol: Some(protocol),
                        app_protocol,
                    })
                    .collect()
            }),
        })
        .collect();
    let mut labels = labels_of(&svc.metadata);
    if is_headless(&svc) {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match cache.get(Some(ns), name) {
        Some(existing) => {
            if existing.subsets == subsets
                && existing.metadata.labels.clone().unwrap_or_default() == labels
            {
                return Ok(None);
            }
            let mut updated = existing.as_ref().clone();
            updated.subsets = subsets;
            updated.metadata.labels = Some(labels);
            ignore_not_found(api.replace(name, &PostParams::default(), &updated).await)?;
        }
        None => {
            let ep = Endpoints {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets,
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => {}
                // Our cache lags: the next event will bring it and we update then.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(None)
}

/// Registers the EndpointSlice controller; returns its worker loop.
pub fn register_slices(shared: &Shared) -> BoxFuture<'static, ()> {
    let queue = WorkQueue::new();
    let c = common(shared, &queue);
    let slices = shared.informers.endpointslices.clone();
    {
        let q = queue.clone();
        slices.on_change(move |ch| {
            let s = ch.object();
            let labels = labels_of(&s.metadata);
            if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
                return;
            }
            if let (Some(ns), Some(svc)) = (&s.metadata.namespace, labels.get(SERVICE_NAME_LABEL)) {
                q.add(format!("{ns}/{svc}"));
            }
        });
    }
    let workers = shared.config.workers;
    let pending: Arc<Pending> = Arc::default();
    Box::pin(run_workers("endpointslice", queue, workers, move |key| {
        let (c, slices, pending) = (c.clone(), slices.clone(), pending.clone());
        async move { sync_slices(&c, &slices, &pending, &key).await }
    }))
}

/// Slices created per service key that the cache has not shown yet (generateName means a
/// stale cache would otherwise create duplicates).
type Pending = std::sync::Mutex<BTreeMap<String, String>>;

async fn sync_slices(
    c: &Common,
    cache: &Informer<EndpointSlice>,
    pending: &Pending,
    key: &str,
) -> Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or_default();
    {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(created) = p.get(key) {
            if cache.get(Some(ns), created).is_none() {
                return Ok(Some(Duration::from_millis(100)));
            }
            p.remove(key);
        }
    }
    let api: Api<EndpointSlice> = Api::namespaced(c.client.clone(), ns);
    let mut existing: Vec<Arc<EndpointSlice>> = cache.store().state_filter(|s| {
        let l = labels_of(&s.metadata);
        s.metadata.namespace.as_deref() == Some(ns)
            && l.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
            && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
    });
    existing.sort_by_key(|s| s.metadata.name.clone());
    let svc = c.managed_service(key).filter(|s| {
        s.spec
            .as_ref()
            .and_then(|sp| sp.selector.as_ref())
            .is_some()
    });
    let Some(svc) = svc else {
        for s in existing {
            let n = s.metadata.name.clone().unwrap_or_default();
            ignore_not_found(api.delete(&n, &DeleteParams::default()).await)?;
        }
        return Ok(None);
    };
    // One slice per distinct port set (named target ports may resolve differently per pod).
    let mut groups: BTreeMap<Vec<PortKey>, Vec<Endpoint>> = BTreeMap::new();
    for pe in c.pod_endpoints(&svc, true) {
        groups.entry(pe.ports).or_default().push(Endpoint {
            addresses: vec![pe.ip],
            conditions: Some(EndpointConditions {
                ready: Some(pe.ready),
                serving: Some(pe.serving),
                terminating: Some(pe.terminating),
            }),
            node_name: pe.node,
            target_ref: Some(pe.target),
            ..Default::default()
        });
    }
    if groups.is_empty() {
        // Upstream keeps one empty slice per service so consumers see "no endpoints".
        groups.insert(Vec::new(), Vec::new());
    }
    let mut labels = labels_of(&svc.metadata);
    labels.insert(SERVICE_NAME_LABEL.into(), name.to_string());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if is_headless(&svc) {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let mut unused = existing;
    // Upstream's maxEndpointsPerSlice: bigger groups spread over several slices.
    let chunks = groups.into_iter().flat_map(|(ports, endpoints)| {
        let mut parts: Vec<Vec<Endpoint>> = endpoints
            .chunks(MAX_ENDPOINTS_PER_SLICE)
            .map(<[Endpoint]>::to_vec)
            .collect();
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        parts.into_iter().map(move |e| (ports.clone(), e))
    });
    for (ports, endpoints) in chunks {
        let ports: Vec<SlicePort> = ports
            .into_iter()
            .map(|(name, port, protocol, app_protocol)| SlicePort {
                name: Some(name.unwrap_or_default()),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol,
            })
            .collect();
        let ports = (!ports.is_empty()).then_some(ports);
        // Reuse the slice that already has exactly this content, else one with these ports,
        // else any leftover slice.
        let idx = unused
            .iter()
            .position(|s| s.ports == ports && s.endpoints == endpoints)
            .or_else(|| unused.iter().position(|s| s.ports == ports))
            .or(if unused.is_empty() { None } else { Some(0) });
        match idx.map(|i| unused.remove(i)) {
            Some(old) => {
                let same = old.ports == ports
                    && old.endpoints == endpoints
                    && old.metadata.labels.as_ref() == Some(&labels);
                if same {
                    continue;
                }
                let mut updated = old.as_ref().clone();
                updated.ports = ports;
                updated.endpoints = endpoints;
                updated.metadata.labels = Some(labels.clone());
                let n = updated.metadata.name.clone().unwrap_or_default();
                ignore_not_found(api.replace(&n, &PostParams::default(), &updated).await)?;
            }
            None => {
                let slice = EndpointSlice {
                    metadata: kube::api::ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.to_string()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![controller_owner_ref(svc.as_ref())]),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints,
                    ports,
                };
                let created = api.create(&PostParams::default(), &slice).await?;
                if let Some(n) = created.metadata.name {
                    pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.to_string(), n);
                }
            }
        }
    }
    for s in unused {
        let n = s.metadata.name.clone().unwrap_or_default();
        ignore_not_found(api.delete(&n, &DeleteParams::default()).await)?;
    }
    Ok(None)
}
