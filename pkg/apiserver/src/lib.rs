//! The Kubernetes REST API server: a generic registry (one code path for every kind, with
//! per-kind strategies from `kubelite_api`) over the [`kubelite_storage::Storage`] contract,
//! served with axum. [`run`] is the whole server; [`router`] is the HTTP surface for tests.
//!
//! Codemap:
//! - `routes`: resource URLs → verbs; `nonresource`: /version, discovery, OpenAPI; `health`.
//! - `registry/`: the generic store: `create`, `update` (PUT/PATCH/status), `delete`, `list`,
//!   `watch`, `subresources` (scale, binding, eviction), `events` (both Event APIs, one storage).
//! - `watch_cache`: one storage watch per resource, serving watches and RV=0 lists.
//! - `body`: request decoding, unknown/duplicate fields, Accept negotiation; `table`: Tables.
//! - `model`: the only place that calls `kubelite_api` (strategies, selectors, patches, meta).
//! - `error`: `ApiError` → `Status`, and the single storage-error mapping.
//! - `namespaces`, `services`, `event_ttl`: built-in objects, lifecycle, allocation, expiry.
//! - `proxy/`: log/exec/attach/portforward streamed or upgrade-relayed to the node's kubelet.
//!
//! Invariants: handlers never match on a kind except where upstream's registry does too
//! (create-time status reset, pod grace periods, Service allocation, namespace deletion);
//! storage errors become HTTP only through `ApiError::from_storage`; resourceVersion is never
//! stored, it is the storage mod revision.

pub mod body;
pub mod crd;
pub mod discovery;
pub mod dupfields;
pub mod error;
pub mod event_ttl;
pub mod health;
pub mod metrics;
pub mod model;
pub mod namespaces;
pub mod nonresource;
pub mod openapi;
pub mod options;
pub mod protobuf;
pub mod proxy;
pub mod registry;
pub mod routes;
pub mod services;
pub mod table;
pub mod watch_cache;
pub mod write_marks;

#[cfg(feature = "test-util")]
pub mod testing;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use kubelite_storage::Storage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
use registry::Registry;

/// Where objects are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// The embedded (redb) store in this directory.
    Embedded(PathBuf),
    /// An etcd cluster; every key is stored under `prefix`.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

impl std::str::FromStr for StorageConfig {
    type Err = String;

    /// `embedded:<dir>`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("embedded", dir)) if !dir.is_empty() => Ok(Self::Embedded(PathBuf::from(dir))),
            _ => Err(format!("invalid storage {s:?}: expected embedded:<dir>")),
        }
    }
}

/// Server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (default 127.0.0.1:6443).
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    /// Service ClusterIP range (default 10.96.0.0/12).
    pub service_cluster_ip_range: String,
    /// NodePort range, inclusive (default 30000-32767).
    pub node_port_range: (u16, u16),
    /// Interval of BOOKMARK events on watches that allow them (default 60 s).
    pub bookmark_interval: Duration,
    /// How long shutdown waits for open requests after the signal (default 5 s).
    pub shutdown_grace: Duration,
    /// How many recent events each resource's watch cache keeps for watches that resume from
    /// a resourceVersion (default 4096); older ones are read from storage.
    pub watch_cache_events: usize,
    /// How long Events are kept (upstream's `--event-ttl`, default 1 h).
    pub event_ttl: Duration,
    /// Delete a terminating namespace's content in the server itself (default true, for an
    /// API server without a controller-manager). `kubelite up` turns it off: there the
    /// controller-manager's discovery-driven namespace controller does it, as upstream.
    pub namespace_content_deletion: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            storage: StorageConfig::Embedded(PathBuf::from("./kubelite-data")),
            service_cluster_ip_range: "10.96.0.0/12".into(),
            node_port_range: (30000, 32767),
            bookmark_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            watch_cache_events: 4096,
            event_ttl: Duration::from_secs(3600),
            namespace_content_deletion: true,
        }
    }
}

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(#[from] kubelite_storage::Error),
    #[error("bootstrap: {0}")]
    Bootstrap(ApiError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// `host:port` the server is reachable at (for legacy discovery's serverAddressByClientCIDRs).
    pub server_address: String,
}

/// Open the configured storage.
pub async fn open_storage(config: &StorageConfig) -> Result<Arc<dyn Storage>, ServerError> {
    Ok(match config {
        StorageConfig::Embedded(dir) => {
            let dir = dir.clone();
            let store = tokio::task::spawn_blocking(move || {
                kubelite_storage_embedded::EmbeddedStore::open(
                    &dir,
                    kubelite_storage_embedded::Options::default(),
                )
            })
            .await
            .map_err(|e| ServerError::Config(format!("opening embedded store: {e}")))??;
            Arc::new(store)
        }
        StorageConfig::Etcd { endpoints, prefix } => {
            Arc::new(kubelite_storage_etcd::EtcdStore::connect(endpoints, prefix).await?)
        }
    })
}

/// Build the shared state over `storage`: watch caches for every resource, the built-in
/// namespaces and the `kubernetes` Service, and the namespace-lifecycle task.
pub async fn build_state(
    config: &Config,
    storage: Arc<dyn Storage>,
    port: u16,
    shutdown: CancellationToken,
) -> Result<AppState, ServerError> {
    let allocator =
        services::Allocator::new(&config.service_cluster_ip_range, config.node_port_range)
            .map_err(ServerError::Config)?;
    let mut caches = HashMap::new();
    for info in kubelite_api::resource::builtin_resources() {
        // Resources sharing storage (both Event APIs) share one cache.
        let prefix = registry::events::storage_info(info).prefix();
        if caches.contains_key(&prefix) {
            continue;
        }
        let cache = watch_cache::WatchCache::start(
            storage.clone(),
            prefix.clone(),
            config.watch_cache_events,
            shutdown.clone(),
        )
        .await?;
        caches.insert(prefix, cache);
    }
    // Namespace writes are marked so the create path can check the namespace in the watch
    // cache once the cache has caught up with them (see `namespaces::ensure_active`).
    let ns_prefix = namespaces::ns_info()
        .map(|i| i.prefix())
        .map_err(ServerError::Bootstrap)?;
    let marks = Arc::new(write_marks::WriteMarks::new(storage, &[ns_prefix]));
    let registry = Arc::new(Registry {
        storage: marks.clone(),
        write_marks: marks,
        caches: std::sync::RwLock::new(caches),
        crds: crd::Dynamic::new(config.watch_cache_events),
        allocator,
        namespace_kick: Arc::new(tokio::sync::Notify::new()),
        namespace_content_deletion: config.namespace_content_deletion,
        metrics: Arc::new(metrics::Metrics::new()),
        shutdown,
        bookmark_interval: config.bookmark_interval,
    });
    namespaces::bootstrap(&registry)
        .await
        .map_err(ServerError::Bootstrap)?;
    services::bootstrap(&registry, port)
        .await
        .map_err(ServerError::Bootstrap)?;
    tokio::spawn(namespaces::lifecycle(registry.clone()));
    tokio::spawn(event_ttl::run(registry.clone(), config.event_ttl));
    // Serve the stored CRDs before the server answers its first request.
    if let Err(e) = crd::reconcile::reconcile(&registry).await {
        tracing::warn!(error = %e, "serving stored custom resource definitions failed");
    }
    tokio::spawn(crd::run(registry.clone()));
    Ok(AppState {
        registry,
        server_address: format!("127.0.0.1:{port}"),
    })
}

/// The HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/version", get(nonresource::version))
        .route("/healthz", get(health::healthz))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi/v2", get(nonresource::openapi_v2))
        .route("/openapi/v3", get(nonresource::openapi_v3_root))
        .route("/openapi/v3/{*path}", get(nonresource::openapi_v3_doc))
        .route("/api", axum::routing::any(routes::handle))
        .route("/api/{*rest}", axum::routing::any(routes::handle))
        .route("/apis", axum::routing::any(routes::handle))
        .route("/apis/{*rest}", axum::routing::any(routes::handle))
        .fallback(|| async { ApiError::no_route() })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request log and metrics for every request.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let is_watch = req
        .uri()
        .query()
        .is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    let elapsed = started.elapsed();
    let (resource, collection) = resource_label(&path);
    let verb = match (is_watch, collection, method.as_str()) {
        (true, _, _) => "WATCH".to_string(),
        (false, true, "GET") => "LIST".to_string(),
        _ => method.to_string(),
    };
    state
        .registry
        .metrics
        .observe_request(&verb, &resource, code, elapsed);
    tracing::debug!(method = %method, path = %path, code, latency_ms = elapsed.as_millis() as u64, "request");
    resp
}

