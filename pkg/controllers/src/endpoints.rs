//! Endpoints controller: for every Service with a selector, publish the IPs and resolved ports
//! of the pods it selects, split by readiness. Also the pod/service bookkeeping the
//! EndpointSlice controller (`endpointslice.rs`) shares.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};

use crate::informer::{key_of, split_key, Informer};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{ignore_not_found, labels_of, map_selector_matches, pod_is_ready};
use crate::{Result, Shared};

pub use crate::endpointslice::{
    MANAGED_BY, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL,
};

/// Most addresses one Endpoints object lists, as upstream's `maxCapacity`; past it the object
/// is truncated and annotated [`OVER_CAPACITY_ANNOTATION`].
pub const MAX_ENDPOINTS_CAPACITY: usize = 1000;
/// Annotation (value `truncated`) on an Endpoints object that lists only some addresses.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// (name, port, protocol, appProtocol) of one resolved service port.
pub(crate) type PortKey = (Option<String>, i32, String, Option<String>);

/// One pod's contribution: its ports and address data.
pub(crate) struct PodEndpoint {
    pub(crate) ip: String,
    pub(crate) ready: bool,
    pub(crate) serving: bool,
    pub(crate) terminating: bool,
    pub(crate) node: Option<String>,
    pub(crate) target: ObjectReference,
    pub(crate) ports: Vec<PortKey>,
}

/// What both endpoint controllers read: the client and the pod and service caches.
pub(crate) struct Common {
    pub(crate) client: kube::Client,
    pods: Arc<Informer<Pod>>,
    services: Arc<Informer<Service>>,
}

/// The shared state, with handlers queueing a service key on service changes and on changes of
/// pods it selects.
pub(crate) fn common(shared: &Shared, queue: &WorkQueue) -> Arc<Common> {
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
    pub(crate) fn managed_service(&self, key: &str) -> Option<Arc<Service>> {
        let (ns, name) = split_key(key);
        if ns == Some("default") && name == "kubernetes" {
            return None;
        }
        self.services.get(ns, name)
    }

    /// The pods backing `svc` with their resolved ports; terminating pods only if asked.
    pub(crate) fn pod_endpoints(
        &self,
        svc: &Service,
        include_terminating: bool,
    ) -> Vec<PodEndpoint> {
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
                    && p.metadata
                        .labels
                        .as_ref()
                        .is_some_and(|l| map_selector_matches(selector, l))
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

/// Whether the service is headless (clusterIP None).
pub(crate) fn is_headless(svc: &Service) -> bool {
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
    let mut subsets: Vec<EndpointSubset> = groups
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
    let truncated = truncate(&mut subsets);
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match cache.get(Some(ns), name) {
        Some(existing) => {
            let was_truncated = existing
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(OVER_CAPACITY_ANNOTATION));
            if existing.subsets == subsets
                && existing.metadata.labels.clone().unwrap_or_default() == labels
                && was_truncated == truncated
            {
                return Ok(None);
            }
            let mut updated = existing.as_ref().clone();
            updated.subsets = subsets;
            updated.metadata.labels = Some(labels);
            let annotations = updated
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            if truncated {
                annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
            } else {
                annotations.remove(OVER_CAPACITY_ANNOTATION);
            }
            ignore_not_found(api.replace(name, &PostParams::default(), &updated).await)?;
        }
        None => {
            let ep = Endpoints {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels),
                    annotations: truncated.then(|| {
                        [(
                            OVER_CAPACITY_ANNOTATION.to_string(),
                            "truncated".to_string(),
                        )]
                        .into()
                    }),
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

/// Cuts `subsets` down to [`MAX_ENDPOINTS_CAPACITY`] addresses as upstream's
/// `truncateEndpoints`: ready addresses first, each subset keeping its share (rounded up) of
/// the kind being cut. Returns whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |a: &Option<Vec<EndpointAddress>>| a.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_CAPACITY {
        return false;
    }
    let cut_ready = ready > MAX_ENDPOINTS_CAPACITY;
    let (max, total) = if cut_ready {
        (MAX_ENDPOINTS_CAPACITY, ready)
    } else {
        (MAX_ENDPOINTS_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for s in subsets.iter_mut() {
        let list = if cut_ready {
            s.not_ready_addresses = None;
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let here = count(list);
        let share = (here * max).div_ceil(total).min(room);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        room -= count(list);
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Option<Vec<EndpointAddress>> {
        Some(
            (0..n)
                .map(|i| EndpointAddress {
                    ip: format!("10.0.{}.{}", i / 250, i % 250),
                    ..Default::default()
                })
                .collect(),
        )
    }

    fn subset(ready: usize, not_ready: usize) -> EndpointSubset {
        EndpointSubset {
            addresses: addrs(ready),
            not_ready_addresses: addrs(not_ready),
            ports: None,
        }
    }

    fn sizes(s: &[EndpointSubset]) -> Vec<(usize, usize)> {
        s.iter()
            .map(|s| {
                (
                    s.addresses.as_ref().map_or(0, Vec::len),
                    s.not_ready_addresses.as_ref().map_or(0, Vec::len),
                )
            })
            .collect()
    }

    #[test]
    fn truncates_like_upstream() {
        let mut s = vec![subset(600, 10), subset(390, 0)];
        assert!(!truncate(&mut s));
        // Too many ready: keep 1,000 ready split by share, drop every not-ready address.
        let mut s = vec![subset(3000, 5), subset(2000, 0)];
        assert!(truncate(&mut s));
        assert_eq!(sizes(&s), [(600, 0), (400, 0)]);
        // Ready fits: not-ready ones fill the rest by share.
        let mut s = vec![subset(500, 300), subset(100, 500)];
        assert!(truncate(&mut s));
        assert_eq!(sizes(&s), [(500, 150), (100, 250)]);
    }
}
