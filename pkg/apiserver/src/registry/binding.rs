//! `pods/<name>/binding`: the scheduler's hot write, on a path of its own. Upstream's binding
//! storage is one guarded update of the stored pod (`setPodNodeAndMetadata`): no validation
//! beyond its own checks, no field-manager bookkeeping. The generic update path did the same
//! in effect but paid for copies of the pod, metadata checks and a no-op comparison of the
//! whole pod; here a bind costs one read, one decode, the (idempotent) defaulting, one encode
//! and one compare-and-swap write. The unit tests below pin that the stored pod is exactly what the
//! generic path (`update::prepare` with `Part::Whole`) would have stored.

use serde_json::{json, Map, Value};

use super::{get_kv, Ctx, Params, Registry, Reply, MAX_ATTEMPTS};
use crate::error::{ApiError, Result, Target};

/// Why a pod cannot be bound (each a 409 on `pods/binding`), as upstream words it.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Deleting,
    Assigned(String),
    Gated,
    UidMismatch,
}

impl Refusal {
    fn message(&self, name: &str) -> String {
        match self {
            Refusal::Deleting => "pod is being deleted, cannot be assigned to a host".into(),
            Refusal::Assigned(node) => format!("pod {name} is already assigned to node {node:?}"),
            Refusal::Gated => format!("pod {name} has non-empty .spec.schedulingGates"),
            Refusal::UidMismatch => "the UID in the binding does not match the pod".into(),
        }
    }
}

/// Checks a stored pod can be bound: not being deleted, not bound yet, not held by scheduling
/// gates (upstream rejects binding a scheduling-gated pod), and the binding's `metadata.uid`
/// (when set) is the pod's.
fn check_bindable(pod: &Value, binding_uid: Option<&str>) -> std::result::Result<(), Refusal> {
    let meta = pod.get("metadata");
    if meta.and_then(|m| m.get("deletionTimestamp")).is_some() {
        return Err(Refusal::Deleting);
    }
    if let Some(n) = pod
        .get("spec")
        .and_then(|s| s.get("nodeName"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(Refusal::Assigned(n.to_string()));
    }
    if pod
        .get("spec")
        .and_then(|s| s.get("schedulingGates"))
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        return Err(Refusal::Gated);
    }
    if let Some(uid) = binding_uid {
        if Some(uid) != meta.and_then(|m| m.get("uid")).and_then(Value::as_str) {
            return Err(Refusal::UidMismatch);
        }
    }
    Ok(())
}

/// The map at `key` of `obj`, created (or replaced when not a map) as `Value`'s `IndexMut`
/// does for `null`, so the bound pod's key order is the generic path's.
fn map_at<'a>(obj: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = obj
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Bind `pod` (as stored, without resourceVersion) to `node` in place: `spec.nodeName`, and
/// the `PodScheduled=True` condition upstream's binding storage adds, replacing any earlier
/// `PodScheduled` condition and appended after the others.
fn bind_in_place(pod: &mut Value, node: &str, now: &str) {
    if !pod.is_object() {
        *pod = Value::Object(Map::new());
    }
    let Value::Object(root) = pod else { return };
    if let Some(spec) = map_at(root, "spec") {
        spec.insert("nodeName".into(), json!(node));
    }
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    let Some(status) = map_at(root, "status") else {
        return;
    };
    match status.get_mut("conditions") {
        Some(Value::Array(conds)) => {
            conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conds.push(cond);
        }
        _ => {
            status.insert("conditions".into(), Value::Array(vec![cond]));
        }
    }
}

/// POST `pods/<name>/binding`: set spec.nodeName once (409 when already bound or being
/// deleted), with one compare-and-swap write per attempt.
pub async fn bind(
    reg: &Registry,
    ctx: &Ctx,
    name: &str,
    params: &Params,
    binding: Value,
) -> Result<Reply> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        let cause = kubelite_api::strategy::FieldCause::required("target.name");
        return Err(ApiError::invalid(ctx.info, name, vec![cause]));
    }
    let binding_uid = binding.pointer("/metadata/uid").and_then(Value::as_str);
    // Upstream names the subresource in binding conflicts: `pods/binding "web"`.
    let target = || {
        let mut t: Target = ctx.target(name);
        t.group_resource = format!("{}/binding", ctx.info.plural);
        t
    };
    let key = ctx.key(name);
    for attempt in 0..MAX_ATTEMPTS {
        super::conflict_pause(attempt).await;
        let (cur, mut pod) = get_kv(reg, ctx, name).await?;
        if let Err(refusal) = check_bindable(&pod, binding_uid) {
            return Err(ApiError::conflict(target(), &refusal.message(name)));
        }
        if params.dry_run() {
            return Ok(success());
        }
        // The stored form has no resourceVersion (`get_kv` stamped it).
        if let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        bind_in_place(&mut pod, &node, &super::now_rfc3339());
        // What the generic path also did to a server-internal write: a no-op for pods the
        // server stored (defaulting is idempotent), but it keeps the result exactly equal.
        super::drop_empty_metadata(&mut pod);
        ctx.strategy.default(&mut pod);
        let encoded = ctx.encode(&pod)?;
        let started = std::time::Instant::now();
        let res = reg.storage.update(&key, encoded, cur.mod_revision).await;
        reg.metrics.observe_storage("update", started.elapsed());
        match res {
            Ok(_) => return Ok(success()),
            Err(kubelite_storage::Error::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_storage(e, ctx.target(name))),
        }
    }
    Err(ApiError::stale(ctx.target(name)))
}

