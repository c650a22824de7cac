//! Pure helpers of the Deployment controller: template hashing, surge/unavailable arithmetic,
//! revisions and conditions.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::util::now;

/// Label carrying the template hash on ReplicaSets and pods.
pub const HASH_LABEL: &str = "pod-template-hash";
/// Revision annotation on Deployments and ReplicaSets.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Desired replicas of the owning deployment, recorded on ReplicaSets.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge of the owning deployment, recorded on ReplicaSets.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations never copied from a Deployment to its ReplicaSets.
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// Whether a deployment annotation is copied onto its ReplicaSets.
pub fn copy_annotation(key: &str) -> bool {
    !SKIP_COPY.contains(&key)
}

/// FNV-32a of the template's JSON (plus the collision count), safe-encoded like upstream's
/// `rand.SafeEncodeString(fmt.Sprint(hash))`.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    safe_encode(&h.to_string())
}

/// Maps each byte onto consonants and digits so the result never spells words.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The template without the hash label, for comparing a deployment's template to an RS's.
pub fn strip_hash(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    let mut v = serde_json::to_value(t).unwrap_or_default();
    // An emptied label map and an absent one are the same template.
    if v["metadata"]["labels"]
        .as_object()
        .is_some_and(|m| m.is_empty())
    {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("labels");
        }
    }
    v
}

/// Resolves an IntOrString against `total`, rounding percentages up or down.
pub fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let owned;
    let v = match value {
        Some(v) => v,
        None => {
            owned = IntOrString::String(default.to_string());
            &owned
        }
    };
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = pct * i64::from(total);
            let r = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(r).unwrap_or(0)
        }
    }
}

/// (maxSurge, maxUnavailable) for a rolling update; both zero is not allowed, so unavailable
/// becomes 1 then, as upstream does.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ru = spec
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), replicas, true, "25%");
    let unavailable = resolve(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
        "25%",
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The revision annotation of an object (0 when missing or unparsable).
pub fn revision(annotations: Option<&std::collections::BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The RS's spec.replicas.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Returns a condition of `type_` from the deployment status.
pub fn get_condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// A fresh condition stamped now.
pub fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

/// Sets `cond` in `conds`, keeping lastTransitionTime when the status does not change and
/// leaving the list alone when nothing but timestamps would change.
pub fn set_condition(conds: &mut Vec<DeploymentCondition>, mut cond: DeploymentCondition) {
    if let Some(existing) = conds.iter().find(|c| c.type_ == cond.type_) {
        if existing.status == cond.status && existing.reason == cond.reason {
            return;
        }
        if existing.status == cond.status {
            cond.last_transition_time = existing.last_transition_time.clone();
        }
    }
    conds.retain(|c| c.type_ != cond.type_);
    conds.push(cond);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounding_matches_upstream() {
        let pct = IntOrString::String("25%".into());
        assert_eq!(resolve(Some(&pct), 10, true, "25%"), 3);
        assert_eq!(resolve(Some(&pct), 10, false, "25%"), 2);
        assert_eq!(resolve(Some(&IntOrString::Int(4)), 10, false, "25%"), 4);
        assert_eq!(resolve(None, 1, true, "25%"), 1);
        assert_eq!(resolve(None, 1, false, "25%"), 0);
    }

    #[test]
    fn hash_is_stable_safe_and_changes_with_collisions() {
        let t = PodTemplateSpec::default();
        let a = template_hash(&t, None);
        assert_eq!(a, template_hash(&t, None));
        assert_ne!(a, template_hash(&t, Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(safe_encode("0123"), "4567");
    }
}
