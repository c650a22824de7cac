//! Node registration, Node status (conditions, capacity, nodeInfo) and the node Lease heartbeat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeAddress, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use tracing::{info, warn};

use crate::Kubelet;

/// Keeps the Node and its Lease fresh until aborted.
pub(crate) async fn run(k: Arc<Kubelet>) {
    let mut last_ready: Option<(String, String)> = None;
    let mut last_status = tokio::time::Instant::now() - k.config.status_interval;
    let mut lease_tick =
        tokio::time::interval(k.config.lease_interval.min(Duration::from_secs(10)));
    loop {
        lease_tick.tick().await;
        let ready = readiness(&k).await;
        let due = last_status.elapsed() >= k.config.status_interval;
        if due || last_ready.as_ref() != Some(&ready) {
            match sync_node(&k, &ready).await {
                Ok(()) => {
                    last_status = tokio::time::Instant::now();
                    last_ready = Some(ready);
                }
                Err(e) => {
                    warn!(node = %k.config.node_name, error = %e, "node status update failed")
                }
            }
        }
        if let Err(e) = renew_lease(&k).await {
            warn!(node = %k.config.node_name, error = %e, "lease renewal failed");
        }
    }
}

/// (status, reason/message) of the Ready condition: Ready only while the runtime answers.
async fn readiness(k: &Kubelet) -> (String, String) {
    match k.runtime.version().await {
        Ok(v) => ("True".into(), v),
        Err(e) => ("False".into(), format!("container runtime is down: {e}")),
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// Total memory from /proc/meminfo as a Quantity in Ki.
fn memory_capacity() -> Quantity {
    let kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    Quantity(format!("{kib}Ki"))
}

/// The node's CPU count and memory bytes, for resourceFieldRef defaults.
pub(crate) fn capacity() -> (i64, i64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let kib = memory_capacity()
        .0
        .trim_end_matches("Ki")
        .parse::<i64>()
        .unwrap_or(0);
    (cpus, kib * 1024)
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

async fn sync_node(k: &Kubelet, ready: &(String, String)) -> Result<(), kube::Error> {
    let name = &k.config.node_name;
    let nodes: Api<Node> = Api::all(k.client.clone());
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
    ]);
    let existing = nodes.get_opt(name).await?;
    let old_conditions = existing
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match existing {
        None => {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            };
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => info!(node = %name, "registered node"),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Some(_) => {
            let patch = json!({ "metadata": { "labels": labels } });
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    let now = Time(Timestamp::now());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), memory_capacity()),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    let (ready_status, detail) = ready;
    let (reason, message, runtime_version) = if ready_status == "True" {
        (
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
            detail.clone(),
        )
    } else {
        (
            "KubeletNotReady",
            detail.clone(),
            "docker://unknown".to_string(),
        )
    };
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            &now,
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            &now,
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            &now,
        ),
        condition("Ready", ready_status, reason, &message, &now),
    ];
    // lastTransitionTime moves only when the status flips.
    for c in &mut conditions {
        if let Some(old) = old_conditions
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = old
                .last_transition_time
                .clone()
                .or(c.last_transition_time.take());
        }
    }
    let status = NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: k.config.node_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.clone(),
            },
        ]),
        conditions: Some(conditions),
        daemon_endpoints: Some(k8s_openapi::api::core::v1::NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: i32::from(k.port),
            }),
        }),
        node_info: Some(k8s_openapi::api::core::v1::NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            kubelet_version: "v1.33.0".into(),
            kube_proxy_version: "v1.33.0".into(),
            container_runtime_version: runtime_version,
            os_image: os_image(),
            kernel_version: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
            machine_id: read_trim("/etc/machine-id").unwrap_or_default(),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid").unwrap_or_default(),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    Ok(())
}

async fn renew_lease(k: &Kubelet) -> Result<(), kube::Error> {
    let name = &k.config.node_name;
    let leases: Api<Lease> = Api::namespaced(k.client.clone(), "kube-node-lease");
    let now = MicroTime(Timestamp::now());
    if let Some(mut lease) = leases.get_opt(name).await? {
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.renew_time = Some(now);
        spec.holder_identity = Some(name.clone());
        leases.replace(name, &PostParams::default(), &lease).await?;
        return Ok(());
    }
    let namespaces: Api<Namespace> = Api::all(k.client.clone());
    if namespaces.get_opt("kube-node-lease").await?.is_none() {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some("kube-node-lease".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(40),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    leases.create(&PostParams::default(), &lease).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;

    #[tokio::test]
    async fn ready_follows_runtime_reachability() {
        let fake = FakeRuntime::default();
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(cfg).unwrap();
        let k = Kubelet {
            client: client.clone(),
            config: crate::Config::new("n1"),
            runtime: Arc::new(fake.clone()),
            port: 10250,
            events: crate::events::Recorder::spawn(client.clone()),
        };
        assert_eq!(
            readiness(&k).await,
            ("True".to_string(), "fake://1.0".to_string())
        );
        fake.set_down(true);
        let (status, message) = readiness(&k).await;
        assert_eq!(status, "False");
        assert!(message.contains("container runtime is down"), "{message}");
    }

    #[test]
    fn memory_is_read_from_proc() {
        let q = memory_capacity();
        assert!(q.0.ends_with("Ki") && q.0 != "0Ki", "{}", q.0);
    }
}
