//! `kubelite`: the hyperkube-style binary. `kubelite up` runs the single-node dev cluster;
//! the other subcommands run one component with the same flags as its own binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubelite",
    version,
    about = "A Kubernetes-lite control plane in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the single-node dev cluster on an embedded store and write a kubeconfig.
    Up(UpArgs),
    /// Stop the dev cluster of a data dir and remove its containers, rules and interface.
    Down(DownArgs),
    /// Run the API server alone (the same flags as `kubelite-apiserver`).
    Apiserver(kubelite_apiserver::options::Options),
    /// Run the scheduler alone (the same flags as `kubelite-scheduler`).
    Scheduler(kubelite_scheduler::cli::Options),
    /// Run the controller-manager alone (the same flags as `kubelite-controller-manager`).
    ControllerManager(kubelite_controllers::cli::Options),
    /// Run a kubelet alone (the same flags as `kubelite-kubelet`).
    Kubelet(kubelite_kubelet::cli::Options),
    /// Run the service proxy alone (the same flags as `kubelite-proxy`).
    Proxy(kubelite_proxy::cli::Options),
    /// Run cluster DNS alone (the same flags as `kubelite-dns`).
    Dns(kubelite_dns::cli::Options),
}

/// Each setting defaults to what `up` recorded in the data dir (`host.json`), else to `up`'s
/// own default; give one only to override the record.
#[derive(clap::Args)]
struct DownArgs {
    /// Data directory of the dev cluster.
    #[arg(long, default_value = ".kubelite/data")]
    data_dir: PathBuf,
    /// Name of the cluster's Node (default: recorded, else the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// How many hollow nodes `up --nodes` added (default: recorded, else 0).
    #[arg(long)]
    nodes: Option<usize>,
    /// The Docker network `up` created for pods (default: recorded, else kubelite-pods).
    #[arg(long)]
    pod_network: Option<String>,
    /// Prefix of the proxy's iptables chains (default: recorded, else KUBELITE-).
    #[arg(long)]
    proxy_chain_prefix: Option<String>,
    /// The proxy's service-CIDR interface (default: recorded, else kubelite0).
    #[arg(long)]
    proxy_interface: Option<String>,
}

/// What the cluster's service proxy owns on the host: its iptables chains and its interface.
/// Change both to run a second cluster beside another one (`down` must be given the same).
#[derive(clap::Args)]
struct ProxyNames {
    /// Prefix of the proxy's iptables chains.
    #[arg(long, default_value = "KUBELITE-")]
    proxy_chain_prefix: String,
    /// The interface the service CIDR is routed to.
    #[arg(long, default_value = "kubelite0")]
    proxy_interface: String,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Data directory of the dev cluster (the embedded store lives in <data-dir>/store).
    #[arg(long, default_value = ".kubelite/data")]
    data_dir: PathBuf,
    /// Kubeconfig to add the `kubelite` context to (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// API server listen address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Use these etcd endpoints (comma-separated) instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Wipe the data dir before starting.
    #[arg(long)]
    reset: bool,
    /// Name of this host's Node (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Where the kubelet API listens.
    #[arg(long, default_value = "127.0.0.1:10250")]
    kubelet_listen: SocketAddr,
    /// Do not run the service proxy (it needs root for iptables); Services are then not routed.
    #[arg(long)]
    no_proxy: bool,
    /// Add this many hollow nodes (kubelets that run nothing) for multi-node experiments.
    #[arg(long, default_value_t = 0)]
    nodes: usize,
    /// The Docker network pods get their IPs on.
    #[arg(long, default_value = "kubelite-pods")]
    pod_network: String,
    /// Its subnet (the gateway, .1, serves cluster DNS).
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_subnet: String,
    /// The Service ClusterIP range (kube-dns gets its tenth address).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    #[command(flatten)]
    proxy_names: ProxyNames,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `up` and `down` talk to a person through their progress lines; a single component logs
    // like its own binary does.
    let quiet = matches!(cli.command, Command::Up(_) | Command::Down(_));
    kubelite_component_base::init_logging(if quiet { "warn" } else { "info" });
    let shutdown = kubelite_component_base::shutdown_signal;
    match cli.command {
        Command::Up(args) => {
            let kubeconfig = match args.kubeconfig {
                Some(p) => p,
                None => default_kubeconfig()?,
            };
            let config = kubelite_cluster::UpConfig {
                data_dir: args.data_dir,
                etcd_servers: args.etcd_servers,
                kubeconfig,
                context: "kubelite".into(),
                listen: args.listen,
                reset: args.reset,
                node_name: match args.node_name {
                    Some(n) => n,
                    None => hostname()?,
                },
                kubelet_listen: args.kubelet_listen,
                proxy: !args.no_proxy,
                hollow_nodes: args.nodes,
                pod_network: args.pod_network,
                pod_subnet: args.pod_subnet,
                service_cidr: args.service_cidr,
                proxy_chain_prefix: args.proxy_names.proxy_chain_prefix,
                proxy_interface: args.proxy_names.proxy_interface,
            };
            kubelite_cluster::up(config, shutdown()).await?;
        }
        Command::Down(args) => {
            let config = down_config(args)?;
            kubelite_cluster::down::down(&config).await?;
        }
        Command::Apiserver(options) => {
            kubelite_apiserver::run(options.into_config(), shutdown()).await?;
        }
        Command::Scheduler(options) => options.run(shutdown()).await?,
        Command::ControllerManager(options) => options.run(shutdown()).await?,
        Command::Kubelet(options) => options.run(shutdown()).await?,
        Command::Proxy(options) => options.run(shutdown()).await?,
        Command::Dns(options) => options.run(shutdown()).await?,
    }
    Ok(())
}

