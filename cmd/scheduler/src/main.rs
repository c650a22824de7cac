//! `kubelite-scheduler`: flags → config → health/metrics server → `kubelite_scheduler::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kubelite_scheduler::{Config, FileConfig, LeaderElection, LeaseConfig};
use tracing::info;

/// The kubelite scheduler.
#[derive(Debug, Parser)]
#[command(name = "kubelite-scheduler", version)]
struct Args {
    /// Path to a kubeconfig (default: in-cluster or $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Apiserver URL (overrides the kubeconfig's server).
    #[arg(long)]
    master: Option<String>,
    /// Schedule pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Run leader election on a Lease before scheduling.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader election Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    /// YAML file with plugin weights (see `kubelite_scheduler::FileConfig`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address serving /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:10259")]
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
    let mut config = Config {
        scheduler_name: args.scheduler_name.clone(),
        ..Config::default()
    };
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.apply_file(&FileConfig::from_yaml(&text)?);
    }
    if args.leader_elect {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        config.leader_election = Some(LeaderElection {
            namespace: args.leader_elect_resource_namespace.clone(),
            lease_name: args.leader_elect_resource_name.clone(),
            identity: format!("{host}_{}", std::process::id()),
            lease: LeaseConfig::default(),
        });
    }
    let client = client(&args).await?;

    let listener = tokio::net::TcpListener::bind(args.healthz_bind_address).await?;
    info!(addr = %listener.local_addr()?, "serving /healthz and /metrics");
    let router = kubelite_scheduler::router(config.metrics.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        let reason = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        info!(signal = reason, "shutting down");
    };
    kubelite_scheduler::run(client, config, shutdown).await?;
    info!("scheduler stopped");
    Ok(())
}
