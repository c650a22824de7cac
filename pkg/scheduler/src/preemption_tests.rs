//! Table-driven tests of victim selection, node choice and eligibility.

use super::*;
use crate::algorithm::{schedule, Selection};
use crate::config::PluginWeights;
use crate::plugins::testutil::pod;
use k8s_openapi::api::core::v1::Node;
use serde_json::json;

fn node(name: &str, cpu: &str, tainted: bool) -> Node {
    let mut v = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}
    });
    if tainted {
        v["spec"] = json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]});
    }
    serde_json::from_value(v).expect("node json")
}

/// A pod requesting `cpu` at `priority`; `extra` goes into the spec.
fn prio(name: &str, cpu: &str, priority: i32, extra: serde_json::Value) -> Arc<PodInfo> {
    let mut spec = json!({"priority": priority,
        "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    Arc::new(pod(json!({"metadata": {"name": name}, "spec": spec})))
}

/// (pod name, cpu, priority) of a placed pod.
type Placed<'a> = (&'a str, &'a str, i32);

/// Nodes of 1 cpu each with the given pods placed on them.
fn cluster(layout: &[(&str, &[Placed])]) -> Cache {
    let mut c = Cache::default();
    for (n, pods) in layout {
        c.upsert_node(&node(n, "1", false));
        for (p, cpu, pr) in *pods {
            c.add_bound_pod(prio(p, cpu, *pr, json!({})), n);
        }
    }
    c
}

fn names(victims: &[Arc<PodInfo>]) -> Vec<&str> {
    victims.iter().map(|v| v.name.as_str()).collect()
}

fn run(cache: &Cache, p: &PodInfo) -> Outcome {
    preempt(&Framework::new(&PluginWeights::default()), cache, p)
}

#[test]
fn node_choice_table() {
    type Layout<'a> = Vec<(&'a str, &'a [Placed<'a>])>;
    let cases: Vec<(Layout, &str, &str, Vec<&str>)> = vec![
        // Lowest highest-victim priority wins.
        (
            vec![("a", &[("a1", "600m", 10)]), ("b", &[("b1", "600m", 5)])],
            "500m",
            "b",
            vec!["b1"],
        ),
        // Same highest priority: lowest priority sum (3 + 0 beats 3 + 3).
        (
            vec![
                ("b", &[("b1", "500m", 3), ("b2", "500m", 3)]),
                ("a", &[("a1", "500m", 3), ("a2", "500m", 0)]),
            ],
            "900m",
            "a",
            vec!["a1", "a2"],
        ),
        // Same highest priority: one victim costs less than two (the shifted sum).
        (
            vec![
                ("a", &[("a1", "400m", 0), ("a2", "400m", 0)]),
                ("b", &[("b1", "900m", 0)]),
            ],
            "900m",
            "b",
            vec!["b1"],
        ),
        // Reprieve: only as many victims as needed; the most important are kept.
        (
            vec![(
                "a",
                &[("low", "200m", 0), ("mid", "200m", 1), ("top", "500m", 2)],
            )],
            "500m",
            "a",
            vec!["mid", "low"],
        ),
        // Pods of equal or higher priority are never victims.
        (
            vec![("a", &[("eq", "900m", 100)]), ("b", &[("b1", "900m", 3)])],
            "500m",
            "b",
            vec!["b1"],
        ),
    ];
    for (i, (layout, cpu, want_node, want_victims)) in cases.into_iter().enumerate() {
        let cache = cluster(&layout);
        let p = prio("high", cpu, 100, json!({}));
        match run(&cache, &p) {
            Outcome::Preempt(c) => {
                assert_eq!(
                    (c.node.as_str(), names(&c.victims)),
                    (want_node, want_victims),
                    "case {i}"
                );
            }
            other => panic!("case {i}: {other:?}"),
        }
    }
}

#[test]
fn no_candidate_messages() {
    let mut cache = cluster(&[("a", &[("same", "900m", 100)])]);
    cache.upsert_node(&node("t", "1", true));
    let p = prio("high", "500m", 100, json!({}));
    let out = run(&cache, &p);
    assert_eq!(
        out.message().as_deref(),
        Some(
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling."
        )
    );
    // The full FitError text as upstream prints it.
    let fw = Framework::new(&PluginWeights::default());
    let mut err = schedule(&fw, &cache, &p, 0, &mut Selection::default()).expect_err("full");
    err.post_filter = out.message();
    assert_eq!(
        err.message(),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}. \
         preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
         1 Preemption is not helpful for scheduling."
    );
}

