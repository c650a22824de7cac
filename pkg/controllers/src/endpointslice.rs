//! EndpointSlice controller: for every Service with a selector, publish its pods as
//! EndpointSlices of at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints, one set of slices per
//! resolved port set. Like upstream's reconciler, an endpoint stays in the slice that already
//! holds it: a change to one pod rewrites one slice, not every slice after it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use kube::api::{Api, DeleteParams, PostParams};
use tracing::debug;

use crate::endpoints::{common, is_headless, Common, PortKey};
use crate::informer::{split_key, Informer};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{controller_owner_ref, ignore_not_found, labels_of};
use crate::{Result, Shared};

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller managing an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's managed-by value.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Most endpoints in one slice, as upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Slice writes of one sync in flight at once.
const WRITES_IN_FLIGHT: usize = 8;
/// How long a sync waits for the cache to show this controller's own writes before it trusts
/// the cache anyway (a watch event may have been lost, or someone else deleted the slice).
const PENDING_TTL: Duration = Duration::from_secs(10);
/// Backstop requeue while the cache lags; the slice event itself normally requeues sooner.
const STALE_RETRY: Duration = Duration::from_millis(100);

/// Registers the EndpointSlice controller; returns its worker loop.
pub fn register(shared: &Shared) -> BoxFuture<'static, ()> {
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
        async move { sync(&c, &slices, &pending, &key).await }
    }))
}

/// Per service key, this controller's writes the cache has not shown yet: slice name -> the
/// resourceVersion written, `None` for a deletion. Syncing on such a stale cache would replace
/// slices from old content (conflicts) or, with generateName, create duplicates.
#[derive(Default)]
struct Pending(Mutex<HashMap<String, (Instant, Writes)>>);

/// Slice name -> the resourceVersion this controller wrote (`None`: it deleted the slice).
type Writes = BTreeMap<String, Option<u64>>;

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Writes)>> {
        // A poisoned lock only means a worker panicked; the map is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cache shows every write made for `key` (forgetting them once it does).
    fn caught_up(&self, key: &str, ns: &str, cache: &Informer<EndpointSlice>) -> bool {
        let mut map = self.lock();
        let Some((at, writes)) = map.get(key) else {
            return true;
        };
        let seen = at.elapsed() > PENDING_TTL
            || writes
                .iter()
                .all(|(name, want)| match (cache.get(Some(ns), name), want) {
                    (None, None) => true,
                    (Some(s), Some(want)) => rv(&s).is_none_or(|have| have >= *want),
                    _ => false,
                });
        if seen {
            map.remove(key);
        }
        seen
    }

    fn record(&self, key: &str, writes: Writes) {
        if !writes.is_empty() {
            self.lock()
                .insert(key.to_string(), (Instant::now(), writes));
        }
    }
}

fn rv(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_deref()?.parse().ok()
}

/// Identity of an endpoint inside a port set: its address and the pod behind it.
fn endpoint_key(e: &Endpoint) -> (String, String) {
    (
        e.addresses.first().cloned().unwrap_or_default(),
        e.target_ref
            .as_ref()
            .and_then(|t| t.name.clone())
            .unwrap_or_default(),
    )
}

fn slice_ports(ports: &[PortKey]) -> Option<Vec<SlicePort>> {
    let ports: Vec<SlicePort> = ports
        .iter()
        .map(|(name, port, protocol, app_protocol)| SlicePort {
            name: Some(name.clone().unwrap_or_default()),
            port: Some(*port),
            protocol: Some(protocol.clone()),
            app_protocol: app_protocol.clone(),
        })
        .collect();
    (!ports.is_empty()).then_some(ports)
}

/// The port set of an existing slice, in the form the desired state is keyed by.
fn port_key(ports: Option<&Vec<SlicePort>>) -> Vec<PortKey> {
    ports
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().filter(|n| !n.is_empty()),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect()
}

/// An existing slice and what it should hold after this sync.
struct Kept {
    old: Arc<EndpointSlice>,
    ports: Vec<PortKey>,
    endpoints: Vec<Endpoint>,
    changed: bool,
}

/// The writes one sync makes.
#[derive(Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

