//! Command-line flags of the service proxy, shared by `kubelite-proxy` and `kubelite proxy`
//! so both take exactly the same flags, and the run sequence behind them (`--cleanup`, or
//! client → [`crate::run`]).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use kubelite_component_base::ClientOptions;
use tracing::info;

use crate::{Config, Mode};

/// Errors turning flags into a running proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig or `--master` is unusable.
    #[error(transparent)]
    Client(#[from] kubelite_component_base::Error),
    /// A sync period is negative or not finite.
    #[error("{flag}: {value} is not a usable number of seconds")]
    Period {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: f64,
    },
    /// The proxy failed.
    #[error(transparent)]
    Proxy(#[from] crate::Error),
}

/// The kubelite service proxy (kube-proxy iptables mode).
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    #[command(flatten)]
    pub client: ClientOptions,
    /// Remove every chain, jump rule and the sink interface, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Prefix of the iptables chains the proxy owns.
    #[arg(long, default_value = "KUBELITE-")]
    pub chain_prefix: String,
    /// Service ClusterIP range (same as the apiserver's --service-cluster-ip-range).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// Interface the service range is routed to.
    #[arg(long, default_value = "kubelite0")]
    pub interface: String,
    /// Pod CIDR; ClusterIP traffic from outside it is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Masquerade all ClusterIP traffic.
    #[arg(long)]
    pub masquerade_all: bool,
    /// Minimum seconds between rule syncs.
    #[arg(long, default_value_t = 1.0)]
    pub min_sync_period: f64,
    /// Seconds between full resyncs.
    #[arg(long, default_value_t = 30.0)]
    pub sync_period: f64,
    /// Proxy mode: auto, iptables or userspace.
    #[arg(long, default_value = "auto", value_parser = parse_mode)]
    pub proxy_mode: Mode,
    /// Address the userspace fallback binds NodePorts on.
    #[arg(long, default_value = "0.0.0.0")]
    pub userspace_bind: IpAddr,
    /// Address serving /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:10256")]
    pub healthz_bind_address: SocketAddr,
}

/// Parses `--proxy-mode`.
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "auto" => Ok(Mode::Auto),
        "iptables" => Ok(Mode::Iptables),
        "userspace" => Ok(Mode::Userspace),
        other => Err(format!(
            "unknown proxy mode {other:?} (auto, iptables or userspace)"
        )),
    }
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|_| Error::Period { flag, value })
}

impl Options {
    /// The proxy configuration these flags describe.
    pub fn proxy_config(&self) -> Result<Config, Error> {
        Ok(Config {
            chain_prefix: self.chain_prefix.clone(),
            service_cidr: self.service_cluster_ip_range.clone(),
            interface: self.interface.clone(),
            cluster_cidr: self.cluster_cidr.clone(),
            masquerade_all: self.masquerade_all,
            min_sync_period: seconds("--min-sync-period", self.min_sync_period)?,
            sync_period: seconds("--sync-period", self.sync_period)?,
            mode: self.proxy_mode,
            userspace_bind: self.userspace_bind,
            healthz_bind_address: Some(self.healthz_bind_address),
            ..Config::default()
        })
    }

    /// With `--cleanup` removes the proxy's rules and interface and returns; otherwise runs
    /// the proxy until `shutdown` completes (rules stay installed, as upstream).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let config = self.proxy_config()?;
        if self.cleanup {
            crate::cleanup(&config).await?;
            info!("cleanup done");
            return Ok(());
        }
        let client = self.client.client().await?;
        crate::run(client, config, shutdown).await?;
        info!("proxy stopped");
        Ok(())
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
    fn flags_become_the_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--chain-prefix=KT-",
            "--proxy-mode=userspace",
            "--min-sync-period=0.5",
            "--cluster-cidr=10.244.0.0/16",
        ])
        .expect("parse");
        let config = cli.options.proxy_config().expect("config");
        assert_eq!(config.chain_prefix, "KT-");
        assert_eq!(config.mode, Mode::Userspace);
        assert_eq!(config.min_sync_period, Duration::from_millis(500));
        assert_eq!(config.cluster_cidr.as_deref(), Some("10.244.0.0/16"));
        assert!(Cli::try_parse_from(["x", "--proxy-mode=ipvs"]).is_err());
        let bad = Cli::try_parse_from(["x", "--sync-period=-1"]).expect("parse");
        assert!(bad.options.proxy_config().is_err());
    }
}