#[test]
fn eligibility() {
    let mut cache = cluster(&[("a", &[("low", "900m", 0)])]);
    let never = prio("n", "500m", 100, json!({"preemptionPolicy": "Never"}));
    assert!(matches!(
        run(&cache, &never),
        Outcome::NotEligible(POLICY_NEVER)
    ));
    let p = prio("high", "500m", 100, json!({}));
    let Outcome::Preempt(c) = run(&cache, &p) else {
        panic!("expected a candidate");
    };
    cache.nominate(p.clone(), &c.node);
    // The victim is now terminating: the preemptor waits instead of preempting again.
    let mut dying = (*c.victims[0]).clone();
    dying.terminating = true;
    cache.add_bound_pod(Arc::new(dying), "a");
    assert!(matches!(run(&cache, &p), Outcome::NotEligible(TERMINATING)));
}

#[test]
fn nominated_room_is_kept_for_the_preemptor() {
    let fw = Framework::new(&PluginWeights::default());
    let mut cache = cluster(&[("a", &[])]);
    let high = prio("high", "600m", 100, json!({}));
    cache.nominate(high.clone(), "a");
    // A lower-priority pod may not take the nominated room ...
    let low = prio("low", "600m", 0, json!({}));
    let err = schedule(&fw, &cache, &low, 0, &mut Selection::default()).expect_err("held");
    assert_eq!(
        err.message(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    // ... a higher one may, and the nominated pod itself fits there.
    let higher = prio("higher", "600m", 200, json!({}));
    assert_eq!(
        schedule(&fw, &cache, &higher, 0, &mut Selection::default()).as_deref(),
        Ok("a")
    );
    assert_eq!(
        schedule(&fw, &cache, &high, 0, &mut Selection::default()).as_deref(),
        Ok("a")
    );
}

#[test]
fn pick_prefers_latest_start_among_highest_victims() {
    let started = |name: &str, priority: i32, start: Option<i64>| {
        let mut p = (*prio(name, "100m", priority, json!({}))).clone();
        p.start_time = start;
        Arc::new(p)
    };
    let cand = |node: &str, victims: Vec<Arc<PodInfo>>| Candidate {
        node: node.into(),
        victims,
    };
    let cases = [
        (
            vec![
                cand("old", vec![started("x", 1, Some(100))]),
                cand("new", vec![started("y", 1, Some(200))]),
            ],
            "new",
        ),
        // Not started yet counts as "now", the latest.
        (
            vec![
                cand("started", vec![started("x", 1, Some(100))]),
                cand("pending", vec![started("y", 1, None)]),
            ],
            "pending",
        ),
        // Negative priorities still sum to a larger cost per victim.
        (
            vec![
                cand("two", vec![started("x", -5, None), started("y", -5, None)]),
                cand("one", vec![started("z", -5, None)]),
            ],
            "one",
        ),
        // Full tie: the first found.
        (
            vec![
                cand("first", vec![started("x", 0, Some(1))]),
                cand("second", vec![started("y", 0, Some(1))]),
            ],
            "first",
        ),
    ];
    for (i, (cands, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            pick(cands).map(|c| c.node).as_deref(),
            Some(want),
            "case {i}"
        );
    }
}

#[test]
fn victims_with_anti_affinity_are_evicted_when_they_block() {
    // A low-priority pod whose anti-affinity rejects the preemptor is a victim even though
    // cpu is plentiful.
    let mut cache = cluster(&[("a", &[])]);
    let anti = json!({"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "web"}},
            "topologyKey": "kubernetes.io/hostname"}]}}});
    cache.add_bound_pod(prio("loner", "100m", 0, anti), "a");
    let web = Arc::new(pod(
        json!({"metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"priority": 10, "containers": [{"name": "c"}]}}),
    ));
    let Outcome::Preempt(c) = run(&cache, &web) else {
        panic!("expected a candidate");
    };
    assert_eq!(names(&c.victims), vec!["loner"]);
}
