//! PodTopologySpread: `DoNotSchedule` constraints as a filter (skew = matching pods in the
//! node's domain + 1 - the minimum over domains must not exceed maxSkew) and
//! `ScheduleAnyway` constraints as a score (fewer matching pods in the domain is better).
//! Only nodes that pass the pod's node affinity/selector count as domains (upstream default
//! `nodeAffinityPolicy: Honor`; `Ignore` counts all), and with `nodeTaintsPolicy: Honor` only
//! nodes whose taints the pod tolerates. `minDomains` treats the global minimum as 0 while
//! fewer domains exist; `matchLabelKeys` narrows the selector to the pod's own values.

use std::collections::HashMap;

use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Unfit, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::plugins::{node_affinity, taint_toleration};
use crate::podinfo::PodInfo;

/// Reason: skew exceeded.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Reason: the node lacks the topology key.
pub const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Per-constraint counts.
#[derive(Debug, Default)]
struct Counts {
    by_value: HashMap<String, i64>,
    min: i64,
    self_match: i64,
}

/// Per-attempt precomputation: one entry per constraint, same order as `pod.spread`.
#[derive(Debug, Default)]
pub struct PreState {
    constraints: Vec<Counts>,
}

impl PreState {
    /// Counts matching pods per domain.
    pub fn compute<'a>(pod: &PodInfo, nodes: impl Iterator<Item = &'a NodeInfo>) -> Self {
        if pod.spread.is_empty() {
            return PreState::default();
        }
        let mut constraints: Vec<Counts> = pod
            .spread
            .iter()
            .map(|c| Counts {
                self_match: i64::from(c.selector.matches(&pod.labels)),
                ..Counts::default()
            })
            .collect();
        for node in nodes {
            // Evaluated lazily: most nodes need neither check.
            let mut affinity_ok = None;
            for (c, counts) in pod.spread.iter().zip(constraints.iter_mut()) {
                let Some(v) = node.labels.get(&c.topology_key) else {
                    continue;
                };
                if c.honor_node_affinity
                    && !*affinity_ok.get_or_insert_with(|| node_affinity::fits(pod, node))
                {
                    continue;
                }
                if c.honor_taints && taint_toleration::untolerated(pod, node).is_some() {
                    continue;
                }
                let n = node
                    .pods
                    .iter()
                    .filter(|p| p.namespace == pod.namespace && p.key != pod.key)
                    .filter(|p| c.selector.matches(&p.labels))
                    .count();
                *counts.by_value.entry(v.clone()).or_default() += i64::try_from(n).unwrap_or(0);
            }
        }
        for (c, counts) in pod.spread.iter().zip(constraints.iter_mut()) {
            counts.min = counts.by_value.values().copied().min().unwrap_or(0);
            let domains = i64::try_from(counts.by_value.len()).unwrap_or(i64::MAX);
            if c.min_domains.is_some_and(|m| domains < m) {
                // Too few domains: as if the missing ones existed with no matching pods.
                counts.min = 0;
            }
        }
        PreState { constraints }
    }
}

/// Pure core of the filter.
pub fn fits(st: &PreState, pod: &PodInfo, node: &NodeInfo) -> Result<(), &'static str> {
    for (c, counts) in pod.spread.iter().zip(&st.constraints) {
        if !c.hard {
            continue;
        }
        let Some(v) = node.labels.get(&c.topology_key) else {
            return Err(MISSING_LABEL);
        };
        let here = counts.by_value.get(v).copied().unwrap_or(0);
        if here + counts.self_match - counts.min > c.max_skew {
            return Err(REASON);
        }
    }
    Ok(())
}

/// Pure core of the score: matching pods in the node's domains over the soft constraints;
/// `None` when the node lacks a soft constraint's key.
pub fn raw_score(st: &PreState, pod: &PodInfo, node: &NodeInfo) -> Option<i64> {
    let mut total = 0;
    for (c, counts) in pod.spread.iter().zip(&st.constraints) {
        if c.hard {
            continue;
        }
        let v = node.labels.get(&c.topology_key)?;
        total += counts.by_value.get(v).copied().unwrap_or(0);
    }
    Some(total)
}

