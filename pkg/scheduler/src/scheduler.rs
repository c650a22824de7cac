//! The running scheduler: watchers feed the cache and the queue; one loop pops a pod, decides
//! under the cache lock (pure, in-memory), assumes the pod onto the node at once, and hands
//! the binding to a bounded set of concurrent tasks.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::algorithm::{self, Selection};
use crate::cache::Cache;
use crate::config::Config;
use crate::events;
use crate::framework::Framework;
use crate::metrics::AttemptResult;
use crate::podinfo::PodInfo;
use crate::preemption::{self, Outcome};
use crate::queue::{ClusterEvent, Queue, QueuedPod};
use crate::recorder::Recorder;
use crate::slim::SlimPod;

/// Parked pods are retried at least this often even without a cluster event.
const MAX_PARKED: Duration = Duration::from_secs(60);

struct Shared {
    client: kube::Client,
    config: Config,
    cache: Mutex<Cache>,
    queue: Queue,
    framework: Framework,
    binds: Arc<Semaphore>,
    recorder: Recorder,
}

impl Shared {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds no invariants a panic elsewhere could break half-way.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn responsible(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        name == self.config.scheduler_name
    }
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Whether the pod still has `spec.schedulingGates` (upstream's SchedulingGates PreEnqueue
/// plugin keeps such a pod out of the active queue; the API server set its
/// `PodScheduled=False, reason=SchedulingGated` condition when it was created).
pub(crate) fn gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Runs the scheduler until the future is dropped.
pub(crate) async fn run(client: kube::Client, config: Config) -> Result<(), crate::Error> {
    let (recorder, event_writer) = Recorder::new(client.clone(), config.scheduler_name.clone());
    let shared = Arc::new(Shared {
        recorder,
        framework: Framework::new(&config.weights),
        queue: Queue::new(config.initial_backoff, config.max_backoff),
        binds: Arc::new(Semaphore::new(config.max_in_flight_binds.max(1))),
        cache: Mutex::new(Cache::default()),
        client,
        config,
    });
    // Tasks live in the set so dropping this future (shutdown, lost lease) stops them.
    let mut tasks = JoinSet::new();
    let (nodes_synced_tx, mut nodes_synced) = watch::channel(false);
    let (pods_synced_tx, mut pods_synced) = watch::channel(false);
    // The initial state comes as a streaming list (a watch with `sendInitialEvents=true`,
    // upstream's WatchList): served from the API server's watch cache, one object at a time,
    // so neither side holds a whole list. The alternative, `any_semantic()`, did not reach the
    // cache: kube-core leaves `resourceVersion=0` out of a list that has a `limit`, and the
    // watcher pages by 500, so every start read every pod from storage; an unpaged
    // `resourceVersion=0` list reached the cache but tripled the scheduler's peak memory.
    let list = || watcher::Config::default().streaming_lists();
    let nodes = watcher::watcher(Api::<Node>::all(shared.client.clone()), list()).default_backoff();
    tasks.spawn(watch_nodes(shared.clone(), nodes, nodes_synced_tx));
    let pods =
        watcher::watcher(Api::<SlimPod>::all(shared.client.clone()), list()).default_backoff();
    tasks.spawn(watch_pods(shared.clone(), pods, pods_synced_tx));
    let (ns_synced_tx, mut ns_synced) = watch::channel(false);
    let namespaces =
        watcher::watcher(Api::<Namespace>::all(shared.client.clone()), list()).default_backoff();
    tasks.spawn(watch_namespaces(shared.clone(), namespaces, ns_synced_tx));
    tasks.spawn(housekeeping(shared.clone()));
    tasks.spawn(event_writer);

    // Deciding before both lists are in would place pods on capacity that is already used.
    let _ = nodes_synced.wait_for(|s| *s).await;
    let _ = pods_synced.wait_for(|s| *s).await;
    let _ = ns_synced.wait_for(|s| *s).await;
    info!(scheduler = %shared.config.scheduler_name, "caches synced, scheduling");

    let mut sel = Selection::default();
    loop {
        let item = shared.queue.pop().await;
        schedule_one(&shared, &mut sel, item).await;
    }
}

async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        shared.queue.publish(&shared.config.metrics);
        n += 1;
        if n.is_multiple_of(10) {
            shared.queue.flush_stale(MAX_PARKED);
        }
    }
}

