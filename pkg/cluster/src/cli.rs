//! Command-line flags of `kubelite up` and `kubelite down`, and the flags → config step behind
//! them, so the `kubelite` main only dispatches (as every component's `cli.rs` does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::down::DownConfig;
use crate::{Error, Result, UpConfig};

/// What the cluster's service proxy owns on the host: its iptables chains and its interface.
/// Change both to run a second cluster beside another one (`down` must be given the same).
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyNames {
    /// Prefix of the proxy's iptables chains.
    #[arg(long, default_value = "KUBELITE-")]
    pub proxy_chain_prefix: String,
    /// The interface the service CIDR is routed to.
    #[arg(long, default_value = "kubelite0")]
    pub proxy_interface: String,
}

/// Flags of `kubelite up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpOptions {
    /// Data directory of the dev cluster (the embedded store lives in <data-dir>/store).
    #[arg(long, default_value = ".kubelite/data")]
    pub data_dir: PathBuf,
    /// Kubeconfig to add the `kubelite` context to (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// API server listen address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Use these etcd endpoints (comma-separated) instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// Wipe the data dir before starting.
    #[arg(long)]
    pub reset: bool,
    /// Name of this host's Node (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where the kubelet API listens.
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub kubelet_listen: SocketAddr,
    /// Do not run the service proxy (it needs root for iptables); Services are then not routed.
    #[arg(long)]
    pub no_proxy: bool,
    /// Add this many hollow nodes (kubelets that run nothing) for multi-node experiments.
    #[arg(long, default_value_t = 0)]
    pub nodes: usize,
    /// The Docker network pods get their IPs on.
    #[arg(long, default_value = "kubelite-pods")]
    pub pod_network: String,
    /// Its subnet (the gateway, .1, serves cluster DNS).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_subnet: String,
    /// The Service ClusterIP range (kube-dns gets its tenth address).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    #[command(flatten)]
    pub proxy_names: ProxyNames,
}

impl UpOptions {
    /// The cluster these flags describe. `default_kubeconfig` is where kubectl would look
    /// (`$KUBECONFIG` or `~/.kube/config`, resolved by the caller: libraries read no
    /// environment); `--kubeconfig` overrides it.
    pub fn into_config(
        self,
        default_kubeconfig: impl FnOnce() -> Result<PathBuf>,
    ) -> Result<UpConfig> {
        let kubeconfig = match self.kubeconfig {
            Some(p) => p,
            None => default_kubeconfig()?,
        };
        let node_name = match self.node_name {
            Some(n) => n,
            None => hostname()?,
        };
        Ok(UpConfig {
            data_dir: self.data_dir,
            etcd_servers: self.etcd_servers,
            kubeconfig,
            context: "kubelite".into(),
            listen: self.listen,
            reset: self.reset,
            node_name,
            kubelet_listen: self.kubelet_listen,
            proxy: !self.no_proxy,
            hollow_nodes: self.nodes,
            pod_network: self.pod_network,
            pod_subnet: self.pod_subnet,
            service_cidr: self.service_cidr,
            proxy_chain_prefix: self.proxy_names.proxy_chain_prefix,
            proxy_interface: self.proxy_names.proxy_interface,
        })
    }
}

/// Flags of `kubelite down`. Each setting defaults to what `up` recorded in the data dir
/// (`host.json`), else to `up`'s own default; give one only to override the record.
#[derive(clap::Args, Debug, Clone)]
pub struct DownOptions {
    /// Data directory of the dev cluster.
    #[arg(long, default_value = ".kubelite/data")]
    pub data_dir: PathBuf,
    /// Name of the cluster's Node (default: recorded, else the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// How many hollow nodes `up --nodes` added (default: recorded, else 0).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// The Docker network `up` created for pods (default: recorded, else kubelite-pods).
    #[arg(long)]
    pub pod_network: Option<String>,
    /// Prefix of the proxy's iptables chains (default: recorded, else KUBELITE-).
    #[arg(long)]
    pub proxy_chain_prefix: Option<String>,
    /// The proxy's service-CIDR interface (default: recorded, else kubelite0).
    #[arg(long)]
    pub proxy_interface: Option<String>,
}

