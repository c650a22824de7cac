//! kubelite-controllers: the controller-manager. Each controller is a watch-driven reconcile
//! loop: shared informers feed local caches, event handlers only enqueue keys, and workers
//! reconcile one key at a time from the caches, retrying with backoff on error.

pub mod cli;
pub mod deployment;
mod deployment_rollout;
mod deployment_status;
pub mod deployment_util;
pub mod discovery;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod gc;
mod gc_resources;
pub mod informer;
pub mod job;
mod job_util;
pub mod namespace;
mod namespace_conditions;
pub mod nodelifecycle;
pub mod queue;
pub mod replicaset;
pub mod serviceaccount;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod util;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, Node, Pod, ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tracing::info;

use crate::informer::Informer;

/// Errors of the controller-manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the apiserver failed.
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A controller name in [`Config::controllers`] is unknown.
    #[error("unknown controller {0:?}")]
    UnknownController(String),
    /// An object could not be handled (bad spec, serialisation).
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every controller this crate runs, by its `--controllers` name.
pub const ALL_CONTROLLERS: &[&str] = &[
    "replicaset",
    "replicationcontroller",
    "deployment",
    "endpoint",
    "endpointslice",
    "serviceaccount",
    "garbagecollector",
    "job",
    "namespace",
    "nodelifecycle",
];

/// Controller-manager settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Controllers to run, as in `--controllers`: names, `*` for all, `-name` to disable one.
    /// Empty means all.
    pub controllers: Vec<String>,
    /// How long a node's lease may go unrenewed before the node is marked unreachable.
    pub node_monitor_grace_period: Duration,
    /// How often node leases are checked.
    pub node_monitor_period: Duration,
    /// tolerationSeconds used for pods that do not tolerate the unreachable taint.
    pub pod_eviction_timeout: Duration,
    /// Concurrent workers per controller.
    pub workers: usize,
    /// First delay of the Job pod-failure backoff (doubles per failure, capped at 6 min).
    pub job_backoff_base: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            controllers: Vec::new(),
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            pod_eviction_timeout: Duration::from_secs(300),
            workers: 5,
            job_backoff_base: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Whether the controller `name` is enabled by [`Config::controllers`].
    pub fn enabled(&self, name: &str) -> bool {
        if self.controllers.is_empty() {
            return true;
        }
        if self.controllers.iter().any(|c| c == &format!("-{name}")) {
            return false;
        }
        self.controllers.iter().any(|c| c == name || c == "*")
    }

    fn validate(&self) -> Result<()> {
        for c in &self.controllers {
            let name = c.trim_start_matches('-');
            if name != "*" && !ALL_CONTROLLERS.contains(&name) {
                return Err(Error::UnknownController(c.clone()));
            }
        }
        Ok(())
    }
}

/// The shared informers every controller draws from; only the used ones are started.
pub struct Informers {
    /// Pods.
    pub pods: Arc<Informer<Pod>>,
    /// ReplicaSets.
    pub replicasets: Arc<Informer<ReplicaSet>>,
    /// ReplicationControllers.
    pub replicationcontrollers: Arc<Informer<ReplicationController>>,
    /// Deployments.
    pub deployments: Arc<Informer<Deployment>>,
    /// Services.
    pub services: Arc<Informer<Service>>,
    /// Endpoints.
    pub endpoints: Arc<Informer<Endpoints>>,
    /// EndpointSlices.
    pub endpointslices: Arc<Informer<EndpointSlice>>,
    /// Namespaces.
    pub namespaces: Arc<Informer<Namespace>>,
    /// ServiceAccounts.
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    /// Jobs.
    pub jobs: Arc<Informer<Job>>,
    /// Nodes.
    pub nodes: Arc<Informer<Node>>,
    /// Leases (node heartbeats live in kube-node-lease).
    pub leases: Arc<Informer<Lease>>,
}

impl Informers {
    fn new(client: &kube::Client) -> Self {
        Self {
            pods: Informer::new(client.clone()),
            replicasets: Informer::new(client.clone()),
            replicationcontrollers: Informer::new(client.clone()),
            deployments: Informer::new(client.clone()),
            services: Informer::new(client.clone()),
            endpoints: Informer::new(client.clone()),
            endpointslices: Informer::new(client.clone()),
            namespaces: Informer::new(client.clone()),
            serviceaccounts: Informer::new(client.clone()),
            jobs: Informer::new(client.clone()),
            nodes: Informer::new(client.clone()),
            leases: Informer::new(client.clone()),
        }
    }

    fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        [
            self.pods.start(),
            self.replicasets.start(),
            self.replicationcontrollers.start(),
            self.deployments.start(),
            self.services.start(),
            self.endpoints.start(),
            self.endpointslices.start(),
            self.namespaces.start(),
            self.serviceaccounts.start(),
            self.jobs.start(),
            self.nodes.start(),
            self.leases.start(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    async fn wait_ready(&self) {
        self.pods.wait_ready().await;
        self.replicasets.wait_ready().await;
        self.replicationcontrollers.wait_ready().await;
        self.deployments.wait_ready().await;
        self.services.wait_ready().await;
        self.endpoints.wait_ready().await;
        self.endpointslices.wait_ready().await;
        self.namespaces.wait_ready().await;
        self.serviceaccounts.wait_ready().await;
        self.jobs.wait_ready().await;
        self.nodes.wait_ready().await;
        self.leases.wait_ready().await;
    }
}

/// What a controller gets to register itself: the client, informers and config.
#[derive(Clone)]
pub struct Shared {
    /// Client to the apiserver.
    pub client: kube::Client,
    /// Shared informers.
    pub informers: Arc<Informers>,
    /// Settings.
    pub config: Config,
}

/// Runs the enabled controllers until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate()?;
    let shared = Shared {
        informers: Arc::new(Informers::new(&client)),
        client,
        config: config.clone(),
    };
    // Controllers register their handlers before any informer starts, so no event is missed.
    let mut workers: Vec<(&str, BoxFuture<'static, ()>)> = Vec::new();
    for name in ALL_CONTROLLERS {
        if !config.enabled(name) {
            continue;
        }
        let fut = match *name {
            "replicaset" => replicaset::register(&shared),
            "replicationcontroller" => replicaset::register_rc(&shared),
            "deployment" => deployment::register(&shared),
            "endpoint" => endpoints::register_endpoints(&shared),
            "endpointslice" => endpointslice::register(&shared),
            "serviceaccount" => serviceaccount::register(&shared),
            "garbagecollector" => gc::register(&shared),
            "job" => job::register(&shared),
            "namespace" => namespace::register(&shared),
            "nodelifecycle" => nodelifecycle::register(&shared),
            _ => continue,
        };
        workers.push((name, fut));
    }
    let informer_tasks = shared.informers.start();
    let abort_informers = || informer_tasks.iter().for_each(|t| t.abort());
    tokio::pin!(shutdown);
    tokio::select! {
        _ = shared.informers.wait_ready() => {}
        _ = &mut shutdown => {
            abort_informers();
            info!("shutdown requested before caches synced");
            return Ok(());
        }
    }
    let names: Vec<&str> = workers.iter().map(|(n, _)| *n).collect();
    info!(controllers = ?names, "caches synced, starting controllers");
    let mut set = tokio::task::JoinSet::new();
    for (_, fut) in workers {
        set.spawn(fut);
    }
    shutdown.await;
    info!("shutting down controllers");
    set.abort_all();
    abort_informers();
    Ok(())
}
