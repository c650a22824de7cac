//! Test helpers (feature `test-util`): a fake node agent that plays kubelet (and scheduler) for
//! integration tests and benchmarks against a real apiserver.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::debug;

use crate::util::now;

/// Annotation that, set to `"false"`, keeps a pod (or makes it) not ready.
pub const READY_ANNOTATION: &str = "fake-agent/ready";

/// Requests the agent keeps in flight at once (binds, status patches, deletes). A real cluster
/// has one kubelet per node working in parallel; one agent playing thousands of pods must too.
const IN_FLIGHT: usize = 32;

/// How the fake agent behaves.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Time from a pod starting to it becoming ready (or, for jobs, finishing).
    pub ready_delay: Duration,
    /// Longest wait between two passes (a pass also runs as soon as pods change).
    pub tick: Duration,
    /// Period of node lease renewals and Ready re-posts.
    pub heartbeat: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            ready_delay: Duration::from_millis(200),
            tick: Duration::from_millis(50),
            heartbeat: Duration::from_millis(50),
        }
    }
}

/// A fake node agent: creates Nodes, binds unscheduled pods to them round-robin, reports bound
/// pods Running/Ready with a pod IP, finishes graceful deletions and renews node Leases.
///
/// Pods come from a watch-fed cache and the agent looks only at pods that changed (or whose
/// ready delay ended), acting at most once per resourceVersion with up to 32 requests in
/// flight, so it keeps up with tens of thousands of pods.
///
/// Images steer pods: `never-ready` stays Running but not ready, `succeed` ends Succeeded and
/// `fail` ends Failed after `ready_delay`. The [`READY_ANNOTATION`] set to `"false"` makes a pod
/// not ready. Stops on drop.
pub struct FakeNodeAgent {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    renew_leases: Arc<AtomicBool>,
}

impl Drop for FakeNodeAgent {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl FakeNodeAgent {
    /// Creates the nodes and starts the agent.
    pub async fn start(
        client: kube::Client,
        nodes: &[&str],
        options: AgentOptions,
    ) -> Result<Self, kube::Error> {
        let node_api: Api<Node> = Api::all(client.clone());
        for (i, name) in nodes.iter().enumerate() {
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                    "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
                    "addresses": [{"type": "InternalIP", "address": format!("192.168.0.{}", i + 10)}]
                }
            }))
            .map_err(kube::Error::SerdeError)?;
            let created = node_api.create(&PostParams::default(), &node).await?;
            // Status on create may be dropped by the strategy; set it through the subresource.
            let status = json!({"status": node.status});
            node_api
                .patch_status(
                    created.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await?;
        }
        let (store, mut writer) = reflector::store();
        let (changes, mut changed) = mpsc::unbounded_channel();
        let watch = {
            let pods: Api<Pod> = Api::all(client.clone());
            tokio::spawn(async move {
                let stream = watcher::watcher(pods, watcher::Config::default()).default_backoff();
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    let event = match event {
                        Ok(event) => event,
                        Err(err) => {
                            debug!(error = %err, "fake agent pod watch failed");
                            continue;
                        }
                    };
                    // The cache first, so the agent reading it sees at least this version.
                    writer.apply_watcher_event(&event);
                    let msg = match &event {
                        Event::Apply(p) | Event::InitApply(p) => {
                            Changed::Pod(ObjectRef::from_obj(p))
                        }
                        Event::Delete(p) => {
                            Changed::Gone(p.metadata.uid.clone().unwrap_or_default())
                        }
                        Event::Init | Event::InitDone => continue,
                    };
                    if changes.send(msg).is_err() {
                        return;
                    }
                }
            })
        };
        let renew_leases = Arc::new(AtomicBool::new(true));
        let mut state = AgentState {
            client,
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            options,
            pods: store,
            dirty: HashSet::new(),
            waiting: HashMap::new(),
            started: HashMap::new(),
            acted: HashMap::new(),
            next_ip: 2,
            next_node: 0,
            renew: renew_leases.clone(),
            last_heartbeat: None,
        };
        let work = tokio::spawn(async move {
            let mut open = true;
            loop {
                // Work comes from pod changes, or after `tick` for ready delays and heartbeats.
                let first = if open {
                    tokio::select! {
                        m = changed.recv() => { open = m.is_some(); m }
                        _ = tokio::time::sleep(state.options.tick) => None,
                    }
                } else {
                    tokio::time::sleep(state.options.tick).await;
                    None
                };
                first.into_iter().for_each(|m| state.note(m));
                while let Ok(m) = changed.try_recv() {
                    state.note(m);
                }
                if let Err(err) = state.pass().await {
                    debug!(error = %err, "fake agent pass failed");
                }
            }
        });
        Ok(Self {
            tasks: vec![watch, work],
            renew_leases,
        })
    }

    /// Stops (false) or resumes (true) renewing node leases, simulating a dead kubelet.
    pub fn set_renew_leases(&self, renew: bool) {
        self.renew_leases.store(renew, Ordering::SeqCst);
    }
}