impl DownOptions {
    /// What `down` removes: the record `up` left in the data dir, with the flags given on top.
    pub fn into_config(self) -> Result<DownConfig> {
        let recorded = DownConfig::recorded(&self.data_dir);
        let mut config = recorded.clone().unwrap_or(DownConfig {
            data_dir: self.data_dir.clone(),
            node_names: Vec::new(),
            proxy: kubelite_proxy::Config::default(),
            pod_network: Some("kubelite-pods".into()),
            timeout: Duration::from_secs(30),
        });
        if recorded.is_none() || self.node_name.is_some() || self.nodes.is_some() {
            let recorded_names = recorded.map(|r| r.node_names).unwrap_or_default();
            let node = match (self.node_name, recorded_names.first()) {
                (Some(n), _) => n,
                (None, Some(n)) => n.clone(),
                (None, None) => hostname()?,
            };
            let hollow = self.nodes.unwrap_or(recorded_names.len().saturating_sub(1));
            config.node_names = std::iter::once(node.clone())
                .chain((0..hollow).map(|i| format!("{node}-hollow-{i}")))
                .collect();
        }
        if let Some(network) = self.pod_network {
            config.pod_network = Some(network);
        }
        if let Some(prefix) = self.proxy_chain_prefix {
            config.proxy.chain_prefix = prefix;
        }
        if let Some(interface) = self.proxy_interface {
            config.proxy.interface = interface;
        }
        Ok(config)
    }
}

/// This host's name, lower-cased as Node names must be.
fn hostname() -> Result<String> {
    kubelite_component_base::hostname().map_err(|source| Error::Hostname { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cli {
        Up(UpOptions),
        Down(DownOptions),
    }

    fn down(dir: &std::path::Path, extra: &[&str]) -> DownConfig {
        let mut argv = vec![
            "kubelite",
            "down",
            "--data-dir",
            dir.to_str().expect("utf-8"),
        ];
        argv.extend(extra);
        let Cli::Down(options) = Cli::try_parse_from(argv).expect("parse") else {
            panic!("not down");
        };
        options.into_config().expect("config")
    }

    #[test]
    fn down_uses_what_up_recorded_and_flags_override_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Nothing recorded: `up`'s defaults.
        let config = down(dir.path(), &["--node-name", "n"]);
        assert_eq!(config.node_names, ["n"]);
        assert_eq!(config.pod_network.as_deref(), Some("kubelite-pods"));
        assert_eq!(config.proxy.chain_prefix, "KUBELITE-");
        // What `up --nodes 2 --pod-network net --proxy-chain-prefix KX-` recorded.
        DownConfig {
            data_dir: dir.path().to_path_buf(),
            node_names: vec!["n".into(), "n-hollow-0".into(), "n-hollow-1".into()],
            proxy: kubelite_proxy::Config {
                chain_prefix: "KX-".into(),
                ..kubelite_proxy::Config::default()
            },
            pod_network: Some("net".into()),
            timeout: Duration::from_secs(30),
        }
        .record()
        .expect("record");
        let config = down(dir.path(), &[]);
        assert_eq!(config.node_names, ["n", "n-hollow-0", "n-hollow-1"]);
        assert_eq!(config.pod_network.as_deref(), Some("net"));
        assert_eq!(config.proxy.chain_prefix, "KX-");
        let config = down(dir.path(), &["--nodes", "0", "--pod-network", "other"]);
        assert_eq!(config.node_names, ["n"]);
        assert_eq!(config.pod_network.as_deref(), Some("other"));
    }

    #[test]
    fn up_flags_become_the_cluster_config() {
        let Cli::Up(options) = Cli::try_parse_from([
            "kubelite",
            "up",
            "--node-name=dev",
            "--nodes=2",
            "--no-proxy",
            "--proxy-chain-prefix=KT-",
            "--service-cidr=10.100.0.0/16",
        ])
        .expect("parse") else {
            panic!("not up");
        };
        let config = options
            .into_config(|| Ok(PathBuf::from("/tmp/kubeconfig")))
            .expect("config");
        assert_eq!(config.kubeconfig, PathBuf::from("/tmp/kubeconfig"));
        assert_eq!(config.node_names(), ["dev", "dev-hollow-0", "dev-hollow-1"]);
        assert!(!config.proxy);
        assert_eq!(config.proxy_config().chain_prefix, "KT-");
        assert_eq!(config.service_cidr, "10.100.0.0/16");
        assert_eq!(config.listen, "127.0.0.1:6443".parse().expect("addr"));
        // --kubeconfig wins over the default, which is then never resolved.
        let Cli::Up(options) =
            Cli::try_parse_from(["kubelite", "up", "--node-name=dev", "--kubeconfig=/k"])
                .expect("parse")
        else {
            panic!("not up");
        };
        let config = options
            .into_config(|| Err(Error::Kubeconfig("must not be asked".into())))
            .expect("config");
        assert_eq!(config.kubeconfig, PathBuf::from("/k"));
    }
}
