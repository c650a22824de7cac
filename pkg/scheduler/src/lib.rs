//! The kubelite scheduler: watches pending pods and nodes, filters and scores nodes with
//! upstream's default plugins, and binds pods through `pods/binding`.
//!
//! Codemap: [`podinfo`]/[`nodeinfo`] are the precomputed views, [`cache`] holds nodes and
//! placed (bound or assumed) pods, [`queue`] the pending pods, [`framework`] + [`plugins`]
//! the filter/score pipeline, [`algorithm`] one decision, [`preemption`] the PostFilter that
//! evicts lower-priority pods, [`slim`] the pod informer's decoding, `scheduler` the running
//! loop, `recorder` the rate-limited Event writer.
//! Invariant: a scheduling decision never does IO or parses API objects.

pub mod algorithm;
pub mod cache;
pub mod cli;
pub mod config;
mod events;
pub mod framework;
pub mod labels;
pub mod metrics;
pub mod nodeinfo;
pub mod plugins;
pub mod podinfo;
pub mod preemption;
pub mod quantity;
pub mod queue;
mod recorder;
mod scheduler;
pub mod slim;

use std::future::Future;

pub use config::{Config, FileConfig, LeaderElection, PluginWeights};
pub use kubelite_leaderelection::LeaseConfig;
pub use metrics::{router, Metrics};

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--config` file is invalid.
    #[error("invalid scheduler config: {0}")]
    Config(String),
    /// Leadership was lost (the process should exit and restart, as upstream does).
    #[error("leader election: {0}")]
    LeaderElection(#[from] kubelite_leaderelection::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the scheduler until `shutdown` completes. With leader election configured it first
/// waits to hold the Lease, and returns `Err(LeaderElection)` if the Lease is lost.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let work = scheduler::run(client.clone(), config.clone());
    match config.leader_election {
        None => {
            tokio::select! {
                r = work => r,
                _ = shutdown => Ok(()),
            }
        }
        Some(le) => {
            let elector = kubelite_leaderelection::LeaderElector::new(
                client,
                &le.namespace,
                &le.lease_name,
                &le.identity,
                le.lease,
            );
            match elector.run(work, shutdown).await? {
                Some(r) => r,
                None => Ok(()),
            }
        }
    }
}
