//! Turns a lookup into a DNS response for one question: answer records per query type, SOA in
//! the authority section for NXDOMAIN/NODATA, A/AAAA for SRV targets in the additional section.
//! Pure over the cache, so every case is a table-driven unit test.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::cache::Index;
use crate::lookup::{lookup, parse, Found, Host, Item, Parsed};
use crate::reverse;

/// The schema version the Kubernetes DNS specification defines for `dns-version.<zone>`.
const SCHEMA_VERSION: &str = "1.1.0";
/// SOA timers, as CoreDNS's kubernetes plugin sets them.
const SOA_REFRESH: i32 = 7200;
const SOA_RETRY: i32 = 1800;
const SOA_EXPIRE: i32 = 86400;
/// How many in-zone CNAME hops (ExternalName pointing into the zone) are followed.
const MAX_CNAME_DEPTH: usize = 8;

/// The authoritative zone's settings.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The cluster domain, lowercase without trailing dot (`cluster.local`).
    pub domain: String,
    /// TTL of every answer, and the SOA minimum (negative caching).
    pub ttl: u32,
    /// The address `ns.dns.<zone>` resolves to (the published kube-dns ClusterIP).
    pub nameserver_ip: Option<IpAddr>,
}

/// A response for one question.
#[derive(Debug, Default)]
pub struct Answer {
    /// NOERROR or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA for negative answers).
    pub authority: Vec<Record>,
    /// The additional section.
    pub additionals: Vec<Record>,
    /// An external CNAME target whose records of the asked type the server should fetch from
    /// upstream and append (CoreDNS resolves ExternalName targets the same way).
    pub chase: Option<Name>,
}

/// Answers `qname`/`qtype` from the index, or `None` when the name is outside the zone.
/// `serial` is the SOA serial.
pub fn answer(
    idx: &Index,
    zone: &Zone,
    serial: u32,
    qname: &Name,
    qtype: RecordType,
) -> Option<Answer> {
    let lower = qname.to_lowercase().to_ascii();
    let lower = lower.trim_end_matches('.');
    if let Some(ip) = reverse::parse_ptr(lower) {
        return ptr(idx, zone, qname, ip, qtype);
    }
    let parsed = parse(lower, &zone.domain)?;
    let mut out = Answer::default();
    let ctx = Ctx { idx, zone, serial };
    ctx.render(qname, lower, &parsed, qtype, &mut out, 0);
    if out.answers.is_empty() || out.rcode == ResponseCode::NXDomain {
        if let Some(soa) = soa(zone, serial) {
            out.authority.push(soa);
        }
    }
    Some(out)
}

/// What every step of rendering reads.
struct Ctx<'a> {
    idx: &'a Index,
    zone: &'a Zone,
    serial: u32,
}

impl Ctx<'_> {
    fn render(
        &self,
        owner: &Name,
        lower: &str,
        parsed: &Parsed<'_>,
        qtype: RecordType,
        out: &mut Answer,
        depth: usize,
    ) {
        let (idx, zone) = (self.idx, self.zone);
        let ttl = zone.ttl;
        match (parsed, qtype) {
            (Parsed::Apex, RecordType::SOA) => {
                out.answers.extend(soa(zone, self.serial));
                return;
            }
            (Parsed::Apex, RecordType::NS) => {
                if let Some(ns) = fqdn(&format!("ns.dns.{}", zone.domain)) {
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::NS(NS(ns.clone())),
                    ));
                    out.additionals
                        .extend(zone.nameserver_ip.map(|ip| address(ns, ttl, ip)));
                }
                return;
            }
            (Parsed::DnsVersion, RecordType::TXT) => {
                let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                out.answers
                    .push(Record::from_rdata(owner.clone(), ttl, RData::TXT(txt)));
                return;
            }
            (Parsed::Nameserver, RecordType::A | RecordType::AAAA) => {
                let ip = zone.nameserver_ip.filter(|ip| family_matches(*ip, qtype));
                out.answers
                    .extend(ip.map(|ip| address(owner.clone(), ttl, ip)));
                return;
            }
            _ => {}
        }
        let items = match lookup(idx, parsed, lower, &zone.domain) {
            Found::Items(items) => items,
            Found::Empty => return,
            Found::NxDomain => {
                out.rcode = ResponseCode::NXDomain;
                return;
            }
        };
        match qtype {
            RecordType::A | RecordType::AAAA | RecordType::CNAME => {
                let mut seen = HashSet::new();
                for item in &items {
                    match &item.host {
                        Host::Ip(ip)
                            if qtype != RecordType::CNAME && family_matches(*ip, qtype) =>
                        {
                            if seen.insert(*ip) {
                                out.answers.push(address(owner.clone(), ttl, *ip));
                            }
                        }
                        Host::Ip(_) => {}
                        Host::Name(target) => {
                            // One CNAME per name, even when the service lists several ports.
                            if !out.answers.is_empty() {
                                continue;
                            }
                            self.cname(owner, target, qtype, out, depth);
                        }
                    }
                }
            }
            RecordType::SRV => srv(&items, ttl, owner, out),
            _ => {}
        }
    }

    /// A CNAME to `target`; for address queries, the target's records too: from the zone when the
    /// target is in it, else from upstream via [`Answer::chase`].
    fn cname(&self, owner: &Name, target: &str, qtype: RecordType, out: &mut Answer, depth: usize) {
        let zone = self.zone;
        let Some(target_name) = fqdn(target) else {
            return;
        };
        out.answers.push(Record::from_rdata(
            owner.clone(),
            zone.ttl,
            RData::CNAME(CNAME(target_name.clone())),
        ));
        if qtype == RecordType::CNAME {
            return;
        }
        match parse(target, &zone.domain) {
            Some(parsed) if depth < MAX_CNAME_DEPTH => {
                let mut inner = Answer::default();
                self.render(&target_name, target, &parsed, qtype, &mut inner, depth + 1);
                out.answers.append(&mut inner.answers);
                out.chase = inner.chase;
            }
            Some(_) => {}
            None => out.chase = Some(target_name),
        }
    }
}

