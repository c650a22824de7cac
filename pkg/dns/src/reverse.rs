//! Reverse lookups (PTR under `in-addr.arpa`/`ip6.arpa`) for ClusterIPs and endpoint addresses,
//! as kubeadm's Corefile configures CoreDNS (`kubernetes cluster.local in-addr.arpa ip6.arpa`
//! with `fallthrough`): an address the cache does not know is forwarded upstream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cache::{Index, SvcKind};

/// The address a reverse name stands for (`4.3.2.1.in-addr.arpa` → `1.2.3.4`; 32 nibbles under
/// `ip6.arpa`); `None` for anything else, including partial reverse names.
pub fn parse_ptr(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        for (i, l) in labels.iter().rev().enumerate() {
            octets[i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 {
        return None;
    }
    let mut value: u128 = 0;
    for n in nibbles.iter().rev() {
        if n.len() != 1 {
            return None;
        }
        value = (value << 4) | u128::from(u8::from_str_radix(n, 16).ok()?);
    }
    Some(IpAddr::V6(Ipv6Addr::from(value)))
}

/// The in-zone names (without trailing dot) that own `ip`: `<svc>.<ns>.svc.<zone>` for a
/// ClusterIP, `<endpoint>.<svc>.<ns>.svc.<zone>` for an endpoint address. A scan of the cache:
/// PTR queries are rare next to forward lookups, so they get no index of their own.
pub fn names_for(idx: &Index, ip: IpAddr, zone: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ((ns, name), svc) in &idx.services {
        if let SvcKind::ClusterIp(ips) = &svc.kind {
            if ips.contains(&ip) {
                out.push(format!("{name}.{ns}.svc.{zone}"));
            }
        }
    }
    for ((ns, svc), slices) in &idx.endpoints {
        for ep in slices.values().flatten().filter(|ep| ep.ip == ip) {
            out.push(format!("{}.{svc}.{ns}.svc.{zone}", ep.label));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn parses_reverse_names() {
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        let cases = [
            ("10.0.96.10.in-addr.arpa", Some("10.96.0.10")),
            (v6, Some("fd00::1")),
            ("0.96.10.in-addr.arpa", None),
            ("300.0.96.10.in-addr.arpa", None),
            ("example.com", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_ptr(name), want.map(|w| w.parse().unwrap()), "{name}");
        }
    }
}
