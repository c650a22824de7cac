//! Controller benchmark (run by `hack/bench/controllers`): a real apiserver, the controllers and
//! a FakeNodeAgent (hollow nodes) in one process. Measures, in one run:
//!
//! - the floor: N pods created directly through the API (32 requests in flight) until the agent
//!   has made all of them ready;
//! - a Deployment scaled from 0 to N replicas until its status shows N available (the
//!   controllers' overhead is its ratio to the floor);
//! - a Service selecting S pods created at once: time from the last pod becoming ready to its
//!   EndpointSlices being complete (all S endpoints ready, slices of at most 100), then the same
//!   for single readiness flips at that scale, and the slices' correctness;
//! - a small rolling update and Endpoints latency after readiness flips of a 10-pod service.
//!
//! Usage: `controllers_bench [--quick] [--replicas N] [--service-pods S] [--rolling N]
//! [--flips N]`; defaults N=10000, S=5000, rolling 100, flips 20 (`--quick`: 500, 300, 20, 6).

#![allow(clippy::unwrap_used)] // a benchmark: a panic is a failed run

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::Resource;
use kubelite_apiserver::testing::TestServer;
use kubelite_controllers::endpoints::{MAX_ENDPOINTS_CAPACITY, MAX_ENDPOINTS_PER_SLICE};
use kubelite_controllers::testing::{AgentOptions, FakeNodeAgent, READY_ANNOTATION};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(900);
/// Direct pod creations in flight in the floor and the service setup.
const IN_FLIGHT: usize = 32;

struct Args {
    replicas: usize,
    service_pods: usize,
    rolling: usize,
    flips: usize,
    quick: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let arg = |name: &str, default: usize, small: usize| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { small } else { default })
    };
    Args {
        replicas: arg("--replicas", 10_000, 500),
        service_pods: arg("--service-pods", 5_000, 300),
        rolling: arg("--rolling", 100, 20),
        flips: arg("--flips", 20, 6),
        quick,
    }
}

async fn poll<F, Fut>(what: &str, every: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !f().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
    Ok(())
}

fn ready(p: &Pod) -> bool {
    kubelite_controllers::util::pod_is_ready(p)
}

/// Watches `api` (filtered by `config`) into a name -> object map and resolves with the instant
/// of the first event after which `done` holds for the map.
fn watch_until<K>(
    api: Api<K>,
    config: watcher::Config,
    mut done: impl FnMut(&BTreeMap<String, K>) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<anyhow::Result<Instant>>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut objects: BTreeMap<String, K> = BTreeMap::new();
        let mut init: BTreeMap<String, K> = BTreeMap::new();
        let stream = watcher::watcher(api, config);
        futures::pin_mut!(stream);
        let deadline = tokio::time::sleep(TIMEOUT);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = &mut deadline => anyhow::bail!("watch timed out"),
            };
            let Some(event) = event else {
                anyhow::bail!("watch ended");
            };
            let name = |o: &K| o.meta().name.clone().unwrap_or_default();
            match event? {
                Event::Apply(o) => {
                    objects.insert(name(&o), o);
                }
                Event::Delete(o) => {
                    objects.remove(&name(&o));
                }
                Event::Init => init.clear(),
                Event::InitApply(o) => {
                    init.insert(name(&o), o);
                }
                Event::InitDone => objects = std::mem::take(&mut init),
            }
            if done(&objects) {
                return Ok(Instant::now());
            }
        }
    })
}

/// Resolves with the instants at which `n` pods existed in `ns` and at which `n` were ready.
/// Counts are kept per event (a recount per event would be quadratic in the pod count).
fn pods_watch(
    client: &kube::Client,
    ns: &str,
    n: usize,
) -> tokio::task::JoinHandle<anyhow::Result<(Instant, Instant)>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut ready_by_name: BTreeMap<String, bool> = BTreeMap::new();
        let mut init: BTreeMap<String, bool> = BTreeMap::new();
        let mut ready_count = 0;
        let (mut all_exist, mut all_ready) = (None, None);
        let stream = watcher::watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        let deadline = tokio::time::sleep(TIMEOUT);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = &mut deadline => anyhow::bail!("pod watch timed out"),
            };
            let Some(event) = event else {
                anyhow::bail!("pod watch ended");
            };
            let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
            match event? {
                Event::Apply(p) => {
                    let now_ready = ready(&p);
                    match ready_by_name.insert(name(&p), now_ready) {
                        Some(was) => {
                            ready_count = ready_count + usize::from(now_ready) - usize::from(was)
                        }
                        None => ready_count += usize::from(now_ready),
                    }
                }
                Event::Delete(p) => {
                    if ready_by_name.remove(&name(&p)) == Some(true) {
                        ready_count -= 1;
                    }
                }
                Event::Init => init.clear(),
                Event::InitApply(p) => {
                    init.insert(name(&p), ready(&p));
                }
                Event::InitDone => {
                    ready_by_name = std::mem::take(&mut init);
                    ready_count = ready_by_name.values().filter(|r| **r).count();
                }
            }
            if all_exist.is_none() && ready_by_name.len() >= n {
                all_exist = Some(Instant::now());
            }
            if all_ready.is_none() && ready_count >= n {
                all_ready = Some(Instant::now());
            }
            if let (Some(e), Some(r)) = (all_exist, all_ready) {
                return Ok((e, r));
            }
        }
    })
}

