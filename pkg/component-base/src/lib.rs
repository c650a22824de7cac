//! What every kubelite component binary shares (upstream's `k8s.io/component-base` and the
//! `clientcmd` part of client-go): the `--kubeconfig`/`--master` flags and the kube client
//! they describe, the SIGINT/SIGTERM shutdown signal, logging setup and the instance identity
//! used for leader election. The standalone binaries and `kubelite <component>` both go
//! through here, so a flag behaves the same in either.

use std::path::PathBuf;

/// Errors building what a component needs from its flags.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `--master` is not a URL.
    #[error("--master {url:?}: {message}")]
    Master {
        /// The value given.
        url: String,
        /// Why.
        message: String,
    },
    /// Neither flag was given and no in-cluster or `$KUBECONFIG` configuration was found.
    #[error("no --kubeconfig or --master given and none could be inferred: {0}")]
    Infer(String),
    /// The client could not be built from the configuration.
    #[error("building the kube client: {0}")]
    Client(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a component finds the API server: the flags every client component takes.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Path to a kubeconfig (default: in-cluster, $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// API server URL (overrides the kubeconfig's server).
    #[arg(long)]
    pub master: Option<String>,
}

impl ClientOptions {
    /// The client configuration these flags describe: the kubeconfig's current context if
    /// given, with `--master` replacing its server; `--master` alone talks to that URL without
    /// credentials (as upstream does); neither infers (in-cluster, then `$KUBECONFIG`).
    pub async fn config(&self) -> Result<kube::Config> {
        let master = self
            .master
            .as_deref()
            .map(|url| {
                url.parse::<http::Uri>().map_err(|e| Error::Master {
                    url: url.to_string(),
                    message: e.to_string(),
                })
            })
            .transpose()?;
        let mut config = match (&self.kubeconfig, &master) {
            (Some(path), _) => {
                let kubeconfig = |e: &dyn std::fmt::Display| Error::Kubeconfig {
                    path: path.clone(),
                    message: e.to_string(),
                };
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| kubeconfig(&e))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| kubeconfig(&e))?
            }
            (None, Some(url)) => kube::Config::new(url.clone()),
            (None, None) => kube::Config::infer()
                .await
                .map_err(|e| Error::Infer(e.to_string()))?,
        };
        if let Some(url) = master {
            config.cluster_url = url;
        }
        Ok(config)
    }

    /// A kube client for [`ClientOptions::config`].
    pub async fn client(&self) -> Result<kube::Client> {
        let config = self.config().await?;
        kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
    }
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM and logs which one arrived: the reason a component
/// shuts down.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "SIGINT", "shutting down");
            return;
        }
    };
    let reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tracing::info!(signal = reason, "shutting down");
}

/// Sets up logging to stderr: `RUST_LOG` if set, else `default_filter` (e.g. `"info"`).
/// Called once by each binary's `main`, before anything logs.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// This host's name, lower-cased as Node names must be (from the kernel, like `hostname`).
pub fn hostname() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_ascii_lowercase())
}

/// A leader-election identity unique to this process: `<hostname>_<pid>` (upstream uses the
/// hostname and a UUID; the pid is as unique on one host and easier to match to a process).
pub fn identity() -> String {
    let host = hostname().unwrap_or_else(|_| "localhost".into());
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn master_alone_is_the_server_without_credentials() {
        let opts = ClientOptions {
            kubeconfig: None,
            master: Some("http://127.0.0.1:6443".into()),
        };
        let config = opts.config().await.expect("config");
        assert!(config
            .cluster_url
            .to_string()
            .starts_with("http://127.0.0.1:6443"));
        assert!(config.auth_info.token.is_none());
    }

    #[tokio::test]
    async fn master_overrides_the_kubeconfig_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://10.0.0.1:6443\n\
             users:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
             current-context: x\n",
        )
        .expect("write");
        let from_file = ClientOptions {
            kubeconfig: Some(path.clone()),
            master: None,
        };
        let config = from_file.config().await.expect("config");
        assert!(config
            .cluster_url
            .to_string()
            .starts_with("http://10.0.0.1:6443"));
        let overridden = ClientOptions {
            kubeconfig: Some(path),
            master: Some("http://127.0.0.1:1".into()),
        };
        let config = overridden.config().await.expect("config");
        assert!(config
            .cluster_url
            .to_string()
            .starts_with("http://127.0.0.1:1"));
        assert!(config.auth_info.token.is_some(), "credentials kept");
    }

    #[tokio::test]
    async fn errors_name_the_bad_input() {
        let missing = ClientOptions {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            master: None,
        };
        let err = missing.config().await.expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
        let bad = ClientOptions {
            kubeconfig: None,
            master: Some("not a url".into()),
        };
        assert!(matches!(bad.config().await, Err(Error::Master { .. })));
    }
}
