//! Scheduler configuration: the `Config` passed to [`crate::run`] and the small YAML file
//! (`--config`) that sets plugin weights.

use std::sync::Arc;
use std::time::Duration;

use kubelite_leaderelection::LeaseConfig;
use serde::Deserialize;

use crate::metrics::Metrics;

/// Score plugin weights (upstream defaults); 0 disables a score plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginWeights {
    /// LeastAllocated.
    #[serde(rename = "NodeResourcesFit")]
    pub node_resources_fit: i64,
    /// Balanced cpu/memory utilisation.
    #[serde(rename = "NodeResourcesBalancedAllocation")]
    pub node_resources_balanced_allocation: i64,
    /// Preferred node affinity.
    #[serde(rename = "NodeAffinity")]
    pub node_affinity: i64,
    /// PreferNoSchedule taints.
    #[serde(rename = "TaintToleration")]
    pub taint_toleration: i64,
    /// Preferred inter-pod affinity.
    #[serde(rename = "InterPodAffinity")]
    pub inter_pod_affinity: i64,
    /// ScheduleAnyway spread constraints.
    #[serde(rename = "PodTopologySpread")]
    pub pod_topology_spread: i64,
    /// Nodes that already hold the pod's images (node.status.images).
    #[serde(rename = "ImageLocality")]
    pub image_locality: i64,
}

impl Default for PluginWeights {
    fn default() -> Self {
        Self {
            node_resources_fit: 1,
            node_resources_balanced_allocation: 1,
            node_affinity: 2,
            taint_toleration: 3,
            inter_pod_affinity: 2,
            pod_topology_spread: 2,
            image_locality: 1,
        }
    }
}

/// The `--config` file.
///
/// ```yaml
/// pluginWeights:
///   NodeResourcesFit: 1
///   TaintToleration: 3
/// percentageOfNodesToScore: 0   # 0 = adaptive, as upstream
/// maxInFlightBinds: 64
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// Score weights.
    pub plugin_weights: PluginWeights,
    /// Percentage of nodes to find feasible before scoring; 0 = adaptive.
    pub percentage_of_nodes_to_score: u32,
    /// Bound on concurrent binding requests; 0 = default.
    pub max_in_flight_binds: usize,
}

impl FileConfig {
    /// Parses the YAML file contents.
    pub fn from_yaml(text: &str) -> Result<Self, crate::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| crate::Error::Config(e.to_string()))
    }
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Namespace of the Lease (upstream: kube-system).
    pub namespace: String,
    /// Lease name (upstream: kube-scheduler).
    pub lease_name: String,
    /// This instance's identity (upstream: hostname + uuid).
    pub identity: String,
    /// Timings.
    pub lease: LeaseConfig,
}

/// Everything [`crate::run`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pods with this spec.schedulerName are ours.
    pub scheduler_name: String,
    /// Score weights.
    pub weights: PluginWeights,
    /// Percentage of nodes to find feasible before scoring; 0 = adaptive (upstream formula).
    pub percentage_of_nodes_to_score: u32,
    /// Bound on concurrent binding requests.
    pub max_in_flight_binds: usize,
    /// `None` runs without leader election.
    pub leader_election: Option<LeaderElection>,
    /// Metrics sink (share it with the /metrics endpoint).
    pub metrics: Arc<Metrics>,
    /// First retry delay of an unschedulable pod (doubles per attempt).
    pub initial_backoff: Duration,
    /// Retry delay cap.
    pub max_backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scheduler_name: "default-scheduler".into(),
            weights: PluginWeights::default(),
            percentage_of_nodes_to_score: 0,
            max_in_flight_binds: 64,
            leader_election: None,
            metrics: Arc::new(Metrics::default()),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Applies a parsed `--config` file.
    pub fn apply_file(&mut self, file: &FileConfig) {
        self.weights = file.plugin_weights;
        self.percentage_of_nodes_to_score = file.percentage_of_nodes_to_score;
        if file.max_in_flight_binds > 0 {
            self.max_in_flight_binds = file.max_in_flight_binds;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_table() {
        let cases = [
            ("", Some(FileConfig::default())),
            (
                "pluginWeights:\n  TaintToleration: 5\n  NodeAffinity: 0\nmaxInFlightBinds: 8\n",
                Some(FileConfig {
                    plugin_weights: PluginWeights {
                        taint_toleration: 5,
                        node_affinity: 0,
                        ..PluginWeights::default()
                    },
                    max_in_flight_binds: 8,
                    ..FileConfig::default()
                }),
            ),
            ("pluginWeights:\n  Bogus: 1\n", None),
            ("nope: 1\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(FileConfig::from_yaml(text).ok(), want, "{text:?}");
        }
    }
}
