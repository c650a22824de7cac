//! The desired ruleset as one `iptables-restore --noflush` batch (nat + filter), following
//! kube-proxy's iptables mode: SERVICES → SVC (random endpoint, ClientIP affinity) → SEP (DNAT,
//! hairpin masquerade), NODEPORTS on local addresses, REJECT in filter for services without
//! endpoints, and a MARK-MASQ/POSTROUTING pair for SNAT.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use crate::chains::{hashed_chain, Existing, FILTER_CHAINS, JUMPS, NAT_CHAINS};
use crate::model::ServicePort;

/// What the rules depend on besides the services.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// Chain name prefix, e.g. `KUBELITE-`.
    pub prefix: String,
    /// The packet mark bit that requests SNAT (kube-proxy uses 0x4000).
    pub masquerade_bit: u32,
    /// Masquerade all service traffic.
    pub masquerade_all: bool,
    /// Pod CIDR: ClusterIP traffic from outside it is masqueraded (as `--cluster-cidr`).
    pub cluster_cidr: Option<String>,
}

/// A rendered batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The `iptables-restore --noflush` input.
    pub text: String,
    /// Number of rules (`-A`/`-I` lines) in our chains.
    pub rules: usize,
    /// Some service has a NodePort (so `route_localnet` is needed for 127.0.0.1).
    pub has_node_ports: bool,
    /// Content hash of every wanted chain, for the next [`render_partial`].
    pub chains: BTreeMap<String, u64>,
    /// Our chains and jumps once this batch is applied: the next sync's `existing`, so it
    /// need not read the tables back with `iptables-save`.
    pub installed: Existing,
}

struct Tables {
    nat_chains: Vec<String>,
    nat: Vec<String>,
    filter_chains: Vec<String>,
    filter: Vec<String>,
}

fn dport(sp: &ServicePort, port: u16) -> String {
    let p = sp.protocol.as_str();
    format!("-p {p} -m {p} --dport {port}")
}

/// Renders the whole desired state. Chains in `existing` that are no longer wanted are
/// flushed and deleted in the same batch; missing jumps from built-in chains are inserted.
pub fn render(cfg: &RuleConfig, ports: &[ServicePort], existing: &Existing) -> Plan {
    render_partial(cfg, ports, existing, None)
}

