//! The single-node dev cluster behind `kubelite up`: starts the components in order with
//! readiness gates, writes a kubeconfig entry, prints what to type next, and stops cleanly.
//!
//! Order: the API server (embedded store or etcd) and its `/readyz` gate, then the components
//! that talk to it over HTTP (scheduler, controller-manager, the pod network, cluster DNS, the
//! service proxy, kubelets) and a node-Ready gate. Shutdown runs in reverse: clients first, then
//! the API server, so no component sees the API vanish under it. Pod containers keep running
//! across a restart (the kubelet adopts them); `kubelite down` removes them.

pub mod cli;
pub mod down;
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
    #[error("reading the hostname (pass --node-name): {source}")]
    Hostname { source: std::io::Error },
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
    #[error("proxy: {0}")]
    Proxy(#[from] kubelite_proxy::Error),
    #[error("dns: {0}")]
    Dns(#[from] kubelite_dns::Error),
    #[error("docker: {0} (kubelite needs a running Docker Engine)")]
    Docker(String),
    #[error("the service proxy needs root to program iptables (run as root or pass --no-proxy)")]
    NotRoot,
    #[error("kubelite is already running on this data dir (pid {pid}, {path}); stop it with `kubelite down`")]
    AlreadyRunning { pid: u32, path: PathBuf },
    #[error("stopping: {0}")]
    Stop(String),
    #[error("node {0} did not become Ready within {1:?}")]
    NodeNotReady(String, Duration),
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
    /// Run the service proxy (iptables; needs root).
    pub proxy: bool,
    /// Extra hollow nodes (kubelets that run nothing) for multi-node experiments.
    pub hollow_nodes: usize,
    /// The Docker network pods get IPs on, and its subnet.
    pub pod_network: String,
    pub pod_subnet: String,
    /// The service ClusterIP range (the API server allocates from it, the proxy routes it).
    pub service_cidr: String,
    /// Prefix of the proxy's iptables chains and name of its sink interface (tests use
    /// unique ones so they never touch a developer's running cluster).
    pub proxy_chain_prefix: String,
    pub proxy_interface: String,
}

impl UpConfig {
    /// The proxy settings this cluster uses (also what `kubelite down` cleans).
    pub fn proxy_config(&self) -> kubelite_proxy::Config {
        kubelite_proxy::Config {
            service_cidr: self.service_cidr.clone(),
            cluster_cidr: Some(self.pod_subnet.clone()),
            chain_prefix: self.proxy_chain_prefix.clone(),
            interface: self.proxy_interface.clone(),
            ..kubelite_proxy::Config::default()
        }
    }

    /// Names of every node this cluster runs.
    pub fn node_names(&self) -> Vec<String> {
        let mut names = vec![self.node_name.clone()];
        names.extend((0..self.hollow_nodes).map(|i| format!("{}-hollow-{i}", self.node_name)));
        names
    }
}

/// The `n`-th address of an IPv4 CIDR (`10.96.0.0/12`, 10 → `10.96.0.10`).
pub fn nth_address(cidr: &str, n: u32) -> Option<std::net::Ipv4Addr> {
    let base: std::net::Ipv4Addr = cidr.split('/').next()?.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(base).checked_add(n)?))
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
    let _pid = down::claim(&config.data_dir)?;
    // Before anything is created on the host, so `down` can always remove what this run made.
    down::DownConfig::for_cluster(&config).record()?;
    // Everything the cluster needs from the host, checked before anything starts.
    if config.proxy && !is_root() {
        return Err(Error::NotRoot);
    }
    let runtime = kubelite_kubelet::docker::DockerRuntime::connect()
        .map_err(|e| Error::Docker(e.to_string()))?;
    {
        use kubelite_kubelet::Runtime;
        runtime
            .version()
            .await
            .map_err(|e| Error::Docker(e.to_string()))?;
        // The pod network first: cluster DNS listens on its gateway.
        runtime
            .ensure_network(&config.pod_network, &config.pod_subnet)
            .await
            .map_err(|e| Error::Docker(e.to_string()))?;
    }
    let gateway = nth_address(&config.pod_subnet, 1)
        .ok_or_else(|| Error::Client(format!("bad pod subnet {}", config.pod_subnet)))?;
    let dns_ip = nth_address(&config.service_cidr, 10)
        .ok_or_else(|| Error::Client(format!("bad service CIDR {}", config.service_cidr)))?;

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
        service_cluster_ip_range: config.service_cidr.clone(),
        // The controller-manager's namespace controller deletes namespace content, as upstream.
        namespace_content_deletion: false,
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
    let mut dns = {
        let stop = components.clone();
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let dc = kubelite_dns::Config {
            listen: SocketAddr::new(gateway.into(), 53),
            upstreams: kubelite_dns::parse_resolv_conf(&resolv),
            publish: Some(kubelite_dns::Publish {
                cluster_ip: dns_ip.into(),
                advertise_ip: gateway.into(),
                port: 53,
            }),
            ..kubelite_dns::Config::default()
        };
        let server = kubelite_dns::Server::bind(client.clone(), dc).await?;
        tokio::spawn(async move { server.serve(async move { stop.cancelled().await }).await })
    };
    progress(
        "dns",
        &format!("{dns_ip} (kube-system/kube-dns, serving on {gateway}:53)"),
    );
    let mut proxy = if config.proxy {
        let stop = components.clone();
        let pc = config.proxy_config();
        let handle = tokio::spawn(kubelite_proxy::run(client.clone(), pc, async move {
            stop.cancelled().await
        }));
        progress(
            "proxy",
            &format!("iptables, service CIDR {}", config.service_cidr),
        );
        handle
    } else {
        progress("proxy", "disabled (--no-proxy): Services are not routed");
        // Ends with the other components, so the shutdown sequence can await it like them.
        let stop = components.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            Ok::<(), kubelite_proxy::Error>(())
        })
    };
    let mut kubelets = tokio::task::JoinSet::new();
    for (i, name) in config.node_names().into_iter().enumerate() {
        let stop = components.clone();
        let mut kc = kubelite_kubelet::Config::new(name.clone());
        kc.pod_network = config.pod_network.clone();
        kc.pod_subnet = config.pod_subnet.clone();
        kc.cluster_dns = vec![dns_ip.to_string()];
        kc.root_dir = config.data_dir.join("kubelet").join(&name);
        if i == 0 {
            kc.listen = config.kubelet_listen;
            kc.node_ip = config.kubelet_listen.ip().to_string();
            kc.pod_manifest_path = Some(config.data_dir.join("manifests"));
        } else {
            kc.listen = SocketAddr::new(config.kubelet_listen.ip(), 0);
            kc.node_ip = config.kubelet_listen.ip().to_string();
            kc.hollow = true;
        }
        let c = client.clone();
        kubelets.spawn(async move {
            kubelite_kubelet::run(c, kc, async move { stop.cancelled().await }).await
        });
    }
    progress(
        "kubelet",
        &format!(
            "node {} (API on {}){}",
            config.node_name,
            config.kubelet_listen,
            if config.hollow_nodes > 0 {
                format!(" + {} hollow node(s)", config.hollow_nodes)
            } else {
                String::new()
            }
        ),
    );
    tokio::select! {
        ready = wait_node_ready(&client, &config.node_name, READY_TIMEOUT) => ready?,
        Some(ended) = kubelets.join_next() => {
            components.cancel();
            let _ = stop_tx.send(());
            let _ = server.await;
            return match ended {
                Ok(Err(e)) => Err(e.into()),
                _ => Err(Error::NodeNotReady(config.node_name.clone(), started.elapsed())),
            };
        }
    }
    progress(
        "node",
        &format!(
            "{} Ready ({} ms since start)",
            config.node_name,
            started.elapsed().as_millis()
        ),
    );

    kubeconfig::upsert(&config.kubeconfig, &config.context, &url)?;
    print_summary(&config, &url, &storage, &dns_ip.to_string());

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
            while let Some(ended) = kubelets.join_next().await {
                if let Ok(Err(e)) = ended {
                    tracing::warn!(error = %e, "kubelet stopped with an error");
                }
            }
            if let Ok(Err(e)) = proxy.await {
                tracing::warn!(error = %e, "proxy stopped with an error");
            }
            if let Ok(Err(e)) = dns.await {
                tracing::warn!(error = %e, "dns stopped with an error");
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
        Some(ended) = kubelets.join_next() => {
            components.cancel();
            let _ = stop_tx.send(());
            let _ = server.await;
            match ended {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "kubelet task failed"),
            }
        }
        ended = &mut proxy => {
            components.cancel();
            let _ = stop_tx.send(());
            let _ = server.await;
            match ended {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "proxy task failed"),
            }
        }
        ended = &mut dns => {
            components.cancel();
            let _ = stop_tx.send(());
            let _ = server.await;
            match ended {
                Ok(r) => r?,
                Err(e) => tracing::warn!(error = %e, "dns task failed"),
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

/// Poll the Node until its Ready condition is True or `timeout` passes.
pub async fn wait_node_ready(client: &kube::Client, node: &str, timeout: Duration) -> Result<()> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(n)) = nodes.get_opt(node).await {
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NodeNotReady(node.to_string(), timeout));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether this process runs as root (effective uid 0), read from /proc so no unsafe call is
/// needed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether this host can run a whole dev cluster with its proxy: root (iptables, the service
/// CIDR's dummy link) and a Docker daemon that answers `docker info`. The tests that start
/// one skip without it.
pub fn can_run_cluster() -> bool {
    is_root()
        && std::process::Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
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

fn print_summary(config: &UpConfig, url: &str, storage: &StorageConfig, dns: &str) {
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
    println!("  cluster DNS  {dns} (cluster.local)");
    println!("  services     {}", config.service_cidr);
    println!("  data dir     {}", config.data_dir.display());
    println!("  kubeconfig   {kc} (context {})", config.context);
    println!();
    println!("Try:");
    println!("  export KUBECONFIG={kc}");
    println!("  kubectl get namespaces");
    println!("  kubectl create deployment web --image=kubelite/busybox:v1 -- sleep 3600");
    println!("  kubectl get pods -o wide");
    println!();
    println!("  kubectl apply -f manifests/examples/friendlyhello.yaml");
    println!();
    println!("Stop with Ctrl-C (pods keep running and are adopted on the next start) or");
    println!(
        "`kubelite down --data-dir {}` (stops it and removes its containers, pod network and rules).",
        config.data_dir.display()
    );
    println!("Starting again on the same data dir keeps every object.");
}
