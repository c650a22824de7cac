//! NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory utilisation stay close
//! to each other after placing the pod (score = (1 - std deviation) * 100).

use crate::framework::{CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// The plugin.
pub struct BalancedAllocation;

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

/// Pure core: for two resources the standard deviation is |a - b| / 2.
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let cpu = fraction(
        node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let mem = fraction(
        node.non_zero_requested.memory + pod.non_zero_requests.memory,
        node.allocatable.memory,
    );
    let std = (cpu - mem).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        score(pod, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::Resources;

    #[test]
    fn table() {
        // (node alloc cpu, mem), (pod cpu, mem), want
        let cases = [
            ((4000, 4000), (1000, 1000), 100),
            ((4000, 4000), (4000, 0), 50),
            ((4000, 4000), (2000, 0), 75),
            ((4000, 4000), (8000, 0), 50),
        ];
        for (i, (alloc, pod, want)) in cases.into_iter().enumerate() {
            let n = NodeInfo::with_allocatable("n", alloc.0, alloc.1, 10);
            let p = PodInfo {
                non_zero_requests: Resources {
                    milli_cpu: pod.0,
                    memory: pod.1,
                    pods: 1,
                },
                ..PodInfo::default()
            };
            assert_eq!(score(&p, &n), want, "case {i}");
        }
    }
}
