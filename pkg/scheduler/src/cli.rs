//! Command-line flags of the scheduler, shared by `kubelite-scheduler` and `kubelite
//! scheduler` so both take exactly the same flags, and the run sequence behind them
//! (client → /healthz + /metrics listener → [`crate::run`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use kubelite_component_base::ClientOptions;
use tracing::info;

use crate::{Config, FileConfig, LeaderElection, LeaseConfig};

/// Errors turning flags into a running scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig or `--master` is unusable.
    #[error(transparent)]
    Client(#[from] kubelite_component_base::Error),
    /// The `--config` file could not be read.
    #[error("reading {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The health listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The scheduler itself failed.
    #[error(transparent)]
    Scheduler(#[from] crate::Error),
}

/// The kubelite scheduler.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    #[command(flatten)]
    pub client: ClientOptions,
    /// Schedule pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// Run leader election on a Lease before scheduling.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader election Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "kube-scheduler")]
    pub leader_elect_resource_name: String,
    /// YAML file with plugin weights (see `kubelite_scheduler::FileConfig`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address serving /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:10259")]
    pub healthz_bind_address: SocketAddr,
}

impl Options {
    /// The scheduler configuration these flags describe (reads `--config`); `identity` names
    /// this instance in the leader election Lease.
    pub fn scheduler_config(&self, identity: &str) -> Result<Config, Error> {
        let mut config = Config {
            scheduler_name: self.scheduler_name.clone(),
            ..Config::default()
        };
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
                path: path.clone(),
                source,
            })?;
            config.apply_file(&FileConfig::from_yaml(&text)?);
        }
        if self.leader_elect {
            config.leader_election = Some(LeaderElection {
                namespace: self.leader_elect_resource_namespace.clone(),
                lease_name: self.leader_elect_resource_name.clone(),
                identity: identity.to_string(),
                lease: LeaseConfig::default(),
            });
        }
        Ok(config)
    }

    /// Runs the scheduler these flags describe until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let config = self.scheduler_config(&kubelite_component_base::identity())?;
        let client = self.client.client().await?;
        let addr = self.healthz_bind_address;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        info!(addr = %bound, "serving /healthz and /metrics");
        let router = crate::router(config.metrics.clone());
        let health = tokio::spawn(async move { axum::serve(listener, router).await });
        let result = crate::run(client, config, shutdown).await;
        health.abort();
        info!("scheduler stopped");
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    #[test]
    fn defaults_match_upstream() {
        let cli = Cli::try_parse_from(["x"]).expect("parse");
        let config = cli.options.scheduler_config("me").expect("config");
        assert_eq!(config.scheduler_name, "default-scheduler");
        let le = config
            .leader_election
            .expect("leader election on by default");
        assert_eq!(
            (le.namespace.as_str(), le.lease_name.as_str()),
            ("kube-system", "kube-scheduler")
        );
        assert_eq!(le.identity, "me");
        let off = Cli::try_parse_from(["x", "--leader-elect=false", "--master", "http://h:1"])
            .expect("parse");
        assert!(off
            .options
            .scheduler_config("me")
            .expect("config")
            .leader_election
            .is_none());
        assert_eq!(off.options.client.master.as_deref(), Some("http://h:1"));
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let cli = Cli::try_parse_from(["x", "--config", "/nonexistent/s.yaml"]).expect("parse");
        let err = cli.options.scheduler_config("me").expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/s.yaml"), "{err}");
    }
}
