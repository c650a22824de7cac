//! The single-node dev cluster behind `kubelite up`: starts the components in order with
//! readiness gates, writes a kubeconfig entry, prints what to type next, and stops cleanly.
//!
//! Order: the API server (embedded store or etcd) and its `/readyz` gate, then the components
//! that talk to it over HTTP (scheduler, controller-manager, kubelet). Shutdown runs in reverse: clients first, then the
//! API server, so no component sees the API vanish under it.

pub mod kubeconfig;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubelite_apiserver::{Config as ApiConfig, StorageConfig};
use tokio::net::TcpListener;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "port {addr} is already in use (is another kubelite running? stop it or pass --listen)"
    )]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("apiserver: {0}")]
    ApiServer(#[from] kubelite_apiserver::ServerError),
    #[error("apiserver did not become ready within {0:?}")]
    NotReady(Duration),
    #[error("building the in-cluster client: {0}")]
    Client(String),
    #[error("scheduler: {0}")]
    Scheduler(#[from] kubelite_scheduler::Error),
    #[error("controller-manager: {0}")]
    Controllers(#[from] kubelite_controllers::Error),
    #[error("kubelet: {0}")]
    Kubelet(#[from] kubelite_kubelet::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What `kubelite up` needs to know.
#[derive(Clone, Debug)]
pub struct UpConfig {
    /// Where the embedded store keeps its data (`<data_dir>/store`).
    pub data_dir: PathBuf,
    /// Use these etcd endpoints instead of the embedded store.
    pub etcd_servers: Vec<String>,
    /// The kubeconfig file to add the `kubelite` context to.
    pub kubeconfig: PathBuf,
    /// Name of the cluster, user and context written to the kubeconfig.
    pub context: String,
    /// API server address.
    pub listen: SocketAddr,
    /// Wipe the data dir before starting.
    pub reset: bool,
    /// Name of this host's Node.
    pub node_name: String,
    /// Where the kubelet API listens (the API server proxies logs/exec here).
    pub kubelet_listen: SocketAddr,
}

/// How long the cluster may take to report ready before `up` gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Start the dev cluster and run it until `shutdown` completes.
pub async fn up(
    config: UpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let started = Instant::now();
    if config.reset {
        remove_dir_if_present(&config.data_dir)?;
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;

    // Bind first so a port conflict is a clear error before anything else starts.
    let listener = TcpListener::bind(config.listen).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            Error::PortInUse {
                addr: config.listen,
            }
        } else {
            Error::Listen {
                addr: config.listen,
                source,
            }
        }
    })?;
    let addr = listener.local_addr()?;
    let storage = if config.etcd_servers.is_empty() {
        StorageConfig::Embedded(config.data_dir.join("store"))
    } else {
        StorageConfig::Etcd {
            endpoints: config.etcd_servers.clone(),
            prefix: String::new(),
        }
    };
    let api_config = ApiConfig {
        listen: addr,
        storage: storage.clone(),
        ..ApiConfig::default()
    };

    progress("apiserver", "starting");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(kubelite_apiserver::serve(
        api_config,
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let url = format!("http://{addr}");
    tokio::select! {
        ready = wait_ready(&url, READY_TIMEOUT) => ready?,
        // The server ended before it was ready: that is its startup error.
        ended = &mut server => {
            return match ended {
                Ok(Err(e)) => Err(e.into()),
                _ => Err(Error::NotReady(started.elapsed())),
            };
        }
    }
    progress(
        "apiserver",
        &format!("ready at {url} ({} ms)", started.elapsed().as_millis()),
    );

    let client = client_for(&url)?;
    let components = tokio_util::sync::CancellationToken::new();
    let mut scheduler = {
        let stop = components.clone();
        let config = kubelite_scheduler::Config::default();
        tokio::spawn(kubelite_scheduler::run(
            client.clone(),
            config,
            async move { stop.cancelled().await },
        ))
    };
    progress("scheduler", "running");
    let mut controllers = {
        let stop = components.clone();
        let config = kubelite_controllers::Config::default();
        tokio::spawn(kubelite_controllers::run(
            client.clone(),
            config,
            async move { stop.cancelled().await },
        ))
    };
    progress("controller-manager", "running");
    let mut kubelet = {
        let stop = components.clone();
        let mut kc = kubelite_kubelet::Config::new(config.node_name.clone());
        kc.listen = config.kubelet_listen;
        kc.node_ip = config.kubelet_listen.ip().to_string();
        tokio::spawn(kubelite_kubelet::run(client.clone(), kc, async move {
            stop.cancelled().await
        }))
    };
    progress(
        "kubelet",
        &format!(
            "node {} (API on {})",
            config.node_name, config.kubelet_listen
        ),
    );

    kubeconfig::upsert(&config.kubeconfig, &config.context, &url)?;
    print_summary(&config, &url, &storage);

    tokio::select! {
        _ = shutdown => {
            tracing::info!("kubelite stopping: shutdown requested");
            components.cancel();
            if let Ok(Err(e)) = scheduler.await {
                tracing::warn!(error = %e, "scheduler stopped with an error");
            }
            if let Ok(Err(e)) = controllers.await {
                tracing::warn!(error = %e, "controller-manager stopped with an error");
            }
            if let Ok(Err(e)) = kubelet.await {
                tracing::warn!(error = %e, "kubelet stopped with an error");
            }
            let _ = stop_tx.send(());
            match server.await {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "apiserver task failed"),
            }
        }
        ended = &mut server => {
            components.cancel();
            match ended {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "apiserver task failed"),
            }
        }
        // A component that ends on its own is a failure of the cluster: stop everything.
        ended = &mut scheduler => {
            components.cancel();
            let _ = stop_tx.send(());
            let _ = server.await;
            match ended {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "scheduler task failed"),
            }
        }
        ended = &mut kubelet => {
            components.cancel();
            let _ = stop_tx.send(());
            let _ = server.await;
            match ended {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "kubelet task failed"),
            }
        }
        ended = &mut controllers => {
            components.cancel();
            let _ = stop_tx.send(());
            let _ = server.await;
            match ended {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "controller-manager task failed"),
            }
        }
    }
    Ok(())
}

