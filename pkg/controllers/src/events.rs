//! Records core/v1 Events about objects (what `kubectl describe` shows). Best effort: a failed
//! event never fails a sync.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use kube::api::{Api, ApiResource, ObjectMeta, PostParams};
use kube::Resource;
use tracing::debug;

use crate::util::now;

/// Writes Events on behalf of one controller.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
}

impl Recorder {
    /// A recorder whose events name `component` as their source.
    pub fn new(client: kube::Client, component: &str) -> Self {
        Self {
            client,
            component: component.to_string(),
        }
    }

    /// Records a `Normal` event.
    pub fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        let ar = ApiResource::erase::<K>(&());
        self.record(&ar, obj.meta(), "Normal", reason, message);
    }

    /// Records a `Warning` event.
    pub fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        let ar = ApiResource::erase::<K>(&());
        self.record(&ar, obj.meta(), "Warning", reason, message);
    }

    /// Records a `Normal` event about an object of kind `ar` (the object may be a view).
    pub fn normal_for<K: Resource>(
        &self,
        ar: &ApiResource,
        obj: &K,
        reason: &str,
        message: String,
    ) {
        self.record(ar, obj.meta(), "Normal", reason, message);
    }

    /// Records a `Warning` event about an object of kind `ar`.
    pub fn warning_for<K: Resource>(
        &self,
        ar: &ApiResource,
        obj: &K,
        reason: &str,
        message: String,
    ) {
        self.record(ar, obj.meta(), "Warning", reason, message);
    }

    fn record(
        &self,
        ar: &ApiResource,
        meta: &ObjectMeta,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let ts = now();
        let event = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{name}.{:016x}", rand::random::<u64>())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(ar.api_version.clone()),
                kind: Some(ar.kind.clone()),
                name: Some(name),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            first_timestamp: Some(ts.clone()),
            last_timestamp: Some(ts),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(err) = api.create(&PostParams::default(), &event).await {
                debug!(error = %err, "failed to record event");
            }
        });
    }
}
