//! The batch/v1 Job strategy: defaults, the server-generated selector and labels, validation
//! (restart policy, immutable selector and template) and the 1.33 printer row.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::common::{
    age_cell, age_col, arr, boolean, child, col, containers_images, field, format_label_selector,
    go_label_selector, go_string_map, int, invalid_raw, name_cell, name_col, non_negative,
    path_mut, s, selector_matches, set_default, CONTAINERS_DESC, IMAGES_DESC,
};
use super::podspec::{default_template, validate_pod_spec};
use crate::meta::{human_duration, parse_time, validate_labels};
use crate::resource::ResourceInfo;
use crate::strategy::{Column, FieldCause, Strategy};

/// Jobs (batch/v1).
pub struct JobStrategy(pub(crate) &'static ResourceInfo);

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME: &str = "job-name";

impl Strategy for JobStrategy {
    fn info(&self) -> &ResourceInfo {
        self.0
    }

    fn default(&self, obj: &mut Value) {
        let manual = boolean(obj, "/spec/manualSelector");
        let uid = s(obj, "/metadata/uid").to_string();
        let name = s(obj, "/metadata/name").to_string();
        let Some(spec) = path_mut(obj, &["spec"]) else {
            return;
        };
        let completions_set = spec.get("completions").is_some_and(|v| !v.is_null());
        let parallelism_set = spec.get("parallelism").is_some_and(|v| !v.is_null());
        // Upstream defaults completions only when neither completions nor parallelism is set.
        if !completions_set && !parallelism_set {
            spec.insert("completions".into(), 1.into());
        }
        set_default(spec, "parallelism", 1.into());
        set_default(spec, "backoffLimit", 6.into());
        set_default(spec, "completionMode", "NonIndexed".into());
        set_default(spec, "suspend", false.into());
        let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        set_default(spec, "podReplacementPolicy", replacement.into());
        if !manual && !uid.is_empty() {
            generate_selector(spec, &uid, &name);
        }
        // Upstream defaults empty job labels to the template's labels on every decode, so
        // stored jobs end up carrying the generated labels too.
        let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
        if empty(obj.pointer("/metadata/labels")) {
            if let Some(labels) = obj
                .pointer("/spec/template/metadata/labels")
                .filter(|l| !empty(Some(l)))
                .cloned()
            {
                if let Some(meta) = path_mut(obj, &["metadata"]) {
                    meta.insert("labels".into(), labels);
                }
            }
        }
        // Last, so a template created by the generated labels gets its defaults too.
        default_template(obj);
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        for (p, f) in [
            ("/spec/parallelism", "spec.parallelism"),
            ("/spec/completions", "spec.completions"),
            ("/spec/backoffLimit", "spec.backoffLimit"),
        ] {
            non_negative(obj, p, f, &mut out);
        }
        if let Some(n) = obj
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
        {
            if n <= 0 {
                out.push(FieldCause::invalid(
                    "spec.activeDeadlineSeconds",
                    &Value::from(n),
                    "must be greater than 0",
                ));
            }
        }
        let mode = s(obj, "/spec/completionMode");
        if !mode.is_empty() && mode != "NonIndexed" && mode != "Indexed" {
            out.push(FieldCause::not_supported(
                "spec.completionMode",
                &Value::from(mode),
                &["NonIndexed", "Indexed"],
            ));
        }
        let labels = obj.pointer("/spec/template/metadata/labels");
        match obj.pointer("/spec/selector").filter(|v| !v.is_null()) {
            None => out.push(FieldCause::required("spec.selector")),
            Some(sel) => {
                out.extend(super::common::validate_label_selector(sel, "spec.selector"));
                if !selector_matches(sel, labels) {
                    out.push(invalid_raw(
                        "spec.template.metadata.labels",
                        &go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        out.extend(validate_labels(labels, "spec.template.metadata.labels"));
        let ps = obj.pointer("/spec/template/spec").unwrap_or(&Value::Null);
        out.extend(validate_pod_spec(ps, "spec.template.spec"));
        let rp = s(ps, "/restartPolicy");
        if rp != "OnFailure" && rp != "Never" {
            out.push(FieldCause::not_supported(
                "spec.template.spec.restartPolicy",
                &Value::from(rp),
                &["OnFailure", "Never"],
            ));
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldCause> {
        let mut out = self.validate_create(new);
        let (n, o) = (new.pointer("/spec/selector"), old.pointer("/spec/selector"));
        if n != o {
            let shown = n.map(go_label_selector).unwrap_or_else(|| "null".into());
            out.push(invalid_raw("spec.selector", &shown, "field is immutable"));
        }
        if new.pointer("/spec/completions") != old.pointer("/spec/completions") {
            let v = new
                .pointer("/spec/completions")
                .cloned()
                .unwrap_or(Value::Null);
            out.push(FieldCause::invalid(
                "spec.completions",
                &v,
                "field is immutable",
            ));
        }
        // The template may change only while the job is suspended (upstream's mutable
        // scheduling directives, simplified to the whole template).
        let suspended = boolean(old, "/spec/suspend");
        if !suspended && new.pointer("/spec/template") != old.pointer("/spec/template") {
            out.push(invalid_raw(
                "spec.template",
                "core.PodTemplateSpec{...}",
                "field is immutable",
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            name_col(),
            col("Status", "string", "Status of the job.", 0),
            col("Completions", "string", "The desired number of successfully finished pods the job should be run with.", 0),
            col("Duration", "string", "Time required to complete the job.", 0),
            age_col(),
            col("Containers", "string", CONTAINERS_DESC, 1),
            col("Images", "string", IMAGES_DESC, 1),
            col("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let succeeded = int(obj, "/status/succeeded");
        let completions = match (
            obj.pointer("/spec/completions").and_then(Value::as_i64),
            obj.pointer("/spec/parallelism").and_then(Value::as_i64),
        ) {
            (Some(c), _) => format!("{succeeded}/{c}"),
            (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        };
        let start = obj
            .pointer("/status/startTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let end = obj
            .pointer("/status/completionTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let duration = match (start, end) {
            (None, _) => String::new(),
            (Some(st), None) => human_duration(now - st),
            (Some(st), Some(en)) => human_duration(en - st),
        };
        let ps = obj.pointer("/spec/template/spec").unwrap_or(&Value::Null);
        let (containers, images) = containers_images(ps);
        vec![
            name_cell(obj),
            Value::from(job_status(obj)),
            Value::from(completions),
            Value::from(duration),
            age_cell(obj, now),
            containers,
            images,
            Value::from(format_label_selector(obj.pointer("/spec/selector"))),
        ]
    }

    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        match name {
            "metadata.name" => field(obj, "/metadata/name"),
            "metadata.namespace" => field(obj, "/metadata/namespace"),
            "status.successful" => Some(int(obj, "/status/succeeded").to_string()),
            _ => None,
        }
    }
}

/// The STATUS cell of upstream's job printer, in its order of precedence.
fn job_status(obj: &Value) -> &'static str {
    let has = |t: &str| {
        arr(obj, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// Upstream's `generateSelector`: label the template with the job's name and uid (both the
/// current and the legacy keys) and select on the uid.
fn generate_selector(spec: &mut Map<String, Value>, uid: &str, name: &str) {
    if let Some(labels) = child(spec, "template")
        .and_then(|t| child(t, "metadata"))
        .and_then(|m| child(m, "labels"))
    {
        for (k, v) in [
            (CONTROLLER_UID, uid),
            (JOB_NAME, name),
            (LEGACY_CONTROLLER_UID, uid),
            (LEGACY_JOB_NAME, name),
        ] {
            labels.entry(k).or_insert_with(|| Value::from(v));
        }
    }
    if let Some(ml) = child(spec, "selector").and_then(|s| child(s, "matchLabels")) {
        ml.entry(CONTROLLER_UID).or_insert_with(|| Value::from(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::strategy_for;
    use serde_json::json;
    use std::sync::Arc;

    fn jobs() -> Arc<dyn Strategy> {
        strategy_for("batch", "v1", "jobs").expect("jobs")
    }

    fn job() -> Value {
        json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}})
    }

    #[test]
    fn defaults_and_generated_selector() {
        let mut obj = job();
        jobs().default(&mut obj);
        let spec = &obj["spec"];
        assert_eq!(
            (
                spec["completions"].clone(),
                spec["parallelism"].clone(),
                spec["backoffLimit"].clone()
            ),
            (json!(1), json!(1), json!(6))
        );
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            spec["template"]["metadata"]["labels"],
            json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"})
        );
        assert_eq!(
            obj["metadata"]["labels"],
            spec["template"]["metadata"]["labels"]
        );
        assert_eq!(jobs().validate_create(&obj), vec![]);
        let again = {
            let mut o = obj.clone();
            jobs().default(&mut o);
            o
        };
        assert_eq!(again, obj);

        let mut parallel = job();
        parallel["spec"]["parallelism"] = json!(3);
        jobs().default(&mut parallel);
        assert!(parallel["spec"].get("completions").is_none());
    }

    #[test]
    fn restart_policy_must_not_be_always() {
        let mut obj = job();
        obj["spec"]["template"]["spec"]
            .as_object_mut()
            .map(|s| s.remove("restartPolicy"));
        jobs().default(&mut obj);
        let msgs: Vec<String> = jobs()
            .validate_create(&obj)
            .iter()
            .map(FieldCause::to_message)
            .collect();
        assert_eq!(msgs, vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]);
    }

    #[test]
    fn selector_immutable() {
        let mut old = job();
        jobs().default(&mut old);
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["x"] = json!("y");
        new["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let fields: Vec<String> = jobs()
            .validate_update(&new, &old)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["spec.selector", "spec.template"]);
    }

    #[test]
    fn rows() {
        let now = crate::meta::parse_time("2024-05-01T12:00:00Z").expect("now");
        let mut obj = job();
        jobs().default(&mut obj);
        obj["status"] = json!({"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:42Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let row = jobs().row(&obj, now);
        assert_eq!(
            row[..5].to_vec(),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("42s"),
                json!("60m")
            ]
        );
        assert_eq!(row[7], "batch.kubernetes.io/controller-uid=u-1");
        obj["status"] = json!({"startTime": "2024-05-01T11:59:00Z"});
        let row = jobs().row(&obj, now);
        assert_eq!(
            (row[1].clone(), row[2].clone(), row[3].clone()),
            (json!("Running"), json!("0/1"), json!("60s"))
        );
        assert_eq!(
            jobs().field_value(&obj, "status.successful").as_deref(),
            Some("0")
        );
    }
}
