//! NodePorts: a pod's host ports must not collide with host ports already used on the node
//! (same protocol and port, and the same host IP or either side on 0.0.0.0).

use crate::framework::{CycleState, FilterPlugin, Unfit};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Upstream reason string.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The plugin.
pub struct NodePorts;

/// Pure core.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.host_ports
        .iter()
        .all(|want| !node.used_ports.iter().any(|used| used.conflicts(want)))
}

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if fits(pod, node) {
            Ok(())
        } else {
            Err(vec![REASON.to_string()])
        }
    }
    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.host_ports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::node;
    use crate::podinfo::HostPort;

    fn hp(proto: &str, ip: &str, port: i32) -> HostPort {
        HostPort {
            protocol: proto.into(),
            ip: ip.into(),
            port,
        }
    }

    #[test]
    fn table() {
        let cases = [
            (vec![], vec![hp("TCP", "0.0.0.0", 80)], true),
            (
                vec![hp("TCP", "0.0.0.0", 80)],
                vec![hp("TCP", "0.0.0.0", 80)],
                false,
            ),
            (
                vec![hp("TCP", "0.0.0.0", 80)],
                vec![hp("UDP", "0.0.0.0", 80)],
                true,
            ),
            (
                vec![hp("TCP", "10.0.0.1", 80)],
                vec![hp("TCP", "10.0.0.2", 80)],
                true,
            ),
            (
                vec![hp("TCP", "10.0.0.1", 80)],
                vec![hp("TCP", "0.0.0.0", 80)],
                false,
            ),
            (
                vec![hp("TCP", "0.0.0.0", 80)],
                vec![hp("TCP", "0.0.0.0", 81)],
                true,
            ),
        ];
        for (i, (used, wanted, want)) in cases.into_iter().enumerate() {
            let mut n = node("n", &[]);
            n.used_ports = used;
            let p = PodInfo {
                host_ports: wanted,
                ..PodInfo::default()
            };
            assert_eq!(fits(&p, &n), want, "case {i}");
        }
    }
}
