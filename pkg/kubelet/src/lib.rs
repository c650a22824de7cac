//! The kubelet: registers its Node, renews its Lease and runs the node's pods in a container runtime.

pub mod cli;
mod containers;
mod dns;
pub mod docker;
mod events;
mod exec;
pub mod hollow;
mod hooks;
mod images;
mod init;
mod metrics;
mod node;
mod pods;
mod portforward;
mod probe;
mod projection;
mod remotecommand;
pub mod runtime;
mod server;
mod spdy;
mod spec;
mod static_pods;
mod status;
mod streams;
mod volumes;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

pub use runtime::{FakeRuntime, Runtime, RuntimeError};

/// Label every container this kubelet creates carries: the node name.
pub const LABEL_NODE: &str = "kubelite.io/node";
/// Label: the pod uid.
pub const LABEL_POD_UID: &str = "kubelite.io/pod-uid";
/// Label: the pod name.
pub const LABEL_POD_NAME: &str = "kubelite.io/pod-name";
/// Label: the pod namespace.
pub const LABEL_POD_NAMESPACE: &str = "kubelite.io/pod-namespace";
/// Label: the container name in the pod spec, or [`SANDBOX`] for the pause container.
pub const LABEL_CONTAINER: &str = "kubelite.io/container";
/// Label: the restart attempt (restartCount) of an app container.
pub const LABEL_ATTEMPT: &str = "kubelite.io/attempt";
/// The [`LABEL_CONTAINER`] value of the sandbox.
pub const SANDBOX: &str = "POD";
/// The default pause image, built by `hack/images`.
pub const PAUSE_IMAGE: &str = "kubelite/pause:v1";

/// Errors that stop the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("api: {0}")]
    Kube(#[from] kube::Error),
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Binding the kubelet API failed.
    #[error("kubelet api on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("config: {0}")]
    Config(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the kubelet runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node name.
    pub node_name: String,
    /// The address the apiserver reaches the kubelet API on (Node InternalIP).
    pub node_ip: String,
    /// Where the kubelet API listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The Docker bridge network pods get IPs on.
    pub pod_network: String,
    /// Its subnet.
    pub pod_subnet: String,
    /// The sandbox image.
    pub pause_image: String,
    /// How often the Lease is renewed.
    pub lease_interval: std::time::Duration,
    /// How often Node status is re-posted even without change.
    pub status_interval: std::time::Duration,
    /// Where pod volumes and per-pod files (resolv.conf, hosts) live: `<root>/pods/<uid>/`.
    pub root_dir: std::path::PathBuf,
    /// Cluster DNS server IPs for `dnsPolicy: ClusterFirst` pods; empty means the host's.
    pub cluster_dns: Vec<String>,
    /// The cluster domain in pod DNS search paths.
    pub cluster_domain: String,
    /// A directory of static pod manifests (YAML/JSON) this kubelet runs on its own.
    pub pod_manifest_path: Option<std::path::PathBuf>,
    /// The host resolv.conf that `dnsPolicy: Default` pods get.
    pub resolv_conf: std::path::PathBuf,
    /// Run no containers: a [`hollow::HollowRuntime`] fakes them, for control-plane scale tests.
    pub hollow: bool,
}

impl Config {
    /// Defaults for a node with this name.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            node_ip: "127.0.0.1".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 10250)),
            pod_network: "kubelite-pods".into(),
            pod_subnet: "10.244.0.0/16".into(),
            pause_image: PAUSE_IMAGE.into(),
            lease_interval: std::time::Duration::from_secs(10),
            status_interval: std::time::Duration::from_secs(60),
            root_dir: "/var/lib/kubelite/kubelet".into(),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            pod_manifest_path: None,
            resolv_conf: "/etc/resolv.conf".into(),
            hollow: false,
        }
    }
}

/// Shared state of one kubelet.
pub(crate) struct Kubelet {
    pub client: kube::Client,
    pub config: Config,
    pub runtime: Arc<dyn Runtime>,
    pub port: u16,
    pub events: events::Recorder,
}

/// Runs the kubelet with Docker until `shutdown` resolves. Containers keep running after
/// shutdown: a restarted kubelet adopts them by their labels.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let runtime: Arc<dyn Runtime> = if config.hollow {
        Arc::new(hollow::HollowRuntime::default())
    } else {
        Arc::new(docker::DockerRuntime::connect()?)
    };
    run_with_runtime(client, config, runtime, shutdown).await
}

/// Like [`run`], over any runtime.
pub async fn run_with_runtime(
    client: kube::Client,
    config: Config,
    runtime: Arc<dyn Runtime>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    info!(node = %config.node_name, %addr, "kubelet api listening");
    let kubelet = Arc::new(Kubelet {
        events: events::Recorder::spawn(client.clone()),
        client,
        config,
        runtime,
        port: addr.port(),
    });

    // The network may fail if Docker is down; node status then reports NotReady and pods wait.
    if let Err(e) = kubelet
        .runtime
        .ensure_network(&kubelet.config.pod_network, &kubelet.config.pod_subnet)
        .await
    {
        tracing::warn!(error = %e, "cannot create pod network yet");
    }
    let pods = pods::PodManager::new(kubelet.clone());
    let tasks = vec![
        tokio::spawn(node::run(kubelet.clone())),
        tokio::spawn(pods.clone().run()),
        tokio::spawn(server::serve(
            listener,
            server::router(kubelet.clone(), pods.clone()),
        )),
    ];
    shutdown.await;
    info!(node = %kubelet.config.node_name, "kubelet shutting down");
    for t in &tasks {
        t.abort();
    }
    pods.abort_all();
    Ok(())
}
