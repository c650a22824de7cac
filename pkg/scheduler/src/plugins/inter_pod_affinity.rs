//! InterPodAffinity: required pod affinity / anti-affinity (including the anti-affinity of
//! pods already placed, which is symmetric) as a filter; preferred terms as a score.
//!
//! Everything cluster-wide is gathered once per attempt in [`PreState`] (which topology
//! domains hold matching pods), so the per-node check is a few hash lookups.

use std::collections::{HashMap, HashSet};

use crate::framework::{min_max_normalize, CycleState, FilterPlugin, ScorePlugin, Unfit};
use crate::labels::NamespaceLabels;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Reason: an existing pod's anti-affinity forbids the incoming pod.
pub const EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// Reason: the pod's required affinity is not satisfied.
pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Reason: the pod's required anti-affinity is violated.
pub const ANTI: &str = "node(s) didn't match pod anti-affinity rules";

/// topology key -> values.
type Domains = HashMap<String, HashSet<String>>;

/// Per-attempt precomputation.
#[derive(Debug, Default)]
pub struct PreState {
    existing_anti: Domains,
    affinity: Vec<HashSet<String>>,
    affinity_matches_nothing_but_self: bool,
    anti: Vec<HashSet<String>>,
    scores: HashMap<String, HashMap<String, i64>>,
}

impl PreState {
    /// No placed pod's required anti-affinity term matches the incoming pod.
    pub fn no_existing_anti(&self) -> bool {
        self.existing_anti.is_empty()
    }

    /// Gathers domains over all nodes (no namespace labels known).
    pub fn compute<'a>(pod: &PodInfo, nodes: impl Iterator<Item = &'a NodeInfo>) -> Self {
        Self::compute_in(pod, nodes, &NamespaceLabels::new())
    }

    /// Gathers domains over all nodes; `ns` resolves terms' namespaceSelectors.
    pub fn compute_in<'a>(
        pod: &PodInfo,
        nodes: impl Iterator<Item = &'a NodeInfo>,
        ns: &NamespaceLabels,
    ) -> Self {
        let mut st = PreState {
            affinity: vec![HashSet::new(); pod.affinity.len()],
            anti: vec![HashSet::new(); pod.anti_affinity.len()],
            ..PreState::default()
        };
        let incoming = pod.has_pod_affinity();
        for node in nodes {
            if node.pods_with_affinity == 0 && !incoming {
                continue;
            }
            for existing in &node.pods {
                if existing.key == pod.key {
                    continue;
                }
                if existing.has_pod_affinity() {
                    for t in existing.anti_affinity.iter().filter(|t| t.matches(pod, ns)) {
                        if let Some(v) = node.labels.get(&t.topology_key) {
                            st.existing_anti
                                .entry(t.topology_key.clone())
                                .or_default()
                                .insert(v.clone());
                        }
                    }
                    for t in existing
                        .preferred_affinity
                        .iter()
                        .filter(|t| t.matches(pod, ns))
                    {
                        st.add_score(node, &t.topology_key, t.weight);
                    }
                    for t in existing
                        .preferred_anti_affinity
                        .iter()
                        .filter(|t| t.matches(pod, ns))
                    {
                        st.add_score(node, &t.topology_key, -t.weight);
                    }
                }
                if !incoming {
                    continue;
                }
                for (i, t) in pod.affinity.iter().enumerate() {
                    if let Some(v) = node.labels.get(&t.topology_key) {
                        if t.matches(existing, ns) {
                            st.affinity[i].insert(v.clone());
                        }
                    }
                }
                for (i, t) in pod.anti_affinity.iter().enumerate() {
                    if let Some(v) = node.labels.get(&t.topology_key) {
                        if t.matches(existing, ns) {
                            st.anti[i].insert(v.clone());
                        }
                    }
                }
                for t in pod
                    .preferred_affinity
                    .iter()
                    .filter(|t| t.matches(existing, ns))
                {
                    st.add_score(node, &t.topology_key, t.weight);
                }
                for t in pod
                    .preferred_anti_affinity
                    .iter()
                    .filter(|t| t.matches(existing, ns))
                {
                    st.add_score(node, &t.topology_key, -t.weight);
                }
            }
        }
        // The first pod of a group that selects itself may go anywhere its topology keys
        // exist (otherwise such a group could never start).
        st.affinity_matches_nothing_but_self = st.affinity.iter().all(HashSet::is_empty)
            && pod.affinity.iter().all(|t| t.matches(pod, ns));
        st
    }

    fn add_score(&mut self, node: &NodeInfo, key: &str, w: i64) {
        if let Some(v) = node.labels.get(key) {
            *self
                .scores
                .entry(key.to_string())
                .or_default()
                .entry(v.clone())
                .or_default() += w;
        }
    }
}

