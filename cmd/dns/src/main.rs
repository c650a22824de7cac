//! `kubelite-dns`: flags → config (upstreams from resolv.conf) → `kubelite_dns::run` until
//! SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kubelite_dns::{parse_resolv_conf, Config, Publish};
use tracing::info;

/// Cluster DNS for kubelite.
#[derive(Debug, Parser)]
#[command(name = "kubelite-dns", version)]
struct Args {
    /// Path to a kubeconfig (default: in-cluster or $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Apiserver URL (overrides the kubeconfig's server).
    #[arg(long)]
    master: Option<String>,
    /// UDP and TCP listen address.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// The cluster domain served authoritatively.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// TTL of cluster answers, in seconds.
    #[arg(long, default_value_t = 30)]
    ttl: u32,
    /// resolv.conf whose nameservers receive every other name.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Upstream resolvers (ip:port), instead of reading --resolv-conf.
    #[arg(long = "upstream", value_delimiter = ',')]
    upstreams: Vec<SocketAddr>,
    /// Publish as kube-system/kube-dns with this ClusterIP (needs --advertise-address).
    #[arg(long, requires = "advertise_address")]
    publish_cluster_ip: Option<IpAddr>,
    /// The address the proxy should route kube-dns traffic to.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
}

async fn client(args: &Args) -> anyhow::Result<kube::Client> {
    let mut cfg = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).context("reading kubeconfig")?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None if args.master.is_some() => kube::Config::new("http://127.0.0.1".parse()?),
        None => kube::Config::infer()
            .await
            .context("inferring kube config")?,
    };
    if let Some(m) = &args.master {
        cfg.cluster_url = m.parse().context("parsing --master")?;
    }
    Ok(kube::Client::try_from(cfg)?)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async move {
        match term.as_mut() {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
        _ = term => info!("received SIGTERM"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let upstreams = if args.upstreams.is_empty() {
        let text = std::fs::read_to_string(&args.resolv_conf)
            .with_context(|| format!("reading {}", args.resolv_conf.display()))?;
        parse_resolv_conf(&text)
    } else {
        args.upstreams.clone()
    };
    let publish = match (args.publish_cluster_ip, args.advertise_address) {
        (Some(cluster_ip), Some(advertise_ip)) => Some(Publish {
            cluster_ip,
            advertise_ip,
            port: args.listen.port(),
        }),
        _ => None,
    };
    let config = Config {
        listen: args.listen,
        cluster_domain: args.cluster_domain.clone(),
        ttl: args.ttl,
        upstreams,
        publish,
    };
    let client = client(&args).await?;
    kubelite_dns::run(client, config, shutdown_signal()).await?;
    info!("kubelite-dns stopped");
    Ok(())
}
