//! Command-line flags of the kubelet, shared by `kubelite-kubelet` and `kubelite kubelet` so
//! both take exactly the same flags, and the run sequence behind them (client →
//! [`crate::run`]).

use std::future::Future;
use std::path::PathBuf;

use kubelite_component_base::ClientOptions;

use crate::Config;

/// Errors turning flags into a running kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig or `--master` is unusable.
    #[error(transparent)]
    Client(#[from] kubelite_component_base::Error),
    /// No `--node-name` and the hostname could not be read.
    #[error("reading the hostname (pass --node-name): {0}")]
    Hostname(std::io::Error),
    /// The kubelet failed.
    #[error(transparent)]
    Kubelet(#[from] crate::Error),
}

/// The kubelite node agent (Docker runtime).
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    #[command(flatten)]
    pub client: ClientOptions,
    /// Node name (default: the hostname).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Address the apiserver reaches the kubelet API on (Node InternalIP).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: String,
    /// Kubelet API port.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// Docker bridge network for pods.
    #[arg(long, default_value = "kubelite-pods")]
    pub pod_network: String,
    /// Subnet of the pod network.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_subnet: String,
    /// Directory for pod volumes and per-pod resolv.conf/hosts.
    #[arg(long, default_value = "/var/lib/kubelite/kubelet")]
    pub root_dir: PathBuf,
    /// Cluster DNS server IP for dnsPolicy ClusterFirst (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    /// Cluster domain in pod DNS search paths.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Resolver config that dnsPolicy Default pods inherit.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Directory of static pod manifests to run.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// Run no containers, only pretend to (control-plane scale tests).
    #[arg(long)]
    pub hollow: bool,
}

impl Options {
    /// The kubelet configuration these flags describe; `hostname` names the node when
    /// `--node-name` is not given.
    pub fn kubelet_config(&self, hostname: &str) -> Config {
        let name = self
            .node_name
            .clone()
            .unwrap_or_else(|| hostname.to_string());
        let mut config = Config::new(name);
        config.node_ip = self.node_ip.clone();
        config.listen = std::net::SocketAddr::from(([0, 0, 0, 0], self.port));
        config.pod_network = self.pod_network.clone();
        config.pod_subnet = self.pod_subnet.clone();
        config.root_dir = self.root_dir.clone();
        config.cluster_dns = self.cluster_dns.clone();
        config.cluster_domain = self.cluster_domain.clone();
        config.resolv_conf = self.resolv_conf.clone();
        config.pod_manifest_path = self.pod_manifest_path.clone();
        config.hollow = self.hollow;
        config
    }

    /// Runs the kubelet these flags describe until `shutdown` completes (containers keep
    /// running; the next start adopts them).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let hostname = match &self.node_name {
            Some(_) => String::new(),
            None => kubelite_component_base::hostname().map_err(Error::Hostname)?,
        };
        let config = self.kubelet_config(&hostname);
        let client = self.client.client().await?;
        crate::run(client, config, shutdown).await?;
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
            "--node-name=n1",
            "--port=10350",
            "--cluster-dns=10.96.0.10,10.96.0.11",
            "--hollow",
        ])
        .expect("parse");
        let config = cli.options.kubelet_config("host");
        assert_eq!(config.node_name, "n1");
        assert_eq!(config.listen.port(), 10350);
        assert_eq!(config.cluster_dns, ["10.96.0.10", "10.96.0.11"]);
        assert!(config.hollow);
        assert_eq!(config.pod_network, "kubelite-pods");
    }
}
