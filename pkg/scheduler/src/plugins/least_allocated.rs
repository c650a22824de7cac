//! NodeResourcesFit's default LeastAllocated score: prefer nodes with the most free cpu and
//! memory after placing the pod (non-zero requests so empty pods still spread).

use crate::framework::{CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// The plugin.
pub struct LeastAllocated;

fn free_fraction(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

/// Pure core: mean over cpu and memory of the free share, 0..=100.
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let cpu = free_fraction(
        node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let mem = free_fraction(
        node.non_zero_requested.memory + pod.non_zero_requests.memory,
        node.allocatable.memory,
    );
    (cpu + mem) / 2
}

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
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
        // (node alloc cpu, mem), (already requested cpu, mem), (pod cpu, mem), want
        let cases = [
            ((4000, 4000), (0, 0), (1000, 1000), 75),
            ((4000, 4000), (2000, 0), (1000, 1000), 50),
            ((4000, 4000), (4000, 4000), (1000, 1000), 0),
            ((0, 0), (0, 0), (1000, 1000), 0),
            ((1000, 2000), (0, 0), (500, 500), 62),
        ];
        for (i, (alloc, req, pod, want)) in cases.into_iter().enumerate() {
            let mut n = NodeInfo::with_allocatable("n", alloc.0, alloc.1, 10);
            n.non_zero_requested = Resources {
                milli_cpu: req.0,
                memory: req.1,
                pods: 0,
            };
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
