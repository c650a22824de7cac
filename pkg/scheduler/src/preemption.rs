//! DefaultPreemption (upstream's PostFilter), the pure part: when a pod fits nowhere, find a
//! node where evicting lower-priority pods makes it fit, and the smallest set of victims there.
//!
//! Per node (upstream `SelectVictimsOnNode`): remove every pod of lower priority; if the pod
//! still does not fit, the node is no candidate. Otherwise add the potential victims back, most
//! important first, keeping each one whose return still lets the pod fit ("reprieve"); the
//! rest are the victims. Among candidates the node is picked as upstream's
//! `pickOneNodeForPreemption`: fewest PodDisruptionBudget violations (kubelite serves no PDBs,
//! so always 0), lowest highest-victim priority, lowest sum of victim priorities, fewest
//! victims, latest start among the highest-priority victims, then the first found.
//! The API side (deleting victims, setting `status.nominatedNodeName`) is in `scheduler.rs`.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cache::Cache;
use crate::framework::{CycleState, Framework};
use crate::nodeinfo::NodeInfo;
use crate::plugins::{
    inter_pod_affinity, node_affinity, node_name, node_unschedulable, pod_topology_spread,
};
use crate::podinfo::PodInfo;

/// Reason for a node where removing pods cannot help (upstream wording).
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Reason for a node where even removing every lower-priority pod is not enough.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// The pod may not preempt (`preemptionPolicy: Never`).
pub const POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
/// The pod already preempted and its victims are still terminating.
pub const TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// A node and the pods to evict there.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Pods to delete, most important first.
    pub victims: Vec<Arc<PodInfo>>,
}

/// What preemption decided.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Evict these pods; the preemptor is nominated to the node.
    Preempt(Candidate),
    /// The pod may not preempt now (one of the `not eligible ...` messages).
    NotEligible(&'static str),
    /// No node would fit even after evictions: node count and reason histogram.
    NoCandidate {
        /// Nodes considered.
        num_nodes: usize,
        /// reason -> nodes.
        reasons: BTreeMap<&'static str, usize>,
    },
}

impl Outcome {
    /// The text upstream appends to the FitError message ("preemption: ..."); `None` when a
    /// candidate was found (upstream then reports the plain filter message).
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::Preempt(_) => None,
            Outcome::NotEligible(m) => Some(format!("preemption: {m}")),
            Outcome::NoCandidate { num_nodes, reasons } => {
                let mut parts: Vec<String> =
                    reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                parts.sort();
                let mut msg = format!("preemption: 0/{num_nodes} nodes are available");
                if !parts.is_empty() {
                    msg.push_str(": ");
                    msg.push_str(&parts.join(", "));
                }
                msg.push('.');
                Some(msg)
            }
        }
    }
}

/// Whether a filter reason is one upstream marks `UnschedulableAndUnresolvable`: evicting
/// pods cannot change it, so the node is not worth a dry run.
pub fn unresolvable(reason: &str) -> bool {
    reason == node_unschedulable::REASON
        || reason == node_name::REASON
        || reason == node_affinity::REASON
        || reason == pod_topology_spread::MISSING_LABEL
        || reason == inter_pod_affinity::AFFINITY
        || reason.starts_with("node(s) had untolerated taint")
}

/// How many candidates to collect before choosing (upstream: 10% of nodes, at least 100).
pub fn num_candidates(num_nodes: usize) -> usize {
    (num_nodes / 10).max(100).min(num_nodes)
}

/// Upstream `MoreImportantPod`: higher priority, then started earlier (unstarted = now).
fn importance(p: &PodInfo) -> (i32, Reverse<i64>) {
    (p.priority, Reverse(p.start_time.unwrap_or(i64::MAX)))
}

