//! The pod informer's decoding: [`SlimPod`] is a k8s-openapi `Pod` that holds only the fields
//! the scheduler reads, decoded straight from list and watch bodies without allocating the rest
//! (managedFields, annotations, env, volumes, probes, container statuses, ...).
//!
//! Upstream's scheduler decodes whole pods; here the pod watch is the scheduler's busiest input
//! (every pod once from the list, and again from the MODIFIED event its own binding causes),
//! and typed decoding of the full object, `managedFields` above all, was most of its per-pod
//! CPU. Plugin semantics are unchanged: [`crate::podinfo::PodInfo::from_pod`] sees every field
//! it reads (the unit test below pins that), and the queue's "spec or labels changed" check
//! compares slim with slim. Every spec field that may change on a live pod and matters to
//! scheduling (images, tolerations, resources) is kept.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Pod, PodCondition, PodSchedulingGate, PodSpec, PodStatus,
    ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

/// A pod as the scheduler's informer decodes it; `.0` is an ordinary `Pod` with only the
/// scheduling-relevant fields set. Shared, not owned: k8s-openapi's `Pod` is kilobytes of
/// mostly-`None` fields, and the watcher's stream moves each event through several layers;
/// behind an `Arc` each move is a pointer, and the queue keeps the same allocation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlimPod(pub std::sync::Arc<Pod>);

impl k8s_openapi::Resource for SlimPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for SlimPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut std::sync::Arc::make_mut(&mut self.0).metadata
    }
}

impl<'de> Deserialize<'de> for SlimPod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WirePod::deserialize(d)?;
        Ok(SlimPod(std::sync::Arc::new(Pod {
            metadata: w.metadata.unwrap_or_default().into(),
            spec: w.spec.map(Into::into),
            status: w.status.map(Into::into),
        })))
    }
}

// The wire structs name only what is kept; serde skips every other key without allocating.

#[derive(Deserialize)]
struct WirePod {
    metadata: Option<WireMeta>,
    spec: Option<WireSpec>,
    status: Option<WireStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
}

