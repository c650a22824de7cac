//! The plugin framework: filter and score plugin traits, the per-attempt `CycleState`
//! (cluster-wide precomputation done once per pod, so per-node work stays cheap), and the
//! weighted, normalized scoring pipeline.

use crate::cache::{Cache, NodeTraits};
use crate::config::PluginWeights;
use crate::labels::NamespaceLabels;
use crate::nodeinfo::NodeInfo;
use crate::plugins::{
    balanced_allocation, image_locality, inter_pod_affinity, least_allocated, node_affinity,
    node_name, node_ports, node_resources_fit, node_unschedulable, pod_topology_spread,
    taint_toleration,
};
use crate::podinfo::PodInfo;

/// Highest score a plugin gives after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node does not fit: one or more upstream reason strings.
pub type Unfit = Vec<String>;

/// Cluster-wide facts computed once per scheduling attempt.
#[derive(Debug)]
pub struct CycleState {
    /// The traits some node has: a filter or score that looks only at a trait no node has
    /// cannot tell nodes apart and is skipped for the cycle.
    pub node_traits: NodeTraits,
    /// Inter-pod affinity domains.
    pub affinity: inter_pod_affinity::PreState,
    /// Topology spread counts.
    pub spread: pod_topology_spread::PreState,
    /// Image spread factors (filled by the caller from the cache; see `algorithm`).
    pub images: image_locality::PreState,
}

impl Default for CycleState {
    /// Nothing known about the nodes: every trait is assumed present, so nothing is skipped.
    fn default() -> Self {
        CycleState {
            node_traits: NodeTraits {
                unschedulable: true,
                hard_taints: true,
                prefer_taints: true,
            },
            affinity: Default::default(),
            spread: Default::default(),
            images: Default::default(),
        }
    }
}

impl CycleState {
    /// Precomputes the state for `pod` over all nodes (O(nodes) + O(pods) only when the pod
    /// or existing pods use inter-pod affinity / spread constraints).
    pub fn compute<'a>(pod: &PodInfo, nodes: impl Iterator<Item = &'a NodeInfo> + Clone) -> Self {
        Self::compute_in(pod, nodes, &NamespaceLabels::new())
    }

    /// [`CycleState::compute`] with the namespaces' labels (affinity namespaceSelectors).
    pub fn compute_in<'a>(
        pod: &PodInfo,
        nodes: impl Iterator<Item = &'a NodeInfo> + Clone,
        namespaces: &NamespaceLabels,
    ) -> Self {
        CycleState {
            node_traits: NodeTraits::any(nodes.clone()),
            affinity: inter_pod_affinity::PreState::compute_in(pod, nodes.clone(), namespaces),
            spread: pod_topology_spread::PreState::compute(pod, nodes),
            images: image_locality::PreState::default(),
        }
    }

    /// [`CycleState::compute_in`] over every node of `cache`. InterPodAffinity visits the
    /// nodes only when the pod has terms of its own or some placed pod has terms (upstream's
    /// `HavePodsWithAffinityList`); otherwise its state is empty and the visit, one cache miss
    /// per node on a large cluster, is skipped.
    pub fn for_cache(pod: &PodInfo, cache: &Cache) -> Self {
        let nodes = cache.nodes();
        let visit = if pod.has_pod_affinity() || cache.has_affinity_pods() {
            nodes
        } else {
            &nodes[..0]
        };
        CycleState {
            node_traits: cache.node_traits(),
            affinity: inter_pod_affinity::PreState::compute_in(
                pod,
                visit.iter(),
                cache.namespaces(),
            ),
            spread: pod_topology_spread::PreState::compute(pod, nodes.iter()),
            images: image_locality::PreState::default(),
        }
    }
}

