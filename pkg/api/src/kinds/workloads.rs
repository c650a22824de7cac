//! The pod-template controllers (Deployment, ReplicaSet, ReplicationController, DaemonSet,
//! StatefulSet): they share template defaulting and the selector-vs-labels rule, and differ
//! in their own defaults, printer columns and update rules.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::common::{
    age_cell, age_col, col, containers_images, field, format_label_selector, format_labels,
    go_label_selector, go_string_map, int, invalid_raw, name_cell, name_col, non_negative,
    path_mut, s, selector_is_empty, selector_matches, selector_string, set_default,
    CONTAINERS_DESC, IMAGES_DESC,
};
use super::podspec::{default_template, validate_pod_spec};
use crate::meta::validate_labels;
use crate::resource::ResourceInfo;
use crate::strategy::{Column, FieldCause, Strategy};

/// Which workload kind a [`WorkloadStrategy`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Deployment,
    ReplicaSet,
    ReplicationController,
    DaemonSet,
    StatefulSet,
}

/// The strategy of one pod-template controller kind.
pub struct WorkloadStrategy {
    pub(crate) info: &'static ResourceInfo,
    pub(crate) kind: Workload,
}

const SELECTOR_DESC: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
const MISMATCH: &str = "`selector` does not match template `labels`";

impl WorkloadStrategy {
    fn has_replicas(&self) -> bool {
        self.kind != Workload::DaemonSet
    }

    /// apps/v1 label selectors: required, non-empty, matching the template, immutable.
    fn validate_label_selector(&self, obj: &Value, out: &mut Vec<FieldCause>) {
        let template_labels = obj.pointer("/spec/template/metadata/labels");
        match obj.pointer("/spec/selector").filter(|v| !v.is_null()) {
            None => out.push(FieldCause::required("spec.selector")),
            Some(sel) => {
                out.extend(super::common::validate_label_selector(sel, "spec.selector"));
                if selector_is_empty(sel) {
                    out.push(invalid_raw(
                        "spec.selector",
                        &go_label_selector(sel),
                        "empty selector is invalid for deployment",
                    ));
                } else if !selector_matches(sel, template_labels) {
                    out.push(invalid_raw(
                        "spec.template.metadata.labels",
                        &go_string_map(template_labels),
                        MISMATCH,
                    ));
                }
            }
        }
    }

    /// core/v1 ReplicationController selectors: a plain label map.
    fn validate_map_selector(&self, obj: &Value, out: &mut Vec<FieldCause>) {
        let sel = obj.pointer("/spec/selector").and_then(Value::as_object);
        let template_labels = obj.pointer("/spec/template/metadata/labels");
        match sel {
            None => out.push(FieldCause::required("spec.selector")),
            Some(m) if m.is_empty() => out.push(FieldCause::required("spec.selector")),
            Some(m) => {
                out.extend(validate_labels(
                    obj.pointer("/spec/selector"),
                    "spec.selector",
                ));
                let matches = m.iter().all(|(k, v)| {
                    template_labels
                        .and_then(|l| l.get(k))
                        .and_then(Value::as_str)
                        == v.as_str()
                });
                if !matches {
                    out.push(invalid_raw(
                        "spec.template.metadata.labels",
                        &go_string_map(template_labels),
                        MISMATCH,
                    ));
                }
            }
        }
    }
}

impl Strategy for WorkloadStrategy {
    fn info(&self) -> &ResourceInfo {
        self.info
    }

