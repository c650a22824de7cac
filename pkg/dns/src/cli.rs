//! Command-line flags of cluster DNS, shared by `kubelite-dns` and `kubelite dns` so both
//! take exactly the same flags, and the run sequence behind them (upstreams from resolv.conf
//! → client → [`crate::run`]).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use kubelite_component_base::ClientOptions;
use tracing::info;

use crate::{parse_resolv_conf, Config, Publish};

/// Errors turning flags into a running DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig or `--master` is unusable.
    #[error(transparent)]
    Client(#[from] kubelite_component_base::Error),
    /// `--resolv-conf` could not be read.
    #[error("reading {path}: {source}")]
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error(transparent)]
    Dns(#[from] crate::Error),
}

/// Cluster DNS for kubelite.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    #[command(flatten)]
    pub client: ClientOptions,
    /// UDP and TCP listen address.
    #[arg(long, default_value = "0.0.0.0:53")]
    pub listen: SocketAddr,
    /// The cluster domain served authoritatively.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// TTL of cluster answers, in seconds.
    #[arg(long, default_value_t = 30)]
    pub ttl: u32,
    /// resolv.conf whose nameservers receive every other name.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Upstream resolvers (ip:port), instead of reading --resolv-conf.
    #[arg(long = "upstream", value_delimiter = ',')]
    pub upstreams: Vec<SocketAddr>,
    /// Publish as kube-system/kube-dns with this ClusterIP (needs --advertise-address).
    #[arg(long, requires = "advertise_address")]
    pub publish_cluster_ip: Option<IpAddr>,
    /// The address the proxy should route kube-dns traffic to.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
}

impl Options {
    /// The server configuration these flags describe (reads `--resolv-conf` unless
    /// `--upstream` is given).
    pub fn dns_config(&self) -> Result<Config, Error> {
        let upstreams = if self.upstreams.is_empty() {
            let text =
                std::fs::read_to_string(&self.resolv_conf).map_err(|source| Error::ResolvConf {
                    path: self.resolv_conf.clone(),
                    source,
                })?;
            parse_resolv_conf(&text)
        } else {
            self.upstreams.clone()
        };
        let publish = match (self.publish_cluster_ip, self.advertise_address) {
            (Some(cluster_ip), Some(advertise_ip)) => Some(Publish {
                cluster_ip,
                advertise_ip,
                port: self.listen.port(),
            }),
            _ => None,
        };
        Ok(Config {
            listen: self.listen,
            cluster_domain: self.cluster_domain.clone(),
            ttl: self.ttl,
            upstreams,
            publish,
        })
    }

    /// Runs the DNS server these flags describe until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let config = self.dns_config()?;
        let client = self.client.client().await?;
        crate::run(client, config, shutdown).await?;
        info!("kubelite-dns stopped");
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
            "--listen=127.0.0.1:5353",
            "--upstream=127.0.0.1:53,127.0.0.2:53",
            "--publish-cluster-ip=10.96.0.10",
            "--advertise-address=10.244.0.1",
        ])
        .expect("parse");
        let config = cli.options.dns_config().expect("config");
        assert_eq!(config.upstreams.len(), 2);
        let publish = config.publish.expect("publish");
        assert_eq!(publish.port, 5353);
        assert_eq!(publish.cluster_ip.to_string(), "10.96.0.10");
        // Publishing needs the address to advertise.
        assert!(Cli::try_parse_from(["x", "--publish-cluster-ip=10.96.0.10"]).is_err());
    }

    #[test]
    fn upstreams_come_from_resolv_conf() {
        // No tempfile dev-dependency here: a per-process file, removed right after reading.
        let path = std::env::temp_dir().join(format!("kubelite-dns-cli-{}", std::process::id()));
        std::fs::write(&path, "nameserver 192.0.2.53\n").expect("write");
        let cli = Cli::try_parse_from(["x", "--resolv-conf", path.to_str().expect("utf-8")])
            .expect("parse");
        let config = cli.options.dns_config();
        let _ = std::fs::remove_file(&path);
        let config = config.expect("config");
        assert_eq!(config.upstreams, ["192.0.2.53:53".parse().expect("addr")]);
    }
}