/// A filter: decides whether a pod can run on a node.
pub trait FilterPlugin: Send + Sync {
    /// Upstream plugin name.
    fn name(&self) -> &'static str;
    /// `Ok` when the pod fits, otherwise the reasons it does not.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit>;
    /// A quick answer to whether [`FilterPlugin::filter`] would answer `Ok`, without building
    /// reasons: `Some(true)` fits, `Some(false)` does not (then `filter` gives the reasons),
    /// `None` no quick answer (then `filter` decides). The decision asks this of hundreds of
    /// nodes and wants reasons only from nodes that do not fit; a plugin whose check is cheap
    /// overrides it, and must agree with `filter`.
    fn fits(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> Option<bool> {
        None
    }
    /// Upstream's PreFilter `Skip`: true when the filter would accept every node for this pod
    /// in this cycle, so it is not called per node.
    fn skip(&self, _state: &CycleState, _pod: &PodInfo) -> bool {
        false
    }
}

/// A score: ranks feasible nodes.
pub trait ScorePlugin: Send + Sync {
    /// Upstream plugin name.
    fn name(&self) -> &'static str;
    /// Raw score for one node.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Raw scores for `nodes` into `out` (same order). The default body is compiled for each
    /// plugin, so its inner loop calls `score` statically, not once per node through the
    /// vtable.
    fn score_nodes(&self, state: &CycleState, pod: &PodInfo, nodes: &[&NodeInfo], out: &mut [i64]) {
        for (o, n) in out.iter_mut().zip(nodes) {
            *o = self.score(state, pod, n);
        }
    }
    /// Maps raw scores to 0..=MAX_NODE_SCORE (default: already in range).
    fn normalize(&self, _scores: &mut [i64]) {}
    /// Upstream's PreScore `Skip`: true when the plugin would give every node the same
    /// normalized score for this pod, so it cannot change the ranking and is not run.
    fn skip(&self, _state: &CycleState, _pod: &PodInfo) -> bool {
        false
    }
}

/// Scales scores so the highest becomes 100 (`reverse`: the highest becomes 0).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = *s * MAX_NODE_SCORE / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// Min-max scaling to 0..=100; all zero when every score is equal.
pub fn min_max_normalize(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    let min = scores.iter().copied().min().unwrap_or(0);
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (*s - min) * MAX_NODE_SCORE / diff
        } else {
            0
        };
    }
}

/// The configured plugin set.
pub struct Framework {
    filters: Vec<Box<dyn FilterPlugin>>,
    scores: Vec<(Box<dyn ScorePlugin>, i64)>,
}

