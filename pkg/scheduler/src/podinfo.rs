//! `PodInfo`: everything the plugins need from a Pod, extracted once when the pod is seen so a
//! scheduling attempt never re-reads the API object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, NodeSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm, ResourceRequirements,
    Toleration,
};

use crate::labels::{Labels, NamespaceLabels, Op, Requirement, Selector};
use crate::quantity;

/// Requested or allocatable amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.pods += o.pods;
    }
    fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.pods -= o.pods;
    }
    fn max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
    }
    /// `self += o` (pub for the cache).
    pub fn plus(&mut self, o: &Resources) {
        self.add(o)
    }
    /// `self -= o` (pub for the cache).
    pub fn minus(&mut self, o: &Resources) {
        self.sub(o)
    }
}

/// Upstream's defaults for scoring pods that request nothing (so they still spread).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// 200 MiB, see [`DEFAULT_MILLI_CPU_REQUEST`].
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A host port a pod binds (protocol, host IP, port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// "TCP", "UDP" or "SCTP".
    pub protocol: String,
    /// Host IP; "0.0.0.0" when unset (conflicts with every IP).
    pub ip: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot coexist on one node.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// A compiled pod (anti-)affinity term.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces listed in the term (the pod's own when neither list nor selector is set).
    pub namespaces: Vec<String>,
    /// `namespaceSelector`, ORed with the list; `{}` selects every namespace.
    pub namespace_selector: Option<Selector>,
    /// Pod label selector.
    pub selector: Selector,
    /// Node label that defines the topology domain.
    pub topology_key: String,
    /// Weight for preferred terms; 0 for required ones.
    pub weight: i64,
}

impl AffinityTerm {
    fn compile(term: &PodAffinityTerm, own_ns: &str, weight: i64) -> Self {
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .map(|s| Selector::compile(Some(s)));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(own_ns.to_string());
        }
        Self {
            namespaces,
            namespace_selector,
            selector: Selector::compile(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is selected by this term; `namespaces` supplies the labels of the
    /// pod's namespace (an unknown namespace has none).
    pub fn matches(&self, pod: &PodInfo, namespaces: &NamespaceLabels) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                namespaces
                    .get(&pod.namespace)
                    .map_or_else(|| s.matches(&Labels::new()), |l| s.matches(l))
            });
        in_namespace && self.selector.matches(&pod.labels)
    }
}

/// A compiled topology spread constraint.
#[derive(Debug, Clone)]
pub struct SpreadConstraint {
    /// Maximum permitted skew.
    pub max_skew: i64,
    /// Node label defining domains.
    pub topology_key: String,
    /// True for `DoNotSchedule` (a filter), false for `ScheduleAnyway` (a score).
    pub hard: bool,
    /// Which pods (in the pod's namespace) are counted; `matchLabelKeys` are merged in as
    /// `key In (the incoming pod's value)`.
    pub selector: Selector,
    /// minDomains (hard constraints only): with fewer eligible domains the global minimum
    /// counts as 0.
    pub min_domains: Option<i64>,
    /// nodeAffinityPolicy Honor (default): only nodes matching the pod's node affinity and
    /// selector are domains.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (default Ignore): only nodes whose taints the pod tolerates.
    pub honor_taints: bool,
}

/// A compiled required node selector term (ORed across terms, ANDed within).
#[derive(Debug, Clone, Default)]
pub struct NodeTerm {
    /// matchExpressions over node labels.
    pub expressions: Vec<Requirement>,
    /// matchFields; only `metadata.name` is defined upstream.
    pub fields: Vec<Requirement>,
}

impl NodeTerm {
    fn compile(t: &k8s_openapi::api::core::v1::NodeSelectorTerm) -> Self {
        Self {
            expressions: t
                .match_expressions
                .iter()
                .flatten()
                .map(Requirement::from_node)
                .collect(),
            fields: t
                .match_fields
                .iter()
                .flatten()
                .map(Requirement::from_node)
                .collect(),
        }
    }

    /// An empty term matches nothing (upstream semantics).
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions.iter().all(|r| r.matches(labels))
            && self
                .fields
                .iter()
                .all(|r| r.key == "metadata.name" && r.matches_value(Some(node_name)))
    }
}