/// SRV records for every item with a port; weights split 100 evenly (all priority 0), as
/// CoreDNS does; targets' addresses go to the additional section.
fn srv(items: &[Item], ttl: u32, owner: &Name, out: &mut Answer) {
    let with_port: Vec<_> = items.iter().filter_map(|i| Some((i, i.port?))).collect();
    let weight = u16::try_from(100 / with_port.len().max(1)).unwrap_or(100);
    let mut seen = HashSet::new();
    for (item, port) in with_port {
        let Some(target) = fqdn(&item.target) else {
            continue;
        };
        let rdata = SRV::new(0, weight, port, target.clone());
        out.answers
            .push(Record::from_rdata(owner.clone(), ttl, RData::SRV(rdata)));
        if let Host::Ip(ip) = item.host {
            if seen.insert((item.target.clone(), ip)) {
                out.additionals.push(address(target, ttl, ip));
            }
        }
    }
}

/// PTR answers for addresses the cache knows; `None` (forward upstream, CoreDNS's
/// `fallthrough in-addr.arpa ip6.arpa`) for other addresses and other query types.
fn ptr(idx: &Index, zone: &Zone, qname: &Name, ip: IpAddr, qtype: RecordType) -> Option<Answer> {
    if qtype != RecordType::PTR {
        return None;
    }
    let answers: Vec<Record> = reverse::names_for(idx, ip, &zone.domain)
        .iter()
        .filter_map(|n| fqdn(n))
        .map(|n| Record::from_rdata(qname.clone(), zone.ttl, RData::PTR(PTR(n))))
        .collect();
    if answers.is_empty() {
        return None;
    }
    Some(Answer {
        answers,
        ..Answer::default()
    })
}

fn family_matches(ip: IpAddr, qtype: RecordType) -> bool {
    matches!(
        (ip, qtype),
        (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA)
    )
}

fn address(owner: Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, rdata)
}

/// The zone's SOA (CoreDNS: `ns.dns.<zone>`, `hostmaster.<zone>`, minimum = TTL).
fn soa(zone: &Zone, serial: u32) -> Option<Record> {
    let apex = fqdn(&zone.domain)?;
    let mname = fqdn(&format!("ns.dns.{}", zone.domain))?;
    let rname = fqdn(&format!("hostmaster.{}", zone.domain))?;
    let rdata = SOA::new(
        mname,
        rname,
        serial,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        zone.ttl,
    );
    Some(Record::from_rdata(apex, zone.ttl, RData::SOA(rdata)))
}

/// An absolute name from text without the trailing dot; `None` if it is not a valid name.
fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a test failure
mod tests {
    use super::*;
    use serde_json::json;

