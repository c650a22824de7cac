//! `NodeInfo`: a node's scheduling view (labels, taints, allocatable) plus the pods placed on
//! it and their summed requests, kept up to date incrementally by the cache.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::labels::Labels;
use crate::podinfo::{HostPort, PodInfo, Resources};
use crate::quantity;

/// One node as the plugins see it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: Labels,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// spec.unschedulable.
    pub unschedulable: bool,
    /// status.allocatable (capacity when allocatable is missing).
    pub allocatable: Resources,
    /// Sum of the placed pods' requests.
    pub requested: Resources,
    /// Sum of the placed pods' non-zero requests (scoring).
    pub non_zero_requested: Resources,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Pods placed here (bound or assumed).
    pub pods: Vec<Arc<PodInfo>>,
    /// Number of placed pods that carry inter-pod (anti-)affinity terms.
    pub pods_with_affinity: usize,
    /// status.images: every reported name -> size in bytes (ImageLocality).
    pub images: HashMap<String, i64>,
}

fn allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let get = |name: &str| {
        status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|m| m.get(name))
            .or_else(|| {
                status
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|m| m.get(name))
            })
    };
    Resources {
        milli_cpu: get("cpu").and_then(quantity::milli_value).unwrap_or(0),
        memory: get("memory").and_then(quantity::value).unwrap_or(0),
        pods: get("pods").and_then(quantity::value).unwrap_or(0),
    }
}

impl NodeInfo {
    /// A node with no pods.
    pub fn from_node(node: &Node) -> Self {
        let mut info = NodeInfo::default();
        info.set_node(node);
        info
    }

    /// Refreshes the node-derived fields, keeping the pods.
    pub fn set_node(&mut self, node: &Node) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.allocatable = allocatable(node);
        self.images.clear();
        for img in node.status.iter().flat_map(|s| s.images.iter().flatten()) {
            let size = img.size_bytes.unwrap_or(0);
            for name in img.names.iter().flatten() {
                self.images.insert(name.clone(), size);
            }
        }
    }

    /// Accounts a pod placed on this node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.plus(&pod.requests);
        self.non_zero_requested.plus(&pod.non_zero_requests);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_pod_affinity() {
            self.pods_with_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes a pod by key; returns whether it was here.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.minus(&pod.requests);
        self.non_zero_requested.minus(&pod.non_zero_requests);
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if pod.has_pod_affinity() {
            self.pods_with_affinity -= 1;
        }
        true
    }

    /// Test/bench helper: a node with the given allocatable cpu (millis), memory and pods.
    pub fn with_allocatable(name: &str, milli_cpu: i64, memory: i64, pods: i64) -> Self {
        NodeInfo {
            name: name.to_string(),
            allocatable: Resources {
                milli_cpu,
                memory,
                pods,
            },
            ..NodeInfo::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    #[test]
    fn allocatable_falls_back_to_capacity_and_pods_accounting() {
        let node = Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                capacity: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("4".into())),
                    ("memory".to_string(), Quantity("8Gi".into())),
                ])),
                allocatable: Some(BTreeMap::from([(
                    "pods".to_string(),
                    Quantity("110".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut info = NodeInfo::from_node(&node);
        assert_eq!(info.allocatable.milli_cpu, 4000);
        assert_eq!(info.allocatable.memory, 8 << 30);
        assert_eq!(info.allocatable.pods, 110);
        let pod = Arc::new(PodInfo {
            key: "ns/p".into(),
            requests: Resources {
                milli_cpu: 100,
                memory: 10,
                pods: 1,
            },
            ..Default::default()
        });
        info.add_pod(pod);
        assert_eq!(info.requested.milli_cpu, 100);
        assert!(info.remove_pod("ns/p"));
        assert!(!info.remove_pod("ns/p"));
        assert_eq!(info.requested, Resources::default());
    }
}
