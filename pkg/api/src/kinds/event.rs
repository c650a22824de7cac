//! Events in both APIs: core/v1 Event and events.k8s.io/v1 Event. Upstream prints both with
//! one printer over the internal (core-shaped) type, so events.k8s.io objects are mapped to
//! the core shape first.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::common::{col, int, s, NAME_DESC};
use crate::meta::{age_since, dns1123_subdomain_errors, qualified_name_errors};
use crate::resource::ResourceInfo;
use crate::strategy::{Column, FieldCause, Strategy};

/// Events of either API; `v1_events` selects the events.k8s.io shape.
pub struct EventStrategy {
    pub(crate) info: &'static ResourceInfo,
    pub(crate) v1_events: bool,
}

impl EventStrategy {
    /// An events.k8s.io object in the core field names (identity for core events).
    fn core_shape(&self, obj: &Value) -> Value {
        if !self.v1_events {
            return obj.clone();
        }
        let mut m = Map::new();
        let mut copy = |from: &str, to: &str| {
            if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
                m.insert(to.into(), v.clone());
            }
        };
        for (from, to) in [
            ("metadata", "metadata"),
            ("regarding", "involvedObject"),
            ("related", "related"),
            ("note", "message"),
            ("reason", "reason"),
            ("type", "type"),
            ("action", "action"),
            ("eventTime", "eventTime"),
            ("series", "series"),
            ("reportingController", "reportingComponent"),
            ("reportingInstance", "reportingInstance"),
            ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
        ] {
            copy(from, to);
        }
        Value::Object(m)
    }
}

fn is_set(obj: &Value, key: &str) -> bool {
    obj.get(key)
        .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
}

impl Strategy for EventStrategy {
    fn info(&self) -> &ResourceInfo {
        self.info
    }

    fn has_generation(&self) -> bool {
        false
    }

    fn spec_changed(&self, _new: &Value, _old: &Value) -> bool {
        false
    }

