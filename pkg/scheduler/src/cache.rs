//! The scheduler cache: nodes with the pods placed on them, including pods the scheduler has
//! *assumed* onto a node before the binding is confirmed by the watch, so concurrent
//! attempts never hand out the same free capacity twice.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::labels::{Labels, NamespaceLabels};
use crate::nodeinfo::NodeInfo;
use crate::plugins::taint_toleration;
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
    /// image name -> number of nodes reporting it (ImageLocality's spread factor).
    image_nodes: HashMap<String, usize>,
    /// Namespace labels (pod affinity namespaceSelectors).
    namespaces: NamespaceLabels,
    /// Pending pods nominated to a node by preemption: key -> (node, pod).
    nominated: HashMap<String, (String, Arc<PodInfo>)>,
    /// Pods on known nodes that carry inter-pod (anti-)affinity terms: while there are none,
    /// a pod without terms of its own need not visit every node for InterPodAffinity
    /// (upstream keeps `HavePodsWithAffinityList` in its snapshot for the same reason).
    affinity_pods: usize,
    /// How many known nodes have each trait some filter or score rejects or ranks by; a
    /// plugin whose trait no node has is skipped for the cycle (see [`NodeTraits`]).
    traits: TraitCounts,
}

/// Node traits that decide whether NodeUnschedulable and TaintToleration can tell nodes
/// apart at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeTraits {
    /// Some node is cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    /// Some node has a NoSchedule or NoExecute taint.
    pub hard_taints: bool,
    /// Some node has a PreferNoSchedule taint.
    pub prefer_taints: bool,
}

impl NodeTraits {
    /// The traits of one node.
    pub fn of(node: &NodeInfo) -> Self {
        NodeTraits {
            unschedulable: node.unschedulable,
            hard_taints: node.taints.iter().any(taint_toleration::is_hard),
            prefer_taints: node.taints.iter().any(taint_toleration::is_preference),
        }
    }

    /// The traits some node of `nodes` has.
    pub fn any<'a>(nodes: impl Iterator<Item = &'a NodeInfo>) -> Self {
        nodes.fold(NodeTraits::default(), |acc, n| {
            let t = NodeTraits::of(n);
            NodeTraits {
                unschedulable: acc.unschedulable || t.unschedulable,
                hard_taints: acc.hard_taints || t.hard_taints,
                prefer_taints: acc.prefer_taints || t.prefer_taints,
            }
        })
    }
}

/// Per trait, the number of known nodes that have it.
#[derive(Debug, Default)]
struct TraitCounts {
    unschedulable: usize,
    hard_taints: usize,
    prefer_taints: usize,
}

impl TraitCounts {
    fn count(&mut self, node: &NodeInfo, add: bool) {
        let t = NodeTraits::of(node);
        for (n, has) in [
            (&mut self.unschedulable, t.unschedulable),
            (&mut self.hard_taints, t.hard_taints),
            (&mut self.prefer_taints, t.prefer_taints),
        ] {
            if has {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        }
    }
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
        if let Some(i) = self.index.get(&name).copied() {
            self.count_images(i, false);
            self.traits.count(&self.nodes[i], false);
            self.nodes[i].set_node(node);
            self.traits.count(&self.nodes[i], true);
            self.count_images(i, true);
            return;
        }
        let mut info = NodeInfo::from_node(node);
        for p in self.pods.values().filter(|p| p.node == name) {
            info.add_pod(p.info.clone());
        }
        self.affinity_pods += info.pods_with_affinity;
        self.traits.count(&info, true);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        self.count_images(self.nodes.len() - 1, true);
    }