/// Everything the scheduler needs from one pod.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    /// "namespace/name".
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (for events).
    pub uid: String,
    /// Labels.
    pub labels: Labels,
    /// Effective requests (init-container max rule, sidecars, overhead); `pods` is 1.
    pub requests: Resources,
    /// Requests with upstream's non-zero defaults, used only for scoring.
    pub non_zero_requests: Resources,
    /// Host ports.
    pub host_ports: Vec<HostPort>,
    /// spec.nodeName (a pending pod may still name a node to request it).
    pub node_name: Option<String>,
    /// spec.nodeSelector.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity terms (ORed); `None` when not set.
    pub required_node_terms: Option<Vec<NodeTerm>>,
    /// Preferred node affinity: (weight, term).
    pub preferred_node_terms: Vec<(i64, NodeTerm)>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Required pod affinity.
    pub affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity.
    pub anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity (weighted).
    pub preferred_affinity: Vec<AffinityTerm>,
    /// Preferred pod anti-affinity (weighted).
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    /// Topology spread constraints.
    pub spread: Vec<SpreadConstraint>,
    /// spec.priority (higher is tried first).
    pub priority: i32,
    /// `spec.preemptionPolicy: Never`: the pod waits instead of evicting others.
    pub preempt_never: bool,
    /// status.nominatedNodeName: where a preemption made (or is making) room for it.
    pub nominated_node: Option<String>,
    /// metadata.deletionTimestamp is set and the pod carries the scheduler's
    /// `DisruptionTarget` (`PreemptionByScheduler`) condition: a preemption victim waiting
    /// for its kubelet (upstream `podTerminatingByPreemption`).
    pub terminating: bool,
    /// status.startTime in Unix seconds (victim ordering); `None` before a kubelet starts it.
    pub start_time: Option<i64>,
    /// Init and regular container images (ImageLocality), normalized as upstream (`:latest`
    /// added when there is no tag); one entry per container, so its length is the count.
    pub images: Vec<String>,
}

fn container_requests(r: Option<&ResourceRequirements>) -> Resources {
    let mut out = Resources::default();
    let Some(r) = r else { return out };
    // A limit without a request implies the request (apiserver defaulting; applied here too
    // in case the object was stored without it).
    let pick = |name: &str| {
        r.requests
            .as_ref()
            .and_then(|m| m.get(name))
            .or_else(|| r.limits.as_ref().and_then(|m| m.get(name)))
    };
    if let Some(q) = pick("cpu") {
        out.milli_cpu = quantity::milli_value(q).unwrap_or(0).max(0);
    }
    if let Some(q) = pick("memory") {
        out.memory = quantity::value(q).unwrap_or(0).max(0);
    }
    out
}

fn sum_containers(cs: &[Container]) -> Resources {
    let mut sum = Resources::default();
    for c in cs {
        sum.add(&container_requests(c.resources.as_ref()));
    }
    sum
}

/// Effective pod requests: max(sum(containers) + sidecars, each init container + the sidecars
/// started before it) + overhead; `pods` = 1.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources {
            pods: 1,
            ..Resources::default()
        };
    };
    let mut req = sum_containers(&spec.containers);
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c.resources.as_ref());
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_max.max(&sidecars);
        } else {
            let mut during = sidecars;
            during.add(&r);
            init_max.max(&during);
        }
    }
    req.add(&sidecars);
    req.max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        if let Some(q) = overhead.get("cpu") {
            req.milli_cpu += quantity::milli_value(q).unwrap_or(0).max(0);
        }
        if let Some(q) = overhead.get("memory") {
            req.memory += quantity::value(q).unwrap_or(0).max(0);
        }
    }
    req.pods = 1;
    req
}

fn preferred_terms(terms: Option<&Vec<PreferredSchedulingTerm>>) -> Vec<(i64, NodeTerm)> {
    terms
        .into_iter()
        .flatten()
        .map(|t| (i64::from(t.weight), NodeTerm::compile(&t.preference)))
        .collect()
}

fn required_terms(sel: Option<&NodeSelector>) -> Option<Vec<NodeTerm>> {
    sel.map(|s| {
        s.node_selector_terms
            .iter()
            .map(NodeTerm::compile)
            .collect()
    })
}

