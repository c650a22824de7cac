//! NodeUnschedulable: cordoned nodes (spec.unschedulable) take only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{CycleState, FilterPlugin, Unfit};
use crate::nodeinfo::NodeInfo;
use crate::plugins::taint_toleration::tolerates;
use crate::podinfo::PodInfo;

/// Upstream reason string.
pub const REASON: &str = "node(s) were unschedulable";

/// The plugin.
pub struct NodeUnschedulable;

/// Pure core.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    if !node.unschedulable {
        return true;
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    pod.tolerations.iter().any(|t| tolerates(t, &taint))
}

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if fits(pod, node) {
            Ok(())
        } else {
            Err(vec![REASON.to_string()])
        }
    }
    /// No node is cordoned.
    fn skip(&self, state: &CycleState, _: &PodInfo) -> bool {
        !state.node_traits.unschedulable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};
    use serde_json::json;

    #[test]
    fn table() {
        let tolerating = json!({"spec": {"containers": [{"name": "c"}], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}});
        let cases = [
            (false, json!({}), true),
            (true, json!({}), false),
            (true, tolerating.clone(), true),
            (false, tolerating, true),
        ];
        for (i, (cordoned, p, want)) in cases.into_iter().enumerate() {
            let mut n = node("n", &[]);
            n.unschedulable = cordoned;
            assert_eq!(fits(&pod(p), &n), want, "case {i}");
        }
    }
}
