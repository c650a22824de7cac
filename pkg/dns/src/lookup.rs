//! Name parsing and lookup inside the cluster zone, following the Kubernetes DNS specification
//! as CoreDNS's `kubernetes` plugin implements it (`pods insecure`, no wildcards).
//!
//! A lookup yields *items* (an address or external name, an optional port, and the owner name an
//! SRV record targets), like CoreDNS's `msg.Service` list; `answer.rs` renders them per type.

use std::net::IpAddr;

use crate::cache::{Index, Port, SvcKind};

/// A name inside the zone, split into its parts. Names are lowercase without the trailing dot.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The zone apex.
    Apex,
    /// `svc.<zone>` / `pod.<zone>`: names with children but no records of their own.
    EmptyNonTerminal,
    /// `dns-version.<zone>`: the spec's schema version TXT.
    DnsVersion,
    /// `ns.dns.<zone>`: the nameserver the SOA/NS records name.
    Nameserver,
    /// `<ns>.svc.<zone>` / `<ns>.pod.<zone>`.
    Namespace(&'a str),
    /// `[<endpoint>.|_<port>._<proto>.]<svc>.<ns>.svc.<zone>`.
    Service {
        /// Namespace.
        ns: &'a str,
        /// Service name.
        svc: &'a str,
        /// Endpoint label (hostname or dashed IP).
        endpoint: Option<&'a str>,
        /// `(port name, protocol)` without underscores.
        port: Option<(&'a str, &'a str)>,
    },
    /// `<dashed-ip>.<ns>.pod.<zone>`.
    Pod {
        /// Namespace.
        ns: &'a str,
        /// The dashed IP label.
        name: &'a str,
    },
    /// In the zone but not a name the spec defines: NXDOMAIN.
    Invalid,
}

/// Splits `name` relative to `zone`; `None` when the name is outside the zone (forwarded).
pub fn parse<'a>(name: &'a str, zone: &str) -> Option<Parsed<'a>> {
    let rest = if name == zone {
        ""
    } else {
        name.strip_suffix(zone)?.strip_suffix('.')?
    };
    if rest.is_empty() {
        return Some(Parsed::Apex);
    }
    // Labels right to left: the one next to the zone first.
    let labels: Vec<&str> = rest.rsplit('.').collect();
    Some(match labels.as_slice() {
        ["svc"] | ["pod"] => Parsed::EmptyNonTerminal,
        ["dns-version"] => Parsed::DnsVersion,
        ["dns", "ns"] => Parsed::Nameserver,
        ["svc" | "pod", ns] => Parsed::Namespace(ns),
        ["svc", ns, svc] => Parsed::Service {
            ns,
            svc,
            endpoint: None,
            port: None,
        },
        ["svc", ns, svc, endpoint] => Parsed::Service {
            ns,
            svc,
            endpoint: Some(endpoint),
            port: None,
        },
        // CoreDNS strips the underscores leniently; an unknown port or protocol just matches
        // nothing and ends in NXDOMAIN.
        ["svc", ns, svc, proto, port] => Parsed::Service {
            ns,
            svc,
            endpoint: None,
            port: Some((strip_underscore(port), strip_underscore(proto))),
        },
        ["pod", ns, name] => Parsed::Pod { ns, name },
        _ => Parsed::Invalid,
    })
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

/// Where an item points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// An address (A/AAAA).
    Ip(IpAddr),
    /// An external name (CNAME), lowercase without trailing dot.
    Name(String),
}

/// One answer candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The address or name.
    pub host: Host,
    /// The port, for SRV.
    pub port: Option<u16>,
    /// The name an SRV record targets (and whose A/AAAA goes to the additional section).
    pub target: String,
}

/// The outcome of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The name exists with these items (may still have none of the asked type: NODATA).
    Items(Vec<Item>),
    /// The name exists but holds nothing (NODATA for every type).
    Empty,
    /// The name does not exist.
    NxDomain,
}

/// Looks a parsed name up in the index. `qname` is the full query name (the owner of pod
/// answers); `zone` the cluster domain.
pub fn lookup(idx: &Index, parsed: &Parsed<'_>, qname: &str, zone: &str) -> Found {
    match *parsed {
        Parsed::Apex | Parsed::EmptyNonTerminal => Found::Empty,
        Parsed::DnsVersion | Parsed::Nameserver => Found::Empty,
        Parsed::Invalid => Found::NxDomain,
        Parsed::Namespace(ns) if idx.namespaces.contains(ns) => Found::Empty,
        Parsed::Namespace(_) => Found::NxDomain,
        Parsed::Pod { ns, name } => pod(idx, ns, name, qname),
        Parsed::Service {
            ns,
            svc,
            endpoint,
            port,
        } => service(idx, ns, svc, endpoint, port, zone),
    }
}

