//! Userspace fallback for hosts where iptables cannot be used (not root, no binary): TCP
//! NodePorts only. Each NodePort gets a listener on `<bind>:<nodePort>` that copies every
//! accepted connection to a random endpoint. ClusterIPs and UDP are not served in this mode
//! (binding a ClusterIP would need the address on a local interface, which needs root too).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use rand::seq::IndexedRandom;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::model::{Endpoint, Protocol, ServicePort};

struct Listener {
    endpoints: Arc<RwLock<Vec<Endpoint>>>,
    task: JoinHandle<()>,
}

/// The set of NodePort listeners, reconciled on every sync.
pub struct Userspace {
    bind: IpAddr,
    listeners: BTreeMap<u16, Listener>,
}

impl Drop for Userspace {
    fn drop(&mut self) {
        for l in self.listeners.values() {
            l.task.abort();
        }
    }
}

async fn serve(listener: TcpListener, endpoints: Arc<RwLock<Vec<Endpoint>>>) {
    loop {
        let Ok((mut client, peer)) = listener.accept().await else {
            continue;
        };
        let target = endpoints
            .read()
            .ok()
            .and_then(|e| e.choose(&mut rand::rng()).copied());
        tokio::spawn(async move {
            // No endpoint: closing at once is the closest a listener gets to "refused".
            let Some(ep) = target else { return };
            match TcpStream::connect(SocketAddr::from((ep.ip, ep.port))).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => debug!(%peer, endpoint = %ep, error = %e, "userspace dial failed"),
            }
        });
    }
}

impl Userspace {
    /// Listens on `bind` (e.g. 0.0.0.0) for every NodePort.
    pub fn new(bind: IpAddr) -> Self {
        Self {
            bind,
            listeners: BTreeMap::new(),
        }
    }

    /// NodePorts currently listened on.
    pub fn ports(&self) -> Vec<u16> {
        self.listeners.keys().copied().collect()
    }

    /// Opens, updates and closes listeners to match `ports`.
    pub async fn sync(&mut self, ports: &[ServicePort]) {
        let wanted: BTreeMap<u16, &ServicePort> = ports
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp)
            .filter_map(|p| p.node_port.map(|n| (n, p)))
            .collect();
        self.listeners.retain(|port, l| {
            let keep = wanted.contains_key(port);
            if !keep {
                l.task.abort();
                info!(node_port = port, "userspace: closed NodePort listener");
            }
            keep
        });
        for (port, sp) in wanted {
            if let Some(l) = self.listeners.get(&port) {
                if let Ok(mut e) = l.endpoints.write() {
                    e.clone_from(&sp.endpoints);
                }
                continue;
            }
            match TcpListener::bind((self.bind, port)).await {
                Ok(listener) => {
                    let endpoints = Arc::new(RwLock::new(sp.endpoints.clone()));
                    let task = tokio::spawn(serve(listener, endpoints.clone()));
                    info!(service = %sp.key(), node_port = port, "userspace: listening");
                    self.listeners.insert(port, Listener { endpoints, task });
                }
                Err(e) => warn!(service = %sp.key(), node_port = port, error = %e,
                    "userspace: cannot listen"),
            }
        }
    }
}