/// Pure core of the filter (upstream order: affinity, anti-affinity, existing pods'
/// anti-affinity).
pub fn fits(st: &PreState, pod: &PodInfo, node: &NodeInfo) -> Result<(), &'static str> {
    if !pod.affinity.is_empty() {
        let ok = if st.affinity_matches_nothing_but_self {
            pod.affinity
                .iter()
                .all(|t| node.labels.contains_key(&t.topology_key))
        } else {
            pod.affinity.iter().zip(&st.affinity).all(|(t, domains)| {
                node.labels
                    .get(&t.topology_key)
                    .is_some_and(|v| domains.contains(v))
            })
        };
        if !ok {
            return Err(AFFINITY);
        }
    }
    for (t, domains) in pod.anti_affinity.iter().zip(&st.anti) {
        if node
            .labels
            .get(&t.topology_key)
            .is_some_and(|v| domains.contains(v))
        {
            return Err(ANTI);
        }
    }
    for (key, values) in &st.existing_anti {
        if node.labels.get(key).is_some_and(|v| values.contains(v)) {
            return Err(EXISTING_ANTI);
        }
    }
    Ok(())
}

/// Pure core of the score: summed weights of the node's domains.
pub fn score(st: &PreState, node: &NodeInfo) -> i64 {
    st.scores
        .iter()
        .filter_map(|(key, by_value)| node.labels.get(key).and_then(|v| by_value.get(v)))
        .sum()
}