    fn default(&self, obj: &mut Value) {
        default_template(obj);
        if self.kind == Workload::ReplicationController {
            default_rc_selector(obj);
        }
        let Some(spec) = path_mut(obj, &["spec"]) else {
            return;
        };
        if self.has_replicas() {
            set_default(spec, "replicas", 1.into());
        }
        match self.kind {
            Workload::Deployment => {
                set_default(spec, "revisionHistoryLimit", 10.into());
                set_default(spec, "progressDeadlineSeconds", 600.into());
                if let Some(strategy) = super::common::child(spec, "strategy") {
                    set_default(strategy, "type", "RollingUpdate".into());
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        if let Some(ru) = super::common::child(strategy, "rollingUpdate") {
                            set_default(ru, "maxUnavailable", "25%".into());
                            set_default(ru, "maxSurge", "25%".into());
                        }
                    }
                }
            }
            Workload::DaemonSet => {
                set_default(spec, "revisionHistoryLimit", 10.into());
                if let Some(strategy) = super::common::child(spec, "updateStrategy") {
                    set_default(strategy, "type", "RollingUpdate".into());
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        if let Some(ru) = super::common::child(strategy, "rollingUpdate") {
                            set_default(ru, "maxUnavailable", 1.into());
                            set_default(ru, "maxSurge", 0.into());
                        }
                    }
                }
            }
            Workload::StatefulSet => {
                set_default(spec, "revisionHistoryLimit", 10.into());
                set_default(spec, "podManagementPolicy", "OrderedReady".into());
                if let Some(strategy) = super::common::child(spec, "updateStrategy") {
                    set_default(strategy, "type", "RollingUpdate".into());
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        if let Some(ru) = super::common::child(strategy, "rollingUpdate") {
                            set_default(ru, "partition", 0.into());
                        }
                    }
                }
                if let Some(p) = super::common::child(spec, "persistentVolumeClaimRetentionPolicy")
                {
                    set_default(p, "whenDeleted", "Retain".into());
                    set_default(p, "whenScaled", "Retain".into());
                }
            }
            Workload::ReplicaSet | Workload::ReplicationController => {}
        }
    }

    /// Deployments also count annotation changes: upstream bumps their generation because
    /// annotations are copied to the ReplicaSets.
    fn spec_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
            || (self.kind == Workload::Deployment
                && new.pointer("/metadata/annotations") != old.pointer("/metadata/annotations"))
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        if self.has_replicas() {
            non_negative(obj, "/spec/replicas", "spec.replicas", &mut out);
        }
        non_negative(
            obj,
            "/spec/minReadySeconds",
            "spec.minReadySeconds",
            &mut out,
        );
        non_negative(
            obj,
            "/spec/revisionHistoryLimit",
            "spec.revisionHistoryLimit",
            &mut out,
        );
        if self.kind == Workload::ReplicationController {
            self.validate_map_selector(obj, &mut out);
        } else {
            self.validate_label_selector(obj, &mut out);
        }
        match obj.pointer("/spec/template").filter(|t| !t.is_null()) {
            None => out.push(FieldCause::required("spec.template")),
            Some(t) => {
                out.extend(validate_labels(
                    t.pointer("/metadata/labels"),
                    "spec.template.metadata.labels",
                ));
                let ps = t.get("spec").unwrap_or(&Value::Null);
                out.extend(validate_pod_spec(ps, "spec.template.spec"));
                if let Some(ads) = ps.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
                    out.push(FieldCause::invalid(
                        "spec.template.spec.activeDeadlineSeconds",
                        ads,
                        "activeDeadlineSeconds in ReplicaSet is not Supported",
                    ));
                }
                let rp = s(ps, "/restartPolicy");
                if !rp.is_empty() && rp != "Always" {
                    out.push(FieldCause::not_supported(
                        "spec.template.spec.restartPolicy",
                        &Value::from(rp),
                        &["Always"],
                    ));
                }
            }
        }
        match self.kind {
            Workload::Deployment => validate_deployment_strategy(obj, &mut out),
            Workload::StatefulSet => {
                let p = s(obj, "/spec/podManagementPolicy");
                if !p.is_empty() && p != "OrderedReady" && p != "Parallel" {
                    out.push(FieldCause::not_supported(
                        "spec.podManagementPolicy",
                        &Value::from(p),
                        &["OrderedReady", "Parallel"],
                    ));
                }
            }
            Workload::DaemonSet => {
                let t = s(obj, "/spec/updateStrategy/type");
                if !t.is_empty() && t != "RollingUpdate" && t != "OnDelete" {
                    out.push(FieldCause::not_supported(
                        "spec.updateStrategy.type",
                        &Value::from(t),
                        &["OnDelete", "RollingUpdate"],
                    ));
                }
            }
            _ => {}
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        if self.kind != Workload::ReplicationController {
            let (n, o) = (new.pointer("/spec/selector"), old.pointer("/spec/selector"));
            if n != o {
                let shown = n.map(go_label_selector).unwrap_or_else(|| "null".into());
                out.push(invalid_raw("spec.selector", &shown, "field is immutable"));
            }
        }
        if self.kind == Workload::StatefulSet {
            let strip = |v: &Value| {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(k);
                    }
                }
                spec
            };
            if strip(new) != strip(old) {
                out.push(FieldCause::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        let wide = |with_selector: bool| {
            let mut v = vec![
                col("Containers", "string", CONTAINERS_DESC, 1),
                col("Images", "string", IMAGES_DESC, 1),
            ];
            if with_selector {
                v.push(col("Selector", "string", SELECTOR_DESC, 1));
            }
            v
        };
        let mut cols = vec![name_col()];
        match self.kind {
            Workload::Deployment => {
                cols.push(col(
                    "Ready",
                    "string",
                    "Number of the pod with ready state",
                    0,
                ));
                cols.push(col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0));
                cols.push(col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0));
                cols.push(age_col());
                cols.extend(wide(true));
            }
            Workload::ReplicaSet | Workload::ReplicationController => {
                cols.push(col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1.", 0));
                cols.push(col(
                    "Current",
                    "integer",
                    "Replicas is the most recently observed number of replicas.",
                    0,
                ));
                cols.push(col(
                    "Ready",
                    "integer",
                    "The number of ready replicas for this replica set.",
                    0,
                ));
                cols.push(age_col());
                cols.extend(wide(true));
            }
            Workload::DaemonSet => {
                cols.push(col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).", 0));
                cols.push(col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.", 0));
                cols.push(col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", 0));
                cols.push(col(
                    "Up-to-date",
                    "integer",
                    "The total number of nodes that are running updated daemon pod",
                    0,
                ));
                cols.push(col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)", 0));
                cols.push(col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/", 0));
                cols.push(age_col());
                cols.extend(wide(true));
            }
            Workload::StatefulSet => {
                cols.push(col(
                    "Ready",
                    "string",
                    "Number of the pod with ready state",
                    0,
                ));
                cols.push(age_col());
                cols.extend(wide(false));
            }
        }
        cols
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let ps = obj.pointer("/spec/template/spec").unwrap_or(&Value::Null);
        let (containers, images) = containers_images(ps);
        let n = |p: &str| Value::from(int(obj, p));
        let label_selector = Value::from(format_label_selector(obj.pointer("/spec/selector")));
        match self.kind {
            Workload::Deployment => vec![
                name_cell(obj),
                Value::from(format!(
                    "{}/{}",
                    int(obj, "/status/readyReplicas"),
                    int(obj, "/spec/replicas")
                )),
                n("/status/updatedReplicas"),
                n("/status/availableReplicas"),
                age_cell(obj, now),
                containers,
                images,
                Value::from(selector_string(obj.pointer("/spec/selector"))),
            ],
            Workload::ReplicaSet | Workload::ReplicationController => {
                let selector = if self.kind == Workload::ReplicaSet {
                    label_selector
                } else {
                    Value::from(format_labels(obj.pointer("/spec/selector")))
                };
                vec![
                    name_cell(obj),
                    n("/spec/replicas"),
                    n("/status/replicas"),
                    n("/status/readyReplicas"),
                    age_cell(obj, now),
                    containers,
                    images,
                    selector,
                ]
            }
            Workload::DaemonSet => vec![
                name_cell(obj),
                n("/status/desiredNumberScheduled"),
                n("/status/currentNumberScheduled"),
                n("/status/numberReady"),
                n("/status/updatedNumberScheduled"),
                n("/status/numberAvailable"),
                Value::from(format_labels(ps.get("nodeSelector"))),
                age_cell(obj, now),
                containers,
                images,
                label_selector,
            ],
            Workload::StatefulSet => vec![
                name_cell(obj),
                Value::from(format!(
                    "{}/{}",
                    int(obj, "/status/readyReplicas"),
                    int(obj, "/spec/replicas")
                )),
                age_cell(obj, now),
                containers,
                images,
            ],
        }
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        match name {
            "metadata.name" => field(obj, "/metadata/name"),
            "metadata.namespace" => field(obj, "/metadata/namespace"),
            "status.replicas"
                if matches!(
                    self.kind,
                    Workload::ReplicaSet | Workload::ReplicationController
                ) =>
            {
                Some(int(obj, "/status/replicas").to_string())
            }
            _ => None,
        }
    }
}

/// SetDefaults_ReplicationController: an empty selector and empty labels both default to the
/// template's labels.
fn default_rc_selector(obj: &mut Value) {
    let Some(labels) = obj.pointer("/spec/template/metadata/labels").cloned() else {
        return;
    };
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if empty(obj.pointer("/spec/selector")) {
        if let Some(spec) = path_mut(obj, &["spec"]) {
            spec.insert("selector".into(), labels.clone());
        }
    }
    if empty(obj.pointer("/metadata/labels")) {
        if let Some(meta) = path_mut(obj, &["metadata"]) {
            meta.insert("labels".into(), labels);
        }
    }
}

fn validate_deployment_strategy(obj: &Value, out: &mut Vec<FieldCause>) {
    let t = s(obj, "/spec/strategy/type");
    match t {
        "" | "RollingUpdate" => {
            let ru = obj
                .pointer("/spec/strategy/rollingUpdate")
                .unwrap_or(&Value::Null);
            let zero = |v: Option<&Value>| match v {
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s == "0%" || s == "0",
                _ => false,
            };
            if zero(ru.get("maxUnavailable")) && zero(ru.get("maxSurge")) {
                out.push(FieldCause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    ru.get("maxUnavailable").unwrap_or(&json!(0)),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        "Recreate" => {
            if obj
                .pointer("/spec/strategy/rollingUpdate")
                .is_some_and(|v| !v.is_null())
            {
                out.push(FieldCause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        other => out.push(FieldCause::not_supported(
            "spec.strategy.type",
            &Value::from(other),
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let (Some(p), m) = (
        obj.pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64),
        int(obj, "/spec/minReadySeconds"),
    ) {
        if p <= m {
            out.push(FieldCause::invalid(
                "spec.progressDeadlineSeconds",
                &Value::from(p),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::strategy_for;
    use crate::meta::parse_time;
    use std::sync::Arc;

    fn strategy(group: &str, plural: &str) -> Arc<dyn Strategy> {
        strategy_for(group, "v1", plural).expect("strategy")
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}}})
    }

    fn messages(causes: &[FieldCause]) -> Vec<String> {
        causes.iter().map(FieldCause::to_message).collect()
    }

    #[test]
    fn deployment_defaults() {
        let d = strategy("apps", "deployments");
        let mut obj = deployment();
        d.default(&mut obj);
        let spec = &obj["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let ps = &spec["template"]["spec"];
        assert_eq!(ps["restartPolicy"], "Always");
        assert_eq!(ps["containers"][0]["imagePullPolicy"], "IfNotPresent");
        // Admission-only pod fields stay off templates.
        assert!(ps.get("tolerations").is_none());
        assert!(ps.get("enableServiceLinks").is_none());
        assert_eq!(d.validate_create(&obj), vec![]);

        let mut recreate = deployment();
        recreate["spec"]["strategy"] = json!({"type": "Recreate"});
        d.default(&mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn deployment_validation() {
        let d = strategy("apps", "deployments");
        let mut mismatch = deployment();
        mismatch["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        mismatch["spec"]["replicas"] = json!(-1);
        assert_eq!(
            messages(&d.validate_create(&mismatch)),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
            ]
        );
        let mut no_selector = deployment();
        no_selector["spec"]
            .as_object_mut()
            .map(|s| s.remove("selector"));
        assert_eq!(
            messages(&d.validate_create(&no_selector)),
            vec!["spec.selector: Required value"]
        );

        let mut empty = deployment();
        empty["spec"]["selector"] = json!({});
        assert_eq!(
            messages(&d.validate_create(&empty)),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
        );

        let mut on_failure = deployment();
        on_failure["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        assert_eq!(
            messages(&d.validate_create(&on_failure)),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""]
        );

        let old = deployment();
        let mut changed = deployment();
        changed["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        changed["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "v": "2"});
        assert_eq!(
            messages(&d.validate_update(&changed, &old)),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
    }

    #[test]
    fn deployment_generation_counts_annotations() {
        let d = strategy("apps", "deployments");
        let old = deployment();
        let mut annotated = deployment();
        annotated["metadata"]["annotations"] = json!({"kubernetes.io/change-cause": "x"});
        assert!(d.spec_changed(&annotated, &old));
        let rs = strategy("apps", "replicasets");
        assert!(!rs.spec_changed(&annotated, &old));
    }

    #[test]
    fn selector_expressions_are_validated() {
        let d = strategy("apps", "deployments");
        let mut obj = deployment();
        obj["spec"]["selector"] = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In"}, {"key": "x", "operator": "Exists", "values": ["a"]}, {"key": "y", "operator": "Near"}]});
        assert_eq!(
            messages(&d.validate_create(&obj)),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );
    }

    #[test]
    fn deployment_row() {
        let d = strategy("apps", "deployments");
        let mut obj = deployment();
        d.default(&mut obj);
        obj["spec"]["replicas"] = json!(3);
        obj["status"] = json!({"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2});
        let now = parse_time("2024-05-01T12:00:00Z").expect("now");
        assert_eq!(
            d.row(&obj, now),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("60m"),
                json!("nginx"),
                json!("nginx:1.25"),
                json!("app=web")
            ]
        );
        let names: Vec<&str> = d.columns().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn replicaset_and_rc() {
        let rs = strategy("apps", "replicasets");
        let mut obj = deployment();
        obj["kind"] = json!("ReplicaSet");
        rs.default(&mut obj);
        assert_eq!(obj["spec"]["replicas"], 1);
        assert!(obj["spec"].get("strategy").is_none());
        obj["status"] = json!({"replicas": 1, "readyReplicas": 1});
        let now = parse_time("2024-05-01T12:00:00Z").expect("now");
        assert_eq!(
            rs.row(&obj, now)[1..4].to_vec(),
            vec![json!(1), json!(1), json!(1)]
        );
        assert_eq!(
            rs.field_value(&obj, "status.replicas").as_deref(),
            Some("1")
        );

        let rc = strategy("", "replicationcontrollers");
        let mut obj = json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "a", "image": "b"}]}}}});
        rc.default(&mut obj);
        assert_eq!(obj["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(obj["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(rc.validate_create(&obj), vec![]);
        assert_eq!(rc.row(&obj, now)[7], "app=x");
    }

    #[test]
    fn daemonset_and_statefulset() {
        let ds = strategy("apps", "daemonsets");
        let mut obj = deployment();
        obj["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        ds.default(&mut obj);
        assert!(obj["spec"].get("replicas").is_none());
        assert_eq!(
            obj["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        let now = parse_time("2024-05-01T12:00:00Z").expect("now");
        let row = ds.row(&obj, now);
        assert_eq!(row.len(), ds.columns().len());
        assert_eq!(row[6], "disk=ssd");

        let sts = strategy("apps", "statefulsets");
        let mut obj = deployment();
        sts.default(&mut obj);
        assert_eq!(obj["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            obj["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            obj["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let old = obj.clone();
        let mut scaled = obj.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert_eq!(sts.validate_update(&scaled, &old), vec![]);
        let mut renamed = obj.clone();
        renamed["spec"]["serviceName"] = json!("other");
        assert_eq!(sts.validate_update(&renamed, &old)[0].field, "spec");
        let names: Vec<&str> = sts.columns().iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["Name", "Ready", "Age", "Containers", "Images"]);
        assert_eq!(sts.row(&obj, now)[1], "0/1");
    }
}
