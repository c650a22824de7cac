//! Reading upstream resolvers from resolv.conf text (what CoreDNS's `forward . /etc/resolv.conf`
//! does); pure, the caller reads the file.

use std::net::{IpAddr, SocketAddr};

/// The DNS port upstream nameservers listen on.
const DNS_PORT: u16 = 53;

/// The `nameserver` lines of a resolv.conf, as `ip:53`, in file order without duplicates.
/// Comments (`#`, `;`), other directives and unparsable addresses are skipped; an IPv6 zone
/// suffix (`fe80::1%eth0`) is dropped since a `SocketAddr` can't carry it by name.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else {
            continue;
        };
        let addr = addr.split('%').next().unwrap_or(addr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let sa = SocketAddr::new(ip, DNS_PORT);
            if !out.contains(&sa) {
                out.push(sa);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers() {
        let cases: &[(&str, &[&str])] = &[
            ("nameserver 10.0.0.2\n", &["10.0.0.2:53"]),
            ("# comment\nsearch a.example b.example\nnameserver 1.1.1.1 # cloudflare\noptions ndots:5\nnameserver 8.8.8.8\n",
             &["1.1.1.1:53", "8.8.8.8:53"]),
            ("nameserver   fd00::53\nnameserver fe80::1%eth0\n", &["[fd00::53]:53", "[fe80::1]:53"]),
            ("nameserver\nnameserver bogus\n;nameserver 9.9.9.9\nnameserver 9.9.9.9\nnameserver 9.9.9.9\n", &["9.9.9.9:53"]),
            ("", &[]),
        ];
        for (text, want) in cases {
            let got: Vec<String> = parse_resolv_conf(text)
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(got, *want, "{text:?}");
        }
    }
}
