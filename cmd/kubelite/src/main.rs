//! `kubelite`: the hyperkube-style binary. `kubelite up` runs the single-node dev cluster;
//! the other subcommands run one component with the same flags as its own binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubelite",
    version,
    about = "A Kubernetes-lite control plane in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the single-node dev cluster on an embedded store and write a kubeconfig.
    Up(UpArgs),
    /// Stop the dev cluster of a data dir and remove its containers, rules and interface.
    Down(DownArgs),
    /// Run the API server alone (the same flags as `kubelite-apiserver`).
    Apiserver(kubelite_apiserver::options::Options),
}

#[derive(clap::Args)]
struct DownArgs {
    /// Data directory of the dev cluster.
    #[arg(long, default_value = ".kubelite/data")]
    data_dir: PathBuf,
    /// Name of the cluster's Node (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// How many hollow nodes `up --nodes` added (their names derive from the node name).
    #[arg(long, default_value_t = 0)]
    nodes: usize,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Data directory of the dev cluster (the embedded store lives in <data-dir>/store).
    #[arg(long, default_value = ".kubelite/data")]
    data_dir: PathBuf,
    /// Kubeconfig to add the `kubelite` context to (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// API server listen address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Use these etcd endpoints (comma-separated) instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Wipe the data dir before starting.
    #[arg(long)]
    reset: bool,
    /// Name of this host's Node (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Where the kubelet API listens.
    #[arg(long, default_value = "127.0.0.1:10250")]
    kubelet_listen: SocketAddr,
    /// Do not run the service proxy (it needs root for iptables); Services are then not routed.
    #[arg(long)]
    no_proxy: bool,
    /// Add this many hollow nodes (kubelets that run nothing) for multi-node experiments.
    #[arg(long, default_value_t = 0)]
    nodes: usize,
    /// The Docker network pods get their IPs on.
    #[arg(long, default_value = "kubelite-pods")]
    pod_network: String,
    /// Its subnet (the gateway, .1, serves cluster DNS).
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_subnet: String,
    /// The Service ClusterIP range (kube-dns gets its tenth address).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli.command {
        Command::Up(args) => {
            let kubeconfig = match args.kubeconfig {
                Some(p) => p,
                None => default_kubeconfig()?,
            };
            let config = kubelite_cluster::UpConfig {
                data_dir: args.data_dir,
                etcd_servers: args.etcd_servers,
                kubeconfig,
                context: "kubelite".into(),
                listen: args.listen,
                reset: args.reset,
                node_name: match args.node_name {
                    Some(n) => n,
                    None => hostname()?,
                },
                kubelet_listen: args.kubelet_listen,
                proxy: !args.no_proxy,
                hollow_nodes: args.nodes,
                pod_network: args.pod_network,
                pod_subnet: args.pod_subnet,
                service_cidr: args.service_cidr,
                proxy_chain_prefix: kubelite_proxy::Config::default().chain_prefix,
                proxy_interface: kubelite_proxy::Config::default().interface,
            };
            kubelite_cluster::up(config, kubelite_apiserver::shutdown_signal()).await?;
        }
        Command::Down(args) => {
            let node = match args.node_name {
                Some(n) => n,
                None => hostname()?,
            };
            let mut node_names = vec![node.clone()];
            node_names.extend((0..args.nodes).map(|i| format!("{node}-hollow-{i}")));
            let config = kubelite_cluster::down::DownConfig {
                data_dir: args.data_dir,
                node_names,
                proxy: kubelite_proxy::Config::default(),
                timeout: std::time::Duration::from_secs(30),
            };
            kubelite_cluster::down::down(&config).await?;
        }
        Command::Apiserver(options) => {
            kubelite_apiserver::run(options.into_config(), kubelite_apiserver::shutdown_signal())
                .await?;
        }
    }
    Ok(())
}

/// `$KUBECONFIG` (its first entry) or `~/.kube/config`, as kubectl resolves it.
fn default_kubeconfig() -> anyhow::Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --kubeconfig")?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

/// This host's name, lower-cased as Node names must be.
fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the hostname; pass --node-name")?;
    Ok(name.trim().to_ascii_lowercase())
}
