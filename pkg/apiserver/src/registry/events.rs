//! One Event, two APIs: as upstream, `events.k8s.io/v1` Events are stored with the `core/v1`
//! ones (under `/registry/events/`, in the core form) and converted on every read and write, so
//! lists and watches of either API show every Event. The field mapping follows upstream's
//! `pkg/apis/events/v1` conversions: regarding ↔ involvedObject, note ↔ message,
//! deprecatedSource ↔ source, deprecated{First,Last}Timestamp ↔ {first,last}Timestamp,
//! deprecatedCount ↔ count, reportingController ↔ reportingComponent; the rest keep their names.

use kubelite_api::resource::{find_builtin, ResourceInfo};
use serde_json::{json, Map, Value};

/// `(events.k8s.io name, core name)` of the renamed fields.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

/// Fields with the same name in both forms.
const SHARED: [&str; 8] = [
    "metadata",
    "eventTime",
    "series",
    "related",
    "action",
    "reason",
    "type",
    "reportingInstance",
];

/// Whether `info` is `events.k8s.io` Events (stored in the core form).
pub fn is_events_api(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.plural == "events"
}

/// The resource whose storage holds `info`'s objects: core Events for `events.k8s.io`, else
/// `info` itself.
pub fn storage_info(info: &'static ResourceInfo) -> &'static ResourceInfo {
    if is_events_api(info) {
        if let Some(core) = find_builtin("", "v1", "events") {
            return core;
        }
    }
    info
}

fn convert(
    from: &Value,
    api_version: &str,
    renamed: impl Iterator<Item = (&'static str, &'static str)>,
) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!(api_version));
    let mut copy = |src: &str, dst: &str| {
        if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
            out.insert(dst.into(), v.clone());
        }
    };
    for f in SHARED {
        copy(f, f);
    }
    for (src, dst) in renamed {
        copy(src, dst);
    }
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in its `core/v1` (stored) form.
pub fn to_core(ev: &Value) -> Value {
    let mut core = convert(ev, "v1", RENAMED.into_iter());
    // Go serializes the non-pointer struct even when empty.
    if let Some(o) = core.as_object_mut() {
        o.entry("involvedObject").or_insert_with(|| json!({}));
    }
    core
}

/// A stored `core/v1` Event in its `events.k8s.io/v1` form.
pub fn from_core(core: &Value) -> Value {
    convert(
        core,
        "events.k8s.io/v1",
        RENAMED.into_iter().map(|(api, core)| (core, api)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Scheduled",
            "type": "Normal", "action": "Binding", "reportingController": "kubelite-scheduler",
            "reportingInstance": "s-1", "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"},
            "deprecatedCount": 4, "deprecatedSource": {"component": "old"}});
        let core = to_core(&ev);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "kubelite-scheduler");
        assert_eq!(core["reportingInstance"], "s-1");
        assert_eq!(core["count"], 4);
        assert_eq!(core["source"]["component"], "old");
        assert_eq!(core["series"]["count"], 2);
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        assert_eq!(from_core(&core), ev);
    }

    #[test]
    fn core_events_read_as_events_api() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "m", "count": 1,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
            "source": {"component": "kubelet", "host": "n1"}});
        let ev = from_core(&core);
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["note"], "m");
        assert_eq!(ev["deprecatedCount"], 1);
        assert_eq!(ev["deprecatedSource"]["host"], "n1");
        assert_eq!(ev["deprecatedFirstTimestamp"], "2026-01-01T00:00:00Z");
        assert!(ev.get("message").is_none());
    }

    #[test]
    fn storage_is_shared() {
        let api = find_builtin("events.k8s.io", "v1", "events").expect("events.k8s.io");
        let core = find_builtin("", "v1", "events").expect("core events");
        assert_eq!(storage_info(api).prefix(), "/registry/events/");
        assert_eq!(storage_info(core).prefix(), core.prefix());
    }
}
