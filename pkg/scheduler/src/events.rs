//! Writes to the API on behalf of the scheduler: the binding, the PodScheduled=False status
//! condition, and core/v1 Events (Scheduled / FailedScheduling).

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// POSTs `pods/<name>/binding` targeting `node`.
///
/// The scheduler's hottest write: the body is written straight into one pre-sized buffer and
/// the answer (a `Status`) is not decoded, instead of building a `serde_json::Value`,
/// serializing it, and decoding the reply into another (`Api::create_subresource`). Errors
/// are the same `kube::Error::Api` with the server's `Status`.
pub async fn bind(
    client: &kube::Client,
    ns: &str,
    name: &str,
    uid: &str,
    node: &str,
) -> kube::Result<()> {
    let url = format!("/api/v1/namespaces/{ns}/pods");
    let request = kube::core::Request::new(url)
        .create_subresource(
            "binding",
            name,
            &PostParams::default(),
            binding_body(ns, name, uid, node),
        )
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await?;
    Ok(())
}

/// The `Binding` object as JSON: `metadata.uid` only when known (the API server then
/// refuses a pod that was replaced under the same name).
fn binding_body(ns: &str, name: &str, uid: &str, node: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(128 + ns.len() + name.len() + uid.len() + node.len());
    b.extend_from_slice(br#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"#);
    json_string(&mut b, name);
    b.extend_from_slice(br#","namespace":"#);
    json_string(&mut b, ns);
    if !uid.is_empty() {
        b.extend_from_slice(br#","uid":"#);
        json_string(&mut b, uid);
    }
    b.extend_from_slice(br#"},"target":{"apiVersion":"v1","kind":"Node","name":"#);
    json_string(&mut b, node);
    b.extend_from_slice(b"}}");
    b
}

/// Appends `s` as a JSON string (quoted and escaped).
fn json_string(b: &mut Vec<u8>, s: &str) {
    // Serializing a `str` into a `Vec` has no failure case (no IO, no non-string keys).
    let _ = serde_json::to_writer(&mut *b, s);
}

/// Sets `PodScheduled=False, reason=Unschedulable` with `message`, unless the pod already
/// carries exactly that condition (avoids a write, and a watch event, per retry).
pub async fn mark_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    message: &str,
) -> kube::Result<()> {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let current = conditions.iter().find(|c| c.type_ == "PodScheduled");
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return Ok(());
    }
    // Keep the transition time when only the message changes (status stays False).
    let transition = current
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(Timestamp::now()));
    let mut list: Vec<serde_json::Value> = conditions
        .iter()
        .filter(|c| c.type_ != "PodScheduled")
        .map(|c| serde_json::to_value(c).unwrap_or(serde_json::Value::Null))
        .filter(|v| !v.is_null())
        .collect();
    list.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }));
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": list}})),
    )
    .await?;
    Ok(())
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Creates a core/v1 Event about `pod`.
pub async fn record(
    client: &kube::Client,
    component: &str,
    pod: &Pod,
    type_: &str,
    reason: &str,
    message: &str,
) -> kube::Result<()> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now();
    // Upstream names events "<object>.<unique hex>".
    let nanos = u64::try_from(now.as_nanosecond()).unwrap_or(0);
    let seq = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", nanos.wrapping_add(seq))),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        action: Some(
            match reason {
                "Scheduled" => "Binding",
                "Preempted" => "Preempting",
                _ => "Scheduling",
            }
            .into(),
        ),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &event).await?;
    Ok(())
}

/// Sets (or with `None` clears) `status.nominatedNodeName` through `pods/status`.
pub async fn set_nominated_node(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node: Option<&str>,
) -> kube::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"nominatedNodeName": node}})),
    )
    .await?;
    Ok(())
}

/// Evicts a preemption victim as upstream does: a `DisruptionTarget` condition
/// (reason `PreemptionByScheduler`), then a graceful DELETE (the kubelet finishes it), then a
/// `Preempted` event. A victim that is already gone is not an error.
pub async fn preempt_victim(
    client: &kube::Client,
    component: &str,
    ns: &str,
    name: &str,
    preemptor_uid: &str,
    node: &str,
) -> kube::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{component}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": Time(Timestamp::now()),
    }]}});
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(condition))
        .await
    {
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e),
        Ok(victim) => {
            match api.delete(name, &kube::api::DeleteParams::default()).await {
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            let message = format!("Preempted by pod {preemptor_uid} on node {node}");
            record(client, component, &victim, "Normal", "Preempted", &message).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_body_is_the_binding_object() {
        let cases = [
            ("ns", "p", "u-1", "node-1"),
            ("ns", "p", "", "node-1"),
            // Escaping: no valid name needs it, but the body must stay JSON whatever it gets.
            ("n\"s", "p\\q", "u\n", "n\u{1}"),
        ];
        for (ns, name, uid, node) in cases {
            let mut meta = json!({"name": name, "namespace": ns});
            if !uid.is_empty() {
                meta["uid"] = json!(uid);
            }
            let want = json!({
                "apiVersion": "v1", "kind": "Binding", "metadata": meta,
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let got: serde_json::Value =
                serde_json::from_slice(&binding_body(ns, name, uid, node)).expect("json body");
            assert_eq!(got, want, "{ns}/{name}");
        }
    }
}