    fn index() -> Index {
        let mut idx = Index::default();
        for ns in ["default", "ns", "kube-system"] {
            idx.namespaces.insert(ns.into());
        }
        let services = [
            json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": {"clusterIP": "10.96.0.5",
                "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            json!({"metadata": {"name": "v6", "namespace": "ns"}, "spec": {"clusterIP": "fd00::5"}}),
            json!({"metadata": {"name": "db", "namespace": "ns"}, "spec": {"clusterIP": "None",
                "ports": [{"name": "pg", "port": 5432}]}}),
            json!({"metadata": {"name": "empty", "namespace": "ns"}, "spec": {"clusterIP": "None"}}),
            json!({"metadata": {"name": "ext", "namespace": "ns"}, "spec": {"type": "ExternalName",
                "externalName": "www.example.com"}}),
            json!({"metadata": {"name": "alias", "namespace": "ns"}, "spec": {"type": "ExternalName",
                "externalName": "web.ns.svc.cluster.local"}}),
        ];
        for s in services {
            idx.apply_service(&serde_json::from_value(s).unwrap());
        }
        let slice = json!({"metadata": {"name": "db-abc", "namespace": "ns",
        "labels": {"kubernetes.io/service-name": "db"}}, "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.0.2"], "hostname": "db-0"},
            {"addresses": ["10.244.0.3"]},
            {"addresses": ["10.244.0.4"], "conditions": {"ready": false}},
        ]});
        idx.apply_slice(&serde_json::from_value(slice).unwrap());
        idx
    }

    fn zone() -> Zone {
        Zone {
            domain: "cluster.local".into(),
            ttl: 30,
            nameserver_ip: Some("10.96.0.10".parse().unwrap()),
        }
    }

    fn show(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {}", r.name(), r.record_type(), r.data()))
            .collect()
    }

    #[test]
    fn answers_follow_the_dns_spec() {
        use RecordType::*;
        let nx = ResponseCode::NXDomain;
        let ok = ResponseCode::NoError;
        // (name, type, rcode, answers)
        let cases: &[(&str, RecordType, ResponseCode, &[&str])] = &[
            ("web.ns.svc.cluster.local.", A, ok, &["web.ns.svc.cluster.local. A 10.96.0.5"]),
            ("WEB.Ns.svc.cluster.local.", A, ok, &["WEB.Ns.svc.cluster.local. A 10.96.0.5"]),
            ("web.ns.svc.cluster.local.", AAAA, ok, &[]),
            ("v6.ns.svc.cluster.local.", AAAA, ok, &["v6.ns.svc.cluster.local. AAAA fd00::5"]),
            ("v6.ns.svc.cluster.local.", A, ok, &[]),
            ("web.ns.svc.cluster.local.", MX, ok, &[]),
            ("nope.ns.svc.cluster.local.", A, nx, &[]),
            ("web.other.svc.cluster.local.", A, nx, &[]),
            ("_http._tcp.web.ns.svc.cluster.local.", SRV, ok,
             &["_http._tcp.web.ns.svc.cluster.local. SRV 0 100 80 web.ns.svc.cluster.local."]),
            ("_dns._udp.web.ns.svc.cluster.local.", SRV, ok,
             &["_dns._udp.web.ns.svc.cluster.local. SRV 0 100 53 web.ns.svc.cluster.local."]),
            ("_http._udp.web.ns.svc.cluster.local.", SRV, nx, &[]),
            ("_nope._tcp.web.ns.svc.cluster.local.", SRV, nx, &[]),
            ("web.ns.svc.cluster.local.", SRV, ok, &[
                "web.ns.svc.cluster.local. SRV 0 50 80 web.ns.svc.cluster.local.",
                "web.ns.svc.cluster.local. SRV 0 50 53 web.ns.svc.cluster.local."]),
            ("_http._tcp.web.ns.svc.cluster.local.", A, ok, &["_http._tcp.web.ns.svc.cluster.local. A 10.96.0.5"]),
            ("db.ns.svc.cluster.local.", A, ok, &[
                "db.ns.svc.cluster.local. A 10.244.0.2", "db.ns.svc.cluster.local. A 10.244.0.3"]),
            ("db-0.db.ns.svc.cluster.local.", A, ok, &["db-0.db.ns.svc.cluster.local. A 10.244.0.2"]),
            ("10-244-0-3.db.ns.svc.cluster.local.", A, ok, &["10-244-0-3.db.ns.svc.cluster.local. A 10.244.0.3"]),
            ("10-244-0-4.db.ns.svc.cluster.local.", A, nx, &[]),
            ("db-0.web.ns.svc.cluster.local.", A, nx, &[]),
            ("_pg._tcp.db.ns.svc.cluster.local.", SRV, ok, &[
                "_pg._tcp.db.ns.svc.cluster.local. SRV 0 50 5432 db-0.db.ns.svc.cluster.local.",
                "_pg._tcp.db.ns.svc.cluster.local. SRV 0 50 5432 10-244-0-3.db.ns.svc.cluster.local."]),
            ("empty.ns.svc.cluster.local.", A, nx, &[]),
            ("ext.ns.svc.cluster.local.", CNAME, ok, &["ext.ns.svc.cluster.local. CNAME www.example.com."]),
            ("ext.ns.svc.cluster.local.", A, ok, &["ext.ns.svc.cluster.local. CNAME www.example.com."]),
            ("alias.ns.svc.cluster.local.", A, ok, &[
                "alias.ns.svc.cluster.local. CNAME web.ns.svc.cluster.local.",
                "web.ns.svc.cluster.local. A 10.96.0.5"]),
            ("x.ext.ns.svc.cluster.local.", A, nx, &[]),
            ("10-244-1-7.ns.pod.cluster.local.", A, ok, &["10-244-1-7.ns.pod.cluster.local. A 10.244.1.7"]),
            ("fd00--7.ns.pod.cluster.local.", AAAA, ok, &["fd00--7.ns.pod.cluster.local. AAAA fd00::7"]),
            ("10-244-1-7.gone.pod.cluster.local.", A, nx, &[]),
            ("not-an-ip.ns.pod.cluster.local.", A, nx, &[]),
            ("ns.svc.cluster.local.", A, ok, &[]),
            ("gone.svc.cluster.local.", A, nx, &[]),
            ("svc.cluster.local.", A, ok, &[]),
            ("foo.cluster.local.", A, nx, &[]),
            ("a.b.c.web.ns.svc.cluster.local.", A, nx, &[]),
            ("cluster.local.", NS, ok, &["cluster.local. NS ns.dns.cluster.local."]),
            ("ns.dns.cluster.local.", A, ok, &["ns.dns.cluster.local. A 10.96.0.10"]),
            ("dns-version.cluster.local.", TXT, ok, &["dns-version.cluster.local. TXT 1.1.0"]),
            ("5.0.96.10.in-addr.arpa.", PTR, ok, &["5.0.96.10.in-addr.arpa. PTR web.ns.svc.cluster.local."]),
            ("2.0.244.10.in-addr.arpa.", PTR, ok, &["2.0.244.10.in-addr.arpa. PTR db-0.db.ns.svc.cluster.local."]),
        ];
        let idx = index();
        for (name, qtype, rcode, want) in cases {
            let qname = Name::from_ascii(name).unwrap();
            let got = answer(&idx, &zone(), 7, &qname, *qtype)
                .unwrap_or_else(|| panic!("{name} not in zone"));
            assert_eq!(got.rcode, *rcode, "{name} {qtype}");
            assert_eq!(show(&got.answers), *want, "{name} {qtype}");
            let negative = got.answers.is_empty() || *rcode == nx;
            let soa = show(&got.authority);
            assert_eq!(
                !soa.is_empty(),
                negative,
                "{name} {qtype}: authority {soa:?}"
            );
            if negative {
                assert_eq!(got.authority[0].ttl(), 30);
                assert!(soa[0].starts_with("cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 30"), "{soa:?}");
            }
        }
    }

    #[test]
    fn srv_targets_get_additional_addresses_and_external_targets_are_chased() {
        let idx = index();
        let q = Name::from_ascii("_pg._tcp.db.ns.svc.cluster.local.").unwrap();
        let got = answer(&idx, &zone(), 1, &q, RecordType::SRV).unwrap();
        assert_eq!(
            show(&got.additionals),
            [
                "db-0.db.ns.svc.cluster.local. A 10.244.0.2",
                "10-244-0-3.db.ns.svc.cluster.local. A 10.244.0.3",
            ]
        );
        let q = Name::from_ascii("ext.ns.svc.cluster.local.").unwrap();
        let got = answer(&idx, &zone(), 1, &q, RecordType::A).unwrap();
        assert_eq!(
            got.chase,
            Some(Name::from_ascii("www.example.com.").unwrap())
        );
        assert!(got.authority.is_empty());
        let outside = Name::from_ascii("www.example.com.").unwrap();
        assert!(answer(&idx, &zone(), 1, &outside, RecordType::A).is_none());
        let unknown = Name::from_ascii("9.9.9.9.in-addr.arpa.").unwrap();
        assert!(
            answer(&idx, &zone(), 1, &unknown, RecordType::PTR).is_none(),
            "falls through"
        );
        let lookalike = Name::from_ascii("evilcluster.local.").unwrap();
        assert!(answer(&idx, &zone(), 1, &lookalike, RecordType::A).is_none());
    }
}