/// What the pod watch tells the agent.
enum Changed {
    /// The pod was added or changed (it is in the cache).
    Pod(ObjectRef<Pod>),
    /// The pod with this uid was deleted.
    Gone(String),
}

/// What the agent should do about a pod.
enum Plan {
    /// Make this request.
    Act(Action),
    /// Look again after this long (the pod becomes ready or finishes then).
    Wait(Duration),
    /// Nothing until the pod changes.
    Settled,
}

/// One request the agent makes for a pod.
enum Action {
    /// Bind the pod to a node (the agent is also the scheduler).
    Bind {
        ns: String,
        name: String,
        node: String,
    },
    /// Finish a graceful deletion.
    Delete { ns: String, name: String },
    /// Merge-patch the pod's status.
    Status {
        ns: String,
        name: String,
        patch: serde_json::Value,
    },
}

impl Action {
    async fn run(self, client: kube::Client) -> Result<(), kube::Error> {
        match self {
            Action::Bind { ns, name, node } => {
                let api: Api<Pod> = Api::namespaced(client, &ns);
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}
                });
                let pp = PostParams::default();
                api.create_subresource::<_, serde_json::Value>("binding", &name, &pp, &binding)
                    .await?;
            }
            Action::Delete { ns, name } => {
                let api: Api<Pod> = Api::namespaced(client, &ns);
                api.delete(&name, &DeleteParams::default().grace_period(0))
                    .await?;
            }
            Action::Status { ns, name, patch } => {
                let api: Api<Pod> = Api::namespaced(client, &ns);
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }
}

struct AgentState {
    client: kube::Client,
    nodes: Vec<String>,
    options: AgentOptions,
    pods: Store<Pod>,
    /// Pods changed since the last pass: only these are looked at, so a pass costs what
    /// changed, not every pod in the cluster.
    dirty: HashSet<ObjectRef<Pod>>,
    /// Pods to look at again at a time (their ready delay ends).
    waiting: HashMap<ObjectRef<Pod>, Instant>,
    /// uid -> (when the agent started the pod, its IP)
    started: HashMap<String, (Instant, String)>,
    /// uid -> the resourceVersion the agent last acted on: until the cache shows a newer
    /// version (normally the agent's own write), acting again would only repeat the request.
    acted: HashMap<String, String>,
    next_ip: u32,
    next_node: usize,
    renew: Arc<AtomicBool>,
    last_heartbeat: Option<Instant>,
}

impl AgentState {
    fn note(&mut self, change: Changed) {
        match change {
            Changed::Pod(key) => {
                self.dirty.insert(key);
            }
            Changed::Gone(uid) => {
                self.started.remove(&uid);
                self.acted.remove(&uid);
            }
        }
    }

