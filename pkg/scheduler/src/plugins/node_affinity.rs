//! NodeAffinity: spec.nodeSelector and required node affinity as a filter; preferred node
//! affinity (sum of matching term weights) as a score.

use crate::framework::{default_normalize, CycleState, FilterPlugin, ScorePlugin, Unfit};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Upstream reason string.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The plugin.
pub struct NodeAffinity;

/// Pure core: nodeSelector labels all present, and any required term matches.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    selector_ok
        && pod
            .required_node_terms
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| t.matches(&node.name, &node.labels)))
}

/// Sum of the weights of the preferred terms the node matches.
pub fn preferred_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.preferred_node_terms
        .iter()
        .filter(|(_, t)| t.matches(&node.name, &node.labels))
        .map(|(w, _)| *w)
        .sum()
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if fits(pod, node) {
            Ok(())
        } else {
            Err(vec![REASON.to_string()])
        }
    }
    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.node_selector.is_empty() && pod.required_node_terms.is_none()
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        preferred_score(pod, node)
    }
    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false)
    }
    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        // Every node scores 0 (upstream's PreScore skips too).
        pod.preferred_node_terms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};
    use serde_json::json;

    fn with_required(terms: serde_json::Value) -> PodInfo {
        pod(
            json!({"spec": {"containers": [{"name": "c"}], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}),
        )
    }

    #[test]
    fn filter_table() {
        let n = node("n1", &[("zone", "a"), ("gen", "5"), ("disk", "ssd")]);
        let cases = [
            (pod(json!({})), true),
            (
                pod(
                    json!({"spec": {"containers": [{"name": "c"}], "nodeSelector": {"zone": "a"}}}),
                ),
                true,
            ),
            (
                pod(
                    json!({"spec": {"containers": [{"name": "c"}], "nodeSelector": {"zone": "b"}}}),
                ),
                false,
            ),
            (
                with_required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]),
                ),
                true,
            ),
            (
                with_required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]),
                ),
                false,
            ),
            (
                with_required(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]),
                ),
                true,
            ),
            (
                with_required(
                    json!([{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]),
                ),
                true,
            ),
            (
                with_required(
                    json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]),
                ),
                true,
            ),
            (
                with_required(
                    json!([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["5"]}]}]),
                ),
                false,
            ),
            (
                with_required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
                ),
                true,
            ),
            (
                with_required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
                ),
                false,
            ),
            // Terms are ORed; expressions within a term are ANDed.
            (
                with_required(json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                      {"key": "disk", "operator": "In", "values": ["ssd"]}]}])),
                true,
            ),
            (
                with_required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                      {"key": "disk", "operator": "In", "values": ["hdd"]}]}]),
                ),
                false,
            ),
            // An empty term matches nothing.
            (with_required(json!([{}])), false),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            assert_eq!(fits(&p, &n), want, "case {i}");
        }
    }

    #[test]
    fn preferred_score_sums_weights() {
        let p = pod(
            json!({"spec": {"containers": [{"name": "c"}], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}}),
        );
        let cases = [
            (node("a", &[("zone", "a"), ("disk", "ssd")]), 15),
            (node("b", &[("zone", "a")]), 10),
            (node("c", &[("disk", "x")]), 5),
            (node("d", &[]), 0),
        ];
        let st = CycleState::default();
        for (n, want) in &cases {
            assert_eq!(NodeAffinity.score(&st, &p, n), *want, "{}", n.name);
        }
    }
}
