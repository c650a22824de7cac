//! `events.k8s.io/v1` Events seen through `core/v1`. Upstream stores both versions of Event in
//! one place; here they are stored apart, so core Event lists (what `kubectl describe` and
//! `kubectl get events` read) also include the events.k8s.io ones (what kube-rs's event
//! recorder writes), converted. Watches of core Events do not include them.

use serde_json::{json, Map, Value};

use super::{decode_kv, Ctx, Registry};
use crate::error::{ApiError, Result};
use crate::model::Selectors;

/// Convert an `events.k8s.io/v1` Event to its `core/v1` form.
pub fn to_core(ev: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = ev.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    };
    copy("metadata", "metadata");
    copy("regarding", "involvedObject");
    copy("related", "related");
    copy("reason", "reason");
    copy("note", "message");
    copy("type", "type");
    copy("action", "action");
    copy("eventTime", "eventTime");
    copy("reportingController", "reportingComponent");
    copy("reportingInstance", "reportingInstance");
    copy("deprecatedSource", "source");
    copy("deprecatedFirstTimestamp", "firstTimestamp");
    copy("deprecatedLastTimestamp", "lastTimestamp");
    copy("deprecatedCount", "count");
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        out.insert("series".into(), series.clone());
    }
    if !out.contains_key("source") {
        let component = ev.get("reportingController").cloned().unwrap_or(json!(""));
        out.insert("source".into(), json!({"component": component}));
    }
    if !out.contains_key("involvedObject") {
        out.insert("involvedObject".into(), json!({}));
    }
    Value::Object(out)
}

/// The events.k8s.io Events under the namespace of `ctx` (a core Event context), converted and
/// filtered by `selectors`.
pub async fn converted(reg: &Registry, ctx: &Ctx, selectors: &Selectors) -> Result<Vec<Value>> {
    let Some(info) = kubelite_api::resource::find_builtin("events.k8s.io", "v1", "events") else {
        return Ok(Vec::new());
    };
    let other = Ctx::new(info, ctx.namespace.clone());
    let list = reg
        .storage
        .list(&other.collection_prefix(), Default::default())
        .await
        .map_err(|e| ApiError::from_storage(e, other.target("")))?;
    let mut out = Vec::new();
    for kv in &list.items {
        let core = to_core(&decode_kv(kv)?);
        if selectors.matches(&core, ctx.strategy.as_ref()) {
            out.push(core);
        }
    }
    Ok(out)
}

/// Whether `ctx` is the core Event resource.
pub fn is_core_event(ctx: &Ctx) -> bool {
    ctx.info.group.is_empty() && ctx.info.kind == "Event"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_fields() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Scheduled",
            "type": "Normal", "reportingController": "kubelite-scheduler", "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = to_core(&ev);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["source"]["component"], "kubelite-scheduler");
        assert_eq!(core["reportingComponent"], "kubelite-scheduler");
    }
}
