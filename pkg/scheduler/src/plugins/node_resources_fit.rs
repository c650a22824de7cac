//! NodeResourcesFit (filter): the pod's requests must fit in allocatable minus what the
//! pods already placed (bound or assumed) request; pods count against the `pods` resource.

use crate::framework::{CycleState, FilterPlugin, Unfit};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// The plugin.
pub struct NodeResourcesFit;

/// Upstream's reasons, in upstream's order.
const REASONS: [&str; 3] = ["Too many pods", "Insufficient cpu", "Insufficient memory"];

/// The one definition of the check: which of pods, cpu and memory the node lacks.
fn short(pod: &PodInfo, node: &NodeInfo) -> [bool; 3] {
    let (a, r, p) = (&node.allocatable, &node.requested, &pod.requests);
    [
        r.pods + 1 > a.pods,
        p.milli_cpu > 0 && p.milli_cpu > a.milli_cpu - r.milli_cpu,
        p.memory > 0 && p.memory > a.memory - r.memory,
    ]
}

/// Pure core: upstream's reasons in upstream order (pods, cpu, memory); empty when it fits.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    short(pod, node)
        .iter()
        .zip(REASONS)
        .filter(|(lacks, _)| **lacks)
        .map(|(_, reason)| reason.to_string())
        .collect()
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn fits(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Option<bool> {
        Some(short(pod, node) == [false; 3])
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::Resources;

    fn res(cpu: i64, mem: i64, pods: i64) -> Resources {
        Resources {
            milli_cpu: cpu,
            memory: mem,
            pods,
        }
    }

    #[test]
    fn table() {
        let cases: &[(Resources, Resources, Resources, &[&str])] = &[
            // allocatable, requested, pod requests, reasons
            (res(1000, 1000, 10), res(0, 0, 0), res(1000, 1000, 1), &[]),
            (
                res(1000, 1000, 10),
                res(500, 0, 1),
                res(600, 0, 1),
                &["Insufficient cpu"],
            ),
            (
                res(1000, 1000, 10),
                res(0, 900, 1),
                res(0, 101, 1),
                &["Insufficient memory"],
            ),
            (
                res(1000, 1000, 1),
                res(0, 0, 1),
                res(0, 0, 1),
                &["Too many pods"],
            ),
            (
                res(1000, 1000, 1),
                res(1000, 1000, 1),
                res(1, 1, 1),
                &["Too many pods", "Insufficient cpu", "Insufficient memory"],
            ),
            // Zero requests fit even on a full node (except the pods count).
            (res(1000, 1000, 10), res(1000, 1000, 1), res(0, 0, 1), &[]),
        ];
        for (i, (alloc, req, pod_req, want)) in cases.iter().enumerate() {
            let mut n = NodeInfo::with_allocatable("n", alloc.milli_cpu, alloc.memory, alloc.pods);
            n.requested = *req;
            let p = PodInfo {
                requests: *pod_req,
                ..PodInfo::default()
            };
            assert_eq!(insufficient(&p, &n), *want, "case {i}");
            let state = CycleState::default();
            assert_eq!(
                NodeResourcesFit.fits(&state, &p, &n),
                Some(want.is_empty()),
                "case {i}: fits and filter disagree"
            );
        }
    }
}