    async fn pass(&mut self) -> Result<(), kube::Error> {
        if !self.renew.load(Ordering::SeqCst) {
            // A dead kubelet: no heartbeats, no pod updates (changes wait in `dirty`).
            return Ok(());
        }
        if self
            .last_heartbeat
            .is_none_or(|t| t.elapsed() >= self.options.heartbeat)
        {
            self.last_heartbeat = Some(Instant::now());
            self.renew_leases().await?;
            self.post_node_ready().await?;
            // Pods dropped by a relist send no deletion: forget them here, once a heartbeat.
            let live: HashSet<String> = self
                .pods
                .state()
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            self.started.retain(|uid, _| live.contains(uid));
            self.acted.retain(|uid, _| live.contains(uid));
        }
        let now = Instant::now();
        let due: Vec<ObjectRef<Pod>> = self
            .waiting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.waiting.remove(&key);
            self.dirty.insert(key);
        }
        let mut actions = Vec::new();
        for key in std::mem::take(&mut self.dirty) {
            let Some(pod) = self.pods.get(&key) else {
                continue;
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let rv = pod.metadata.resource_version.clone().unwrap_or_default();
            if self.acted.get(&uid) == Some(&rv) {
                continue;
            }
            match self.plan(&pod) {
                Plan::Act(action) => {
                    self.acted.insert(uid, rv);
                    actions.push((key, action));
                }
                Plan::Wait(after) => {
                    self.waiting.insert(key, now + after);
                }
                Plan::Settled => {}
            }
        }
        let client = self.client.clone();
        let results: Vec<(ObjectRef<Pod>, Result<(), kube::Error>)> =
            futures::stream::iter(actions.into_iter().map(|(key, action)| {
                let client = client.clone();
                async move { (key, action.run(client).await) }
            }))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (key, result) in results {
            if let Err(err) = result {
                debug!(error = %err, pod = %key, "fake agent failed to handle pod");
                // Retry on the next pass even if the pod does not change.
                if let Some(uid) = self.pods.get(&key).and_then(|p| p.metadata.uid.clone()) {
                    self.acted.remove(&uid);
                }
                self.dirty.insert(key);
            }
        }
        Ok(())
    }

    /// Like a kubelet: reports Ready=True again after the node controller marked it Unknown.
    async fn post_node_ready(&self) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        for node in &self.nodes {
            let Some(n) = api.get_opt(node).await? else {
                continue;
            };
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if !ready {
                let patch = json!({"status": {"conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "lastHeartbeatTime": now(), "lastTransitionTime": now()}
                ]}});
                api.patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }

    async fn renew_leases(&self) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        for node in &self.nodes {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                         "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}
            });
            let pp = PatchParams::apply("fake-agent").force();
            api.patch(node, &pp, &Patch::Apply(&lease)).await?;
        }
        Ok(())
    }

    /// What the agent should do for `pod` now.
    fn plan(&mut self, pod: &Pod) -> Plan {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let Some(node) = node else {
            if pod.metadata.deletion_timestamp.is_some() || self.nodes.is_empty() {
                return Plan::Settled;
            }
            let node = self.nodes[self.next_node % self.nodes.len()].clone();
            self.next_node += 1;
            return Plan::Act(Action::Bind { ns, name, node });
        };
        if !self.nodes.contains(&node) {
            return Plan::Settled;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.started.remove(&uid);
            return Plan::Act(Action::Delete { ns, name });
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            return Plan::Settled;
        }
        let next_ip = &mut self.next_ip;
        let (since, ip) = self
            .started
            .entry(uid)
            .or_insert_with(|| {
                *next_ip += 1;
                (
                    Instant::now(),
                    format!("10.244.{}.{}", *next_ip / 250, *next_ip % 250 + 1),
                )
            })
            .clone();
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let age = since.elapsed();
        let elapsed = age >= self.options.ready_delay;
        let annotated_unready = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(READY_ANNOTATION))
            .is_some_and(|v| v == "false");
        let (want_phase, want_ready) = if image.contains("succeed") && elapsed {
            ("Succeeded", false)
        } else if image.contains("fail") && elapsed {
            ("Failed", false)
        } else {
            (
                "Running",
                elapsed && !image.contains("never-ready") && !annotated_unready,
            )
        };
        let is_ready = crate::util::pod_is_ready(pod);
        if phase.as_deref() == Some(want_phase) && is_ready == want_ready {
            return if elapsed {
                Plan::Settled
            } else {
                Plan::Wait(self.options.ready_delay - age)
            };
        }
        let ready = if want_ready { "True" } else { "False" };
        let containers: Vec<_> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let terminated = want_phase != "Running";
        let statuses: Vec<_> = containers
            .iter()
            .map(|c| {
                let state = if terminated {
                    json!({"terminated": {"exitCode": if want_phase == "Succeeded" {0} else {1},
                                          "reason": if want_phase == "Succeeded" {"Completed"} else {"Error"}}})
                } else {
                    json!({"running": {"startedAt": now()}})
                };
                json!({"name": c, "ready": want_ready, "restartCount": 0, "image": image,
                       "imageID": "", "started": !terminated, "state": state})
            })
            .collect();
        let patch = json!({"status": {
            "phase": want_phase,
            "hostIP": "192.168.0.10",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now(),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now()},
                {"type": "Ready", "status": ready, "lastTransitionTime": now()},
            ],
            "containerStatuses": statuses,
        }});
        Plan::Act(Action::Status { ns, name, patch })
    }
}
