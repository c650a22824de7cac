//! `kubelite-kubelet`: the node agent binary, a thin main over `kubelite_kubelet::run`.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "kubelite-kubelet",
    about = "kubelite node agent (Docker runtime)"
)]
struct Args {
    /// Node name (default: the hostname).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Address the apiserver reaches the kubelet API on (Node InternalIP).
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: String,
    /// Kubelet API port.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Docker bridge network for pods.
    #[arg(long, default_value = "kubelite-pods")]
    pod_network: String,
    /// Subnet of the pod network.
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_subnet: String,
    /// Directory for pod volumes and per-pod resolv.conf/hosts.
    #[arg(long, default_value = "/var/lib/kubelite/kubelet")]
    root_dir: std::path::PathBuf,
    /// Cluster DNS server IP for dnsPolicy ClusterFirst (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<String>,
    /// Cluster domain in pod DNS search paths.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Resolver config that dnsPolicy Default pods inherit.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: std::path::PathBuf,
    /// Directory of static pod manifests to run.
    #[arg(long)]
    pod_manifest_path: Option<std::path::PathBuf>,
    /// Run no containers, only pretend to (control-plane scale tests).
    #[arg(long)]
    hollow: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let node_name = match args.node_name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
            .trim()
            .to_lowercase(),
    };
    let mut config = kubelite_kubelet::Config::new(node_name);
    config.node_ip = args.node_ip;
    config.listen = std::net::SocketAddr::from(([0, 0, 0, 0], args.port));
    config.pod_network = args.pod_network;
    config.pod_subnet = args.pod_subnet;
    config.root_dir = args.root_dir;
    config.cluster_dns = args.cluster_dns;
    config.cluster_domain = args.cluster_domain;
    config.resolv_conf = args.resolv_conf;
    config.pod_manifest_path = args.pod_manifest_path;
    config.hollow = args.hollow;
    let client = kube::Client::try_default().await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("received interrupt");
    };
    kubelite_kubelet::run(client, config, shutdown).await?;
    Ok(())
}