/// Like [`render`], but a chain whose content hash equals the one in `previous` (the last
/// applied [`Plan::chains`]) and that still exists is left out of the batch: as upstream's
/// partial syncs, a one-endpoint change rewrites SERVICES and that service's chains, not all
/// of them (iptables-nft-restore's cost grows with the batch, ~0.5 ms per rule).
pub fn render_partial(
    cfg: &RuleConfig,
    ports: &[ServicePort],
    existing: &Existing,
    previous: Option<&BTreeMap<String, u64>>,
) -> Plan {
    let p = &cfg.prefix;
    let mark = format!("{:#x}", cfg.masquerade_bit);
    let masq_chain = format!("{p}MARK-MASQ");
    let mut t = Tables {
        nat_chains: NAT_CHAINS.iter().map(|c| format!("{p}{c}")).collect(),
        nat: Vec::new(),
        filter_chains: FILTER_CHAINS.iter().map(|c| format!("{p}{c}")).collect(),
        filter: Vec::new(),
    };

    t.nat.push(format!(
        "-A {p}POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
    ));
    // Clear the bit so a packet re-entering the stack is not masqueraded twice.
    t.nat
        .push(format!("-A {p}POSTROUTING -j MARK --xor-mark {mark}"));
    t.nat.push(format!(
        "-A {p}POSTROUTING -m comment --comment \"kubelite service traffic requiring SNAT\" -j MASQUERADE --random-fully"
    ));
    t.nat
        .push(format!("-A {masq_chain} -j MARK --or-mark {mark}"));

    let mut has_node_ports = false;
    for sp in ports {
        let key = sp.key();
        let svc_chain = hashed_chain(p, "SVC", &format!("{key}/{}", sp.protocol));
        let cluster = format!("-d {}/32 {}", sp.cluster_ip, dport(sp, sp.port));
        has_node_ports |= sp.node_port.is_some();

        if sp.endpoints.is_empty() {
            // Refuse at once instead of letting the packet sit in the dummy route.
            t.filter.push(format!(
                "-A {p}SERVICES -m comment --comment \"{key} has no endpoints\" {cluster} -j REJECT --reject-with icmp-port-unreachable"
            ));
            if let Some(np) = sp.node_port {
                t.filter.push(format!(
                    "-A {p}EXTERNAL-SERVICES -m comment --comment \"{key} has no endpoints\" -m addrtype --dst-type LOCAL {} -j REJECT --reject-with icmp-port-unreachable",
                    dport(sp, np)
                ));
            }
            continue;
        }

        t.nat_chains.push(svc_chain.clone());
        t.nat.push(format!(
            "-A {p}SERVICES -m comment --comment \"{key} cluster IP\" {cluster} -j {svc_chain}"
        ));
        if cfg.masquerade_all {
            t.nat.push(format!(
                "-A {svc_chain} -m comment --comment \"{key} cluster IP\" {cluster} -j {masq_chain}"
            ));
        } else if let Some(cidr) = &cfg.cluster_cidr {
            t.nat.push(format!(
                "-A {svc_chain} -m comment --comment \"{key} cluster IP\" ! -s {cidr} {cluster} -j {masq_chain}"
            ));
        }
        if let Some(np) = sp.node_port {
            // externalTrafficPolicy Cluster: external (and localhost) clients are SNATed so
            // replies come back through this node.
            let m = dport(sp, np);
            t.nat.push(format!(
                "-A {p}NODEPORTS -m comment --comment \"{key}\" {m} -j {masq_chain}"
            ));
            t.nat.push(format!(
                "-A {p}NODEPORTS -m comment --comment \"{key}\" {m} -j {svc_chain}"
            ));
        }

        let seps: Vec<String> = sp
            .endpoints
            .iter()
            .map(|e| hashed_chain(p, "SEP", &format!("{key}/{}/{e}", sp.protocol)))
            .collect();
        if let Some(secs) = sp.affinity_seconds {
            for (e, sep) in sp.endpoints.iter().zip(&seps) {
                t.nat.push(format!(
                    "-A {svc_chain} -m comment --comment \"{key} -> {e}\" -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {secs} --reap -j {sep}"
                ));
            }
        }
        let n = seps.len();
        for (i, (e, sep)) in sp.endpoints.iter().zip(&seps).enumerate() {
            let stat = if i + 1 < n {
                // Each rule takes 1/(remaining) of what reaches it: uniform overall.
                format!(
                    " -m statistic --mode random --probability {:.10}",
                    1.0 / (n - i) as f64
                )
            } else {
                String::new()
            };
            t.nat.push(format!(
                "-A {svc_chain} -m comment --comment \"{key} -> {e}\"{stat} -j {sep}"
            ));
        }
        for (e, sep) in sp.endpoints.iter().zip(&seps) {
            t.nat_chains.push(sep.clone());
            // Hairpin: an endpoint reaching itself through the service needs SNAT.
            t.nat.push(format!(
                "-A {sep} -m comment --comment \"{key}\" -s {}/32 -j {masq_chain}",
                e.ip
            ));
            let recent = if sp.affinity_seconds.is_some() {
                format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set")
            } else {
                String::new()
            };
            let proto = sp.protocol.as_str();
            t.nat.push(format!(
                "-A {sep} -m comment --comment \"{key}\"{recent} -p {proto} -m {proto} -j DNAT --to-destination {e}"
            ));
        }
    }
    // Last, so cluster IPs that happen to be local are matched first.
    t.nat.push(format!(
        "-A {p}SERVICES -m comment --comment \"kubelite service nodeports\" -m addrtype --dst-type LOCAL -j {p}NODEPORTS"
    ));
    t.filter.push(format!(
        "-A {p}FORWARD -m comment --comment \"kubelite forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
    ));
    t.filter.push(format!(
        "-A {p}FORWARD -m comment --comment \"kubelite forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    ));

    let rules = t.nat.len() + t.filter.len();
    let mut text = String::with_capacity(rules * 160);
    let mut chains = BTreeMap::new();
    for (table, names, lines, have) in [
        ("nat", &t.nat_chains, &t.nat, &existing.nat),
        ("filter", &t.filter_chains, &t.filter, &existing.filter),
    ] {
        let spec = TableSpec {
            table,
            chains: names,
            rules: lines,
            have,
        };
        table_text(&mut text, &spec, existing, p, previous, &mut chains);
    }
    let installed = Existing {
        nat: t.nat_chains.into_iter().collect(),
        filter: t.filter_chains.into_iter().collect(),
        jumps: JUMPS
            .iter()
            .map(|j| {
                let line = format!("-A {} {} -j {p}{}", j.from, j.matches, j.to);
                (j.table.to_string(), line)
            })
            .collect(),
    };
    Plan {
        text,
        rules,
        has_node_ports,
        chains,
        installed,
    }
}

struct TableSpec<'a> {
    table: &'a str,
    chains: &'a [String],
    rules: &'a [String],
    have: &'a BTreeSet<String>,
}

fn content_hash(table: &str, rules: &[&String]) -> u64 {
    let mut h = DefaultHasher::new();
    table.hash(&mut h);
    rules.hash(&mut h);
    h.finish()
}

fn table_text(
    out: &mut String,
    spec: &TableSpec<'_>,
    existing: &Existing,
    prefix: &str,
    previous: Option<&BTreeMap<String, u64>>,
    hashes: &mut BTreeMap<String, u64>,
) {
    let table = spec.table;
    // Rules grouped by chain (the token after "-A"), in order.
    let mut by_chain: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for r in spec.rules {
        let chain = r.split_whitespace().nth(1).unwrap_or_default();
        by_chain.entry(chain).or_default().push(r);
    }
    let wanted: BTreeSet<&str> = spec.chains.iter().map(String::as_str).collect();
    let stale: Vec<&String> = spec
        .have
        .iter()
        .filter(|c| !wanted.contains(c.as_str()))
        .collect();
    let mut write = Vec::new();
    for c in spec.chains {
        let rules = by_chain.get(c.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let hash = content_hash(table, rules);
        hashes.insert(c.clone(), hash);
        let unchanged = spec.have.contains(c) && previous.and_then(|p| p.get(c)) == Some(&hash);
        if !unchanged {
            write.push((c, rules));
        }
    }
    let _ = writeln!(out, "*{table}");
    // Declaring a chain with --noflush creates it or flushes it: the batch then rewrites it.
    for c in write.iter().map(|(c, _)| *c).chain(stale.iter().copied()) {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for j in JUMPS.iter().filter(|j| j.table == table) {
        let target = format!("{prefix}{}", j.to);
        if !existing.has_jump(table, j.from, &target) {
            let _ = writeln!(out, "-I {} 1 {} -j {target}", j.from, j.matches);
        }
    }
    for (_, rules) in &write {
        for r in rules.iter() {
            out.push_str(r);
            out.push('\n');
        }
    }
    for c in stale {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