async fn sync(
    c: &Common,
    cache: &Informer<EndpointSlice>,
    pending: &Pending,
    key: &str,
) -> Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or_default();
    if !pending.caught_up(key, ns, cache) {
        return Ok(Some(STALE_RETRY));
    }
    let mut existing: Vec<Arc<EndpointSlice>> = cache.store().state_filter(|s| {
        let l = s.metadata.labels.as_ref();
        s.metadata.namespace.as_deref() == Some(ns)
            && l.and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|v| v == name)
            && l.and_then(|l| l.get(MANAGED_BY_LABEL))
                .is_some_and(|v| v == MANAGED_BY)
    });
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let svc = c.managed_service(key).filter(|s| {
        s.spec
            .as_ref()
            .and_then(|sp| sp.selector.as_ref())
            .is_some()
    });
    let plan = match svc {
        None => Plan {
            delete: existing
                .iter()
                .map(|s| s.metadata.name.clone().unwrap_or_default())
                .collect(),
            ..Default::default()
        },
        Some(svc) => {
            let mut labels = labels_of(&svc.metadata);
            labels.insert(SERVICE_NAME_LABEL.into(), name.to_string());
            labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
            if is_headless(&svc) {
                labels.insert("service.kubernetes.io/headless".into(), String::new());
            }
            let mut desired: BTreeMap<Vec<PortKey>, BTreeMap<(String, String), Endpoint>> =
                BTreeMap::new();
            for pe in c.pod_endpoints(&svc, true) {
                let e = Endpoint {
                    addresses: vec![pe.ip],
                    conditions: Some(EndpointConditions {
                        ready: Some(pe.ready),
                        serving: Some(pe.serving),
                        terminating: Some(pe.terminating),
                    }),
                    node_name: pe.node,
                    target_ref: Some(pe.target),
                    ..Default::default()
                };
                desired
                    .entry(pe.ports)
                    .or_default()
                    .insert(endpoint_key(&e), e);
            }
            let template = EndpointSlice {
                metadata: kube::api::ObjectMeta {
                    generate_name: Some(format!("{name}-")),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels),
                    owner_references: Some(vec![controller_owner_ref(svc.as_ref())]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: Vec::new(),
                ports: None,
            };
            reconcile(existing, desired, &template)
        }
    };
    let api: Api<EndpointSlice> = Api::namespaced(c.client.clone(), ns);
    let writes = apply(&api, plan).await;
    // Record what did succeed even when something failed, so the retry waits for it.
    let (writes, err) = match writes {
        Ok(w) => (w, None),
        Err((w, e)) => (w, Some(e)),
    };
    pending.record(key, writes);
    match err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// The writes that turn `existing` slices into `desired` endpoints per port set, keeping every
/// endpoint in the slice that already holds it.
fn reconcile(
    existing: Vec<Arc<EndpointSlice>>,
    mut desired: BTreeMap<Vec<PortKey>, BTreeMap<(String, String), Endpoint>>,
    template: &EndpointSlice,
) -> Plan {
    let mut plan = Plan::default();
    let labels = template.metadata.labels.as_ref();
    if desired.values().all(BTreeMap::is_empty) {
        // Upstream keeps one empty placeholder slice so consumers see "no endpoints".
        let mut rest = existing.into_iter();
        match rest.next() {
            Some(old) => {
                if !old.endpoints.is_empty()
                    || old.ports.is_some()
                    || old.metadata.labels.as_ref() != labels
                {
                    let mut s = old.as_ref().clone();
                    s.endpoints = Vec::new();
                    s.ports = None;
                    s.metadata.labels = labels.cloned();
                    plan.update.push(s);
                }
            }
            None => plan.create.push(template.clone()),
        }
        plan.delete
            .extend(rest.map(|s| s.metadata.name.clone().unwrap_or_default()));
        return plan;
    }
    // 1. Existing slices keep the endpoints that are still wanted (updated in place).
    let mut kept: Vec<Kept> = Vec::new();
    for old in existing {
        let ports = port_key(old.ports.as_ref());
        let Some(want) = desired.get_mut(&ports) else {
            plan.delete
                .push(old.metadata.name.clone().unwrap_or_default());
            continue;
        };
        let mut endpoints = Vec::with_capacity(old.endpoints.len());
        let mut changed = old.metadata.labels.as_ref() != labels;
        for e in &old.endpoints {
            match want.remove(&endpoint_key(e)) {
                Some(d) => {
                    changed |= d != *e;
                    endpoints.push(d);
                }
                None => changed = true,
            }
        }
        if endpoints.is_empty() {
            plan.delete
                .push(old.metadata.name.clone().unwrap_or_default());
            continue;
        }
        kept.push(Kept {
            old,
            ports,
            endpoints,
            changed,
        });
    }
    // 2. New endpoints go first into slices that are written anyway, then full new slices; a
    //    remainder goes into the fullest unchanged slice with room for all of it, else a new one.
    for (ports, want) in desired {
        let mut remaining: Vec<Endpoint> = want.into_values().collect();
        remaining.reverse(); // pop() then takes them in address order
        for k in kept.iter_mut().filter(|k| k.changed && k.ports == ports) {
            while k.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                let Some(e) = remaining.pop() else { break };
                k.endpoints.push(e);
            }
        }
        while !remaining.is_empty() {
            let n = remaining.len();
            if n < MAX_ENDPOINTS_PER_SLICE {
                let fullest = kept
                    .iter_mut()
                    .filter(|k| !k.changed && k.ports == ports)
                    .filter(|k| k.endpoints.len() + n <= MAX_ENDPOINTS_PER_SLICE)
                    .max_by_key(|k| k.endpoints.len());
                if let Some(k) = fullest {
                    k.endpoints.extend(remaining.drain(..).rev());
                    k.changed = true;
                    break;
                }
            }
            let take = n.min(MAX_ENDPOINTS_PER_SLICE);
            let mut s = template.clone();
            s.ports = slice_ports(&ports);
            s.endpoints = remaining.drain(n - take..).rev().collect();
            plan.create.push(s);
        }
    }
    for k in kept.into_iter().filter(|k| k.changed) {
        let mut s = k.old.as_ref().clone();
        s.endpoints = k.endpoints;
        s.metadata.labels = labels.cloned();
        plan.update.push(s);
    }
    plan
}

