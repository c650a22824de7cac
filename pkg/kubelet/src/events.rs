//! Pod events the kubelet records (FailedMount, Unhealthy, Killing, hook failures), best effort.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;

/// Records an event about `pod` (`Normal` or `Warning`); failures are only logged, because an
/// event must never stop a sync.
pub(crate) async fn record(
    k: &crate::Kubelet,
    pod: &Pod,
    type_: &str,
    reason: &str,
    message: &str,
    field_path: Option<String>,
) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let ev = Event {
        metadata: ObjectMeta {
            // Upstream's recorder names events `<object>.<hex nanoseconds>`.
            name: Some(format!(
                "{name}.{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            )),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(k.config.node_name.clone()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(k.config.node_name.clone()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(k.client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::warn!(error = %e, reason, "recording event failed");
    }
}

/// The `spec.containers{name}` field path events use for a container.
pub(crate) fn container_path(init: bool, name: &str) -> Option<String> {
    Some(if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    })
}
