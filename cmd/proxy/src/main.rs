//! `kubelite-proxy`: flags → config → `kubelite_proxy::run` (or `--cleanup`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kubelite_proxy::{Config, Mode};
use tracing::info;

/// The kubelite service proxy (kube-proxy iptables mode).
#[derive(Debug, Parser)]
#[command(name = "kubelite-proxy", version)]
struct Args {
    /// Path to a kubeconfig (default: in-cluster or $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Apiserver URL (overrides the kubeconfig's server).
    #[arg(long)]
    master: Option<String>,
    /// Remove every chain, jump rule and the sink interface, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Prefix of the iptables chains the proxy owns.
    #[arg(long, default_value = "KUBELITE-")]
    chain_prefix: String,
    /// Service ClusterIP range (same as the apiserver's --service-cluster-ip-range).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Interface the service range is routed to.
    #[arg(long, default_value = "kubelite0")]
    interface: String,
    /// Pod CIDR; ClusterIP traffic from outside it is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// Masquerade all ClusterIP traffic.
    #[arg(long)]
    masquerade_all: bool,
    /// Minimum seconds between rule syncs.
    #[arg(long, default_value_t = 1.0)]
    min_sync_period: f64,
    /// Seconds between full resyncs.
    #[arg(long, default_value_t = 30.0)]
    sync_period: f64,
    /// Proxy mode: auto, iptables or userspace.
    #[arg(long, default_value = "auto")]
    proxy_mode: String,
    /// Address the userspace fallback binds NodePorts on.
    #[arg(long, default_value = "0.0.0.0")]
    userspace_bind: IpAddr,
    /// Address serving /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:10256")]
    healthz_bind_address: SocketAddr,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mode = match args.proxy_mode.as_str() {
        "auto" => Mode::Auto,
        "iptables" => Mode::Iptables,
        "userspace" => Mode::Userspace,
        other => anyhow::bail!("unknown --proxy-mode {other:?}"),
    };
    let config = Config {
        chain_prefix: args.chain_prefix.clone(),
        service_cidr: args.service_cluster_ip_range.clone(),
        interface: args.interface.clone(),
        cluster_cidr: args.cluster_cidr.clone(),
        masquerade_all: args.masquerade_all,
        min_sync_period: Duration::from_secs_f64(args.min_sync_period),
        sync_period: Duration::from_secs_f64(args.sync_period),
        mode,
        userspace_bind: args.userspace_bind,
        healthz_bind_address: Some(args.healthz_bind_address),
        ..Config::default()
    };
    if args.cleanup {
        kubelite_proxy::cleanup(&config).await?;
        info!("cleanup done");
        return Ok(());
    }
    let client = client(&args).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        let reason = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        info!(signal = reason, "shutting down");
    };
    kubelite_proxy::run(client, config, shutdown).await?;
    Ok(())
}
