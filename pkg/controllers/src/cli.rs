//! Command-line flags of the controller-manager, shared by `kubelite-controller-manager` and
//! `kubelite controller-manager` so both take exactly the same flags, and the run sequence
//! behind them (client → optional leader election → [`crate::run`]).

use std::future::Future;
use std::time::Duration;

use kubelite_component_base::ClientOptions;

use crate::Config;

/// Errors turning flags into running controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig or `--master` is unusable.
    #[error(transparent)]
    Client(#[from] kubelite_component_base::Error),
    /// Leadership could not be taken or was lost.
    #[error("leader election: {0}")]
    LeaderElection(#[from] kubelite_leaderelection::Error),
    /// A controller failed.
    #[error(transparent)]
    Controllers(#[from] crate::Error),
}

/// The kubelite controller-manager.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    #[command(flatten)]
    pub client: ClientOptions,
    /// Controllers to run: names, `*` for all, `-name` to disable one.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// How long a node lease may go unrenewed before the node is marked unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// Default tolerationSeconds for pods on unreachable nodes.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub pod_eviction_timeout: Duration,
    /// Run only while holding the kube-system/kube-controller-manager Lease.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
}

/// Parses `40s`, `5m`, `1h`, `250ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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

impl Options {
    /// The controller-manager configuration these flags describe.
    pub fn controllers_config(&self) -> Config {
        Config {
            controllers: self.controllers.clone(),
            node_monitor_grace_period: self.node_monitor_grace_period,
            pod_eviction_timeout: self.pod_eviction_timeout,
            ..Config::default()
        }
    }

    /// Runs the controllers these flags describe until `shutdown` completes; with
    /// `--leader-elect` only while holding the Lease (released on shutdown).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let config = self.controllers_config();
        let client = self.client.client().await?;
        // One shutdown for two consumers (the controllers and the elector), both of which
        // must see it and finish on their own (the elector releases the Lease).
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let notify = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            std::future::pending::<()>().await
        };
        let controllers = crate::run(client.clone(), config, stopped(stop_rx.clone()));
        let work = async {
            if !self.leader_elect {
                return Ok(controllers.await?);
            }
            let elector = kubelite_leaderelection::LeaderElector::new(
                client,
                "kube-system",
                "kube-controller-manager",
                &kubelite_component_base::identity(),
                kubelite_leaderelection::LeaseConfig::default(),
            );
            if let Some(result) = elector.run(controllers, stopped(stop_rx)).await? {
                result?;
            }
            Ok(())
        };
        tokio::select! {
            r = work => r,
            _ = notify => Ok(()),
        }
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
    fn durations_and_controller_lists_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3d").is_err());
        let cli = Cli::try_parse_from([
            "x",
            "--controllers=*,-job",
            "--node-monitor-grace-period=10s",
            "--leader-elect",
        ])
        .expect("parse");
        let config = cli.options.controllers_config();
        assert!(config.enabled("replicaset") && !config.enabled("job"));
        assert_eq!(config.node_monitor_grace_period, Duration::from_secs(10));
        assert_eq!(config.pod_eviction_timeout, Duration::from_secs(300));
        assert!(cli.options.leader_elect);
        let off = Cli::try_parse_from(["x", "--leader-elect=false"]).expect("parse");
        assert!(!off.options.leader_elect);
    }
}