/// Makes the writes: creations first, then updates, then deletions, so consumers never see an
/// endpoint vanish while it moves. Returns slice name -> resourceVersion written (`None` for a
/// deletion); on error, also what was written before it.
async fn apply(api: &Api<EndpointSlice>, plan: Plan) -> Result<Writes, (Writes, crate::Error)> {
    let mut writes = BTreeMap::new();
    let mut first_err: Option<kube::Error> = None;
    debug!(
        create = plan.create.len(),
        update = plan.update.len(),
        delete = plan.delete.len(),
        "syncing endpoint slices"
    );
    // Owned futures (cloned Api, moved objects): the worker future must be Send for any lifetime.
    let created: Vec<_> = futures::stream::iter(plan.create.into_iter().map(|s| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &s).await }
    }))
    .buffer_unordered(WRITES_IN_FLIGHT)
    .collect()
    .await;
    for r in created {
        match r {
            Ok(s) => {
                writes.insert(
                    s.metadata.name.clone().unwrap_or_default(),
                    Some(rv(&s).unwrap_or(0)),
                );
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let updated: Vec<_> = futures::stream::iter(plan.update.into_iter().map(|s| {
        let api = api.clone();
        async move {
            let n = s.metadata.name.clone().unwrap_or_default();
            ignore_not_found(api.replace(&n, &PostParams::default(), &s).await)
        }
    }))
    .buffer_unordered(WRITES_IN_FLIGHT)
    .collect()
    .await;
    for r in updated {
        match r {
            Ok(Some(s)) => {
                writes.insert(
                    s.metadata.name.clone().unwrap_or_default(),
                    Some(rv(&s).unwrap_or(0)),
                );
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if first_err.is_none() {
        let deleted: Vec<_> = futures::stream::iter(plan.delete.into_iter().map(|n| {
            let api = api.clone();
            async move {
                let r = ignore_not_found(api.delete(&n, &DeleteParams::default()).await);
                (n, r)
            }
        }))
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect()
        .await;
        for (n, r) in deleted {
            match r {
                Ok(_) => {
                    writes.insert(n, None);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        None => Ok(writes),
        Some(e) => Err((writes, e.into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn ep(i: usize, ready: bool) -> Endpoint {
        Endpoint {
            addresses: vec![format!("10.0.{}.{}", i / 250, i % 250)],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(false),
            }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some(format!("p-{i}")),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ports() -> Vec<PortKey> {
        vec![(None, 80, "TCP".into(), None)]
    }

    fn want(
        eps: impl IntoIterator<Item = Endpoint>,
    ) -> BTreeMap<Vec<PortKey>, BTreeMap<(String, String), Endpoint>> {
        let mut m = BTreeMap::new();
        m.insert(
            ports(),
            eps.into_iter().map(|e| (endpoint_key(&e), e)).collect(),
        );
        m
    }

    fn template() -> EndpointSlice {
        EndpointSlice {
            metadata: kube::api::ObjectMeta {
                labels: Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Vec::new(),
            ports: None,
        }
    }

    /// Turns a plan's creations and updates into the "existing" slices of the next sync.
    fn materialise(
        existing: Vec<Arc<EndpointSlice>>,
        plan: Plan,
        next: &mut usize,
    ) -> Vec<Arc<EndpointSlice>> {
        let mut by_name: BTreeMap<String, Arc<EndpointSlice>> = existing
            .into_iter()
            .map(|s| (s.metadata.name.clone().unwrap(), s))
            .collect();
        for n in plan.delete {
            by_name.remove(&n);
        }
        for s in plan.update {
            by_name.insert(s.metadata.name.clone().unwrap(), Arc::new(s));
        }
        for mut s in plan.create {
            *next += 1;
            s.metadata.name = Some(format!("web-{next:04}"));
            by_name.insert(s.metadata.name.clone().unwrap(), Arc::new(s));
        }
        by_name.into_values().collect()
    }

    #[test]
    fn packs_slices_and_keeps_endpoints_in_place() {
        let t = template();
        let mut next = 0;
        // 5,000 endpoints arrive in uneven batches, as pods become ready.
        let mut slices = Vec::new();
        let mut have = 0;
        for batch in [1, 37, 250, 999, 13, 1700, 2000] {
            have += batch;
            let plan = reconcile(slices.clone(), want((0..have).map(|i| ep(i, true))), &t);
            slices = materialise(slices, plan, &mut next);
        }
        assert_eq!(have, 5000);
        let total: usize = slices.iter().map(|s| s.endpoints.len()).sum();
        assert_eq!(total, 5000);
        assert!(slices
            .iter()
            .all(|s| s.endpoints.len() <= MAX_ENDPOINTS_PER_SLICE));
        let mut addrs: Vec<_> = slices
            .iter()
            .flat_map(|s| &s.endpoints)
            .map(endpoint_key)
            .collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 5000);

        // Steady state: nothing to write.
        let plan = reconcile(slices.clone(), want((0..5000).map(|i| ep(i, true))), &t);
        assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());

        // One pod's readiness changes: exactly the slice holding it is rewritten.
        let plan = reconcile(
            slices.clone(),
            want((0..5000).map(|i| ep(i, i != 4321))),
            &t,
        );
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.update.len(), 1);
        assert!(plan.update[0]
            .endpoints
            .iter()
            .any(|e| endpoint_key(e) == endpoint_key(&ep(4321, false))));

        // One pod goes away: one slice shrinks; a new one arrives: it fills a slice with room.
        let plan = reconcile(slices.clone(), want((1..5001).map(|i| ep(i, true))), &t);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert!(plan.update.len() <= 2, "{} updates", plan.update.len());
    }

    #[test]
    fn placeholder_and_port_changes() {
        let t = template();
        let mut next = 0;
        let plan = reconcile(Vec::new(), BTreeMap::new(), &t);
        assert_eq!(plan.create.len(), 1);
        assert!(plan.create[0].endpoints.is_empty() && plan.create[0].ports.is_none());
        let slices = materialise(Vec::new(), plan, &mut next);
        // Endpoints arrive: the placeholder (other ports) goes, a real slice comes.
        let plan = reconcile(slices.clone(), want((0..3).map(|i| ep(i, true))), &t);
        assert_eq!((plan.create.len(), plan.delete.len()), (1, 1));
        assert_eq!(plan.create[0].ports.as_ref().unwrap()[0].port, Some(80));
        let slices = materialise(slices, plan, &mut next);
        // All gone: the slice is turned back into the placeholder.
        let plan = reconcile(slices, BTreeMap::new(), &t);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        assert!(plan.update[0].ports.is_none() && plan.update[0].endpoints.is_empty());
    }
}
