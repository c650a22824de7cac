//! Shared informers: one watch + local cache per resource type, fanning changes out to
//! controller handlers that only enqueue keys.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;
use tracing::warn;

/// What happened to an object, with the cached version from before the change.
pub enum Change<'a, K> {
    /// The object is new to the cache.
    Added(&'a K),
    /// The object changed; `old` is the previously cached version.
    Updated { old: Arc<K>, new: &'a K },
    /// The object was deleted.
    Deleted(&'a K),
}

impl<K> Change<'_, K> {
    /// The object after the change (or the last known state of a deleted one).
    pub fn object(&self) -> &K {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

type Handler<K> = Arc<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// A watch-fed cache of one resource type plus the handlers to call on every change.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: Api<K>,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: Mutex<Vec<Handler<K>>>,
    used: std::sync::atomic::AtomicBool,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    /// Creates an informer over all namespaces; nothing is watched until [`Informer::start`].
    pub fn new(client: kube::Client) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Self {
            api: Api::all(client),
            store,
            writer: Mutex::new(Some(writer)),
            handlers: Mutex::new(Vec::new()),
            used: false.into(),
        })
    }

    /// The local cache; marks this informer as needed.
    pub fn store(&self) -> Store<K> {
        self.used.store(true, std::sync::atomic::Ordering::Relaxed);
        self.store.clone()
    }

    /// Registers a handler; must be called before [`Informer::start`].
    pub fn on_change(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.used.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut handlers) = self.handlers.lock() {
            handlers.push(Arc::new(handler));
        }
    }

    /// Looks up a cached object by namespace and name.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut key = ObjectRef::new(name);
        if let Some(ns) = namespace {
            key = key.within(ns);
        }
        self.store.get(&key)
    }

    /// Starts the watch if any controller uses this informer; returns the task, if started.
    pub fn start(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if !self.used.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let mut writer = self.writer.lock().ok()?.take()?;
        let this = self.clone();
        Some(tokio::spawn(async move {
            let handlers: Vec<Handler<K>> =
                this.handlers.lock().map(|h| h.clone()).unwrap_or_default();
            let mut stream = watcher::watcher(this.api.clone(), watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(err) => {
                        warn!(kind = %K::kind(&()), error = %err, "watch failed");
                        continue;
                    }
                };
                let old = match &event {
                    Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => {
                        this.store.get(&ObjectRef::from_obj(o))
                    }
                    _ => None,
                };
                writer.apply_watcher_event(&event);
                match &event {
                    Event::Apply(o) | Event::InitApply(o) => {
                        let change = match old {
                            Some(old) => Change::Updated { old, new: o },
                            None => Change::Added(o),
                        };
                        handlers.iter().for_each(|h| h(&change));
                    }
                    Event::Delete(o) => {
                        let change = Change::Deleted(o);
                        handlers.iter().for_each(|h| h(&change));
                    }
                    Event::Init | Event::InitDone => {}
                }
            }
        }))
    }

    /// Waits until the first list has been loaded into the cache.
    pub async fn wait_ready(&self) {
        if self.used.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = self.store.wait_until_ready().await;
        }
    }
}

/// `namespace/name` (or `name` for cluster-scoped objects), the queue key of an object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let name = obj.meta().name.clone().unwrap_or_default();
    match &obj.meta().namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    }
}

/// Splits a queue key into namespace and name.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// Hash-free helper so `Store::get` callers can build refs without repeating generics.
pub fn obj_ref<K>(namespace: Option<&str>, name: &str) -> ObjectRef<K>
where
    K: Resource<DynamicType = ()>,
    K::DynamicType: Eq + Hash + Clone,
{
    let r = ObjectRef::new(name);
    match namespace {
        Some(ns) => r.within(ns),
        None => r,
    }
}
