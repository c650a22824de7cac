//! NodeName: a pending pod that names a node in spec.nodeName fits only that node.

use crate::framework::{CycleState, FilterPlugin, Unfit};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Upstream reason string.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// The plugin.
pub struct NodeName;

/// Pure core.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_name.as_deref().is_none_or(|n| n == node.name)
}

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if fits(pod, node) {
            Ok(())
        } else {
            Err(vec![REASON.to_string()])
        }
    }
    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.node_name.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::node;

    #[test]
    fn table() {
        let cases = [(None, true), (Some("n1"), true), (Some("n2"), false)];
        for (want_node, want) in cases {
            let p = PodInfo {
                node_name: want_node.map(str::to_string),
                ..PodInfo::default()
            };
            assert_eq!(fits(&p, &node("n1", &[])), want, "{want_node:?}");
        }
    }
}
