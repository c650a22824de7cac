//! Test helpers (feature `test-util`): a fake node agent that plays kubelet (and scheduler) for
//! integration tests against a real apiserver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::debug;

use crate::util::now;

/// Annotation that, set to `"false"`, keeps a pod (or makes it) not ready.
pub const READY_ANNOTATION: &str = "fake-agent/ready";

/// How the fake agent behaves.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Time from a pod starting to it becoming ready (or, for jobs, finishing).
    pub ready_delay: Duration,
    /// Polling period.
    pub tick: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            ready_delay: Duration::from_millis(200),
            tick: Duration::from_millis(50),
        }
    }
}

/// A fake node agent: creates Nodes, binds unscheduled pods to them round-robin, reports bound
/// pods Running/Ready with a pod IP, finishes graceful deletions and renews node Leases.
///
/// Images steer pods: `never-ready` stays Running but not ready, `succeed` ends Succeeded and
/// `fail` ends Failed after `ready_delay`. The [`READY_ANNOTATION`] set to `"false"` makes a pod
/// not ready. Stops on drop.
pub struct FakeNodeAgent {
    task: tokio::task::JoinHandle<()>,
    renew_leases: Arc<AtomicBool>,
}

impl Drop for FakeNodeAgent {
    fn drop(&mut self) {
        self.task.abort();
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
        let renew_leases = Arc::new(AtomicBool::new(true));
        let mut state = AgentState {
            client,
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            options,
            started: HashMap::new(),
            next_ip: 2,
            next_node: 0,
            renew: renew_leases.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                if let Err(err) = state.tick().await {
                    debug!(error = %err, "fake agent tick failed");
                }
                tokio::time::sleep(state.options.tick).await;
            }
        });
        Ok(Self { task, renew_leases })
    }

    /// Stops (false) or resumes (true) renewing node leases, simulating a dead kubelet.
    pub fn set_renew_leases(&self, renew: bool) {
        self.renew_leases.store(renew, Ordering::SeqCst);
    }
}

struct AgentState {
    client: kube::Client,
    nodes: Vec<String>,
    options: AgentOptions,
    /// uid -> (when the agent started the pod, its IP)
    started: HashMap<String, (Instant, String)>,
    next_ip: u32,
    next_node: usize,
    renew: Arc<AtomicBool>,
}

impl AgentState {
    async fn tick(&mut self) -> Result<(), kube::Error> {
        if !self.renew.load(Ordering::SeqCst) {
            // A dead kubelet: no heartbeats, no pod updates.
            return Ok(());
        }
        self.renew_leases().await?;
        self.post_node_ready().await?;
        let all: Api<Pod> = Api::all(self.client.clone());
        let pods = all.list(&ListParams::default()).await?;
        for pod in pods.items {
            if let Err(err) = self.handle(&pod).await {
                debug!(error = %err, "fake agent failed to handle pod");
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

    async fn handle(&mut self, pod: &Pod) -> Result<(), kube::Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let Some(node) = node else {
            if pod.metadata.deletion_timestamp.is_none() && !self.nodes.is_empty() {
                let target = self.nodes[self.next_node % self.nodes.len()].clone();
                self.next_node += 1;
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target}
                });
                let pp = PostParams::default();
                api.create_subresource::<_, serde_json::Value>("binding", &name, &pp, &binding)
                    .await?;
            }
            return Ok(());
        };
        if !self.nodes.contains(&node) {
            return Ok(());
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.started.remove(&uid);
            api.delete(&name, &DeleteParams::default().grace_period(0))
                .await?;
            return Ok(());
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            return Ok(());
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
        let elapsed = since.elapsed() >= self.options.ready_delay;
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
            return Ok(());
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
        let status = json!({"status": {
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
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }
}