    fn count_images(&mut self, i: usize, add: bool) {
        for name in self.nodes[i].images.keys() {
            if add {
                *self.image_nodes.entry(name.clone()).or_default() += 1;
            } else if let Some(n) = self.image_nodes.get_mut(name) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.image_nodes.remove(name);
                }
            }
        }
    }

    /// How many nodes report image `name`.
    pub fn image_nodes(&self, name: &str) -> usize {
        self.image_nodes.get(name).copied().unwrap_or(0)
    }

    /// Whether any pod placed on a known node carries inter-pod (anti-)affinity terms.
    pub fn has_affinity_pods(&self) -> bool {
        self.affinity_pods > 0
    }

    /// The traits some known node has (kept as counts, so this is O(1)).
    pub fn node_traits(&self) -> NodeTraits {
        NodeTraits {
            unschedulable: self.traits.unschedulable > 0,
            hard_taints: self.traits.hard_taints > 0,
            prefer_taints: self.traits.prefer_taints > 0,
        }
    }

    /// Whether any node reports images at all (lets the hot path skip ImageLocality).
    pub fn has_images(&self) -> bool {
        !self.image_nodes.is_empty()
    }

    /// Removes a node; its pods stay known and re-attach if the node returns.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else {
            return;
        };
        self.count_images(i, false);
        self.index.remove(name);
        let gone = self.nodes.swap_remove(i);
        self.traits.count(&gone, false);
        self.affinity_pods = self.affinity_pods.saturating_sub(gone.pods_with_affinity);
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
            if placed.info.has_pod_affinity() {
                self.affinity_pods += 1;
            }
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
            if self.nodes[*i].remove_pod(key) && old.info.has_pod_affinity() {
                self.affinity_pods = self.affinity_pods.saturating_sub(1);
            }
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

    /// The watch shows an assumed pod bound where it was assumed: keep the assumed view
    /// (nothing else changed) instead of re-extracting it. False when it was not assumed
    /// there, and the caller must [`Cache::add_bound_pod`].
    pub fn confirm(&mut self, key: &str, node: &str) -> bool {
        match self.pods.get_mut(key) {
            Some(p) if p.assumed && p.node == node => {
                p.assumed = false;
                true
            }
            _ => false,
        }
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

    /// Adds or updates a namespace's labels.
    pub fn upsert_namespace(&mut self, name: &str, labels: Labels) {
        self.namespaces.insert(name.to_string(), labels);
    }

    /// Forgets a namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Names of all known namespaces.
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    /// Labels of every known namespace.
    pub fn namespaces(&self) -> &NamespaceLabels {
        &self.namespaces
    }

    /// Records that preemption made room for `info` on `node` (upstream's nominator): other
    /// pods of no higher priority must leave that room free.
    pub fn nominate(&mut self, info: Arc<PodInfo>, node: &str) {
        self.nominated
            .insert(info.key.clone(), (node.to_string(), info));
    }

    /// Drops a nomination (the pod was bound, deleted, or nominated elsewhere).
    pub fn clear_nomination(&mut self, key: &str) {
        self.nominated.remove(key);
    }

    /// The node a pending pod is nominated to.
    pub fn nominated_node_of(&self, key: &str) -> Option<&str> {
        self.nominated.get(key).map(|(n, _)| n.as_str())
    }

    /// Whether any pod is nominated (lets the hot path skip the nominated-pod handling).
    pub fn has_nominations(&self) -> bool {
        !self.nominated.is_empty()
    }

    /// Nominated pods as (node, pod).
    pub fn nominations(&self) -> impl Iterator<Item = (&str, &Arc<PodInfo>)> {
        self.nominated.values().map(|(n, p)| (n.as_str(), p))
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

    /// The trait counts follow nodes that are added, changed and removed, and always equal a
    /// scan of the nodes.
    #[test]
    fn node_traits_follow_node_churn() {
        let tainted = |name: &str, effect: &str, cordoned: bool| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"unschedulable": cordoned,
                         "taints": [{"key": "k", "value": "v", "effect": effect}]},
            }))
            .expect("node json")
        };
        let mut c = Cache::default();
        let check = |c: &Cache, want: NodeTraits| {
            assert_eq!(c.node_traits(), want);
            assert_eq!(NodeTraits::any(c.nodes().iter()), want);
        };
        let none = NodeTraits::default();
        c.upsert_node(&node("a"));
        check(&c, none);
        c.upsert_node(&tainted("b", "NoExecute", false));
        let hard = NodeTraits {
            hard_taints: true,
            ..none
        };
        check(&c, hard);
        c.upsert_node(&tainted("c", "PreferNoSchedule", true));
        check(
            &c,
            NodeTraits {
                unschedulable: true,
                hard_taints: true,
                prefer_taints: true,
            },
        );
        // Uncordoned and untainted in place, then the other tainted node goes.
        c.upsert_node(&node("c"));
        check(&c, hard);
        c.upsert_node(&tainted("a", "NoSchedule", false));
        c.remove_node("b");
        check(&c, hard);
        c.remove_node("a");
        check(&c, none);
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

    #[test]
    fn counts_placed_pods_with_affinity_through_node_churn() {
        let mut with_terms = PodInfo {
            key: "ns/aff".into(),
            ..PodInfo::default()
        };
        with_terms
            .preferred_affinity
            .push(crate::podinfo::AffinityTerm {
                namespaces: vec!["ns".into()],
                namespace_selector: None,
                selector: crate::labels::Selector::compile(None),
                topology_key: "zone".into(),
                weight: 1,
            });
        let mut c = Cache::default();
        c.upsert_node(&node("a"));
        c.assume(pod("ns/plain", 100), "a");
        assert!(!c.has_affinity_pods());
        c.assume(Arc::new(with_terms), "a");
        assert!(c.has_affinity_pods());
        // The node goes (its pods stay known), then comes back with them.
        c.remove_node("a");
        assert!(!c.has_affinity_pods());
        c.upsert_node(&node("a"));
        assert!(c.has_affinity_pods());
        c.forget("ns/aff");
        assert!(!c.has_affinity_pods());
    }
}