async fn watch_nodes(
    shared: Arc<Shared>,
    stream: impl Stream<Item = Result<Event<Node>, watcher::Error>>,
    synced: watch::Sender<bool>,
) {
    futures::pin_mut!(stream);
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(node)) => {
                seen.insert(node.metadata.name.clone().unwrap_or_default());
                shared.cache().upsert_node(&node);
            }
            Ok(Event::InitDone) => {
                {
                    let mut cache = shared.cache();
                    for name in cache.node_names() {
                        if !seen.contains(&name) {
                            cache.remove_node(&name);
                        }
                    }
                }
                seen.clear();
                synced.send_replace(true);
                shared.queue.on_cluster_event(ClusterEvent::NodeChanged);
            }
            Ok(Event::Apply(node)) => {
                shared.cache().upsert_node(&node);
                shared.queue.on_cluster_event(ClusterEvent::NodeChanged);
            }
            Ok(Event::Delete(node)) => {
                shared
                    .cache()
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
            Err(e) => warn!(error = %e, "node watch error"),
        }
    }
}

async fn watch_namespaces(
    shared: Arc<Shared>,
    stream: impl Stream<Item = Result<Event<Namespace>, watcher::Error>>,
    synced: watch::Sender<bool>,
) {
    futures::pin_mut!(stream);
    let mut seen: HashSet<String> = HashSet::new();
    let labels = |ns: &Namespace| ns.metadata.labels.clone().unwrap_or_default();
    let name = |ns: &Namespace| ns.metadata.name.clone().unwrap_or_default();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(ns)) => {
                seen.insert(name(&ns));
                shared.cache().upsert_namespace(&name(&ns), labels(&ns));
            }
            Ok(Event::InitDone) => {
                {
                    let mut cache = shared.cache();
                    for n in cache.namespace_names() {
                        if !seen.contains(&n) {
                            cache.remove_namespace(&n);
                        }
                    }
                }
                seen.clear();
                synced.send_replace(true);
                shared
                    .queue
                    .on_cluster_event(ClusterEvent::NamespaceChanged);
            }
            Ok(Event::Apply(ns)) => {
                shared.cache().upsert_namespace(&name(&ns), labels(&ns));
                shared
                    .queue
                    .on_cluster_event(ClusterEvent::NamespaceChanged);
            }
            Ok(Event::Delete(ns)) => shared.cache().remove_namespace(&name(&ns)),
            Err(e) => warn!(error = %e, "namespace watch error"),
        }
    }
}

async fn watch_pods(
    shared: Arc<Shared>,
    stream: impl Stream<Item = Result<Event<SlimPod>, watcher::Error>>,
    synced: watch::Sender<bool>,
) {
    futures::pin_mut!(stream);
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(SlimPod(pod))) => {
                seen.insert(key_of(&pod));
                on_pod(&shared, pod);
            }
            Ok(Event::InitDone) => {
                let gone: Vec<String> = shared
                    .cache()
                    .pod_keys()
                    .into_iter()
                    .filter(|k| !seen.contains(k))
                    .collect();
                for k in gone {
                    on_pod_deleted(&shared, &k);
                }
                seen.clear();
                synced.send_replace(true);
            }
            Ok(Event::Apply(SlimPod(pod))) => on_pod(&shared, pod),
            Ok(Event::Delete(SlimPod(pod))) => on_pod_deleted(&shared, &key_of(&pod)),
            Err(e) => warn!(error = %e, "pod watch error"),
        }
    }
}

fn on_pod(shared: &Shared, pod: Arc<Pod>) {
    let key = key_of(&pod);
    if terminal(&pod) {
        // A finished pod frees its resources.
        on_pod_deleted(shared, &key);
        return;
    }
    if let Some(node) = node_of(&pod) {
        shared.queue.remove(&key);
        let node = node.to_string();
        let mut cache = shared.cache();
        cache.clear_nomination(&key);
        if !cache.confirm(&key, &node) {
            cache.add_bound_pod(Arc::new(PodInfo::from_pod(&pod)), &node);
        }
        drop(cache);
        shared
            .queue
            .on_cluster_event(ClusterEvent::AssignedPodAdded);
        return;
    }
    if !shared.responsible(&pod) {
        return;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        // Terminating before it was placed: nothing to schedule.
        shared.queue.remove(&key);
        return;
    }
    // Assumed and binding: a stale event must not queue it a second time.
    if shared.cache().is_placed(&key) {
        return;
    }
    if gated(&pod) {
        // Waits outside the queue; the update that removes the last gate queues it.
        shared.queue.remove(&key);
        return;
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    if let Some(node) = nominated {
        // Nominated by a previous scheduler instance or confirmed by the watch.
        let info = Arc::new(PodInfo::from_pod(&pod));
        shared.cache().nominate(info, node);
    }
    shared.queue.add(pod);
}

fn on_pod_deleted(shared: &Shared, key: &str) {
    shared.queue.remove(key);
    let mut cache = shared.cache();
    cache.clear_nomination(key);
    let removed = cache.remove_pod(key);
    drop(cache);
    if removed {
        shared.queue.on_cluster_event(ClusterEvent::PodDeleted);
    }
}

async fn schedule_one(shared: &Arc<Shared>, sel: &mut Selection, item: QueuedPod) {
    let key = item.info.key.clone();
    let decision = {
        let cache = shared.cache();
        algorithm::schedule(
            &shared.framework,
            &cache,
            &item.info,
            shared.config.percentage_of_nodes_to_score,
            sel,
        )
    };
    match decision {
        Ok(node) => {
            debug!(pod = %key, node = %node, "assuming pod");
            {
                let mut cache = shared.cache();
                // Placed now: its nomination must not hold the same room a second time.
                cache.clear_nomination(&key);
                cache.assume(item.info.clone(), &node);
            }
            // Waiting here is the backpressure that bounds in-flight binds.
            let Ok(permit) = shared.binds.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let _permit = permit;
                bind(&shared, item, node).await;
            });
        }
        Err(mut fit) => {
            shared.config.metrics.attempt(AttemptResult::Unschedulable);
            fit.post_filter = post_filter(shared, &item);
            shared.queue.unschedulable(&key);
            let message = fit.message();
            info!(pod = %key, reason = %message, "unable to schedule pod");
            let shared = shared.clone();
            tokio::spawn(async move {
                let client = &shared.client;
                if let Err(e) = events::mark_unschedulable(client, &item.pod, &message).await {
                    debug!(pod = %key, error = %e, "failed to set PodScheduled=False");
                }
                shared
                    .recorder
                    .emit(&item.pod, "Warning", "FailedScheduling", message);
            });
        }
    }
}