/// Upstream's image name normalization for ImageLocality: a name without a tag or digest
/// gets `:latest`.
pub fn normalized_image(image: &str) -> String {
    // Upstream: append the tag when the last ':' is not after the last '/' (a registry port
    // is not a tag).
    let colon = image.rfind(':');
    if colon.is_some() && colon > image.rfind('/') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

impl PodInfo {
    /// Extracts the scheduling view of a pod.
    pub fn from_pod(pod: &Pod) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let requests = pod_requests(pod);
        let mut non_zero_requests = requests;
        if non_zero_requests.milli_cpu == 0 {
            non_zero_requests.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if non_zero_requests.memory == 0 {
            non_zero_requests.memory = DEFAULT_MEMORY_REQUEST;
        }
        let mut info = PodInfo {
            key: format!("{namespace}/{name}"),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            requests,
            non_zero_requests,
            namespace,
            name,
            ..PodInfo::default()
        };
        if let Some(status) = pod.status.as_ref() {
            info.terminating = pod.metadata.deletion_timestamp.is_some()
                && status.conditions.iter().flatten().any(|c| {
                    c.type_ == "DisruptionTarget"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("PreemptionByScheduler")
                });
            info.nominated_node = status.nominated_node_name.clone().filter(|n| !n.is_empty());
            info.start_time = status.start_time.as_ref().map(|t| t.0.as_second());
        }
        let Some(spec) = pod.spec.as_ref() else {
            return info;
        };
        info.preempt_never = spec.preemption_policy.as_deref() == Some("Never");
        info.images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter_map(|c| c.image.as_deref())
            .map(normalized_image)
            .collect();
        info.node_name = spec.node_name.clone().filter(|n| !n.is_empty());
        info.priority = spec.priority.unwrap_or(0);
        info.node_selector = spec.node_selector.clone().unwrap_or_default();
        info.tolerations = spec.tolerations.clone().unwrap_or_default();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    info.host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        port: hp,
                    });
                }
            }
        }
        if let Some(aff) = spec.affinity.as_ref() {
            if let Some(na) = aff.node_affinity.as_ref() {
                info.required_node_terms = required_terms(
                    na.required_during_scheduling_ignored_during_execution
                        .as_ref(),
                );
                info.preferred_node_terms = preferred_terms(
                    na.preferred_during_scheduling_ignored_during_execution
                        .as_ref(),
                );
            }
            let ns = info.namespace.clone();
            if let Some(pa) = aff.pod_affinity.as_ref() {
                for t in pa
                    .required_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    info.affinity.push(AffinityTerm::compile(t, &ns, 0));
                }
                for w in pa
                    .preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    let t = AffinityTerm::compile(&w.pod_affinity_term, &ns, i64::from(w.weight));
                    info.preferred_affinity.push(t);
                }
            }
            if let Some(pa) = aff.pod_anti_affinity.as_ref() {
                for t in pa
                    .required_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    info.anti_affinity.push(AffinityTerm::compile(t, &ns, 0));
                }
                for w in pa
                    .preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    let t = AffinityTerm::compile(&w.pod_affinity_term, &ns, i64::from(w.weight));
                    info.preferred_anti_affinity.push(t);
                }
            }
        }
        for c in spec.topology_spread_constraints.iter().flatten() {
            let mut selector = Selector::compile(c.label_selector.as_ref());
            if let Selector::Reqs(reqs) = &mut selector {
                for key in c.match_label_keys.iter().flatten() {
                    // Keys the pod does not carry are ignored (upstream).
                    if let Some(v) = info.labels.get(key) {
                        reqs.push(Requirement {
                            key: key.clone(),
                            op: Op::In(vec![v.clone()]),
                        });
                    }
                }
            }
            let hard = c.when_unsatisfiable != "ScheduleAnyway";
            info.spread.push(SpreadConstraint {
                max_skew: i64::from(c.max_skew.max(1)),
                topology_key: c.topology_key.clone(),
                hard,
                selector,
                min_domains: c.min_domains.filter(|_| hard).map(i64::from),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            });
        }
        info
    }

    /// Whether the pod has any inter-pod (anti-)affinity term (required or preferred).
    pub fn has_pod_affinity(&self) -> bool {
        !(self.affinity.is_empty()
            && self.anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(cpu: &str, mem: &str, restart: Option<&str>) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !mem.is_empty() {
            req.insert("memory".to_string(), Quantity(mem.into()));
        }
        Container {
            name: "c".into(),
            restart_policy: restart.map(str::to_string),
            resources: Some(ResourceRequirements {
                requests: Some(req),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_table() {
        type Case = (Vec<Container>, Vec<Container>, i64, i64);
        let cases: Vec<Case> = vec![
            // containers, init containers, want milli cpu, want memory
            (
                vec![container("100m", "128Mi", None)],
                vec![],
                100,
                128 << 20,
            ),
            (
                vec![container("100m", "", None), container("1", "1Gi", None)],
                vec![],
                1100,
                1 << 30,
            ),
            // Init container max rule: the big init container dominates cpu only.
            (
                vec![container("100m", "1Gi", None)],
                vec![container("2", "64Mi", None)],
                2000,
                1 << 30,
            ),
            // A sidecar adds to the running sum.
            (
                vec![container("100m", "", None)],
                vec![container("200m", "", Some("Always"))],
                300,
                0,
            ),
            (vec![container("", "", None)], vec![], 0, 0),
        ];
        for (i, (cs, inits, cpu, mem)) in cases.into_iter().enumerate() {
            let pod = Pod {
                spec: Some(PodSpec {
                    containers: cs,
                    init_containers: Some(inits),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let r = pod_requests(&pod);
            assert_eq!((r.milli_cpu, r.memory, r.pods), (cpu, mem, 1), "case {i}");
        }
    }

    #[test]
    fn limits_imply_requests_and_non_zero_defaults() {
        let mut c = container("", "", None);
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "cpu".to_string(),
                Quantity("500m".into()),
            )])),
            ..Default::default()
        });
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c],
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = PodInfo::from_pod(&pod);
        assert_eq!(info.requests.milli_cpu, 500);
        assert_eq!(info.non_zero_requests.memory, DEFAULT_MEMORY_REQUEST);
    }
}
