//! The proxy's view of the cluster: Services and EndpointSlices reduced to one `ServicePort`
//! per (service, port) with the endpoints that should receive new connections. Pure functions,
//! no IO, so the rule generation can be tested table-driven.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Upstream's default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

/// L4 protocol of a service port (SCTP is not proxied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }

    /// The lowercase name iptables' `-p` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// Target port (named targetPorts are already resolved in the slice).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// One proxied (service, port): what the rules are generated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The port's name ("" when the service has a single unnamed port).
    pub port_name: String,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// The NodePort, for NodePort and LoadBalancer services.
    pub node_port: Option<u16>,
    /// ClientIP session affinity timeout in seconds, when affinity is on.
    pub affinity_seconds: Option<i32>,
    /// Endpoints that take new connections, sorted and deduplicated.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name:port` as upstream names a service port in comments and hashes.
    pub fn key(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port_name)
    }
}

#[derive(Debug, Default)]
struct SlicePortEndpoints {
    ready: BTreeSet<Endpoint>,
    serving_terminating: BTreeSet<Endpoint>,
}

/// Builds the proxied service ports from the current Services and EndpointSlices.
///
/// Follows kube-proxy: headless (`clusterIP: None`), ExternalName and non-IPv4 services get no
/// rules; an endpoint takes new connections when `ready` is not false; when a port has no
/// ready endpoint, serving-and-terminating endpoints are used instead (so connections keep
/// working during a rolling update's last pod).
pub fn service_ports<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<ServicePort> {
    // (ns, service, port name, protocol) -> endpoints.
    let mut by_port: BTreeMap<(String, String, String, Protocol), SlicePortEndpoints> =
        BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        for p in slice.ports.iter().flatten() {
            let (Some(proto), Some(port)) = (
                Protocol::parse(p.protocol.as_deref()),
                p.port.and_then(|n| u16::try_from(n).ok()),
            ) else {
                continue;
            };
            let key = (
                ns.clone(),
                svc.clone(),
                p.name.clone().unwrap_or_default(),
                proto,
            );
            let entry = by_port.entry(key).or_default();
            for ep in &slice.endpoints {
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    let e = Endpoint { ip, port };
                    if ready {
                        entry.ready.insert(e);
                    } else if serving && terminating {
                        entry.serving_terminating.insert(e);
                    }
                }
            }
        }
    }

    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            // Headless ("None"), unset or IPv6: nothing to proxy.
            continue;
        };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        for p in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(port)) = (
                Protocol::parse(p.protocol.as_deref()),
                u16::try_from(p.port),
            ) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let key = (ns.clone(), name.clone(), port_name.clone(), protocol);
            let endpoints = match by_port.get(&key) {
                Some(e) if !e.ready.is_empty() => e.ready.iter().copied().collect(),
                Some(e) => e.serving_terminating.iter().copied().collect(),
                None => Vec::new(),
            };
            out.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name,
                protocol,
                cluster_ip,
                port,
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0),
                affinity_seconds,
                endpoints,
            });
        }
    }
    out.sort_by_key(|p| (p.key(), p.protocol));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("test fixture")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("test fixture")
    }

    #[test]
    fn joins_slices_by_label_port_name_and_protocol() {
        let s = svc(json!({"metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}}));
        let sl = slice(json!({"metadata": {"namespace": "ns", "name": "web-1",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.0.0.2"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]}));
        let ports = service_ports([&s], [&sl]);
        assert_eq!(ports.len(), 2);
        let dns = &ports[0];
        assert_eq!(
            (dns.port_name.as_str(), dns.protocol, dns.port),
            ("dns", Protocol::Udp, 53)
        );
        assert_eq!(dns.endpoints.len(), 2);
        let http = &ports[1];
        let eps: Vec<String> = http.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(eps, ["10.0.0.1:8080", "10.0.0.2:8080"]);
    }

    #[test]
    fn headless_and_external_name_are_skipped() {
        let headless = svc(json!({"metadata": {"namespace": "ns", "name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let ext = svc(json!({"metadata": {"namespace": "ns", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert!(service_ports([&headless, &ext], []).is_empty());
    }

    #[test]
    fn terminating_serving_endpoints_used_only_without_ready_ones() {
        let s = svc(json!({"metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}],
                     "sessionAffinity": "ClientIP"}}));
        let sl = slice(json!({"metadata": {"namespace": "ns", "name": "web-1",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [
                {"addresses": ["10.0.0.9"],
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.8"],
                 "conditions": {"ready": false, "serving": false, "terminating": true}}]}));
        let ports = service_ports([&s], [&sl]);
        assert_eq!(ports[0].endpoints.len(), 1);
        assert_eq!(ports[0].endpoints[0].ip, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(ports[0].affinity_seconds, Some(DEFAULT_AFFINITY_SECONDS));
    }
}
