//! kubelite-proxy: routes Service traffic on this node, kube-proxy iptables mode semantics.
//!
//! Services and EndpointSlices come from kube-runtime reflectors; every (rate-limited) change
//! recomputes the whole desired ruleset (`rules`) and writes the chains that changed since the
//! last sync in one `iptables-restore --noflush` batch into chains named with
//! `Config::chain_prefix`. The proxy remembers what it wrote, so it reads the tables back
//! (`iptables-save`) only at start, after a failure and every `sync_period`. After each sync,
//! UDP conntrack entries to removed endpoints are flushed (`conntrack`). The service CIDR is routed to
//! a local sink interface (`netif`) so unrouted ClusterIP traffic never leaves the machine.
//! Without usable iptables, a userspace fallback (`userspace`) serves TCP NodePorts.

pub mod chains;
pub mod cli;
pub mod conntrack;
pub mod host;
pub mod metrics;
pub mod model;
pub mod netif;
mod proxier;
pub mod rules;
pub mod userspace;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

pub use metrics::{router, Metrics};

use crate::host::{Host, HostError, RealHost};

/// Errors of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is unusable.
    #[error("invalid config: {0}")]
    Config(String),
    /// A host command failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The health listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Result with the proxy's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How traffic is proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// iptables when `iptables-save` works, else userspace.
    #[default]
    Auto,
    /// iptables only (fail if unusable).
    Iptables,
    /// Userspace TCP NodePort proxying only.
    Userspace,
}

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prefix of every chain the proxy creates (upper case, digits, `-`; at most 16 chars).
    pub chain_prefix: String,
    /// The service ClusterIP range (must match the apiserver's).
    pub service_cidr: String,
    /// Name of the sink interface the service CIDR is routed to.
    pub interface: String,
    /// Minimum time between syncs: changes are batched within it.
    pub min_sync_period: Duration,
    /// Resync interval, even without changes: the tables are read back and, when one of our
    /// chains or jumps has gone (someone else removed it), everything is rewritten.
    pub sync_period: Duration,
    /// Packet mark bit (0..=31) that requests SNAT; kube-proxy's default is 14 (0x4000).
    pub masquerade_bit: u8,
    /// SNAT all ClusterIP traffic.
    pub masquerade_all: bool,
    /// Pod CIDR; ClusterIP traffic from outside it is SNATed. None: only hairpin and NodePort.
    pub cluster_cidr: Option<String>,
    /// Proxy mode.
    pub mode: Mode,
    /// Address the userspace fallback listens on for NodePorts.
    pub userspace_bind: IpAddr,
    /// Serve `/healthz` and `/metrics` here.
    pub healthz_bind_address: Option<SocketAddr>,
    /// Shared metrics (also served by `router`).
    pub metrics: Arc<Metrics>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chain_prefix: "KUBELITE-".into(),
            service_cidr: "10.96.0.0/12".into(),
            interface: "kubelite0".into(),
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            masquerade_bit: 14,
            masquerade_all: false,
            cluster_cidr: None,
            mode: Mode::Auto,
            userspace_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            healthz_bind_address: None,
            metrics: Arc::default(),
        }
    }
}

impl Config {
    /// Checks the settings that would otherwise fail inside iptables.
    pub fn validate(&self) -> Result<()> {
        let p = &self.chain_prefix;
        let max = chains::MAX_CHAIN_LEN - "SVC-".len() - chains::MIN_HASH_LEN;
        if p.is_empty() || p.len() > max {
            return Err(Error::Config(format!(
                "chain prefix {p:?} must be 1 to {max} characters"
            )));
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::Config(format!(
                "chain prefix {p:?} may contain only A-Z, 0-9 and -"
            )));
        }
        if self.masquerade_bit > 31 {
            return Err(Error::Config("masquerade bit must be 0..=31".into()));
        }
        if self.interface.is_empty() || self.interface.len() > 15 {
            return Err(Error::Config(format!(
                "interface name {:?} must be 1 to 15 characters",
                self.interface
            )));
        }
        Ok(())
    }

    pub(crate) fn rule_config(&self) -> rules::RuleConfig {
        rules::RuleConfig {
            prefix: self.chain_prefix.clone(),
            masquerade_bit: 1u32 << self.masquerade_bit,
            masquerade_all: self.masquerade_all,
            cluster_cidr: self.cluster_cidr.clone(),
        }
    }
}

/// Runs the proxy until `shutdown` resolves. Rules stay installed on shutdown (as upstream),
/// so traffic keeps flowing across a restart; [`cleanup`] removes them.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate()?;
    proxier::run(Arc::new(RealHost), client, config, shutdown).await
}

/// Removes every chain, jump rule and the sink interface this proxy's config names.
pub async fn cleanup(config: &Config) -> Result<()> {
    config.validate()?;
    cleanup_with(&RealHost, config).await
}

/// [`cleanup`] over any [`Host`].
pub async fn cleanup_with(host: &dyn Host, config: &Config) -> Result<()> {
    let save = host.iptables_save().await?;
    let existing = chains::Existing::parse(&save, &config.chain_prefix);
    for batch in chains::cleanup_batches(&existing) {
        host.iptables_restore(&batch).await?;
    }
    info!(
        prefix = %config.chain_prefix,
        chains = existing.nat.len() + existing.filter.len(),
        jumps = existing.jumps.len(),
        "removed iptables chains"
    );
    netif::remove(host, &config.interface).await?;
    Ok(())
}