/// Upstream `PodEligibleToPreemptOthers`.
fn ineligible(
    framework: &Framework,
    state: &CycleState,
    cache: &Cache,
    pod: &PodInfo,
) -> Option<&'static str> {
    let nominated = cache
        .nominated_node_of(&pod.key)
        .or(pod.nominated_node.as_deref())?;
    let node = cache.node(nominated)?;
    // A nominated node that can never fit again (e.g. tainted since) allows a new try.
    if let Err(why) = framework.filter(state, pod, node) {
        if why.iter().any(|r| unresolvable(r)) {
            return None;
        }
    }
    node.pods
        .iter()
        .any(|p| p.terminating && p.priority < pod.priority)
        .then_some(TERMINATING)
}

/// Runs preemption for a pod that fit nowhere.
pub fn preempt(framework: &Framework, cache: &Cache, pod: &PodInfo) -> Outcome {
    if pod.preempt_never {
        return Outcome::NotEligible(POLICY_NEVER);
    }
    let nodes = cache.nodes();
    let state = CycleState::for_cache(pod, cache);
    if let Some(msg) = ineligible(framework, &state, cache, pod) {
        return Outcome::NotEligible(msg);
    }
    let want = num_candidates(nodes.len());
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    // The same PreFilter skips as the scheduling pass: this loop also visits every node.
    let active = framework.active_filters(&state, pod);
    for node in nodes {
        let Err(why) = Framework::filter_active(&active, &state, pod, node) else {
            // Fits now (capacity freed meanwhile): the next attempt will simply place it.
            continue;
        };
        if why.iter().any(|r| unresolvable(r)) {
            *reasons.entry(NOT_HELPFUL).or_default() += 1;
            continue;
        }
        match victims_on(framework, &state, pod, node, cache) {
            Some(victims) => {
                candidates.push(Candidate {
                    node: node.name.clone(),
                    victims,
                });
                if candidates.len() >= want {
                    break;
                }
            }
            None => *reasons.entry(NO_VICTIMS).or_default() += 1,
        }
    }
    match pick(candidates) {
        Some(c) => Outcome::Preempt(c),
        None => Outcome::NoCandidate {
            num_nodes: nodes.len(),
            reasons,
        },
    }
}

/// Upstream `SelectVictimsOnNode` (without PDBs): the minimal victims on `node`, or `None`.
pub fn victims_on(
    framework: &Framework,
    base: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    cache: &Cache,
) -> Option<Vec<Arc<PodInfo>>> {
    let nodes = cache.nodes();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for v in &potential {
        trial.remove_pod(&v.key);
    }
    // Affinity and spread state counts pods cluster-wide; it must see the trial node when
    // the pod or a pod on this node uses them. Otherwise the per-attempt state is exact.
    let recompute = pod.has_pod_affinity() || !pod.spread.is_empty() || node.pods_with_affinity > 0;
    let fits = |trial: &NodeInfo| {
        if recompute {
            let view = nodes
                .iter()
                .map(|n| if n.name == trial.name { trial } else { n });
            let state = CycleState::compute_in(pod, view, cache.namespaces());
            framework.filter(&state, pod, trial).is_ok()
        } else {
            framework.filter(base, pod, trial).is_ok()
        }
    };
    if !fits(&trial) {
        return None;
    }
    potential.sort_by_key(|p| Reverse(importance(p)));
    let mut victims = Vec::new();
    for v in potential {
        trial.add_pod(v.clone());
        if !fits(&trial) {
            trial.remove_pod(&v.key);
            victims.push(v);
        }
    }
    Some(victims)
}

/// Upstream `pickOneNodeForPreemption` (PDB violations are always 0 here).
pub fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.into_iter().min_by_key(|c| {
        let highest = c.victims.first().map_or(i32::MIN, |v| v.priority);
        let sum: i64 = c
            .victims
            .iter()
            // Shifted so negative priorities still add up to a larger "cost" per victim.
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .map(|v| v.start_time.unwrap_or(i64::MAX))
            .min()
            .unwrap_or(i64::MAX);
        (highest, sum, c.victims.len(), Reverse(earliest))
    })
}

#[cfg(test)]
#[path = "preemption_tests.rs"]
mod tests;
