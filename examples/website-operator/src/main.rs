//! `website-operator`: installs the Website CRD and reconciles Websites in every namespace of
//! the cluster in the current kubeconfig (`kubelite up` writes one), until SIGINT or SIGTERM.

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let client = kube::Client::try_default()
        .await
        .context("building a client from the kubeconfig (is `kubelite up` running?)")?;
    website_operator::controller::install_crd(&client)
        .await
        .context("installing the Website CRD")?;
    info!("Website CRD established");
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let reason = tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupt",
            _ = term.recv() => "terminate",
        };
        info!(reason, "shutting down");
        let _ = stop.send(());
    });
    let shutdown = async move {
        let _ = stopped.await;
    };
    website_operator::run(client, shutdown).await;
    Ok(())
}
