//! The Pod strategy: defaults (including what upstream's admission plugins add on create),
//! validation, the restricted update rule, the `kubectl get pods` row and selectable fields.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::common::{
    age_cell, arr, boolean, child, col, each_obj, field, int, lookup, name_cell, name_col, s,
    set_default, set_default_with,
};
use super::podspec::{add_default_tolerations, default_pod_spec, qos_class, validate_pod_spec};
use crate::meta::parse_time;
use crate::resource::ResourceInfo;
use crate::strategy::{replace_status, Column, FieldCause, Strategy};

/// Pods (core/v1).
pub struct PodStrategy(pub(crate) &'static ResourceInfo);

/// The fields upstream lets a pod update change, as its Forbidden message lists them.
const UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

impl Strategy for PodStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    /// Pending; defaulting then adds the QoS class computed from the spec (a class the body
    /// claimed is not kept).
    fn reset_status(&self, obj: &mut Value) {
        let mut status = Map::new();
        status.insert("phase".into(), "Pending".into());
        replace_status(obj, Value::Object(status));
    }

    fn default(&self, obj: &mut Value) {
        let Some(root) = obj.as_object_mut() else {
            return;
        };
        if let Some(spec) = child(root, "spec") {
            default_pod_spec(spec);
            set_default(spec, "enableServiceLinks", true.into());
            // Admission plugins upstream (ServiceAccount, Priority, DefaultTolerationSeconds)
            // fill these on create; kubelite has no admission chain, so they live here.
            set_default(spec, "serviceAccountName", "default".into());
            // Only clone the name when it is going to be stored.
            if spec.get("serviceAccount").is_none_or(Value::is_null) {
                if let Some(sa) = spec.get("serviceAccountName").cloned() {
                    set_default(spec, "serviceAccount", sa);
                }
            }
            set_default(spec, "priority", 0.into());
            set_default(spec, "preemptionPolicy", "PreemptLowerPriority".into());
            add_default_tolerations(spec);
            // SetDefaults_Pod: a container's requests default to its limits.
            for key in ["containers", "initContainers"] {
                each_obj(spec, key, default_requests_to_limits);
            }
        }
        let spec = root.get("spec").unwrap_or(&Value::Null);
        let qos = qos_class(spec);
        let gated = !arr(spec, "/schedulingGates").is_empty();
        if let Some(status) = child(root, "status") {
            // `reset_status` has usually set the phase already: build the value only if not.
            set_default_with(status, "phase", || "Pending".into());
            set_default(status, "qosClass", qos.into());
            // Upstream's applySchedulingGatedCondition on create.
            if gated && status.get("conditions").is_none_or(Value::is_null) {
                status.insert(
                    "conditions".into(),
                    serde_json::json!([{
                        "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                        "message": "Scheduling is blocked due to non-empty scheduling gates",
                    }]),
                );
            }
        }
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec")
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        let (Some(new_spec), Some(old_spec)) = (new.get("spec"), old.get("spec")) else {
            return out;
        };
        if munge_allowed(new_spec, old_spec) != *old_spec {
            out.push(FieldCause::forbidden(
                "spec",
                format!("pod updates may not change fields other than {UPDATABLE}"),
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
            col("Status", "string", "The aggregate status of the containers in this pod.", 0),
            col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
            super::common::age_col(),
            col("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
            col("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename", 1),
            col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.", 1),
            col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates", 1),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let summary = summarize(obj);
        let restarts = match summary.last_restart {
            Some(t) if summary.restarts != 0 => {
                format!(
                    "{} ({} ago)",
                    summary.restarts,
                    crate::meta::human_duration(now - t)
                )
            }
            _ => summary.restarts.to_string(),
        };
        let or_none = |v: &str| {
            if v.is_empty() {
                "<none>".to_string()
            } else {
                v.to_string()
            }
        };
        let ip = arr(obj, "/status/podIPs")
            .first()
            .map(|p| s(p, "/ip"))
            .unwrap_or("");
        let ip = if ip.is_empty() {
            s(obj, "/status/podIP")
        } else {
            ip
        };
        vec![
            name_cell(obj),
            Value::from(format!("{}/{}", summary.ready, summary.total)),
            Value::from(summary.reason),
            Value::from(restarts),
            age_cell(obj, now),
            Value::from(or_none(ip)),
            Value::from(or_none(s(obj, "/spec/nodeName"))),
            Value::from(or_none(s(obj, "/status/nominatedNodeName"))),
            Value::from(readiness_gates(obj)),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        match name {
            "metadata.name" => field(obj, "/metadata/name"),
            "metadata.namespace" => field(obj, "/metadata/namespace"),
            "spec.nodeName" => field(obj, "/spec/nodeName"),
            "spec.restartPolicy" => field(obj, "/spec/restartPolicy"),
            "spec.schedulerName" => field(obj, "/spec/schedulerName"),
            "spec.serviceAccountName" => field(obj, "/spec/serviceAccountName"),
            "spec.hostNetwork" => Some(boolean(obj, "/spec/hostNetwork").to_string()),
            "status.phase" => field(obj, "/status/phase"),
            "status.podIP" => {
                let first = arr(obj, "/status/podIPs")
                    .first()
                    .map(|p| s(p, "/ip"))
                    .unwrap_or("");
                Some(
                    if first.is_empty() {
                        s(obj, "/status/podIP")
                    } else {
                        first
                    }
                    .to_string(),
                )
            }
            "status.nominatedNodeName" => field(obj, "/status/nominatedNodeName"),
            _ => None,
        }
    }
}

/// SetDefaults_Pod: a container's missing requests default to its limits. Only the limits
/// that are missing from the requests are cloned (usually none once a pod is defaulted).
fn default_requests_to_limits(c: &mut Map<String, Value>) {
    let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object) else {
        return;
    };
    let requests = match res.get("requests") {
        Some(Value::Object(q)) => Some(q),
        Some(Value::Null) | None => None,
        // A non-object is left for validation to reject, as `child` does.
        Some(_) => return,
    };
    let missing: Vec<(String, Value)> = limits
        .iter()
        .filter(|(k, _)| requests.is_none_or(|q| !q.contains_key(k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Created even when there is nothing to copy, as before.
    if let Some(req) = child(res, "requests") {
        req.extend(missing);
    }
}

/// `new_spec` with every field a pod update may change copied from `old_spec`, so that any
/// remaining difference is a forbidden change.
fn munge_allowed(new_spec: &Value, old_spec: &Value) -> Value {
    let mut m = new_spec.clone();
    for key in ["containers", "initContainers"] {
        let old_list = arr(old_spec, &format!("/{key}"));
        if let Some(list) = m.get_mut(key).and_then(Value::as_array_mut) {
            if list.len() == old_list.len() {
                for (c, o) in list.iter_mut().zip(old_list) {
                    if let (Some(c), Some(img)) = (c.as_object_mut(), o.get("image")) {
                        c.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    let Some(mo) = m.as_object_mut() else {
        return m;
    };
    let restore = |mo: &mut Map<String, Value>, key: &str| match old_spec.get(key) {
        Some(v) => {
            mo.insert(key.into(), v.clone());
        }
        None => {
            mo.remove(key);
        }
    };
    restore(mo, "activeDeadlineSeconds");
    restore(mo, "terminationGracePeriodSeconds");
    // Tolerations may only be added to.
    let old_tol = arr(old_spec, "/tolerations");
    let new_tol = arr(new_spec, "/tolerations");
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        restore(mo, "tolerations");
    }
    // Scheduling gates may only be removed.
    let old_gates = arr(old_spec, "/schedulingGates");
    if arr(new_spec, "/schedulingGates")
        .iter()
        .all(|g| old_gates.contains(g))
    {
        restore(mo, "schedulingGates");
    }
    m
}

/// What upstream's `printPod` derives from a pod's status.
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<DateTime<Utc>>,
}

fn terminated_at(c: &Value) -> Option<DateTime<Utc>> {
    lookup(c, "/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(parse_time)
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn is_restartable_init(spec_inits: &[Value], name: &str) -> bool {
    spec_inits
        .iter()
        .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
}

fn has_condition(obj: &Value, type_: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == type_ && s(c, "/status") == "True")
}

/// Upstream's printPod status logic: the reason shown in the STATUS column, the READY
/// counts and the restart count with the time of the last restart.
fn summarize(pod: &Value) -> PodSummary {
    let inits = arr(pod, "/spec/initContainers");
    let mut total = arr(pod, "/spec/containers").len()
        + inits
            .iter()
            .filter(|c| s(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let phase = s(pod, "/status/phase");
    let mut reason = match s(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr(pod, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let name = s(c, "/name");
        let sidecar = is_restartable_init(inits, name);
        restarts += int(c, "/restartCount");
        last_restart = later(last_restart, terminated_at(c));
        if sidecar {
            sidecar_restarts += int(c, "/restartCount");
            last_sidecar_restart = later(last_sidecar_restart, terminated_at(c));
        }
        let term = lookup(c, "/state/terminated");
        let waiting_reason = s(c, "/state/waiting/reason");
        if term.is_some() && int(c, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && boolean(c, "/started") {
            if boolean(c, "/ready") {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = term {
            reason = match s(t, "/reason") {
                "" if int(t, "/signal") != 0 => format!("Init:Signal:{}", int(t, "/signal")),
                "" => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{}/{}", i, inits.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            last_restart = later(last_restart, terminated_at(c));
            let waiting = s(c, "/state/waiting/reason");
            let term = lookup(c, "/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = term {
                reason = match s(t, "/reason") {
                    "" if int(t, "/signal") != 0 => format!("Signal:{}", int(t, "/signal")),
                    "" => format!("ExitCode:{}", int(t, "/exitCode")),
                    r => r.to_string(),
                };
            } else if boolean(c, "/ready") && lookup(c, "/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = lookup(pod, "/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    // Guard against specs listing fewer containers than statuses report.
    total = total.max(ready);
    PodSummary {
        ready,
        total,
        reason,
        restarts,
        last_restart,
    }
}

fn readiness_gates(pod: &Value) -> String {
    let gates = arr(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = arr(pod, "/status/conditions");
    let true_count = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .find(|c| s(c, "/type") == s(g, "/conditionType"))
                .is_some_and(|c| s(c, "/status") == "True")
        })
        .count();
    format!("{}/{}", true_count, gates.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::strategy_for;
    use serde_json::json;

    fn pods() -> std::sync::Arc<dyn Strategy> {
        strategy_for("", "v1", "pods").expect("pods")
    }

    fn now() -> DateTime<Utc> {
        parse_time("2024-05-01T12:00:00Z").expect("now")
    }

    fn minimal() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}],
                "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "scratch"}]}})
    }

    #[test]
    fn defaults() {
        let mut pod = minimal();
        pods().default(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(spec["priority"], 0);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "timeoutSeconds": 1,
                "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][1]["emptyDir"], json!({}));
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        // Idempotent.
        let again = {
            let mut p = pod.clone();
            pods().default(&mut p);
            p
        };
        assert_eq!(again, pod);
    }

    #[test]
    fn scheduling_gates_add_condition() {
        let mut pod = json!({"metadata": {"name": "g"}, "spec": {"schedulingGates": [{"name": "wait"}], "containers": [{"name": "a", "image": "b"}]}});
        pods().default(&mut pod);
        assert_eq!(pod["status"]["conditions"][0]["reason"], "SchedulingGated");
        assert_eq!(row_of(pod)[2], "SchedulingGated");
    }

    #[test]
    fn tagged_image_and_existing_toleration() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "nginx:1.25",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "tolerations": [{"operator": "Exists"}]}});
        pods().default(&mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(pod["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn validation() {
        let mut good = minimal();
        pods().default(&mut good);
        assert_eq!(pods().validate_create(&good), vec![]);

        let cases = [
            (json!({"spec": {}}), vec!["spec.containers: Required value"]),
            (
                json!({"spec": {"containers": [{"name": "Web", "image": "x"}, {"name": "Web", "image": " "}]}}),
                vec![
                    "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    "spec.containers[1].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    "spec.containers[1].name: Duplicate value: \"Web\"",
                    "spec.containers[1].image: Required value",
                ],
            ),
            (
                json!({"spec": {"restartPolicy": "Sometimes", "dnsPolicy": "Bad",
                    "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000, "protocol": "ICMP"}],
                        "volumeMounts": [{"name": "missing", "mountPath": "/m"}]}]}}),
                vec![
                    "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                    "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                    "spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
                    "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                    "spec.dnsPolicy: Unsupported value: \"Bad\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"",
                ],
            ),
            (
                json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}], "containers": [{"name": "a", "image": "x"}]}}),
                vec!["spec.volumes[1].name: Duplicate value: \"v\""],
            ),
            (
                json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}],
                    "containers": [{"name": "a", "image": "x", "env": [{"value": "1"}],
                        "livenessProbe": {"successThreshold": 2, "httpGet": {"port": 0}, "exec": {"command": ["true"]}},
                        "readinessProbe": {"periodSeconds": -1}}]}}),
                vec![
                    "spec.volumes[0].secret: Forbidden: may not specify more than 1 volume type",
                    "spec.containers[0].env[0].name: Required value",
                    "spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
                    "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                    "spec.containers[0].readinessProbe: Required value: must specify a handler type",
                    "spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                ],
            ),
        ];
        for (pod, want) in cases {
            let got: Vec<String> = pods()
                .validate_create(&pod)
                .iter()
                .map(FieldCause::to_message)
                .collect();
            assert_eq!(got, want, "{pod}");
        }
    }

    #[test]
    fn update_rules() {
        let mut old = minimal();
        pods().default(&mut old);
        let mut image_change = old.clone();
        image_change["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        image_change["spec"]["activeDeadlineSeconds"] = json!(100);
        assert_eq!(pods().validate_update(&image_change, &old), vec![]);

        let mut add_toleration = old.clone();
        if let Some(t) = add_toleration["spec"]["tolerations"].as_array_mut() {
            t.push(json!({"key": "x", "operator": "Exists"}));
        }
        assert_eq!(pods().validate_update(&add_toleration, &old), vec![]);

        let mut forbidden = old.clone();
        forbidden["spec"]["restartPolicy"] = json!("Never");
        let causes = pods().validate_update(&forbidden, &old);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert!(causes[0].message.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ));
    }

    fn row_of(pod: Value) -> Vec<Value> {
        pods().row(&pod, now())
    }

    #[test]
    fn columns_match_upstream() {
        let names: Vec<&str> = pods().columns().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let cols = pods().columns();
        assert_eq!(
            (cols[0].format, cols[5].priority, cols[4].priority),
            ("name", 1, 0)
        );
        assert_eq!(row_of(minimal()).len(), cols.len());
    }

    #[test]
    fn running_pod_row() {
        let pod = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
        assert_eq!(
            row_of(pod),
            vec![
                json!("web"),
                json!("2/2"),
                json!("Running"),
                json!("0"),
                json!("5m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn crash_loop_row() {
        let pod = json!({"metadata": {"name": "bad", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running",
                "containerStatuses": [{"name": "a", "ready": false, "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}}]}});
        let row = row_of(pod);
        assert_eq!(row[1], "0/1");
        assert_eq!(row[2], "CrashLoopBackOff");
        assert_eq!(row[3], "5 (2m ago)");
        assert_eq!(row[4], "120m");
    }

    #[test]
    fn status_reasons() {
        let base = |status: Value| json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}, "status": status});
        let cases = [
            (
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}}),
                "Pending",
            ),
            (
                base(
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                "Init:0/1",
            ),
            (
                base(
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 2}}}]}),
                ),
                "Init:ExitCode:2",
            ),
            (
                base(
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
                ),
                "Init:ErrImagePull",
            ),
            (
                base(
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                "ContainerCreating",
            ),
            (
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded",
                "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "Completed",
            ),
            (
                json!({"metadata": {"name": "p", "deletionTimestamp": "2024-05-01T11:59:00Z"}, "spec": {"containers": [{"name": "a"}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}}),
                "Terminating",
            ),
            (
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
                "SchedulingGated",
            ),
        ];
        for (pod, want) in cases {
            assert_eq!(row_of(pod.clone())[2], want, "{pod}");
        }
    }

    #[test]
    fn selectable_fields() {
        let pod = json!({"spec": {"nodeName": "n1", "restartPolicy": "Always"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}});
        let p = pods();
        assert_eq!(p.field_value(&pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(
            p.field_value(&pod, "status.phase").as_deref(),
            Some("Running")
        );
        assert_eq!(
            p.field_value(&pod, "status.podIP").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            p.field_value(&pod, "spec.hostNetwork").as_deref(),
            Some("false")
        );
        assert_eq!(
            p.field_value(&pod, "status.nominatedNodeName").as_deref(),
            Some("")
        );
        assert_eq!(p.field_value(&pod, "spec.containers"), None);
        assert!(p.has_generation());
    }
}