/// What `down` removes: the record `up` left in the data dir, with the flags given on top.
fn down_config(args: DownArgs) -> anyhow::Result<kubelite_cluster::down::DownConfig> {
    let recorded = kubelite_cluster::down::DownConfig::recorded(&args.data_dir);
    let mut config = recorded
        .clone()
        .unwrap_or(kubelite_cluster::down::DownConfig {
            data_dir: args.data_dir.clone(),
            node_names: Vec::new(),
            proxy: kubelite_proxy::Config::default(),
            pod_network: Some("kubelite-pods".into()),
            timeout: std::time::Duration::from_secs(30),
        });
    if recorded.is_none() || args.node_name.is_some() || args.nodes.is_some() {
        let recorded_names = recorded.map(|r| r.node_names).unwrap_or_default();
        let node = match (args.node_name, recorded_names.first()) {
            (Some(n), _) => n,
            (None, Some(n)) => n.clone(),
            (None, None) => hostname()?,
        };
        let hollow = args.nodes.unwrap_or(recorded_names.len().saturating_sub(1));
        config.node_names = std::iter::once(node.clone())
            .chain((0..hollow).map(|i| format!("{node}-hollow-{i}")))
            .collect();
    }
    if let Some(network) = args.pod_network {
        config.pod_network = Some(network);
    }
    if let Some(prefix) = args.proxy_chain_prefix {
        config.proxy.chain_prefix = prefix;
    }
    if let Some(interface) = args.proxy_interface {
        config.proxy.interface = interface;
    }
    Ok(config)
}

/// `$KUBECONFIG` (its first entry) or `~/.kube/config`, as kubectl resolves it.
fn default_kubeconfig() -> anyhow::Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --kubeconfig")?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