/// The plugin.
pub struct InterPodAffinity;

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        fits(&state.affinity, pod, node).map_err(|r| vec![r.to_string()])
    }
    fn skip(&self, state: &CycleState, pod: &PodInfo) -> bool {
        // No required term of its own and no placed pod's anti-affinity that matches it.
        pod.affinity.is_empty() && pod.anti_affinity.is_empty() && state.affinity.no_existing_anti()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        score(&state.affinity, node)
    }
    fn normalize(&self, scores: &mut [i64]) {
        min_max_normalize(scores)
    }
    fn skip(&self, state: &CycleState, _: &PodInfo) -> bool {
        // No preferred term of the pod or of a placed pod matched: every node scores 0.
        state.affinity.scores.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn placed(
        name: &str,
        labels: serde_json::Value,
        spec_extra: serde_json::Value,
    ) -> Arc<PodInfo> {
        let mut spec = json!({"containers": [{"name": "c"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), spec_extra.as_object()) {
            s.extend(e.clone());
        }
        Arc::new(pod(
            json!({"metadata": {"name": name, "labels": labels}, "spec": spec}),
        ))
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn cluster() -> Vec<NodeInfo> {
        let mut a = node("a", &[("zone", "z1"), ("kubernetes.io/hostname", "a")]);
        let b = node("b", &[("zone", "z1"), ("kubernetes.io/hostname", "b")]);
        let c = node("c", &[("zone", "z2"), ("kubernetes.io/hostname", "c")]);
        let d = node("d", &[]);
        a.add_pod(placed("db", json!({"app": "db"}), json!({})));
        vec![a, b, c, d]
    }

    fn results(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Result<(), &'static str>> {
        let st = PreState::compute(p, nodes.iter());
        nodes.iter().map(|n| fits(&st, p, n)).collect()
    }

    #[test]
    fn filter_table() {
        let aff =
            |t| json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}});
        let anti =
            |t| json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}});
        let with = |labels: serde_json::Value, affinity: serde_json::Value| {
            pod(json!({"metadata": {"labels": labels},
                       "spec": {"containers": [{"name": "c"}], "affinity": affinity}}))
        };
        let cases = [
            // Affinity to db by zone: a and b share z1.
            (
                with(json!({}), aff(term("db", "zone"))),
                vec![Ok(()), Ok(()), Err(AFFINITY), Err(AFFINITY)],
            ),
            // Affinity to db by hostname: only a.
            (
                with(json!({}), aff(term("db", "kubernetes.io/hostname"))),
                vec![Ok(()), Err(AFFINITY), Err(AFFINITY), Err(AFFINITY)],
            ),
            // Anti-affinity to db by zone: not z1.
            (
                with(json!({}), anti(term("db", "zone"))),
                vec![Err(ANTI), Err(ANTI), Ok(()), Ok(())],
            ),
            // Affinity to a group nobody runs yet, matching itself: anywhere with the key.
            (
                with(json!({"app": "web"}), aff(term("web", "zone"))),
                vec![Ok(()), Ok(()), Ok(()), Err(AFFINITY)],
            ),
            // Affinity to a group nobody runs, not matching itself: nowhere.
            (
                with(json!({}), aff(term("web", "zone"))),
                vec![Err(AFFINITY); 4],
            ),
            // No terms at all.
            (with(json!({}), json!({})), vec![Ok(()); 4]),
        ];
        let nodes = cluster();
        for (i, (p, want)) in cases.into_iter().enumerate() {
            assert_eq!(results(&p, &nodes), want, "case {i}");
        }
    }

    #[test]
    fn namespaces_and_namespace_selector_table() {
        let mut a = node("a", &[("kubernetes.io/hostname", "a")]);
        a.add_pod(Arc::new(pod(
            json!({"metadata": {"name": "db", "namespace": "other",
            "labels": {"app": "db"}}}),
        )));
        let nodes = [a, node("b", &[("kubernetes.io/hostname", "b")])];
        let ns = NamespaceLabels::from([
            (
                "other".to_string(),
                crate::plugins::testutil::labels(&[("team", "a")]),
            ),
            (
                "default".to_string(),
                crate::plugins::testutil::labels(&[("team", "b")]),
            ),
        ]);
        let with = |extra: serde_json::Value| {
            let mut t = json!({"labelSelector": {"matchLabels": {"app": "db"}},
                               "topologyKey": "kubernetes.io/hostname"});
            if let (Some(o), Some(e)) = (t.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            pod(
                json!({"spec": {"containers": [{"name": "c"}], "affinity": {"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [t]}}}}),
            )
        };
        let (ok, no) = (Ok(()), Err(AFFINITY));
        let cases = [
            // Own namespace only: db (in "other") is invisible.
            (with(json!({})), vec![no, no]),
            (with(json!({"namespaces": ["other"]})), vec![ok, no]),
            (with(json!({"namespaceSelector": {}})), vec![ok, no]),
            (
                with(json!({"namespaceSelector": {"matchLabels": {"team": "a"}}})),
                vec![ok, no],
            ),
            (
                with(json!({"namespaceSelector": {"matchLabels": {"team": "b"}}})),
                vec![no, no],
            ),
            // List and selector are ORed.
            (
                with(json!({"namespaces": ["other"],
                            "namespaceSelector": {"matchLabels": {"team": "b"}}})),
                vec![ok, no],
            ),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let st = PreState::compute_in(&p, nodes.iter(), &ns);
            let got: Vec<_> = nodes.iter().map(|n| fits(&st, &p, n)).collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let mut nodes = cluster();
        nodes[2].add_pod(placed(
            "lonely",
            json!({"app": "lonely"}),
            json!({"affinity": anti(term("web", "zone"))}),
        ));
        let web = pod(json!({"metadata": {"labels": {"app": "web"}}}));
        assert_eq!(
            results(&web, &nodes),
            vec![Ok(()), Ok(()), Err(EXISTING_ANTI), Ok(())]
        );
        fn anti(t: serde_json::Value) -> serde_json::Value {
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}})
        }
    }

    #[test]
    fn preferred_score_table() {
        let nodes = cluster();
        let p = pod(json!({"spec": {"containers": [{"name": "c"}], "affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": term("db", "zone")}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 4, "podAffinityTerm": term("db", "kubernetes.io/hostname")}]}}}}));
        let st = PreState::compute(&p, nodes.iter());
        let mut s: Vec<i64> = nodes.iter().map(|n| score(&st, n)).collect();
        assert_eq!(s, vec![6, 10, 0, 0]);
        min_max_normalize(&mut s);
        assert_eq!(s, vec![60, 100, 0, 0]);
    }
}