/// The plugin.
pub struct PodTopologySpread;

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        fits(&state.spread, pod, node).map_err(|r| vec![r.to_string()])
    }
    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        // Only DoNotSchedule constraints filter.
        pod.spread.iter().all(|c| !c.hard)
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        // -1 marks "node lacks the key"; it normalizes to 0.
        raw_score(&state.spread, pod, node).unwrap_or(-1)
    }
    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        // Without ScheduleAnyway constraints every node scores the same (upstream's PreScore
        // skips too).
        pod.spread.iter().all(|c| c.hard)
    }
    fn normalize(&self, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s >= 0);
        let max = valid.clone().max().unwrap_or(0);
        let min = valid.min().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == min {
                MAX_NODE_SCORE
            } else {
                (max - *s) * MAX_NODE_SCORE / (max - min)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn web(name: &str) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name, "labels": {"app": "web"}}}),
        ))
    }

    fn spreading(when: &str, max_skew: i32, extra: serde_json::Value) -> PodInfo {
        let mut spec = json!({"containers": [{"name": "c"}], "topologySpreadConstraints": [{
            "maxSkew": max_skew, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        pod(json!({"metadata": {"name": "new", "labels": {"app": "web"}}, "spec": spec}))
    }

    /// z1: a (2 web pods), z2: b (0), z3: c (1), d has no zone label.
    fn cluster() -> Vec<NodeInfo> {
        let mut a = node("a", &[("zone", "z1")]);
        a.add_pod(web("w1"));
        a.add_pod(web("w2"));
        let b = node("b", &[("zone", "z2")]);
        let mut c = node("c", &[("zone", "z3"), ("gpu", "yes")]);
        c.add_pod(web("w3"));
        vec![a, b, c, node("d", &[])]
    }

    #[test]
    fn filter_table() {
        let nodes = cluster();
        let cases = [
            (
                spreading("DoNotSchedule", 1, json!({})),
                vec![Err(REASON), Ok(()), Err(REASON), Err(MISSING_LABEL)],
            ),
            (
                spreading("DoNotSchedule", 2, json!({})),
                vec![Err(REASON), Ok(()), Ok(()), Err(MISSING_LABEL)],
            ),
            (
                spreading("DoNotSchedule", 3, json!({})),
                vec![Ok(()), Ok(()), Ok(()), Err(MISSING_LABEL)],
            ),
            // Soft constraints never filter.
            (spreading("ScheduleAnyway", 1, json!({})), vec![Ok(()); 4]),
            // Only nodes matching the pod's selector are domains: z3 alone, min is 1, so c
            // (rejected in case 0 where empty z2 made min 0) now fits. a and b count as
            // empty here; NodeAffinity rejects them before this filter runs.
            (
                spreading("DoNotSchedule", 1, json!({"nodeSelector": {"gpu": "yes"}})),
                vec![Ok(()), Ok(()), Ok(()), Err(MISSING_LABEL)],
            ),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let st = PreState::compute(&p, nodes.iter());
            let got: Vec<_> = nodes.iter().map(|n| fits(&st, &p, n)).collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn policies_min_domains_and_match_label_keys_table() {
        let rev = |name: &str, r: &str| {
            Arc::new(pod(json!({"metadata": {"name": name,
                "labels": {"app": "web", "rev": r}}})))
        };
        // z1: a (a rev-1 pod), z2: b (tainted, empty), z3: c (a rev-2 pod), d: no zone.
        let mut a = node("a", &[("zone", "z1")]);
        a.add_pod(rev("r1", "1"));
        let mut b = node("b", &[("zone", "z2")]);
        b.taints.push(
            serde_json::from_value(json!({"key": "k", "effect": "NoSchedule"})).expect("taint"),
        );
        let mut c = node("c", &[("zone", "z3")]);
        c.add_pod(rev("r2", "2"));
        let nodes = [a, b, c, node("d", &[])];
        let hard = |extra: serde_json::Value| {
            let mut c = json!({"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "web"}}});
            if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            pod(
                json!({"metadata": {"name": "new", "labels": {"app": "web", "rev": "1"}},
                "spec": {"containers": [{"name": "c"}], "topologySpreadConstraints": [c]}}),
            )
        };
        let (r, m) = (Err(REASON), Err(MISSING_LABEL));
        let cases = [
            // Counts 1/0/1, min 0: a and c are at the skew limit.
            (hard(json!({})), vec![r, Ok(()), r, m]),
            // matchLabelKeys rev: c's rev-2 pod does not count.
            (
                hard(json!({"matchLabelKeys": ["rev"]})),
                vec![r, Ok(()), Ok(()), m],
            ),
            // nodeTaintsPolicy Honor: tainted b is no domain, min becomes 1.
            (
                hard(json!({"nodeTaintsPolicy": "Honor"})),
                vec![Ok(()), Ok(()), Ok(()), m],
            ),
            // ... unless minDomains asks for more domains than the two left: min is 0 again.
            (
                hard(json!({"nodeTaintsPolicy": "Honor", "minDomains": 3})),
                vec![r, Ok(()), r, m],
            ),
            (
                hard(json!({"nodeTaintsPolicy": "Honor", "minDomains": 2})),
                vec![Ok(()), Ok(()), Ok(()), m],
            ),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let st = PreState::compute(&p, nodes.iter());
            let got: Vec<_> = nodes.iter().map(|n| fits(&st, &p, n)).collect();
            assert_eq!(got, want, "case {i}");
        }
        // nodeAffinityPolicy Ignore: the gpu-only selector no longer limits domains, so empty
        // z2 (b) keeps the minimum at 0 and c (1 pod) is rejected at maxSkew 1.
        let p = spreading("DoNotSchedule", 1, json!({"nodeSelector": {"gpu": "yes"}}));
        let mut ignoring = p.clone();
        ignoring.spread[0].honor_node_affinity = false;
        let nodes = cluster();
        let honor = PreState::compute(&p, nodes.iter());
        let ignore = PreState::compute(&ignoring, nodes.iter());
        assert_eq!(fits(&honor, &p, &nodes[2]), Ok(()));
        assert_eq!(fits(&ignore, &ignoring, &nodes[2]), Err(REASON));
    }

    #[test]
    fn soft_score_prefers_emptier_domains() {
        let nodes = cluster();
        let p = spreading("ScheduleAnyway", 1, json!({}));
        let cs = CycleState::compute(&p, nodes.iter());
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| PodTopologySpread.score(&cs, &p, n))
            .collect();
        assert_eq!(s, vec![2, 0, 1, -1]);
        PodTopologySpread.normalize(&mut s);
        assert_eq!(s, vec![0, 100, 50, 0]);
    }
}