/// This host's name, lower-cased as Node names must be.
fn hostname() -> anyhow::Result<String> {
    kubelite_component_base::hostname().context("reading the hostname; pass --node-name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, CommandFactory};

    /// Each flag as (long name, default values, help): what a user sees and types.
    fn flags(cmd: &clap::Command) -> Vec<(String, Vec<String>, String)> {
        let mut flags: Vec<_> = cmd
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .map(|a| {
                (
                    a.get_long().unwrap_or_default().to_string(),
                    a.get_default_values()
                        .iter()
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect(),
                    a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        flags.sort();
        flags
    }

    #[test]
    fn subcommands_take_the_same_flags_as_the_binaries() {
        // Each standalone main is `#[command(flatten)] options: <crate>::cli::Options`.
        type Augment = fn(clap::Command) -> clap::Command;
        let standalone: [(&str, Augment); 6] = [
            (
                "apiserver",
                kubelite_apiserver::options::Options::augment_args,
            ),
            ("scheduler", kubelite_scheduler::cli::Options::augment_args),
            (
                "controller-manager",
                kubelite_controllers::cli::Options::augment_args,
            ),
            ("kubelet", kubelite_kubelet::cli::Options::augment_args),
            ("proxy", kubelite_proxy::cli::Options::augment_args),
            ("dns", kubelite_dns::cli::Options::augment_args),
        ];
        let cli = Cli::command();
        for (name, augment) in standalone {
            let sub = cli
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no `kubelite {name}`"));
            let binary = augment(clap::Command::new(name));
            let (ours, theirs) = (flags(sub), flags(&binary));
            assert!(!theirs.is_empty(), "{name} has flags");
            assert_eq!(ours, theirs, "kubelite {name} vs kubelite-{name}");
        }
        // The client flags are the same everywhere they appear.
        for name in ["scheduler", "controller-manager", "kubelet", "proxy", "dns"] {
            let sub = cli.find_subcommand(name).expect("subcommand");
            for flag in ["kubeconfig", "master"] {
                assert!(
                    sub.get_arguments().any(|a| a.get_long() == Some(flag)),
                    "kubelite {name} --{flag}"
                );
            }
        }
        cli.debug_assert();
    }

    #[test]
    fn down_uses_what_up_recorded_and_flags_override_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let down = |extra: &[&str]| {
            let mut argv = vec![
                "kubelite",
                "down",
                "--data-dir",
                dir.path().to_str().expect("utf-8"),
            ];
            argv.extend(extra);
            let Command::Down(args) = Cli::try_parse_from(argv).expect("parse").command else {
                panic!("not down");
            };
            down_config(args).expect("config")
        };
        // Nothing recorded: `up`'s defaults.
        let config = down(&["--node-name", "n"]);
        assert_eq!(config.node_names, ["n"]);
        assert_eq!(config.pod_network.as_deref(), Some("kubelite-pods"));
        assert_eq!(config.proxy.chain_prefix, "KUBELITE-");
        // What `up --nodes 2 --pod-network net --proxy-chain-prefix KX-` recorded.
        kubelite_cluster::down::DownConfig {
            data_dir: dir.path().to_path_buf(),
            node_names: vec!["n".into(), "n-hollow-0".into(), "n-hollow-1".into()],
            proxy: kubelite_proxy::Config {
                chain_prefix: "KX-".into(),
                ..kubelite_proxy::Config::default()
            },
            pod_network: Some("net".into()),
            timeout: std::time::Duration::from_secs(30),
        }
        .record()
        .expect("record");
        let config = down(&[]);
        assert_eq!(config.node_names, ["n", "n-hollow-0", "n-hollow-1"]);
        assert_eq!(config.pod_network.as_deref(), Some("net"));
        assert_eq!(config.proxy.chain_prefix, "KX-");
        let config = down(&["--nodes", "0", "--pod-network", "other"]);
        assert_eq!(config.node_names, ["n"]);
        assert_eq!(config.pod_network.as_deref(), Some("other"));
    }

    #[test]
    fn subcommand_flags_parse_into_the_component_options() {
        let cli = Cli::try_parse_from([
            "kubelite",
            "proxy",
            "--master=http://127.0.0.1:6443",
            "--chain-prefix=KT-",
            "--cleanup",
        ])
        .expect("parse");
        let Command::Proxy(options) = cli.command else {
            panic!("not the proxy");
        };
        assert!(options.cleanup);
        assert_eq!(options.chain_prefix, "KT-");
        assert_eq!(
            options.client.master.as_deref(),
            Some("http://127.0.0.1:6443")
        );
        assert!(Cli::try_parse_from(["kubelite", "scheduler", "--no-such-flag"]).is_err());
    }
}
