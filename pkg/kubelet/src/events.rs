//! Pod events the kubelet records (Pulling, Pulled, Created, Started, Killing, BackOff,
//! Unhealthy, FailedMount, hook failures), with upstream's reasons and messages. Recording never
//! blocks a sync: events go through a channel to one task that posts them in order and, like
//! upstream's event correlator, folds a repeat of an identical event into its `count`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use tokio::sync::mpsc;

/// Upstream's event reasons the kubelet uses, so call sites cannot misspell them.
pub(crate) mod reason {
    pub const PULLING: &str = "Pulling";
    pub const PULLED: &str = "Pulled";
    pub const FAILED: &str = "Failed";
    pub const BACK_OFF: &str = "BackOff";
    pub const NEVER_PULL: &str = "ErrImageNeverPull";
    pub const CREATED: &str = "Created";
    pub const STARTED: &str = "Started";
    pub const KILLING: &str = "Killing";
    pub const UNHEALTHY: &str = "Unhealthy";
}

/// How many distinct events the correlator remembers before it starts over.
const CORRELATOR_SIZE: usize = 4096;

/// The sending side of the kubelet's event queue; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    tx: mpsc::UnboundedSender<Event>,
    /// Every event handed to the recorder, for unit tests that check reasons and messages.
    #[cfg(test)]
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    /// Starts the posting task on the current Tokio runtime; it ends when every sender is gone.
    pub(crate) fn spawn(client: kube::Client) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(post_loop(client, rx));
        Self {
            tx,
            #[cfg(test)]
            seen: Default::default(),
        }
    }
}

/// Identity of an event for the correlator: what upstream compares to count repeats.
type EventKey = (String, String, String, String, String);

fn event_key(ev: &Event) -> EventKey {
    let o = &ev.involved_object;
    (
        o.uid.clone().unwrap_or_default(),
        o.field_path.clone().unwrap_or_default(),
        ev.type_.clone().unwrap_or_default(),
        ev.reason.clone().unwrap_or_default(),
        ev.message.clone().unwrap_or_default(),
    )
}

async fn post_loop(client: kube::Client, mut rx: mpsc::UnboundedReceiver<Event>) {
    // Event name and count of each distinct event posted so far.
    let mut seen: HashMap<EventKey, (String, i32)> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        let ns = ev.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        let key = event_key(&ev);
        if let Some((name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": ev.last_timestamp});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                // Expired or deleted: post it afresh below.
                Err(e) => tracing::debug!(error = %e, "event count update failed"),
            }
        }
        if seen.len() >= CORRELATOR_SIZE {
            seen.clear();
        }
        let name = ev.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                seen.insert(key, (name, 1));
            }
            Err(e) => tracing::warn!(error = %e, reason = ?ev.reason, "recording event failed"),
        }
    }
}

/// Records an event about `pod` (`Normal` or `Warning`). Best effort and non-blocking: an event
/// must never stop or slow a sync.
pub(crate) fn record(
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
            namespace: Some(ns),
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
    #[cfg(test)]
    k.events
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((reason.to_string(), message.to_string()));
    if k.events.tx.send(ev).is_err() {
        tracing::debug!(reason, "event recorder is gone");
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