async fn join<T>(h: tokio::task::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    h.await?
}

async fn namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    nss.create(&PostParams::default(), &ns).await?;
    Ok(())
}

fn pod_spec() -> serde_json::Value {
    json!({"containers": [{"name": "c", "image": "kubelite/pause:v1"}]})
}

/// Creates `n` pods `p-<i>` labelled `app=<app>` in `ns`, IN_FLIGHT at a time.
async fn create_pods(client: &kube::Client, ns: &str, app: &str, n: usize) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter((0..n).map(|i| {
        let pods = pods.clone();
        async move {
            let p: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("p-{i}"), "labels": {"app": app}},
                "spec": pod_spec()
            }))?;
            pods.create(&PostParams::default(), &p).await?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .collect()
    .await;
    results.into_iter().collect()
}

/// Deletes every pod in `ns` (grace 0) and waits until none is left.
async fn delete_pods(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    poll("pods gone", Duration::from_millis(200), || async {
        if pods
            .list(&ListParams::default().limit(1))
            .await?
            .items
            .is_empty()
        {
            return Ok(true);
        }
        pods.delete_collection(
            &DeleteParams::default().grace_period(0),
            &ListParams::default(),
        )
        .await?;
        Ok(false)
    })
    .await
}

struct Floor {
    created: Duration,
    ready: Duration,
}

/// Floor: `n` pods created directly, then until all are ready.
async fn floor(client: &kube::Client, n: usize) -> anyhow::Result<Floor> {
    namespace(client, "floor").await?;
    let watch = pods_watch(client, "floor", n);
    // Let the watch list before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    create_pods(client, "floor", "floor", n).await?;
    let created = t0.elapsed();
    let ready = join(watch).await?.1 - t0;
    delete_pods(client, "floor").await?;
    Ok(Floor { created, ready })
}

fn deployment(name: &str, replicas: usize) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec()}}
    }))
    .unwrap()
}

async fn wait_rolled_out(api: &Api<Deployment>, name: &str, n: usize) -> anyhow::Result<()> {
    let n = i32::try_from(n)?;
    poll(
        "deployment available",
        Duration::from_millis(20),
        || async {
            let d = api.get(name).await?;
            let gen = d.metadata.generation;
            let st = d.status.unwrap_or_default();
            let count = |v: Option<i32>| v.unwrap_or(0);
            Ok(st.observed_generation == gen
                && count(st.updated_replicas) == n
                && count(st.available_replicas) == n
                && count(st.replicas) == n)
        },
    )
    .await
}

struct Scale {
    created: Duration,
    ready: Duration,
    available: Duration,
}

/// A Deployment created with 0 replicas, then scaled to `n`: until status shows n available.
async fn scale_up(client: &kube::Client, n: usize) -> anyhow::Result<Scale> {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    deps.create(&PostParams::default(), &deployment("big", 0))
        .await?;
    wait_rolled_out(&deps, "big", 0).await?;
    let watch = pods_watch(client, "bench", n);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let patch = json!({"spec": {"replicas": n}});
    deps.patch("big", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_rolled_out(&deps, "big", n).await?;
    let available = t0.elapsed();
    let (all_exist, all_ready) = join(watch).await?;
    let (created, ready) = (all_exist - t0, all_ready - t0);
    // Tear down without a garbage collector: the Deployment, its ReplicaSets, then the pods.
    deps.delete("big", &DeleteParams::default()).await?;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "bench");
    rss.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    poll("replicasets gone", Duration::from_millis(100), || async {
        Ok(rss.list(&ListParams::default()).await?.items.is_empty())
    })
    .await?;
    delete_pods(client, "bench").await?;
    Ok(Scale {
        created,
        ready,
        available,
    })
}