/// Upstream's answer to a binding: a `Status` of Success with code 201.
fn success() -> Reply {
    Reply::new(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::update::{prepare, Part, Tracking};

    /// What the generic path did before this file: bind a copy with `Value` indexing, then
    /// hand it to the generic update path as a server-internal write.
    fn generic(ctx: &Ctx, stored: &Value, node: &str, now: &str) -> Value {
        let mut new = stored.clone();
        new["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let conds = new["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conds: Vec<Value> = conds
            .into_iter()
            .filter(|c| c.get("type") != Some(&json!("PodScheduled")))
            .collect();
        conds.push(cond);
        new["status"]["conditions"] = Value::Array(conds);
        let mut out =
            prepare(ctx, Part::Whole, stored, new, Tracking::Untracked).expect("generic prepare");
        if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        out
    }

    fn pods() -> Ctx {
        let info = kubelite_api::resource::find_builtin("", "v1", "pods").expect("pods");
        Ctx::new(info, Some("default".into()))
    }

    /// A pod as the create path stores it: defaulted, with its creator's managed fields.
    fn stored(extra_status: Value, gated: bool) -> Value {
        let ctx = pods();
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1",
                "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27",
                "ports": [{"containerPort": 80}],
                "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "20m"}}}]},
            "status": extra_status,
        });
        if gated {
            pod["spec"]["schedulingGates"] = json!([{"name": "g"}]);
        }
        ctx.strategy.default(&mut pod);
        crate::model::track_update(ctx.strategy.as_ref(), None, &mut pod, "kubectl", "");
        pod
    }

    #[test]
    fn fast_bind_stores_what_the_generic_path_stored() {
        let ctx = pods();
        let now = "2026-01-02T03:04:05Z";
        let cases = [
            stored(json!({"phase": "Pending"}), false),
            stored(json!({"phase": "Pending", "qosClass": "Burstable"}), false),
            // A gated pod carries PodScheduled=False, which the bind replaces.
            stored(json!({"phase": "Pending"}), true),
            stored(
                json!({"phase": "Pending", "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                    {"type": "Initialized", "status": "True"}]}),
                false,
            ),
            // No status at all, and a `null` conditions list.
            {
                let mut p = stored(json!({}), false);
                if let Some(o) = p.as_object_mut() {
                    o.remove("status");
                }
                p
            },
            stored(json!({"phase": "Pending", "conditions": null}), false),
        ];
        for pod in cases {
            // As `get_kv` hands it over: resourceVersion stamped.
            let mut old = pod.clone();
            crate::registry::set_rv(&mut old, 7);
            let want = generic(&ctx, &old, "n1", now);
            let mut got = old.clone();
            if let Some(m) = got.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            bind_in_place(&mut got, "n1", now);
            crate::registry::drop_empty_metadata(&mut got);
            ctx.strategy.default(&mut got);
            assert_eq!(got, want, "bound {pod}");
            // Same bytes too: key order is what the stored JSON and watch events show.
            assert_eq!(
                serde_json::to_string(&got).expect("encode"),
                serde_json::to_string(&want).expect("encode")
            );
        }
    }

    #[test]
    fn refusals_match_upstream() {
        let pod = stored(json!({"phase": "Pending"}), false);
        assert_eq!(check_bindable(&pod, None), Ok(()));
        assert_eq!(check_bindable(&pod, Some("u-1")), Ok(()));
        assert_eq!(
            check_bindable(&pod, Some("other")),
            Err(Refusal::UidMismatch)
        );
        let mut bound = pod.clone();
        bind_in_place(&mut bound, "n1", "2026-01-02T03:04:05Z");
        let refusal = check_bindable(&bound, None).expect_err("bound");
        assert_eq!(
            refusal.message("web"),
            "pod web is already assigned to node \"n1\""
        );
        let mut deleting = pod.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-02T03:04:05Z");
        assert_eq!(check_bindable(&deleting, None), Err(Refusal::Deleting));
        let mut gated = pod.clone();
        gated["spec"]["schedulingGates"] = json!([{"name": "example.com/quota"}]);
        let refusal = check_bindable(&gated, None).expect_err("gated");
        assert_eq!(
            refusal.message("web"),
            "pod web has non-empty .spec.schedulingGates"
        );
        gated["spec"]["schedulingGates"] = json!([]);
        assert_eq!(check_bindable(&gated, None), Ok(()));
        // An empty nodeName is not a binding.
        let mut empty = pod;
        empty["spec"]["nodeName"] = json!("");
        assert_eq!(check_bindable(&empty, None), Ok(()));
    }
}