impl From<WireMeta> for ObjectMeta {
    fn from(m: WireMeta) -> Self {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            labels: m.labels,
            deletion_timestamp: m.deletion_timestamp,
            ..ObjectMeta::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireContainer {
    name: Option<String>,
    image: Option<String>,
    resources: Option<ResourceRequirements>,
    ports: Option<Vec<ContainerPort>>,
    restart_policy: Option<String>,
}

impl From<WireContainer> for Container {
    fn from(c: WireContainer) -> Self {
        Container {
            name: c.name.unwrap_or_default(),
            image: c.image,
            resources: c.resources,
            ports: c.ports,
            restart_policy: c.restart_policy,
            ..Container::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpec {
    containers: Option<Vec<WireContainer>>,
    init_containers: Option<Vec<WireContainer>>,
    overhead: Option<BTreeMap<String, Quantity>>,
    node_name: Option<String>,
    scheduler_name: Option<String>,
    priority: Option<i32>,
    preemption_policy: Option<String>,
    node_selector: Option<BTreeMap<String, String>>,
    tolerations: Option<Vec<Toleration>>,
    affinity: Option<Affinity>,
    topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    scheduling_gates: Option<Vec<PodSchedulingGate>>,
}

fn containers(cs: Vec<WireContainer>) -> Vec<Container> {
    cs.into_iter().map(Into::into).collect()
}

impl From<WireSpec> for PodSpec {
    fn from(s: WireSpec) -> Self {
        PodSpec {
            containers: s.containers.map(containers).unwrap_or_default(),
            init_containers: s.init_containers.map(containers),
            overhead: s.overhead,
            node_name: s.node_name,
            scheduler_name: s.scheduler_name,
            priority: s.priority,
            preemption_policy: s.preemption_policy,
            node_selector: s.node_selector,
            tolerations: s.tolerations,
            affinity: s.affinity,
            topology_spread_constraints: s.topology_spread_constraints,
            scheduling_gates: s.scheduling_gates,
            ..PodSpec::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    phase: Option<String>,
    // Kept whole: `mark_unschedulable` writes the list back with one condition replaced.
    conditions: Option<Vec<PodCondition>>,
    nominated_node_name: Option<String>,
    start_time: Option<Time>,
}

impl From<WireStatus> for PodStatus {
    fn from(s: WireStatus) -> Self {
        PodStatus {
            phase: s.phase,
            conditions: s.conditions,
            nominated_node_name: s.nominated_node_name,
            start_time: s.start_time,
            ..PodStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::PodInfo;
    use crate::scheduler::gated;
    use serde_json::json;

    /// A pod using every field the scheduler reads, plus fields it does not.
    fn full() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "a", "tier": "web"},
                "annotations": {"big": "x".repeat(4096)},
                "deletionTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": "rs", "uid": "u0"}],
            },
            "spec": {
                "schedulerName": "default-scheduler",
                "schedulingGates": [{"name": "example.com/wait"}],
                "nodeName": "",
                "priority": 10,
                "preemptionPolicy": "Never",
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                "overhead": {"cpu": "10m", "memory": "1Mi"},
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 3, "preference": {"matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["b"]}]}}]},
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 5, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "a"}},
                                                          "topologyKey": "kubernetes.io/hostname"}}]},
                },
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                    "whenUnsatisfiable": "DoNotSchedule", "matchLabelKeys": ["tier"],
                    "labelSelector": {"matchLabels": {"app": "a"}}}],
                "initContainers": [{"name": "init", "image": "busybox", "restartPolicy": "Always",
                    "resources": {"requests": {"cpu": "200m"}}}],
                "containers": [{"name": "c", "image": "registry:5000/app",
                    "env": [{"name": "E", "value": "v"}],
                    "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                    "livenessProbe": {"httpGet": {"path": "/", "port": 80}}}],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            "status": {
                "phase": "Pending",
                "nominatedNodeName": "n1",
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "DisruptionTarget", "status": "True",
                                "reason": "PreemptionByScheduler", "lastProbeTime": null,
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "containerStatuses": [{"name": "c", "image": "app", "imageID": "", "ready": false,
                                       "restartCount": 0}],
            },
        })
    }

    #[test]
    fn slim_decoding_keeps_every_field_the_scheduler_reads() {
        let full_pod: Pod = serde_json::from_value(full()).expect("full pod");
        let slim: SlimPod = serde_json::from_value(full()).expect("slim pod");
        // The scheduling view is the same whichever way the pod was decoded.
        let a = format!("{:?}", PodInfo::from_pod(&full_pod));
        let b = format!("{:?}", PodInfo::from_pod(&slim.0));
        assert_eq!(a, b);
        assert!(!a.contains("requests: Resources { milli_cpu: 0"));
        // And what scheduler.rs, the queue and the event writers read directly.
        let s = &slim.0;
        let spec = s.spec.as_ref().expect("spec");
        let status = s.status.as_ref().expect("status");
        assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(
            spec.scheduling_gates,
            full_pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduling_gates.clone())
        );
        assert!(gated(s));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(
            status.conditions,
            full_pod.status.and_then(|s| s.conditions)
        );
        // What it skips.
        assert!(s.metadata.managed_fields.is_none() && s.metadata.annotations.is_none());
        assert!(spec.volumes.is_none() && spec.containers[0].env.is_none());
        assert!(status.container_statuses.is_none());
    }

    #[test]
    fn minimal_and_null_fields_decode() {
        let p: SlimPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": null},
            "spec": {"containers": [{"name": "c"}], "nodeName": null},
            "status": null,
        }))
        .expect("minimal pod");
        assert_eq!(p.0.metadata.name.as_deref(), Some("p"));
        assert_eq!(p.0.spec.as_ref().map(|s| s.containers.len()), Some(1));
        let list: kube::core::ObjectList<SlimPod> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"},
            "items": [full(), {"metadata": {"name": "q"}}],
        }))
        .expect("list");
        assert_eq!(list.items.len(), 2);
    }
}
