//! Cluster DNS: serves `<svc>.<ns>.svc.<domain>`, endpoint, SRV and pod names from a watch-fed
//! cache of Services, EndpointSlices and Namespaces (as CoreDNS's `kubernetes` plugin), forwards
//! every other name to the upstream resolvers, and can publish itself as `kube-system/kube-dns`.

pub mod answer;
pub mod cache;
pub mod cli;
pub mod forward;
pub mod handler;
pub mod lookup;
pub mod publish;
pub mod resolv;
pub mod reverse;
#[cfg(feature = "test-util")]
pub mod testing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{info, warn};

pub use answer::Zone;
pub use cache::Cache;
pub use publish::Publish;
pub use resolv::parse_resolv_conf;

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The UDP socket or TCP listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("invalid config: {0}")]
    Config(String),
    /// The apiserver refused a publishing request.
    #[error("apiserver: {0}")]
    Kube(#[from] kube::Error),
    /// A published object did not encode (a bug).
    #[error("encoding object: {0}")]
    Encode(serde_json::Error),
    /// The hickory server failed.
    #[error("dns server: {0}")]
    Serve(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How often the published objects are re-asserted (repairs edits and deletions).
const PUBLISH_RESYNC: Duration = Duration::from_secs(30);
/// Idle TCP connections are closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Time allowed for one upstream (UDP, then TCP on truncation) before trying the next.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long shutdown waits for in-flight queries and for withdrawing the endpoints.
const DRAIN: Duration = Duration::from_secs(5);

/// The server's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP address (port 0 picks one free port for both).
    pub listen: SocketAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// Answer TTL and SOA minimum. 30 as in kubeadm's Corefile (`ttl 30`); the CoreDNS plugin's
    /// bare default is 5.
    pub ttl: u32,
    /// Resolvers for names outside the cluster domain (see [`parse_resolv_conf`]).
    pub upstreams: Vec<SocketAddr>,
    /// Publish this server as `kube-system/kube-dns`.
    pub publish: Option<Publish>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 53)),
            cluster_domain: "cluster.local".into(),
            ttl: 30,
            upstreams: Vec::new(),
            publish: None,
        }
    }
}

impl Config {
    fn zone(&self) -> Result<Zone> {
        let domain = self.cluster_domain.trim_end_matches('.').to_lowercase();
        if domain.is_empty() || hickory_proto::rr::Name::from_ascii(&domain).is_err() {
            return Err(Error::Config(format!(
                "invalid cluster domain {:?}",
                self.cluster_domain
            )));
        }
        Ok(Zone {
            domain,
            ttl: self.ttl,
            nameserver_ip: self.publish.as_ref().map(|p| p.cluster_ip),
        })
    }
}

/// A bound server; [`Server::serve`] runs it.
pub struct Server {
    client: kube::Client,
    config: Config,
    zone: Zone,
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds UDP and TCP on the same address; with port 0 both get the same free port.
    pub async fn bind(client: kube::Client, config: Config) -> Result<Self> {
        let zone = config.zone()?;
        let (udp, tcp) = bind_pair(config.listen).await?;
        let local_addr = udp.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            client,
            config,
            zone,
            udp,
            tcp,
            local_addr,
        })
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then drains and withdraws the published endpoints.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let cache = Arc::new(Cache::default());
        let feeder = AbortOnDrop(tokio::spawn(cache.clone().run(self.client.clone())));
        let forwarder = forward::Forwarder::new(self.config.upstreams.clone(), UPSTREAM_TIMEOUT);
        let handler = handler::Handler::new(cache.clone(), self.zone.clone(), forwarder);
        let mut server = ServerFuture::new(handler);
        server.register_socket(self.udp);
        server.register_listener(self.tcp, TCP_IDLE);
        info!(addr = %self.local_addr, zone = %self.zone.domain, upstreams = ?self.config.upstreams,
            "dns server listening on udp and tcp");

        let publisher = publish_loop(
            self.client.clone(),
            cache.clone(),
            self.config.publish.clone(),
        );
        let result = tokio::select! {
            r = server.block_until_done() => Err(Error::Serve(format!("server stopped: {r:?}"))),
            () = publisher => Ok(()),
            () = shutdown => {
                info!("dns server shutting down");
                Ok(())
            }
        };
        if let Err(e) = tokio::time::timeout(DRAIN, server.shutdown_gracefully()).await {
            warn!(error = %e, "dns server did not drain in time");
        }
        if self.config.publish.is_some() {
            match tokio::time::timeout(DRAIN, publish::withdraw(&self.client)).await {
                Ok(Ok(())) => info!("withdrew kube-dns endpoints"),
                Ok(Err(e)) => warn!(error = %e, "withdrawing kube-dns endpoints failed"),
                Err(_) => warn!("withdrawing kube-dns endpoints timed out"),
            }
        }
        drop(feeder);
        result
    }
}

/// Runs the DNS server until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    Server::bind(client, config).await?.serve(shutdown).await
}

/// Publishes once the cache has synced (like a readiness gate: no traffic before we can answer),
/// then re-asserts every [`PUBLISH_RESYNC`]. Never returns when publishing is off.
async fn publish_loop(client: kube::Client, cache: Arc<Cache>, publish: Option<Publish>) {
    let Some(p) = publish else {
        return std::future::pending().await;
    };
    cache.wait_synced().await;
    loop {
        match publish::ensure(&client, &p).await {
            Ok(()) => tracing::debug!("kube-dns service and endpoints in place"),
            Err(e) => warn!(error = %e, "publishing kube-dns failed; retrying"),
        }
        tokio::time::sleep(PUBLISH_RESYNC).await;
    }
}

/// Binds UDP first, then TCP on the port UDP got (retrying when port 0 handed out a port that
/// is taken for TCP).
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let err = |source| Error::Bind { addr, source };
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await.map_err(err)?;
        let bound = udp.local_addr().map_err(err)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(err(e)),
        }
    }
    Err(err(
        last.unwrap_or_else(|| std::io::Error::other("no free port"))
    ))
}

/// Aborts a task when dropped, so the watchers stop with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
