//! Records core/v1 Events about objects (what `kubectl describe` shows). Best effort: a failed
//! event never fails a sync, and like client-go's spam filter an object gets at most a burst
//! of 25 events per reason, then one per 5 minutes (a 10,000-pod scale-up writes 25
//! SuccessfulCreate events, not 10,000).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use kube::api::{Api, ApiResource, ObjectMeta, PostParams};
use kube::Resource;
use tracing::debug;

use crate::util::now;

/// Events an object may get at once per (type, reason), as client-go's `defaultSpamBurst`.
const SPAM_BURST: f64 = 25.0;
/// One more event is allowed per this period, as client-go's `defaultSpamQPS` (1/300).
const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Objects tracked by the spam filter before full buckets are forgotten (client-go: 4096 LRU).
const SPAM_KEYS: usize = 4096;

/// Writes Events on behalf of one controller.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    /// spam key -> (tokens left, when last refilled)
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl Recorder {
    /// A recorder whose events name `component` as their source.
    pub fn new(client: kube::Client, component: &str) -> Self {
        Self {
            client,
            component: component.to_string(),
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `key`; false means the event is dropped as spam.
    fn allow(&self, key: String) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = |(tokens, at): (f64, Instant)| {
            let earned = now.duration_since(at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
            (SPAM_BURST.min(tokens + earned), now)
        };
        if buckets.len() >= SPAM_KEYS && !buckets.contains_key(&key) {
            buckets.retain(|_, b| refill(*b).0 < SPAM_BURST);
        }
        let bucket = buckets.entry(key).or_insert((SPAM_BURST, now));
        *bucket = refill(*bucket);
        if bucket.0 < 1.0 {
            return false;
        }
        bucket.0 -= 1.0;
        true
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
        let key = format!(
            "{}/{}/{}/{namespace}/{name}/{}/{type_}/{reason}",
            self.component,
            ar.api_version,
            ar.kind,
            meta.uid.as_deref().unwrap_or_default()
        );
        if !self.allow(key) {
            debug!(object = %name, reason, "event dropped by the spam filter");
            return;
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spam_filter_allows_a_burst_per_object_and_reason() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let r = Recorder::new(client, "test");
        let allowed = (0..100).filter(|_| r.allow("a".into())).count();
        assert_eq!(allowed, 25);
        assert!(r.allow("b".into()));
    }
}