/// A kube client for the components, talking to the API server at `url`.
fn client_for(url: &str) -> Result<kube::Client> {
    let uri = url
        .parse()
        .map_err(|e| Error::Client(format!("{url}: {e}")))?;
    kube::Client::try_from(kube::Config::new(uri)).map_err(|e| Error::Client(e.to_string()))
}

/// Poll `/readyz` until it answers 200 or `timeout` passes.
pub async fn wait_ready(url: &str, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(resp) = client.get(format!("{url}/readyz")).send().await {
            if resp.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady(timeout));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::DataDir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn progress(component: &str, what: &str) {
    println!("  {component:<20} {what}");
}

fn print_summary(config: &UpConfig, url: &str, storage: &StorageConfig) {
    let store = match storage {
        StorageConfig::Embedded(dir) => format!("embedded ({})", dir.display()),
        StorageConfig::Etcd { endpoints, .. } => format!("etcd ({})", endpoints.join(",")),
    };
    let kc = config.kubeconfig.display();
    println!();
    println!("kubelite is running.");
    println!("  API server   {url}");
    println!("  storage      {store}");
    println!("  node         {}", config.node_name);
    println!("  data dir     {}", config.data_dir.display());
    println!("  kubeconfig   {kc} (context {})", config.context);
    println!();
    println!("Try:");
    println!("  export KUBECONFIG={kc}");
    println!("  kubectl get namespaces");
    println!("  kubectl create deployment web --image=kubelite/busybox -- sleep 3600");
    println!("  kubectl get pods -o wide");
    println!();
    println!("Stop with Ctrl-C; starting again on the same data dir keeps every object.");
}