/// Runs preemption for a pod that fit nowhere: on success nominates it in memory at once and
/// evicts the victims in the background. Returns the PostFilter message for the FitError.
fn post_filter(shared: &Arc<Shared>, item: &QueuedPod) -> Option<String> {
    let pod = &item.info;
    let (candidate, lower) = {
        let mut cache = shared.cache();
        let outcome = preemption::preempt(&shared.framework, &cache, pod);
        let Outcome::Preempt(c) = outcome else {
            return outcome.message();
        };
        // Pods of lower priority nominated to the same node lose that nomination (upstream
        // clears their nominatedNodeName so they look elsewhere).
        let lower: Vec<Arc<PodInfo>> = cache
            .nominations()
            .filter(|(n, p)| *n == c.node && p.priority < pod.priority)
            .map(|(_, p)| p.clone())
            .collect();
        for p in &lower {
            cache.clear_nomination(&p.key);
        }
        cache.nominate(pod.clone(), &c.node);
        (c, lower)
    };
    info!(pod = %pod.key, node = %candidate.node, victims = candidate.victims.len(),
          "preempting lower-priority pods");
    let shared = shared.clone();
    let pod = pod.clone();
    tokio::spawn(async move {
        let client = &shared.client;
        let node = Some(candidate.node.as_str());
        if let Err(e) = events::set_nominated_node(client, &pod.namespace, &pod.name, node).await {
            debug!(pod = %pod.key, error = %e, "failed to set nominatedNodeName");
        }
        let component = &shared.config.scheduler_name;
        for v in &candidate.victims {
            let r = events::preempt_victim(
                client,
                component,
                &v.namespace,
                &v.name,
                &pod.uid,
                &candidate.node,
            );
            if let Err(e) = r.await {
                warn!(victim = %v.key, error = %e, "failed to preempt pod");
            }
        }
        for p in &lower {
            if let Err(e) = events::set_nominated_node(client, &p.namespace, &p.name, None).await {
                debug!(pod = %p.key, error = %e, "failed to clear nominatedNodeName");
            }
        }
    });
    None
}

async fn bind(shared: &Shared, item: QueuedPod, node: String) {
    let info = &item.info;
    let result = events::bind(
        &shared.client,
        &info.namespace,
        &info.name,
        &info.uid,
        &node,
    )
    .await;
    match result {
        Ok(()) => {
            let m = &shared.config.metrics;
            m.attempt(AttemptResult::Scheduled);
            m.observe_e2e(item.first_seen.elapsed());
            shared.queue.remove(&info.key);
            debug!(pod = %info.key, node = %node, "bound pod");
            let message = format!("Successfully assigned {} to {node}", info.key);
            shared
                .recorder
                .emit(&item.pod, "Normal", "Scheduled", message);
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            // Deleted, or bound already (e.g. by another scheduler): the watch has or will
            // have the truth; drop our assumption.
            debug!(pod = %info.key, code = s.code, "binding not applied");
            shared.cache().forget(&info.key);
            shared.queue.remove(&info.key);
        }
        Err(e) => {
            warn!(pod = %info.key, node = %node, error = %e, "binding failed");
            shared.config.metrics.attempt(AttemptResult::Error);
            shared.cache().forget(&info.key);
            shared
                .queue
                .error(&item.pod, &item.info, item.attempts, item.first_seen);
            shared.queue.on_cluster_event(ClusterEvent::PodDeleted);
        }
    }
}
