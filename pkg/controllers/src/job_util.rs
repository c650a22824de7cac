//! Job helpers: Indexed completion mode (index annotation/label, JOB_COMPLETION_INDEX through
//! the downward API, `status.completedIndexes` intervals) and the pod-failure backoff.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec};
use k8s_openapi::jiff::Timestamp;

/// Annotation and label holding an Indexed job pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// Environment variable the index is exposed as.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Cap of the pod-failure backoff (upstream documents six minutes).
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// The completion index of a pod, from its annotation (or label), if valid.
pub fn pod_index(pod: &Pod, completions: i32) -> Option<i32> {
    let m = &pod.metadata;
    let raw = m
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_KEY))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))?;
    raw.parse::<i32>()
        .ok()
        .filter(|i| (0..completions).contains(i))
}

/// Formats indexes as upstream's interval list: `1,3-5,7`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parses an interval list back (invalid parts are skipped).
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Makes an Indexed pod: index annotation and label, hostname `<job>-<index>`, and
/// JOB_COMPLETION_INDEX from the annotation via the downward API in every container.
pub fn index_pod(pod: &mut Pod, job_name: &str, index: i32) {
    let idx = index.to_string();
    let m = &mut pod.metadata;
    m.annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), idx.clone());
    m.labels
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), idx);
    m.generate_name = Some(format!("{job_name}-{index}-"));
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.hostname = Some(format!("{job_name}-{index}"));
    let env = EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: format!("metadata.annotations['{INDEX_KEY}']"),
            }),
            ..Default::default()
        }),
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        let vars = c.env.get_or_insert_with(Vec::new);
        if !vars.iter().any(|v| v.name == INDEX_ENV) {
            vars.push(env.clone());
        }
    }
}

/// When a pod finished: its containers' latest finishedAt, else its latest condition change,
/// else its creation.
pub fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let st = pod.status.as_ref();
    let terminated = st
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let conditions = st
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .max();
    terminated
        .or(conditions)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Delay before the next pod after `failures` consecutive failures (since the last success):
/// base, 2x base, 4x base ... capped at [`MAX_BACKOFF`].
pub fn backoff_delay(base: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// How long pod creation must still wait: failures after the last success back off from the
/// last failure.
pub fn backoff_remaining(pods: &[&Pod], base: Duration, now: Timestamp) -> Option<Duration> {
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    let last_success = pods
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Succeeded"))
        .filter_map(|p| finish_time(p))
        .max();
    let failures: Vec<Timestamp> = pods
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Failed"))
        .filter_map(|p| finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = failures.iter().max()?;
    let n = u32::try_from(failures.len()).unwrap_or(u32::MAX);
    let delay = backoff_delay(base, n);
    let due = last.checked_add(delay).ok()?;
    let left = Duration::try_from(due.duration_since(now)).ok()?;
    (!left.is_zero()).then_some(left)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_secs(10);
        assert_eq!(backoff_delay(b, 1), Duration::from_secs(10));
        assert_eq!(backoff_delay(b, 2), Duration::from_secs(20));
        assert_eq!(backoff_delay(b, 3), Duration::from_secs(40));
        assert_eq!(backoff_delay(b, 7), MAX_BACKOFF);
        assert_eq!(backoff_delay(b, 60), MAX_BACKOFF);
    }

    #[test]
    fn index_pod_sets_env_annotation_label() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {}, "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap();
        index_pod(&mut pod, "j", 3);
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let env = &c.env.as_ref().unwrap()[0];
        assert_eq!(env.name, INDEX_ENV);
        let f = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(
            f.field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert_eq!(pod_index(&pod, 4), Some(3));
        assert_eq!(pod_index(&pod, 3), None);
        assert_eq!(pod.spec.unwrap().hostname.as_deref(), Some("j-3"));
    }
}
