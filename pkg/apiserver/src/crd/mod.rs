//! CustomResourceDefinitions: the part of the resource table that changes while the server
//! runs. A reconcile task turns the stored CRDs into served resources (one per served version,
//! each with a schema-driven strategy and a watch cache), publishes them as one immutable table
//! that request routing, discovery and OpenAPI read, then reports `NamesAccepted` and
//! `Established`. Deleting a CRD deletes its objects first, then the definition.

mod custom;
mod definition;
pub mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use kubelite_api::resource::{builtin_resources, CustomNames, ResourceInfo};
use kubelite_api::strategy::Strategy;
use tokio::sync::Notify;

use crate::openapi::{schema_name, V3Documents};

pub use definition::definition_strategy;
pub use reconcile::run;

/// The finalizer that makes deleting a CRD remove its objects first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Whether a built-in resource already uses `plural` in `group` (any version).
pub fn builtin_plural_taken(group: &str, plural: &str) -> bool {
    builtin_resources()
        .iter()
        .any(|r| r.group == group && r.plural == plural)
}

/// One served custom resource version.
#[derive(Clone)]
pub struct Entry {
    pub info: &'static ResourceInfo,
    pub strategy: Arc<dyn Strategy>,
    /// The CRD serves several versions over one storage (answers rewrite apiVersion).
    pub multi_version: bool,
    /// The version's OpenAPI v3 component schema (for `kubectl explain`), if it has one.
    pub openapi_schema: Option<serde_json::Value>,
}

#[derive(Default)]
struct Table {
    by_path: HashMap<(String, String, String), Entry>,
    all: Arc<Vec<ResourceInfo>>,
    /// The OpenAPI v3 documents of this table, built on first use.
    openapi: OnceLock<Arc<V3Documents>>,
}

/// (CRD uid, version name, CRD generation).
type StrategyKey = (String, String, i64);

/// The served custom resources, swapped as a whole by the reconcile task.
pub struct Dynamic {
    table: RwLock<Arc<Table>>,
    /// Entries already leaked, so that reconciling the same CRD again reuses them.
    leaked: Mutex<HashMap<CustomNames, &'static ResourceInfo>>,
    /// Strategies already built, by (CRD uid, version, CRD generation).
    strategies: Mutex<HashMap<StrategyKey, Arc<dyn Strategy>>>,
    /// Wakes the reconcile task (a CRD was written).
    pub kick: Arc<Notify>,
    /// Events each custom resource's watch cache keeps.
    pub watch_cache_events: usize,
}

impl Dynamic {
    /// A table with no custom resources.
    pub fn new(watch_cache_events: usize) -> Self {
        let table = Table {
            by_path: HashMap::new(),
            all: Arc::new(builtin_resources().to_vec()),
            openapi: OnceLock::new(),
        };
        Self {
            table: RwLock::new(Arc::new(table)),
            leaked: Mutex::new(HashMap::new()),
            strategies: Mutex::new(HashMap::new()),
            kick: Arc::new(Notify::new()),
            watch_cache_events,
        }
    }

    fn current(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The served custom resource at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Entry> {
        self.current()
            .by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Built-in resources followed by the served custom ones.
    pub fn all_resources(&self) -> Arc<Vec<ResourceInfo>> {
        self.current().all.clone()
    }

    /// The `/openapi/v3` documents of every served resource (rebuilt after a CRD change).
    pub fn openapi(&self) -> Arc<V3Documents> {
        let table = self.current();
        table
            .openapi
            .get_or_init(|| {
                let overrides = table
                    .by_path
                    .values()
                    .filter_map(|e| {
                        let name = schema_name(e.info.group, e.info.version, e.info.kind);
                        e.openapi_schema.clone().map(|s| (name, s))
                    })
                    .collect();
                Arc::new(V3Documents::build_with(&table.all, &overrides))
            })
            .clone()
    }

    /// Every served custom resource entry.
    pub fn entries(&self) -> Vec<Entry> {
        self.current().by_path.values().cloned().collect()
    }

    /// The `'static` resource for `names`, leaked once per distinct value.
    fn info_for(&self, names: &CustomNames) -> &'static ResourceInfo {
        let mut leaked = self.leaked.lock().unwrap_or_else(PoisonError::into_inner);
        leaked
            .entry(names.clone())
            .or_insert_with(|| Box::leak(Box::new(names.leak())))
    }

    /// The strategy of a served version, built once per CRD generation (building compiles the
    /// schema and leaks column names).
    fn strategy_for(
        &self,
        info: &'static ResourceInfo,
        crd: &CustomResourceDefinition,
        version: &CustomResourceDefinitionVersion,
    ) -> Result<Arc<dyn Strategy>, String> {
        let key = (
            crd.metadata.uid.clone().unwrap_or_default(),
            version.name.clone(),
            crd.metadata.generation.unwrap_or(0),
        );
        let mut cache = self
            .strategies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = cache.get(&key) {
            if std::ptr::eq(s.info(), info) {
                return Ok(s.clone());
            }
        }
        let s: Arc<dyn Strategy> = Arc::new(custom::CustomStrategy::new(info, crd, version)?);
        cache.insert(key, s.clone());
        Ok(s)
    }

    /// Publish a new set of served custom resources.
    fn install(&self, entries: Vec<Entry>) {
        // The reconcile task runs every few seconds; an unchanged set keeps the current table
        // (and its built OpenAPI documents) instead of rebuilding both.
        let unchanged = {
            let current = self.current();
            current.by_path.len() == entries.len()
                && entries.iter().all(|e| {
                    let key = (
                        e.info.group.to_string(),
                        e.info.version.to_string(),
                        e.info.plural.to_string(),
                    );
                    current.by_path.get(&key).is_some_and(|c| {
                        std::ptr::eq(c.info, e.info)
                            && Arc::ptr_eq(&c.strategy, &e.strategy)
                            && c.multi_version == e.multi_version
                    })
                })
        };
        if unchanged {
            return;
        }
        let mut all = builtin_resources().to_vec();
        let mut custom: Vec<&Entry> = entries.iter().collect();
        custom.sort_by(|a, b| {
            (a.info.group, a.info.plural, a.info.version).cmp(&(
                b.info.group,
                b.info.plural,
                b.info.version,
            ))
        });
        all.extend(custom.iter().map(|e| e.info.clone()));
        let by_path = entries
            .into_iter()
            .map(|e| {
                let key = (
                    e.info.group.to_string(),
                    e.info.version.to_string(),
                    e.info.plural.to_string(),
                );
                (key, e)
            })
            .collect();
        let table = Table {
            by_path,
            all: Arc::new(all),
            openapi: OnceLock::new(),
        };
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }
}