/// A 25%-surge rolling update of an `n`-replica Deployment.
async fn rolling(client: &kube::Client, n: usize) -> anyhow::Result<Duration> {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    deps.create(&PostParams::default(), &deployment("roll", n))
        .await?;
    wait_rolled_out(&deps, "roll", n).await?;
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}});
    let t0 = Instant::now();
    deps.patch("roll", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_rolled_out(&deps, "roll", n).await?;
    Ok(t0.elapsed())
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}
    }))
    .unwrap()
}

/// Ready endpoint addresses across `slices`, and whether every slice respects the size limit.
fn slice_summary<'a>(
    slices: impl Iterator<Item = &'a EndpointSlice>,
) -> (BTreeSet<String>, usize, bool) {
    let mut ready_ips = BTreeSet::new();
    let mut endpoints = 0;
    let mut sized = true;
    for s in slices {
        sized &= s.endpoints.len() <= MAX_ENDPOINTS_PER_SLICE;
        for e in &s.endpoints {
            endpoints += 1;
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                ready_ips.extend(e.addresses.iter().cloned());
            }
        }
    }
    (ready_ips, endpoints, sized)
}

/// Resolves when the slices of service `svc` hold exactly `n` endpoints, all ready, distinct.
fn slices_complete(
    client: &kube::Client,
    ns: &str,
    svc: &str,
    n: usize,
) -> tokio::task::JoinHandle<anyhow::Result<Instant>> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("kubernetes.io/service-name={svc}"));
    watch_until(api, config, move |slices| {
        let (ready_ips, endpoints, sized) = slice_summary(slices.values());
        sized && endpoints == n && ready_ips.len() == n
    })
}

/// Resolves when the Endpoints of `svc` list `n` ready addresses (past upstream's 1,000-address
/// cap: 1,000 and the over-capacity annotation).
fn endpoints_complete(
    client: &kube::Client,
    ns: &str,
    svc: &str,
    n: usize,
) -> tokio::task::JoinHandle<anyhow::Result<Instant>> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let svc = svc.to_string();
    watch_until(api, watcher::Config::default(), move |eps| {
        eps.get(&svc).is_some_and(|e| {
            let ready: usize = e
                .subsets
                .iter()
                .flatten()
                .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                .sum();
            let truncated = e
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("endpoints.kubernetes.io/over-capacity"));
            ready == n.min(MAX_ENDPOINTS_CAPACITY) && truncated == (n > MAX_ENDPOINTS_CAPACITY)
        })
    })
}

struct ServiceRun {
    pods_ready: Duration,
    slices_lag: Duration,
    endpoints_lag: Duration,
    flips: Vec<Duration>,
    slices: usize,
    most_rewritten: usize,
}

