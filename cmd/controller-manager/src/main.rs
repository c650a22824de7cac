//! kubelite-controller-manager: parse flags, init tracing, run the controllers (optionally under
//! leader election) until SIGINT or SIGTERM.

use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kubelite-controller-manager",
    version,
    about = "The kubelite controller-manager"
)]
struct Cli {
    /// Path to a kubeconfig; defaults to the usual kube-rs lookup.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The apiserver URL (overrides the kubeconfig's server).
    #[arg(long)]
    master: Option<String>,
    /// Controllers to run: names, `*` for all, `-name` to disable one.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// How long a node lease may go unrenewed before the node is marked unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// Default tolerationSeconds for pods on unreachable nodes.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pod_eviction_timeout: Duration,
    /// Run only while holding the kube-system/kube-controller-manager Lease.
    #[arg(long, default_value_t = false)]
    leader_elect: bool,
}

/// Parses `40s`, `5m`, `1h`, `250ms` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration unit in {s:?}")),
    }
}

async fn client(cli: &Cli) -> anyhow::Result<kube::Client> {
    let mut config = match (&cli.kubeconfig, &cli.master) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        // --master alone: talk to that URL without credentials, like upstream.
        (None, Some(master)) => kube::Config::new(master.parse()?),
        (None, None) => kube::Config::infer().await?,
    };
    if let Some(master) = &cli.master {
        config.cluster_url = master.parse()?;
    }
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = kubelite_controllers::Config {
        controllers: cli.controllers.clone(),
        node_monitor_grace_period: cli.node_monitor_grace_period,
        pod_eviction_timeout: cli.pod_eviction_timeout,
        ..Default::default()
    };
    let client = client(&cli).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
            _ = sigterm.recv() => tracing::info!("received SIGTERM, shutting down"),
        }
        let _ = stop_tx.send(true);
    });
    let shutdown = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let controllers = kubelite_controllers::run(client.clone(), config, shutdown(stop_rx.clone()));
    if !cli.leader_elect {
        controllers.await?;
        return Ok(());
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let identity = format!("{host}_{}", std::process::id());
    let elector = kubelite_leaderelection::LeaderElector::new(
        client,
        "kube-system",
        "kube-controller-manager",
        &identity,
        kubelite_leaderelection::LeaseConfig::default(),
    );
    if let Some(result) = elector.run(controllers, shutdown(stop_rx)).await? {
        result?;
    }
    Ok(())
}
