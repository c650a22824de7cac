//! One scheduling decision over the cache: filter nodes (stopping after enough feasible ones,
//! starting where the previous attempt stopped, as upstream), score them, pick the best
//! (random among ties), or explain with a `FitError` why nothing fits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::cache::Cache;
use crate::framework::{CycleState, Framework};
use crate::nodeinfo::NodeInfo;
use crate::plugins::image_locality;
use crate::podinfo::PodInfo;

/// Why a pod fits nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// Number of nodes considered.
    pub num_nodes: usize,
    /// reason -> number of nodes that gave it.
    pub reasons: BTreeMap<String, usize>,
    /// What preemption (the PostFilter) said, appended to the message as upstream does.
    pub post_filter: Option<String>,
}

impl FitError {
    /// Upstream's message: "0/3 nodes are available: 1 node(s) had untolerated taint {k: v},
    /// 2 Insufficient cpu." (the "count reason" strings sorted, as upstream sorts them).
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        parts.sort();
        let mut msg = format!("0/{} nodes are available", self.num_nodes);
        if parts.is_empty() {
            msg.push('.');
        } else {
            msg.push_str(": ");
            msg.push_str(&parts.join(", "));
            msg.push('.');
        }
        if let Some(post) = &self.post_filter {
            msg.push(' ');
            msg.push_str(post);
        }
        msg
    }
}

/// Round-robin start and tie-break randomness carried between attempts.
#[derive(Debug, Clone)]
pub struct Selection {
    next_start: usize,
    rng: u64,
}

impl Default for Selection {
    fn default() -> Self {
        Self {
            next_start: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Selection {
    fn next_random(&mut self) -> u64 {
        // xorshift64: tie-breaking only needs to be cheap and not systematically biased.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// How many feasible nodes to find before scoring (upstream `numFeasibleNodesToFind`).
pub fn num_feasible_to_find(num_nodes: usize, percentage: u32) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if num_nodes < MIN_FEASIBLE || percentage >= 100 {
        return num_nodes;
    }
    let pct = if percentage == 0 {
        // Adaptive: 50% at 0 nodes, minus 1% per 125 nodes, at least 5%.
        50usize.saturating_sub(num_nodes / 125).max(5)
    } else {
        percentage as usize
    };
    (num_nodes * pct / 100).max(MIN_FEASIBLE)
}

/// Picks a node for `pod`, or explains why none fits.
pub fn schedule(
    framework: &Framework,
    cache: &Cache,
    pod: &PodInfo,
    percentage: u32,
    sel: &mut Selection,
) -> Result<String, FitError> {
    let nodes = cache.nodes();
    let n = nodes.len();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    if n == 0 {
        return Err(FitError {
            num_nodes: 0,
            reasons,
            post_filter: None,
        });
    }
    let mut state = CycleState::for_cache(pod, cache);
    state.images = image_locality::PreState::compute(pod, cache);
    // Room preemption freed for a pending pod of at least this priority is not ours to take
    // (upstream adds such nominated pods to the node before filtering).
    let mut nominated: HashMap<&str, Vec<&Arc<PodInfo>>> = HashMap::new();
    if cache.has_nominations() {
        for (node, p) in cache.nominations() {
            if p.key != pod.key && p.priority >= pod.priority {
                nominated.entry(node).or_default().push(p);
            }
        }
    }
    let active = framework.active_filters(&state, pod);
    let filter = |node: &NodeInfo| match nominated.get(node.name.as_str()) {
        None => Framework::filter_active(&active, &state, pod, node),
        Some(extra) => {
            let mut with = node.clone();
            for p in extra {
                with.add_pod(Arc::clone(p));
            }
            Framework::filter_active(&active, &state, pod, &with)
        }
    };
    // A pod that preempted tries its nominated node first (upstream evaluateNominatedNode).
    let own = cache
        .nominated_node_of(&pod.key)
        .or(pod.nominated_node.as_deref());
    if let Some(node) = own.and_then(|n| cache.node(n)) {
        if filter(node).is_ok() {
            return Ok(node.name.clone());
        }
    }
    let want = num_feasible_to_find(n, percentage);
    let start = sel.next_start % n;
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(n));
    let mut visited = 0;
    for node in nodes[start..].iter().chain(&nodes[..start]) {
        visited += 1;
        match filter(node) {
            Ok(()) => {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(rs) => {
                for r in rs {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    sel.next_start = (start + visited) % n;
    match feasible.len() {
        0 => Err(FitError {
            num_nodes: n,
            reasons,
            post_filter: None,
        }),
        1 => Ok(feasible[0].name.clone()),
        _ => {
            let scores = framework.score(&state, pod, &feasible);
            let mut best = 0;
            let mut ties = 0u64;
            for (i, s) in scores.iter().enumerate() {
                if *s > scores[best] {
                    best = i;
                    ties = 1;
                } else if *s == scores[best] {
                    ties += 1;
                    if sel.next_random().is_multiple_of(ties) {
                        best = i;
                    }
                }
            }
            Ok(feasible[best].name.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginWeights;
    use k8s_openapi::api::core::v1::Node;

    fn node(name: &str, cpu: &str, taint: Option<(&str, &str)>) -> Node {
        let mut v = serde_json::json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}
        });
        if let Some((k, val)) = taint {
            v["spec"] =
                serde_json::json!({"taints": [{"key": k, "value": val, "effect": "NoSchedule"}]});
        }
        serde_json::from_value(v).expect("node json")
    }

    fn pod(name: &str, cpu: &str) -> PodInfo {
        let p = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .expect("pod json");
        PodInfo::from_pod(&p)
    }

    #[test]
    fn feasible_count_table() {
        let cases = [
            (10, 0, 10),
            (99, 0, 99),
            (1000, 0, 420),
            (5000, 0, 500),
            (5000, 10, 500),
            (5000, 100, 5000),
            (200, 10, 100),
        ];
        for (n, pct, want) in cases {
            assert_eq!(num_feasible_to_find(n, pct), want, "{n} nodes at {pct}%");
        }
    }

    #[test]
    fn fit_error_message_matches_upstream() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("a", "1", None));
        cache.upsert_node(&node("b", "1", None));
        cache.upsert_node(&node("c", "8", Some(("key", "value"))));
        let fw = Framework::new(&PluginWeights::default());
        let err = schedule(&fw, &cache, &pod("p", "2"), 0, &mut Selection::default())
            .expect_err("nothing fits");
        assert_eq!(
            err.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 Insufficient cpu."
        );
        let empty = schedule(
            &fw,
            &Cache::default(),
            &pod("p", "1"),
            0,
            &mut Selection::default(),
        );
        assert_eq!(
            empty.map_err(|e| e.message()),
            Err("0/0 nodes are available.".to_string())
        );
    }

    #[test]
    fn assumed_pods_spread_and_exhaust() {
        let mut cache = Cache::default();
        for n in ["a", "b", "c"] {
            cache.upsert_node(&node(n, "1", None));
        }
        let fw = Framework::new(&PluginWeights::default());
        let mut sel = Selection::default();
        let mut placed = Vec::new();
        for i in 0..3 {
            let p = pod(&format!("p{i}"), "600m");
            let n = schedule(&fw, &cache, &p, 0, &mut sel).expect("fits");
            cache.assume(Arc::new(p), &n);
            placed.push(n);
        }
        placed.sort();
        assert_eq!(placed, vec!["a", "b", "c"]);
        let err = schedule(&fw, &cache, &pod("p4", "600m"), 0, &mut sel).expect_err("full");
        assert_eq!(
            err.message(),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
    }
}
