//! UDP conntrack cleanup after a sync, as upstream kube-proxy does it: UDP has no connection
//! end, so a client that keeps sending from the same port keeps hitting the conntrack entry
//! (and its DNAT to an endpoint that is gone, or the REJECT of a service that had none) until
//! the entry is deleted. Pure planning here; the `conntrack` tool runs through `Host`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::model::{Protocol, ServicePort};

/// One `conntrack -D` invocation (always `-p udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flush {
    /// Every UDP entry to a ClusterIP: the service was deleted, or it had no endpoints and now
    /// has some (entries made while it had none would keep failing).
    ClusterIp(Ipv4Addr),
    /// Every UDP entry to a NodePort (same reasons, for the NodePort).
    NodePort(u16),
    /// Entries to a ClusterIP that were DNATed to a removed endpoint.
    ClusterIpToEndpoint {
        /// The ClusterIP.
        cluster_ip: Ipv4Addr,
        /// The endpoint that went away.
        endpoint: Ipv4Addr,
    },
    /// Entries to a NodePort that were DNATed to a removed endpoint.
    NodePortToEndpoint {
        /// The NodePort.
        node_port: u16,
        /// The endpoint that went away.
        endpoint: Ipv4Addr,
    },
}

impl Flush {
    /// The `conntrack` arguments (upstream's `ClearEntriesFor*` spellings).
    pub fn args(&self) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match *self {
            Self::ClusterIp(ip) => v(&["-D", "--orig-dst", &ip.to_string(), "-p", "udp"]),
            Self::NodePort(p) => v(&["-D", "-p", "udp", "--dport", &p.to_string()]),
            Self::ClusterIpToEndpoint {
                cluster_ip,
                endpoint,
            } => v(&[
                "-D",
                "--orig-dst",
                &cluster_ip.to_string(),
                "--dst-nat",
                &endpoint.to_string(),
                "-p",
                "udp",
            ]),
            Self::NodePortToEndpoint {
                node_port,
                endpoint,
            } => v(&[
                "-D",
                "-p",
                "udp",
                "--dport",
                &node_port.to_string(),
                "--dst-nat",
                &endpoint.to_string(),
            ]),
        }
    }
}

type Key<'a> = (&'a str, &'a str, &'a str);

fn udp_ports(ports: &[ServicePort]) -> BTreeMap<Key<'_>, &ServicePort> {
    ports
        .iter()
        .filter(|p| p.protocol == Protocol::Udp)
        .map(|p| ((&*p.namespace, &*p.name, &*p.port_name), p))
        .collect()
}

/// The flushes a change from `old` to `new` (the service ports of two consecutive successful
/// syncs) calls for. Only UDP ports count: TCP connections end, and a new one is NATed anew.
pub fn stale(old: &[ServicePort], new: &[ServicePort]) -> BTreeSet<Flush> {
    let (before, after) = (udp_ports(old), udp_ports(new));
    let mut out = BTreeSet::new();
    for (key, o) in &before {
        let Some(n) = after.get(key) else {
            out.insert(Flush::ClusterIp(o.cluster_ip));
            if let Some(np) = o.node_port {
                out.insert(Flush::NodePort(np));
            }
            continue;
        };
        if n.cluster_ip != o.cluster_ip {
            out.insert(Flush::ClusterIp(o.cluster_ip));
        }
        let kept: BTreeSet<Ipv4Addr> = n.endpoints.iter().map(|e| e.ip).collect();
        for gone in o
            .endpoints
            .iter()
            .map(|e| e.ip)
            .filter(|ip| !kept.contains(ip))
        {
            out.insert(Flush::ClusterIpToEndpoint {
                cluster_ip: o.cluster_ip,
                endpoint: gone,
            });
            if let Some(np) = o.node_port {
                out.insert(Flush::NodePortToEndpoint {
                    node_port: np,
                    endpoint: gone,
                });
            }
        }
    }
    // Newly active: no endpoints before (or no port at all), some now.
    for (key, n) in &after {
        let was_empty = before.get(key).is_none_or(|o| o.endpoints.is_empty());
        if was_empty && !n.endpoints.is_empty() {
            out.insert(Flush::ClusterIp(n.cluster_ip));
            if let Some(np) = n.node_port {
                out.insert(Flush::NodePort(np));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn sp(name: &str, proto: Protocol, np: Option<u16>, eps: &[u8]) -> ServicePort {
        ServicePort {
            namespace: "ns".into(),
            name: name.into(),
            port_name: "dns".into(),
            protocol: proto,
            cluster_ip: Ipv4Addr::new(10, 96, 0, eps.len() as u8 + 100),
            port: 53,
            node_port: np,
            affinity_seconds: None,
            endpoints: eps
                .iter()
                .map(|i| Endpoint {
                    ip: Ipv4Addr::new(10, 244, 0, *i),
                    port: 5353,
                })
                .collect(),
        }
    }

    fn ep(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, 0, i)
    }

    #[test]
    fn removed_udp_endpoint_flushes_its_nat_entries() {
        let mut old = sp("dns", Protocol::Udp, Some(30053), &[1, 2]);
        let mut new = sp("dns", Protocol::Udp, Some(30053), &[1]);
        // Same service, same ClusterIP.
        new.cluster_ip = old.cluster_ip;
        let vip = old.cluster_ip;
        let got: Vec<Flush> = stale(std::slice::from_ref(&old), std::slice::from_ref(&new))
            .into_iter()
            .collect();
        assert_eq!(
            got,
            [
                Flush::ClusterIpToEndpoint {
                    cluster_ip: vip,
                    endpoint: ep(2)
                },
                Flush::NodePortToEndpoint {
                    node_port: 30053,
                    endpoint: ep(2)
                },
            ]
        );
        assert_eq!(
            got[0].args().join(" "),
            format!("-D --orig-dst {vip} --dst-nat 10.244.0.2 -p udp")
        );
        assert_eq!(
            got[1].args().join(" "),
            "-D -p udp --dport 30053 --dst-nat 10.244.0.2"
        );
        // Nothing changed: nothing to flush.
        assert!(stale(std::slice::from_ref(&new), std::slice::from_ref(&new)).is_empty());
        // The same change on TCP flushes nothing.
        old.protocol = Protocol::Tcp;
        new.protocol = Protocol::Tcp;
        assert!(stale(&[old], &[new]).is_empty());
    }

    #[test]
    fn newly_active_and_deleted_services_flush_the_whole_ip() {
        let empty = sp("dns", Protocol::Udp, Some(30053), &[]);
        let mut active = sp("dns", Protocol::Udp, Some(30053), &[1]);
        active.cluster_ip = empty.cluster_ip;
        let vip = empty.cluster_ip;
        let got: Vec<Flush> = stale(std::slice::from_ref(&empty), std::slice::from_ref(&active))
            .into_iter()
            .collect();
        assert_eq!(got, [Flush::ClusterIp(vip), Flush::NodePort(30053)]);
        assert_eq!(
            got[0].args().join(" "),
            format!("-D --orig-dst {vip} -p udp")
        );
        assert_eq!(got[1].args().join(" "), "-D -p udp --dport 30053");
        // A new service with endpoints is newly active too.
        assert_eq!(stale(&[], std::slice::from_ref(&active)).len(), 2);
        // Deleted.
        assert_eq!(
            stale(&[active], &[]).into_iter().collect::<Vec<_>>(),
            [Flush::ClusterIp(vip), Flush::NodePort(30053)]
        );
        // Deleted, without a NodePort: the ClusterIP only.
        assert_eq!(stale(&[sp("dns", Protocol::Udp, None, &[1])], &[]).len(), 1);
    }
}
