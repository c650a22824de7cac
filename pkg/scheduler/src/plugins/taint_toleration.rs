//! TaintToleration: filter on untolerated NoSchedule/NoExecute taints; score nodes by the
//! number of untolerated PreferNoSchedule taints (fewer is better).

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{default_normalize, CycleState, FilterPlugin, ScorePlugin, Unfit};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// The plugin.
pub struct TaintToleration;

/// Whether a toleration tolerates a taint (upstream `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let exists = t.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        // An empty key with Exists tolerates everything.
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
}

/// Whether the filter looks at `taint`: NoSchedule or NoExecute.
pub fn is_hard(taint: &Taint) -> bool {
    taint.effect == "NoSchedule" || taint.effect == "NoExecute"
}

/// Whether the score looks at `taint`: PreferNoSchedule.
pub fn is_preference(taint: &Taint) -> bool {
    taint.effect == "PreferNoSchedule"
}

/// Pure core: the first untolerated NoSchedule/NoExecute taint, if any.
pub fn untolerated<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    node.taints
        .iter()
        .find(|taint| is_hard(taint) && !pod.tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Number of PreferNoSchedule taints not tolerated by the pod's PreferNoSchedule (or
/// effect-less) tolerations.
pub fn intolerable_prefer_count(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let count = node
        .taints
        .iter()
        .filter(|taint| is_preference(taint))
        .filter(|taint| {
            !pod.tolerations.iter().any(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                ) && tolerates(t, taint)
            })
        })
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match untolerated(pod, node) {
            None => Ok(()),
            Some(t) => Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )]),
        }
    }
    /// No node has a NoSchedule or NoExecute taint.
    fn skip(&self, state: &CycleState, _: &PodInfo) -> bool {
        !state.node_traits.hard_taints
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        intolerable_prefer_count(pod, node)
    }
    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true)
    }
    /// No node has a PreferNoSchedule taint: every node would score 0, normalized to 100.
    fn skip(&self, state: &CycleState, _: &PodInfo) -> bool {
        !state.node_traits.prefer_taints
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};
    use serde_json::json;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("toleration json")
    }

    #[test]
    fn tolerates_table() {
        let t = taint("gpu", "true", "NoSchedule");
        let cases = [
            (
                json!({"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "gpu", "value": "true"}), true),
            (json!({"key": "gpu", "value": "false"}), false),
            (json!({"key": "gpu", "operator": "Exists"}), true),
            (
                json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "other", "operator": "Exists"}), false),
        ];
        for (i, (v, want)) in cases.into_iter().enumerate() {
            assert_eq!(tolerates(&tol(v), &t), want, "case {i}");
        }
    }

    #[test]
    fn filter_table_and_message() {
        let cases = [
            (vec![], json!([]), None),
            (
                vec![taint("k", "v", "NoSchedule")],
                json!([]),
                Some("node(s) had untolerated taint {k: v}"),
            ),
            (
                vec![taint("k", "v", "NoExecute")],
                json!([]),
                Some("node(s) had untolerated taint {k: v}"),
            ),
            (vec![taint("k", "v", "PreferNoSchedule")], json!([]), None),
            (
                vec![taint("k", "v", "NoSchedule")],
                json!([{"key": "k", "operator": "Exists"}]),
                None,
            ),
            (
                vec![taint("k", "", "NoSchedule")],
                json!([]),
                Some("node(s) had untolerated taint {k: }"),
            ),
        ];
        for (i, (taints, tols, want)) in cases.into_iter().enumerate() {
            let mut n = node("n", &[]);
            n.taints = taints;
            let p = pod(json!({"spec": {"containers": [{"name": "c"}], "tolerations": tols}}));
            let got = TaintToleration.filter(&CycleState::default(), &p, &n).err();
            assert_eq!(got, want.map(|s| vec![s.to_string()]), "case {i}");
        }
    }

    #[test]
    fn score_prefers_fewer_untolerated_prefer_taints() {
        let mut a = node("a", &[]);
        a.taints = vec![
            taint("x", "", "PreferNoSchedule"),
            taint("y", "", "PreferNoSchedule"),
        ];
        let mut b = node("b", &[]);
        b.taints = vec![taint("x", "", "PreferNoSchedule")];
        let c = node("c", &[]);
        let p = pod(
            json!({"spec": {"containers": [{"name": "c"}], "tolerations": [
            {"key": "y", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
        );
        let st = CycleState::default();
        let mut s: Vec<i64> = [&a, &b, &c]
            .iter()
            .map(|n| TaintToleration.score(&st, &p, n))
            .collect();
        assert_eq!(s, vec![1, 1, 0]);
        TaintToleration.normalize(&mut s);
        assert_eq!(s, vec![0, 0, 100]);
    }
}