/// A Service selecting `n` pods created at once; then single readiness flips at that scale.
async fn service_at_scale(
    client: &kube::Client,
    n: usize,
    flips: usize,
) -> anyhow::Result<ServiceRun> {
    namespace(client, "svc").await?;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "svc");
    svcs.create(&PostParams::default(), &service("web")).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "svc");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    // The empty placeholder slice exists before any pod.
    poll("placeholder slice", Duration::from_millis(20), || async {
        Ok(!slices.list(&lp).await?.items.is_empty())
    })
    .await?;
    let watch = pods_watch(client, "svc", n);
    let slices_done = slices_complete(client, "svc", "web", n);
    let endpoints_done = endpoints_complete(client, "svc", "web", n);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    create_pods(client, "svc", "web", n).await?;
    let last_ready = join(watch).await?.1;
    let slices_at = join(slices_done).await?;
    let endpoints_at = join(endpoints_done).await?;

    // Correctness at scale: every pod's IP exactly once, ready, in slices of at most 100.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "svc");
    let pod_list = pods.list(&ListParams::default()).await?.items;
    let pod_ips: BTreeSet<String> = pod_list
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    anyhow::ensure!(
        pod_ips.len() == n,
        "{} distinct pod IPs, want {n}",
        pod_ips.len()
    );
    let list = slices.list(&lp).await?.items;
    let (ready_ips, endpoints, sized) = slice_summary(list.iter());
    anyhow::ensure!(
        sized,
        "a slice holds more than {MAX_ENDPOINTS_PER_SLICE} endpoints"
    );
    anyhow::ensure!(endpoints == n, "{endpoints} endpoints in slices, want {n}");
    anyhow::ensure!(
        ready_ips == pod_ips,
        "slice addresses differ from the pod IPs"
    );
    for s in &list {
        let labels = s.metadata.labels.clone().unwrap_or_default();
        anyhow::ensure!(
            labels
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("endpointslice-controller.k8s.io"),
            "slice without the managed-by label"
        );
        anyhow::ensure!(s.address_type == "IPv4", "address type {}", s.address_type);
        let ports: Vec<_> = s
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.protocol.clone()))
            .collect();
        anyhow::ensure!(
            ports == [(Some(80), Some("TCP".to_string()))],
            "slice ports {ports:?}"
        );
        anyhow::ensure!(
            s.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == "Service" && r.name == "web"),
            "slice not owned by the service"
        );
    }
    let slice_count = list.len();

    // Single flips at scale: one pod goes not ready and back; clock from the pod's readiness
    // change (seen through the API) to the slices showing it.
    let victim = pod_list.last().unwrap();
    let name = victim.metadata.name.clone().unwrap();
    let ip = victim
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap();
    let mut flip_lat = Vec::new();
    let versions = |list: &[EndpointSlice]| -> BTreeMap<String, String> {
        list.iter()
            .map(|s| {
                let m = &s.metadata;
                (
                    m.name.clone().unwrap_or_default(),
                    m.resource_version.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let mut before = versions(&list);
    let mut most_rewritten = 0;
    for i in 0..flips {
        let want_ready = i % 2 == 1;
        // A watch, not list polling, sees the change: polling 5,000 endpoints would load the
        // apiserver and the controllers under test.
        let ip2 = ip.clone();
        let config = watcher::Config::default().labels("kubernetes.io/service-name=web");
        let updated = watch_until(slices.clone(), config, move |all| {
            slice_summary(all.values()).0.contains(&ip2) == want_ready
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let patch = json!({"metadata": {"annotations": {READY_ANNOTATION: if want_ready { "true" } else { "false" }}}});
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        poll(
            "pod readiness flipped",
            Duration::from_millis(2),
            || async { Ok(ready(&pods.get(&name).await?) == want_ready) },
        )
        .await?;
        let t = Instant::now();
        let seen = join(updated).await?;
        flip_lat.push(seen.saturating_duration_since(t));
        // Only the slice holding the pod may change (the others keep their resourceVersion).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = versions(&slices.list(&lp).await?.items);
        let rewritten = after
            .iter()
            .filter(|(n, v)| before.get(*n) != Some(v))
            .count();
        most_rewritten = most_rewritten.max(rewritten);
        before = after;
    }
    svcs.delete("web", &DeleteParams::default()).await?;
    delete_pods(client, "svc").await?;
    Ok(ServiceRun {
        pods_ready: last_ready - t0,
        slices_lag: slices_at.saturating_duration_since(last_ready),
        endpoints_lag: endpoints_at.saturating_duration_since(last_ready),
        flips: flip_lat,
        slices: slice_count,
        most_rewritten,
    })
}

async fn endpoints_latency(client: &kube::Client, flips: usize) -> anyhow::Result<Vec<Duration>> {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    deps.create(&PostParams::default(), &deployment("ep", 10))
        .await?;
    wait_rolled_out(&deps, "ep", 10).await?;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "bench");
    svcs.create(&PostParams::default(), &service("ep")).await?;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "bench");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let ready_ips = |e: &Endpoints| -> Vec<String> {
        e.subsets
            .iter()
            .flatten()
            .flat_map(|s| s.addresses.iter().flatten())
            .map(|a| a.ip.clone())
            .collect()
    };
    poll("endpoints populated", Duration::from_millis(20), || async {
        Ok(eps
            .get_opt("ep")
            .await?
            .is_some_and(|e| ready_ips(&e).len() == 10))
    })
    .await?;
    let victim = pods
        .list(&ListParams::default().labels("app=ep"))
        .await?
        .items[0]
        .clone();
    let name = victim.metadata.name.clone().unwrap();
    let ip = victim.status.and_then(|s| s.pod_ip).unwrap();
    let mut out = Vec::new();
    for i in 0..flips {
        let want_ready = i % 2 == 1;
        let value = if want_ready { "true" } else { "false" };
        let patch = json!({"metadata": {"annotations": {READY_ANNOTATION: value}}});
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // Clock starts when the pod's readiness has changed in the API (the agent's part is
        // not the controller's), and stops when Endpoints reflect it.
        poll(
            "pod readiness flipped",
            Duration::from_millis(2),
            || async { Ok(ready(&pods.get(&name).await?) == want_ready) },
        )
        .await?;
        let t0 = Instant::now();
        poll("endpoints updated", Duration::from_millis(2), || async {
            let e = eps.get("ep").await?;
            Ok(ready_ips(&e).contains(&ip) == want_ready)
        })
        .await?;
        out.push(t0.elapsed());
    }
    Ok(out)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// "p50 x, max y" of a latency sample.
fn spread(mut lat: Vec<Duration>) -> String {
    if lat.is_empty() {
        return "-".into();
    }
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    format!(
        "p50 {}, p90 {}, max {} ({} flips)",
        ms(pct(50)),
        ms(pct(90)),
        ms(lat[lat.len() - 1]),
        lat.len()
    )
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let a = args();
    let load_before = load();
    let started = Instant::now();
    let server = TestServer::start().await?;
    let client = server.client();
    let agent_opts = AgentOptions {
        ready_delay: Duration::ZERO,
        tick: Duration::from_millis(20),
        heartbeat: Duration::from_secs(1),
    };
    let nodes = ["node-1", "node-2", "node-3", "node-4"];
    let _agent = FakeNodeAgent::start(client.clone(), &nodes, agent_opts).await?;

    eprintln!("floor: {} direct pods", a.replicas);
    let fl = floor(&client, a.replicas).await?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let c = client.clone();
    let config = kubelite_controllers::Config {
        controllers: ["replicaset", "deployment", "endpoint", "endpointslice"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    };
    let controllers = tokio::spawn(async move {
        let _ = kubelite_controllers::run(c, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    namespace(&client, "bench").await?;

    eprintln!("deployment: 0 -> {} replicas", a.replicas);
    let sc = scale_up(&client, a.replicas).await?;
    eprintln!("service: {} pods", a.service_pods);
    let sv = service_at_scale(&client, a.service_pods, a.flips.min(10)).await?;
    eprintln!("rolling update: {} replicas", a.rolling);
    let roll = rolling(&client, a.rolling).await?;
    eprintln!("endpoints: {} flips", a.flips);
    let lat = endpoints_latency(&client, a.flips).await?;

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;

    let n = a.replicas;
    let s = a.service_pods;
    println!(
        "mode: {}; load average before {load_before}, after {}; total {}",
        if a.quick { "--quick" } else { "default" },
        load(),
        secs(started.elapsed())
    );
    println!();
    println!("| measurement | time | ratio |");
    println!("|---|---|---|");
    println!(
        "| floor: {n} pods created directly ({IN_FLIGHT} in flight) | {} | |",
        secs(fl.created)
    );
    println!(
        "| floor: {n} direct pods all ready (fake agent) | {} | 1.00x |",
        secs(fl.ready)
    );
    println!(
        "| Deployment 0 -> {n}: all pods created by the controllers | {} | |",
        secs(sc.created)
    );
    println!(
        "| Deployment 0 -> {n}: all pods ready | {} | |",
        secs(sc.ready)
    );
    println!(
        "| Deployment 0 -> {n}: status availableReplicas={n} | {} | {:.2}x of floor |",
        secs(sc.available),
        sc.available.as_secs_f64() / fl.ready.as_secs_f64()
    );
    println!(
        "| Service over {s} pods: {s} direct pods all ready | {} | |",
        secs(sv.pods_ready)
    );
    println!(
        "| Service over {s} pods: last pod ready -> EndpointSlices complete ({} slices, <= {MAX_ENDPOINTS_PER_SLICE} each) | {} | |",
        sv.slices,
        ms(sv.slices_lag)
    );
    if s <= MAX_ENDPOINTS_CAPACITY {
        println!(
            "| Service over {s} pods: last pod ready -> Endpoints complete | {} | |",
            ms(sv.endpoints_lag)
        );
    } else {
        println!(
            "| Service over {s} pods: Endpoints truncated to {MAX_ENDPOINTS_CAPACITY} ready addresses + over-capacity annotation, as upstream | yes | |"
        );
    }
    println!(
        "| Service over {s} pods: EndpointSlices after one pod's readiness change (slices rewritten per change: at most {}) | {} | |",
        sv.most_rewritten,
        spread(sv.flips)
    );
    println!(
        "| rolling update {} replicas (25% surge/unavailable) | {} | {:.2}x of floor per pod |",
        a.rolling,
        secs(roll),
        (roll.as_secs_f64() / a.rolling as f64) / (fl.ready.as_secs_f64() / n as f64)
    );
    println!(
        "| Endpoints of a 10-pod service after readiness change | {} | |",
        spread(lat)
    );
    Ok(())
}