    /// Upstream's `ValidateEventCreate`: legacy core events only need a consistent involved
    /// namespace; new-style events (eventTime set, and always for events.k8s.io) need the
    /// reporting fields, action and reason.
    fn validate_create(&self, obj: &Value) -> Vec<FieldCause> {
        let mut out = Vec::new();
        let ev = self.core_shape(obj);
        let ns = s(&ev, "/metadata/namespace");
        let involved_ns = s(&ev, "/involvedObject/namespace");
        let (obj_path, controller_path, message_path) = if self.v1_events {
            ("regarding", "reportingController", "note")
        } else {
            ("involvedObject", "reportingComponent", "message")
        };
        let ns_mismatch = || {
            FieldCause::invalid(
                format!("{obj_path}.namespace"),
                &Value::from(involved_ns),
                "does not match event.namespace",
            )
        };
        if self.v1_events {
            if !is_set(&ev, "eventTime") {
                out.push(FieldCause::required("eventTime"));
            }
            let t = s(&ev, "/type");
            if t != "Normal" && t != "Warning" {
                out.push(FieldCause::invalid(
                    "type",
                    &Value::from(""),
                    format!("has invalid value: {t}"),
                ));
            }
            for (key, path) in [
                ("firstTimestamp", "deprecatedFirstTimestamp"),
                ("lastTimestamp", "deprecatedLastTimestamp"),
                ("count", "deprecatedCount"),
            ] {
                if is_set(&ev, key) && ev.get(key) != Some(&Value::from(0)) {
                    out.push(FieldCause::invalid(
                        path,
                        &Value::from(""),
                        "needs to be unset",
                    ));
                }
            }
        }
        if !self.v1_events && !is_set(&ev, "eventTime") {
            let ok = if involved_ns.is_empty() {
                ns.is_empty() || ns == "default"
            } else {
                ns == involved_ns
            };
            if !ok {
                out.push(ns_mismatch());
            }
        } else {
            if involved_ns.is_empty() && ns != "default" && ns != "kube-system" && !self.v1_events {
                out.push(ns_mismatch());
            }
            let controller = s(&ev, "/reportingComponent");
            if controller.is_empty() {
                out.push(FieldCause::required(controller_path));
            } else {
                for m in qualified_name_errors(controller) {
                    out.push(FieldCause::invalid(
                        controller_path,
                        &Value::from(controller),
                        m,
                    ));
                }
            }
            let instance = s(&ev, "/reportingInstance");
            if instance.is_empty() {
                out.push(FieldCause::required("reportingInstance"));
            } else if instance.len() > 128 {
                out.push(FieldCause::invalid(
                    "reportingInstance",
                    &Value::from(""),
                    "can have at most 128 characters",
                ));
            }
            let action = s(&ev, "/action");
            if action.is_empty() {
                out.push(FieldCause::required("action"));
            } else if action.len() > 128 {
                out.push(FieldCause::invalid(
                    "action",
                    &Value::from(""),
                    "can have at most 128 characters",
                ));
            }
            let reason = s(&ev, "/reason");
            if reason.is_empty() {
                out.push(FieldCause::required("reason"));
            } else if reason.len() > 128 {
                out.push(FieldCause::invalid(
                    "reason",
                    &Value::from(""),
                    "can have at most 128 characters",
                ));
            }
            if s(&ev, "/message").len() > 1024 {
                out.push(FieldCause::invalid(
                    message_path,
                    &Value::from(""),
                    "can have at most 1024 characters",
                ));
            }
        }
        if !ns.is_empty() {
            for m in dns1123_subdomain_errors(ns) {
                out.push(FieldCause::invalid("namespace", &Value::from(ns), m));
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded.", 0),
            col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future", 0),
            col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
            col("Object", "string", "The object that this event is about.", 0),
            col("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.", 1),
            col("Source", "string", "The component reporting this event. Should be a short machine understandable string.", 1),
            col("Message", "string", "A human-readable description of the status of this operation.", 0),
            col("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)", 1),
            col("Count", "string", "The number of times this event has occurred.", 1),
            Column { name: "Name", type_: "string", format: "name", description: NAME_DESC, priority: 1 },
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let ev = self.core_shape(obj);
        let first = if is_set(&ev, "firstTimestamp") {
            age_since(ev.get("firstTimestamp"), now)
        } else {
            age_since(ev.get("eventTime"), now)
        };
        let mut last = if is_set(&ev, "lastTimestamp") {
            age_since(ev.get("lastTimestamp"), now)
        } else {
            first.clone()
        };
        let mut count = int(&ev, "/count");
        if let Some(series) = ev.get("series").filter(|v| !v.is_null()) {
            last = age_since(series.get("lastObservedTime"), now);
            count = int(series, "/count");
        } else if count == 0 {
            count = 1;
        }
        let kind = s(&ev, "/involvedObject/kind").to_lowercase();
        let target = match s(&ev, "/involvedObject/name") {
            "" => kind,
            name => format!("{kind}/{name}"),
        };
        let component = match s(&ev, "/source/component") {
            "" => s(&ev, "/reportingComponent"),
            c => c,
        };
        let instance = match s(&ev, "/source/host") {
            "" => s(&ev, "/reportingInstance"),
            h => h,
        };
        let source = if instance.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {instance}")
        };
        vec![
            Value::from(last),
            Value::from(s(&ev, "/type")),
            Value::from(s(&ev, "/reason")),
            Value::from(target),
            Value::from(s(&ev, "/involvedObject/fieldPath")),
            Value::from(source),
            Value::from(s(&ev, "/message").trim()),
            Value::from(first),
            Value::from(count),
            Value::from(s(&ev, "/metadata/name")),
        ]
    }

    /// Upstream's event selectable fields (core names); events.k8s.io names (`regarding.*`,
    /// `reportingController`) are accepted too and mean the same.
    fn field_value(&self, obj: &Value, name: &str) -> Option<String> {
        let ev = self.core_shape(obj);
        let name = match name.strip_prefix("regarding.") {
            Some(rest) => format!("involvedObject.{rest}"),
            None if name == "reportingController" => "reportingComponent".to_string(),
            None => name.to_string(),
        };
        let p = match name.as_str() {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            "involvedObject.kind" => "/involvedObject/kind",
            "involvedObject.namespace" => "/involvedObject/namespace",
            "involvedObject.name" => "/involvedObject/name",
            "involvedObject.uid" => "/involvedObject/uid",
            "involvedObject.apiVersion" => "/involvedObject/apiVersion",
            "involvedObject.resourceVersion" => "/involvedObject/resourceVersion",
            "involvedObject.fieldPath" => "/involvedObject/fieldPath",
            "reason" => "/reason",
            "reportingComponent" => "/reportingComponent",
            "source" => "/source/component",
            "type" => "/type",
            _ => return None,
        };
        Some(s(&ev, p).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::strategy_for;
    use crate::meta::parse_time;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2024-05-01T12:00:00Z").expect("now")
    }

    fn core_event() -> Value {
        json!({"metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "message": "Successfully pulled image \"nginx\" \n", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:58:00Z", "count": 3})
    }

    #[test]
    fn core_event_row_and_fields() {
        let ev = strategy_for("", "v1", "events").expect("events");
        assert_eq!(
            ev.row(&core_event(), now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{nginx}"),
                json!("kubelet, node-1"),
                json!("Successfully pulled image \"nginx\""),
                json!("10m"),
                json!(3),
                json!("web.17a")
            ]
        );
        let names: Vec<&str> = ev.columns().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            vec![
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(
            ev.field_value(&core_event(), "involvedObject.uid")
                .as_deref(),
            Some("u1")
        );
        assert_eq!(
            ev.field_value(&core_event(), "source").as_deref(),
            Some("kubelet")
        );
        assert_eq!(
            ev.field_value(&core_event(), "reason").as_deref(),
            Some("Pulled")
        );
        assert_eq!(ev.field_value(&core_event(), "count"), None);
        assert_eq!(ev.validate_create(&core_event()), vec![]);
        let mut elsewhere = core_event();
        elsewhere["involvedObject"]["namespace"] = json!("other");
        let msgs: Vec<String> = ev
            .validate_create(&elsewhere)
            .iter()
            .map(FieldCause::to_message)
            .collect();
        assert_eq!(msgs, vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]);
        assert!(!ev.has_generation());
    }

    #[test]
    fn events_k8s_io() {
        let ev = strategy_for("events.k8s.io", "v1", "events").expect("events");
        let obj = json!({"metadata": {"name": "e1", "namespace": "default"},
            "eventTime": "2024-05-01T11:59:00.000000Z", "reportingController": "kubelite.io/scheduler",
            "reportingInstance": "sched-1", "action": "Binding", "reason": "Scheduled", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"}, "note": "assigned",
            "series": {"count": 4, "lastObservedTime": "2024-05-01T11:59:30.000000Z"}});
        assert_eq!(ev.validate_create(&obj), vec![]);
        let row = ev.row(&obj, now());
        assert_eq!(
            row[..4].to_vec(),
            vec![
                json!("30s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web")
            ]
        );
        assert_eq!(
            (
                row[5].clone(),
                row[6].clone(),
                row[7].clone(),
                row[8].clone()
            ),
            (
                json!("kubelite.io/scheduler, sched-1"),
                json!("assigned"),
                json!("60s"),
                json!(4)
            )
        );
        assert_eq!(
            ev.field_value(&obj, "regarding.name").as_deref(),
            Some("web")
        );
        assert_eq!(
            ev.field_value(&obj, "involvedObject.name").as_deref(),
            Some("web")
        );
        let msgs: Vec<String> = ev
            .validate_create(&json!({"metadata": {"namespace": "default"}, "type": "Odd"}))
            .iter()
            .map(FieldCause::to_message)
            .collect();
        assert_eq!(
            msgs,
            vec![
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: Odd",
                "reportingController: Required value",
                "reportingInstance: Required value",
                "action: Required value",
                "reason: Required value",
            ]
        );
    }
}