/// The resource of an API path for metrics (`pods`, `deployments/scale`; the path itself for
/// non-resource URLs) and whether it addresses a collection.
fn resource_label(path: &str) -> (String, bool) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return (path.to_string(), false),
    };
    match rest {
        ["namespaces", _, res] => ((*res).to_string(), true),
        ["namespaces", _, res, _, sub] => (format!("{res}/{sub}"), false),
        ["namespaces", _, res, ..] => ((*res).to_string(), false),
        [res] => ((*res).to_string(), true),
        [res, _, sub] => (format!("{res}/{sub}"), false),
        [res, ..] => ((*res).to_string(), false),
        [] => (path.to_string(), false),
    }
}

/// Bind `config.listen` and serve until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    serve(config, listener, shutdown).await
}

/// Serve on an already bound listener until `shutdown` completes; open requests (watches
/// included) get `config.shutdown_grace` to finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let storage = open_storage(&config.storage).await?;
    serve_with_storage(config, storage, listener, shutdown).await
}

/// [`serve`] over an already opened store (tests keep a handle to it).
pub async fn serve_with_storage(
    config: Config,
    storage: Arc<dyn Storage>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let token = CancellationToken::new();
    let state = build_state(&config, storage, addr.port(), token.clone()).await?;
    tracing::info!(address = %addr, storage = ?config.storage, "kubelite-apiserver listening");
    let app = router(state).into_make_service();
    let signal_token = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal_token.cancel();
    });
    let graceful = token.clone();
    // axum leaves Nagle on: small watch events and replies would wait for delayed ACKs (40 ms).
    let listener = listener.tap_io(|s| {
        if let Err(e) = s.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { graceful.cancelled().await });
    let grace = config.shutdown_grace;
    tokio::select! {
        r = server => r.map_err(ServerError::Serve)?,
        _ = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("shutdown grace period over; dropping open connections");
        }
    }
    tracing::info!(address = %addr, "kubelite-apiserver stopped: shutdown requested");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM: the shutdown signal every kubelite binary uses.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received Ctrl-C, shutting down"),
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_config_parses() {
        assert_eq!(
            "embedded:/tmp/x".parse::<StorageConfig>(),
            Ok(StorageConfig::Embedded("/tmp/x".into()))
        );
        assert!("bogus".parse::<StorageConfig>().is_err());
        assert_eq!(
            resource_label("/api/v1/namespaces/default/pods/x"),
            ("pods".into(), false)
        );
        assert_eq!(
            resource_label("/apis/apps/v1/deployments"),
            ("deployments".into(), true)
        );
        assert_eq!(
            resource_label("/apis/apps/v1/namespaces/d/deployments/x/scale"),
            ("deployments/scale".into(), false)
        );
    }
}
