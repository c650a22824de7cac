//! The scheduler cache: nodes with the pods placed on them, including pods the scheduler has
//! *assumed* onto a node before the binding is confirmed by the watch, so concurrent
//! attempts never hand out the same free capacity twice.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Where a known pod sits.
#[derive(Debug, Clone)]
struct Placed {
    node: String,
    info: Arc<PodInfo>,
    /// True until the watch shows the pod bound.
    assumed: bool,
}

/// Nodes (in a stable order for round-robin) and placed pods.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, Placed>,
}

impl Cache {
    /// All nodes, in a stable order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Adds or refreshes a node (pods already placed on it are kept or re-attached).
    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(i) = self.index.get(&name) {
            self.nodes[*i].set_node(node);
            return;
        }
        let mut info = NodeInfo::from_node(node);
        for p in self.pods.values().filter(|p| p.node == name) {
            info.add_pod(p.info.clone());
        }
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
    }

    /// Removes a node; its pods stay known and re-attach if the node returns.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    /// Names of all nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn attach(&mut self, key: &str, placed: Placed) {
        if let Some(i) = self.index.get(&placed.node) {
            self.nodes[*i].add_pod(placed.info.clone());
        }
        self.pods.insert(key.to_string(), placed);
    }

    /// Removes a pod from wherever it is placed; returns whether it was known.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(old) = self.pods.remove(key) else {
            return false;
        };
        if let Some(i) = self.index.get(&old.node) {
            self.nodes[*i].remove_pod(key);
        }
        true
    }

    /// Records a pod the watch shows bound to `node` (confirms an assumption).
    pub fn add_bound_pod(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key.clone();
        self.remove_pod(&key);
        self.attach(
            &key,
            Placed {
                node: node.to_string(),
                info,
                assumed: false,
            },
        );
    }

    /// Places a pod on `node` before the binding is confirmed.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key.clone();
        self.remove_pod(&key);
        self.attach(
            &key,
            Placed {
                node: node.to_string(),
                info,
                assumed: true,
            },
        );
    }

    /// Drops an assumption (binding failed); a confirmed placement is left alone.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Whether the pod is placed (assumed or bound).
    pub fn is_placed(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Keys of all placed pods.
    pub fn pod_keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::Resources;

    fn node(name: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}
        }))
        .expect("node json")
    }

    fn pod(key: &str, cpu: i64) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            key: key.into(),
            requests: Resources {
                milli_cpu: cpu,
                memory: 0,
                pods: 1,
            },
            ..PodInfo::default()
        })
    }

    #[test]
    fn assume_confirm_forget_and_node_churn() {
        let mut c = Cache::default();
        c.upsert_node(&node("a"));
        c.upsert_node(&node("b"));
        c.assume(pod("ns/p1", 300), "a");
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(300));
        // Confirmation does not double count.
        c.add_bound_pod(pod("ns/p1", 300), "a");
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(300));
        // Forget leaves confirmed pods alone.
        c.forget("ns/p1");
        assert!(c.is_placed("ns/p1"));
        c.assume(pod("ns/p2", 200), "b");
        c.forget("ns/p2");
        assert_eq!(c.node("b").map(|n| n.requested.milli_cpu), Some(0));
        // A removed node's pods re-attach when it comes back.
        c.remove_node("a");
        assert!(c.node("a").is_none());
        assert_eq!(c.node("b").map(|n| n.name.as_str()), Some("b"));
        c.upsert_node(&node("a"));
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(300));
        assert!(c.remove_pod("ns/p1"));
        assert_eq!(c.node("a").map(|n| n.pods.len()), Some(0));
    }
}