/// `pods insecure`: the address is taken from the name, the namespace must exist.
fn pod(idx: &Index, ns: &str, name: &str, qname: &str) -> Found {
    if !idx.namespaces.contains(ns) {
        return Found::NxDomain;
    }
    // Exactly three single dashes is an IPv4 address; anything else is read as IPv6, whose
    // colons became dashes (so `::` became `--`).
    let text = if name.matches('-').count() == 3 && !name.contains("--") {
        name.replace('-', ".")
    } else {
        name.replace('-', ":")
    };
    match text.parse::<IpAddr>() {
        Ok(ip) => Found::Items(vec![Item {
            host: Host::Ip(ip),
            port: None,
            target: qname.to_string(),
        }]),
        Err(_) => Found::NxDomain,
    }
}

/// Matches a port against the query's `(name, protocol)`; `None` matches every port.
fn port_matches(want: Option<(&str, &str)>, p: &Port) -> bool {
    want.is_none_or(|(name, proto)| name == p.name && proto == p.protocol)
}

fn service(
    idx: &Index,
    ns: &str,
    svc_name: &str,
    endpoint: Option<&str>,
    want_port: Option<(&str, &str)>,
    zone: &str,
) -> Found {
    let Some(svc) = idx.services.get(&(ns.to_string(), svc_name.to_string())) else {
        return Found::NxDomain;
    };
    let svc_fqdn = format!("{svc_name}.{ns}.svc.{zone}");
    let mut items = Vec::new();
    match &svc.kind {
        // An external name has no endpoints to name.
        SvcKind::ExternalName(_) if endpoint.is_some() => {}
        SvcKind::ExternalName(target) => {
            let host = Host::Name(target.clone());
            if svc.ports.is_empty() && want_port.is_none() {
                items.push(Item {
                    host: host.clone(),
                    port: None,
                    target: target.clone(),
                });
            }
            for p in svc.ports.iter().filter(|p| port_matches(want_port, p)) {
                items.push(Item {
                    host: host.clone(),
                    port: Some(p.port),
                    target: target.clone(),
                });
            }
        }
        // A ClusterIP service answers its virtual IPs whether or not it has endpoints.
        SvcKind::ClusterIp(ips) if endpoint.is_none() => {
            let ports = ports_or_sentinel(&svc.ports, want_port);
            for port in ports {
                for ip in ips {
                    items.push(Item {
                        host: Host::Ip(*ip),
                        port,
                        target: svc_fqdn.clone(),
                    });
                }
            }
        }
        // Headless services, and endpoint names under any service, answer ready endpoints.
        SvcKind::ClusterIp(_) | SvcKind::Headless => {
            for ep in idx.endpoints_of(ns, svc_name) {
                if endpoint.is_some_and(|e| e != ep.label) {
                    continue;
                }
                for port in ports_or_sentinel(&ep.ports, want_port) {
                    items.push(Item {
                        host: Host::Ip(ep.ip),
                        port,
                        target: format!("{}.{svc_fqdn}", ep.label),
                    });
                }
            }
        }
    }
    if items.is_empty() {
        // Also for a headless service without ready endpoints: the DNS spec was changed to
        // match kube-dns/CoreDNS here (kubernetes/dns#245).
        Found::NxDomain
    } else {
        Found::Items(items)
    }
}

/// The ports matching the query; a portless object still answers address queries (CoreDNS
/// adds a sentinel port), but only when no port was asked for.
fn ports_or_sentinel(ports: &[Port], want: Option<(&str, &str)>) -> Vec<Option<u16>> {
    if ports.is_empty() {
        return if want.is_none() { vec![None] } else { vec![] };
    }
    ports
        .iter()
        .filter(|p| port_matches(want, p))
        .map(|p| Some(p.port))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        let z = "cluster.local";
        let svc = |ns, svc, endpoint, port| {
            Some(Parsed::Service {
                ns,
                svc,
                endpoint,
                port,
            })
        };
        let cases = [
            ("cluster.local", Some(Parsed::Apex)),
            ("example.com", None),
            ("xcluster.local", None),
            ("svc.cluster.local", Some(Parsed::EmptyNonTerminal)),
            ("dns-version.cluster.local", Some(Parsed::DnsVersion)),
            ("ns.dns.cluster.local", Some(Parsed::Nameserver)),
            (
                "default.svc.cluster.local",
                Some(Parsed::Namespace("default")),
            ),
            (
                "web.default.svc.cluster.local",
                svc("default", "web", None, None),
            ),
            (
                "web-0.web.default.svc.cluster.local",
                svc("default", "web", Some("web-0"), None),
            ),
            (
                "_http._tcp.web.default.svc.cluster.local",
                svc("default", "web", None, Some(("http", "tcp"))),
            ),
            ("a.b.c.web.default.svc.cluster.local", Some(Parsed::Invalid)),
            (
                "1-2-3-4.default.pod.cluster.local",
                Some(Parsed::Pod {
                    ns: "default",
                    name: "1-2-3-4",
                }),
            ),
            ("x.1-2-3-4.default.pod.cluster.local", Some(Parsed::Invalid)),
            ("foo.cluster.local", Some(Parsed::Invalid)),
        ];
        for (name, want) in cases {
            assert_eq!(parse(name, z), want, "{name}");
        }
    }
}
