//! ImageLocality (score): favours nodes that already hold the pod's container images, by
//! size, scaled by how widely the image is spread over the cluster (so a node is not favoured
//! for an image every node has), as upstream: per image `size × nodes_with_image / nodes`,
//! summed, clamped to [23 MiB, 1000 MiB × containers] and mapped linearly to 0..=100.

use crate::cache::Cache;
use crate::framework::{CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

const MB: i64 = 1024 * 1024;
/// Below this the images are too small to matter (upstream `minThreshold`).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per-container cap (upstream `maxContainerThreshold`).
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Per-attempt spread factor of each of the pod's images (same order as `pod.images`);
/// empty when no node reports images, which makes every score 0.
#[derive(Debug, Default)]
pub struct PreState {
    spread: Vec<f64>,
}

impl PreState {
    /// Looks up how many nodes hold each image.
    pub fn compute(pod: &PodInfo, cache: &Cache) -> Self {
        let total = cache.nodes().len();
        if total == 0 || !cache.has_images() {
            return PreState::default();
        }
        PreState {
            spread: pod
                .images
                .iter()
                .map(|i| cache.image_nodes(i) as f64 / total as f64)
                .collect(),
        }
    }
}

/// Upstream `calculatePriority`.
pub fn priority(sum: i64, containers: usize) -> i64 {
    let containers = i64::try_from(containers).unwrap_or(i64::MAX / MAX_CONTAINER_THRESHOLD);
    let max = MAX_CONTAINER_THRESHOLD.saturating_mul(containers.max(1));
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// Pure core: the node's score for the pod.
pub fn score(st: &PreState, pod: &PodInfo, node: &NodeInfo) -> i64 {
    if st.spread.is_empty() {
        return 0;
    }
    let sum: i64 = pod
        .images
        .iter()
        .zip(&st.spread)
        .filter_map(|(img, spread)| {
            node.images
                .get(img)
                .map(|size| (*size as f64 * spread) as i64)
        })
        .sum();
    priority(sum, pod.images.len())
}

/// The plugin.
pub struct ImageLocality;

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        score(&state.images, pod, node)
    }
    fn skip(&self, state: &CycleState, _: &PodInfo) -> bool {
        // No node reports images: every node scores 0.
        state.images.spread.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn node(name: &str, images: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "images": images}
        }))
        .expect("node json")
    }

    #[test]
    fn score_table() {
        let mut cache = Cache::default();
        // a: a 500 MiB image on half the nodes; b: a 40 MiB image; c: nothing.
        let big = json!([{"names": ["registry:5000/app:1", "registry:5000/app@sha256:ab"],
                          "sizeBytes": 500 * MB}]);
        cache.upsert_node(&node("a", big.clone()));
        cache.upsert_node(&node("a2", big));
        cache.upsert_node(&node(
            "b",
            json!([{"names": ["small:latest"], "sizeBytes": 40 * MB}]),
        ));
        cache.upsert_node(&node("c", json!([])));
        let with = |images: &[&str]| {
            let cs: Vec<_> = images
                .iter()
                .enumerate()
                .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
                .collect();
            pod(json!({"spec": {"containers": cs}}))
        };
        let cases = [
            // 500 MiB × 2/4 nodes = 250 MiB: (250-23)*100/(1000-23) = 23.
            (with(&["registry:5000/app:1"]), [23, 23, 0, 0]),
            // 40 MiB × 1/4 = 10 MiB is under the 23 MiB threshold: 0 everywhere.
            (with(&["small"]), [0, 0, 0, 0]),
            // Two containers double the cap: (250-23)*100/(2000-23) = 11.
            (with(&["registry:5000/app:1", "small"]), [11, 11, 0, 0]),
            // A digest reference matches the digest name; no image: 0.
            (with(&["registry:5000/app@sha256:ab"]), [23, 23, 0, 0]),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let st = PreState::compute(&p, &cache);
            let got: Vec<i64> = cache.nodes().iter().map(|n| score(&st, &p, n)).collect();
            assert_eq!(got, want, "case {i}");
        }
        // A node update that drops the image updates the spread count.
        cache.upsert_node(&node("a2", json!([])));
        assert_eq!(cache.image_nodes("registry:5000/app:1"), 1);
        cache.remove_node("a");
        assert!(!cache.has_images() || cache.image_nodes("registry:5000/app:1") == 0);
    }

    #[test]
    fn normalized_names() {
        use crate::podinfo::normalized_image;
        let cases = [
            ("nginx", "nginx:latest"),
            ("nginx:1.25", "nginx:1.25"),
            ("registry:5000/app", "registry:5000/app:latest"),
            ("registry:5000/app:2", "registry:5000/app:2"),
            ("app@sha256:ab", "app@sha256:ab"),
        ];
        for (input, want) in cases {
            assert_eq!(normalized_image(input), want);
        }
    }
}
