//! `kubelite`: the hyperkube-style binary. `kubelite up` runs the single-node dev cluster;
//! the other subcommands run one component with the same flags as its own binary.

use std::path::PathBuf;

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
    Up(kubelite_cluster::cli::UpOptions),
    /// Stop the dev cluster of a data dir and remove its containers, rules and interface.
    Down(kubelite_cluster::cli::DownOptions),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `up` and `down` talk to a person through their progress lines; a single component logs
    // like its own binary does.
    let quiet = matches!(cli.command, Command::Up(_) | Command::Down(_));
    kubelite_component_base::init_logging(if quiet { "warn" } else { "info" });
    let shutdown = kubelite_component_base::shutdown_signal;
    match cli.command {
        Command::Up(options) => {
            let config = options.into_config(default_kubeconfig)?;
            kubelite_cluster::up(config, shutdown()).await?;
        }
        Command::Down(options) => {
            kubelite_cluster::down::down(&options.into_config()?).await?;
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

/// `$KUBECONFIG` (its first entry) or `~/.kube/config`, as kubectl resolves it.
fn default_kubeconfig() -> kubelite_cluster::Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        kubelite_cluster::Error::Kubeconfig("HOME is not set; pass --kubeconfig".into())
    })?;
    Ok(PathBuf::from(home).join(".kube/config"))
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