impl Framework {
    /// Upstream's default plugins, in upstream's filter order, with the given score weights
    /// (a zero weight disables a score plugin).
    pub fn new(w: &PluginWeights) -> Self {
        let filters: Vec<Box<dyn FilterPlugin>> = vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources_fit::NodeResourcesFit),
            Box::new(pod_topology_spread::PodTopologySpread),
            Box::new(inter_pod_affinity::InterPodAffinity),
        ];
        let all: Vec<(Box<dyn ScorePlugin>, i64)> = vec![
            (
                Box::new(taint_toleration::TaintToleration),
                w.taint_toleration,
            ),
            (Box::new(node_affinity::NodeAffinity), w.node_affinity),
            (
                Box::new(least_allocated::LeastAllocated),
                w.node_resources_fit,
            ),
            (
                Box::new(balanced_allocation::BalancedAllocation),
                w.node_resources_balanced_allocation,
            ),
            (
                Box::new(pod_topology_spread::PodTopologySpread),
                w.pod_topology_spread,
            ),
            (
                Box::new(inter_pod_affinity::InterPodAffinity),
                w.inter_pod_affinity,
            ),
            (Box::new(image_locality::ImageLocality), w.image_locality),
        ];
        let scores = all.into_iter().filter(|(_, w)| *w > 0).collect();
        Framework { filters, scores }
    }

    /// Runs the filters in order, stopping at the first that rejects (upstream behaviour).
    pub fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        for f in &self.filters {
            f.filter(state, pod, node)?;
        }
        Ok(())
    }

    /// The filters that can reject `pod` in this cycle, in order: the others
    /// ([`FilterPlugin::skip`]) would accept every node.
    pub fn active_filters(&self, state: &CycleState, pod: &PodInfo) -> Vec<&dyn FilterPlugin> {
        self.filters
            .iter()
            .map(|f| f.as_ref())
            .filter(|f| !f.skip(state, pod))
            .collect()
    }

    /// [`Framework::filter`] over the [`Framework::active_filters`] of the cycle: the same
    /// answer, without calling per node the filters that cannot reject.
    pub fn filter_active(
        active: &[&dyn FilterPlugin],
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Result<(), Unfit> {
        for f in active {
            // Each filter runs once on a node that fits; the one that rejects runs `filter`
            // for its reasons, and the first rejection ends the node's check (upstream's order).
            if f.fits(state, pod, node) != Some(true) {
                f.filter(state, pod, node)?;
            }
        }
        Ok(())
    }

    /// Weighted sum of normalized scores for each feasible node (same order as `nodes`).
    pub fn score(&self, state: &CycleState, pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut buf = vec![0i64; nodes.len()];
        for (plugin, weight) in &self.scores {
            if plugin.skip(state, pod) {
                continue;
            }
            plugin.score_nodes(state, pod, nodes, &mut buf);
            plugin.normalize(&mut buf);
            for (t, b) in total.iter_mut().zip(&buf) {
                *t += b * weight;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    /// A skipped filter (PreFilter `Skip`) never changes the answer: over pods with and
    /// without each kind of constraint and nodes that reject in every way, the active filters
    /// give what all filters give; a plain pod runs only the three that look at the node.
    #[test]
    fn skipped_filters_accept_every_node() {
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}});
        let mut placed = pod(json!({"metadata": {"name": "db", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c"}], "affinity": anti}}));
        placed.key = "default/db".into();
        let mut nodes = vec![
            node("a", &[("zone", "z1"), ("disk", "ssd")]),
            node("b", &[("zone", "z2")]),
            node("c", &[]),
            node("d", &[("zone", "z3")]),
        ];
        nodes[1].unschedulable = true;
        nodes[2].taints.push(k8s_openapi::api::core::v1::Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        nodes[2].used_ports.push(crate::podinfo::HostPort {
            protocol: "TCP".into(),
            ip: "0.0.0.0".into(),
            port: 8080,
        });
        nodes[3].add_pod(Arc::new(placed));
        let c = json!([{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]);
        let pods = [
            json!({"spec": {"containers": c}}),
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": c}}),
            json!({"metadata": {"labels": {"app": "db"}}, "spec": {"containers": c}}),
            json!({"spec": {"containers": c, "nodeName": "a"}}),
            json!({"spec": {"containers": c, "nodeSelector": {"disk": "ssd"}}}),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
            json!({"spec": {"containers": c, "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"app": "x"}}}]}}),
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": c, "affinity": anti}}),
        ];
        let fw = Framework::new(&crate::PluginWeights::default());
        for (i, p) in pods.into_iter().enumerate() {
            let p = pod(p);
            let state = CycleState::compute(&p, nodes.iter());
            let active = fw.active_filters(&state, &p);
            if i == 0 {
                let names: Vec<_> = active.iter().map(|f| f.name()).collect();
                assert_eq!(
                    names,
                    ["NodeUnschedulable", "TaintToleration", "NodeResourcesFit"]
                );
            }
            for n in &nodes {
                assert_eq!(
                    Framework::filter_active(&active, &state, &p, n),
                    fw.filter(&state, &p, n),
                    "pod {i} on node {}",
                    n.name
                );
            }
        }
    }

    /// On nodes that are neither cordoned nor tainted, NodeUnschedulable and TaintToleration
    /// cannot reject and TaintToleration's score cannot rank, so a cycle skips them; one
    /// cordoned or tainted node brings each back.
    #[test]
    fn node_traits_skip_plugins_that_cannot_tell_nodes_apart() {
        let fw = Framework::new(&crate::PluginWeights::default());
        let p = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        let mut nodes = vec![node("a", &[]), node("b", &[])];
        let names = |nodes: &[NodeInfo]| {
            let state = CycleState::compute(&p, nodes.iter());
            let filters: Vec<_> = fw
                .active_filters(&state, &p)
                .iter()
                .map(|f| f.name())
                .collect();
            let taint_score = taint_toleration::TaintToleration;
            (filters, ScorePlugin::skip(&taint_score, &state, &p))
        };
        assert_eq!(names(&nodes), (vec!["NodeResourcesFit"], true));
        nodes[0].unschedulable = true;
        assert_eq!(
            names(&nodes),
            (vec!["NodeUnschedulable", "NodeResourcesFit"], true)
        );
        nodes[0].unschedulable = false;
        nodes[1].taints.push(k8s_openapi::api::core::v1::Taint {
            key: "k".into(),
            effect: "PreferNoSchedule".into(),
            ..Default::default()
        });
        assert_eq!(names(&nodes), (vec!["NodeResourcesFit"], false));
        nodes[1].taints[0].effect = "NoExecute".into();
        assert_eq!(
            names(&nodes),
            (vec!["TaintToleration", "NodeResourcesFit"], true)
        );
        // Nothing known about the nodes: nothing is skipped.
        let unknown = CycleState::default();
        assert_eq!(fw.active_filters(&unknown, &p).len(), 3);
    }

    #[test]
    fn normalize_table() {
        let cases: &[(&[i64], bool, &[i64])] = &[
            (&[0, 5, 10], false, &[0, 50, 100]),
            (&[0, 5, 10], true, &[100, 50, 0]),
            (&[0, 0], false, &[0, 0]),
            (&[0, 0], true, &[100, 100]),
        ];
        for (input, rev, want) in cases {
            let mut s = input.to_vec();
            default_normalize(&mut s, *rev);
            assert_eq!(&s, want, "{input:?} reverse={rev}");
        }
        let mut s = vec![-10, 0, 10];
        min_max_normalize(&mut s);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![3, 3];
        min_max_normalize(&mut s);
        assert_eq!(s, vec![0, 0]);
    }
}
