//! Chain naming and ownership: which chains and jump rules belong to this proxy (by prefix),
//! read back from `iptables-save`, and the cleanup batch that removes them.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// iptables refuses chain names longer than this.
pub const MAX_CHAIN_LEN: usize = 28;

/// Shortest hash suffix we accept; a prefix leaving less is rejected by `Config` validation.
pub const MIN_HASH_LEN: usize = 8;

/// The fixed chains (suffixes after the prefix), per table.
pub const NAT_CHAINS: [&str; 4] = ["SERVICES", "NODEPORTS", "POSTROUTING", "MARK-MASQ"];
/// The fixed filter chains.
pub const FILTER_CHAINS: [&str; 3] = ["SERVICES", "EXTERNAL-SERVICES", "FORWARD"];

/// A jump from a built-in chain into one of ours.
#[derive(Debug, Clone, Copy)]
pub struct Jump {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// The built-in chain.
    pub from: &'static str,
    /// Match arguments (before `-j`).
    pub matches: &'static str,
    /// Our chain's suffix.
    pub to: &'static str,
}

/// Every jump the proxy installs, in the order they are inserted.
pub const JUMPS: [Jump; 8] = [
    Jump { table: "nat", from: "PREROUTING", matches: "-m comment --comment \"kubelite service portals\"", to: "SERVICES" },
    Jump { table: "nat", from: "OUTPUT", matches: "-m comment --comment \"kubelite service portals\"", to: "SERVICES" },
    Jump { table: "nat", from: "POSTROUTING", matches: "-m comment --comment \"kubelite postrouting rules\"", to: "POSTROUTING" },
    Jump { table: "filter", from: "INPUT", matches: "-m conntrack --ctstate NEW -m comment --comment \"kubelite externally-visible service portals\"", to: "EXTERNAL-SERVICES" },
    Jump { table: "filter", from: "FORWARD", matches: "-m conntrack --ctstate NEW -m comment --comment \"kubelite service portals\"", to: "SERVICES" },
    Jump { table: "filter", from: "FORWARD", matches: "-m conntrack --ctstate NEW -m comment --comment \"kubelite externally-visible service portals\"", to: "EXTERNAL-SERVICES" },
    Jump { table: "filter", from: "FORWARD", matches: "-m comment --comment \"kubelite forwarding rules\"", to: "FORWARD" },
    Jump { table: "filter", from: "OUTPUT", matches: "-m conntrack --ctstate NEW -m comment --comment \"kubelite service portals\"", to: "SERVICES" },
];

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    out
}

/// `<prefix><kind>-<hash of input>`, cut to the 28 characters iptables allows.
pub fn hashed_chain(prefix: &str, kind: &str, input: &str) -> String {
    let hash = base32(&Sha256::digest(input.as_bytes()));
    let room = MAX_CHAIN_LEN.saturating_sub(prefix.len() + kind.len() + 1);
    let mut name = format!("{prefix}{kind}-");
    name.push_str(&hash[..room.min(16).min(hash.len())]);
    name
}

/// Whether `chain` is one this proxy (with `prefix`) creates. Exact shapes only, so a proxy
/// with prefix `KUBELITE-` never touches the chains of one with prefix `KUBELITE-T1-`.
pub fn is_owned(prefix: &str, chain: &str) -> bool {
    let Some(rest) = chain.strip_prefix(prefix) else {
        return false;
    };
    if NAT_CHAINS.contains(&rest) || FILTER_CHAINS.contains(&rest) {
        return true;
    }
    ["SVC-", "SEP-"].iter().any(|k| {
        rest.strip_prefix(k)
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| BASE32.contains(&b)))
    })
}

/// Our chains and jumps as they exist now, parsed from `iptables-save`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Existing {
    /// Owned chains in the nat table.
    pub nat: BTreeSet<String>,
    /// Owned chains in the filter table.
    pub filter: BTreeSet<String>,
    /// `(table, rule line as saved)` for rules in built-in chains that jump into ours.
    pub jumps: Vec<(String, String)>,
}

/// The built-in chains we hook.
const BUILTIN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

impl Existing {
    /// Parses `iptables-save` output (any tables; only nat and filter are kept).
    pub fn parse(save: &str, prefix: &str) -> Self {
        let mut me = Self::default();
        let mut table = "";
        for line in save.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = match t.trim() {
                    "nat" => "nat",
                    "filter" => "filter",
                    _ => "",
                };
                continue;
            }
            if table.is_empty() {
                continue;
            }
            if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or_default();
                if is_owned(prefix, name) {
                    let set = if table == "nat" {
                        &mut me.nat
                    } else {
                        &mut me.filter
                    };
                    set.insert(name.to_string());
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap_or_default();
                let target = rule.rsplit_once(" -j ").map(|(_, t)| t.trim());
                if BUILTIN.contains(&chain) && target.is_some_and(|t| is_owned(prefix, t)) {
                    me.jumps.push((table.to_string(), line.to_string()));
                }
            }
        }
        me
    }

    /// Whether a rule in `table`/`from` jumps to `target`.
    pub fn has_jump(&self, table: &str, from: &str, target: &str) -> bool {
        self.jumps.iter().any(|(t, line)| {
            t == table
                && line.starts_with(&format!("-A {from} "))
                && line.ends_with(&format!(" -j {target}"))
        })
    }

    /// True when nothing of ours is installed.
    pub fn is_empty(&self) -> bool {
        self.nat.is_empty() && self.filter.is_empty() && self.jumps.is_empty()
    }

    /// `(table, built-in chain, target)` of every jump, sorted: the part of a jump rule that
    /// matters, whatever spelling `iptables-save` gives its matches.
    fn jump_targets(&self) -> Vec<(&str, &str, &str)> {
        let mut v: Vec<_> = self
            .jumps
            .iter()
            .filter_map(|(table, line)| {
                let from = line.strip_prefix("-A ")?.split_whitespace().next()?;
                let (_, target) = line.rsplit_once(" -j ")?;
                Some((table.as_str(), from, target.trim()))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether both name the same chains and jumps: the check a periodic resync makes between
    /// what the proxy believes it installed and what `iptables-save` shows, to notice chains
    /// or jumps someone else removed (rules inside a chain are not compared, as upstream's
    /// canary check does not either).
    pub fn same_shape(&self, other: &Existing) -> bool {
        self.nat == other.nat
            && self.filter == other.filter
            && self.jump_targets() == other.jump_targets()
    }
}

/// The `iptables-restore --noflush` input that deletes every jump and chain in `existing`
/// (empty when there is nothing to remove).
pub fn cleanup_batch(existing: &Existing) -> String {
    cleanup_batches(existing).concat()
}

/// [`cleanup_batch`] as two `iptables-restore` transactions: first flush every chain and drop
/// the jumps into them, then delete the chains. With thousands of chains, iptables-nft refuses
/// (EBUSY) to delete chains in the same transaction that flushes the rules referencing them.
/// Empty when there is nothing to remove.
pub fn cleanup_batches(existing: &Existing) -> Vec<String> {
    let mut flush = String::new();
    let mut delete = String::new();
    for (table, chains) in [("nat", &existing.nat), ("filter", &existing.filter)] {
        let jumps: Vec<&String> = existing
            .jumps
            .iter()
            .filter(|(t, _)| t == table)
            .map(|(_, l)| l)
            .collect();
        if chains.is_empty() && jumps.is_empty() {
            continue;
        }
        let _ = writeln!(flush, "*{table}");
        // Declaring a chain flushes it, so no rule references another when it is deleted.
        for c in chains {
            let _ = writeln!(flush, ":{c} - [0:0]");
        }
        for line in jumps {
            let _ = writeln!(flush, "-D {}", line.trim_start_matches("-A "));
        }
        flush.push_str("COMMIT\n");
        if !chains.is_empty() {
            let _ = writeln!(delete, "*{table}");
            for c in chains {
                let _ = writeln!(delete, "-X {c}");
            }
            delete.push_str("COMMIT\n");
        }
    }
    [flush, delete]
        .into_iter()
        .filter(|b| !b.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_fit_and_are_stable() {
        let a = hashed_chain("KUBELITE-", "SVC", "ns/web:http/tcp");
        assert_eq!(a.len(), MAX_CHAIN_LEN);
        assert_eq!(a, hashed_chain("KUBELITE-", "SVC", "ns/web:http/tcp"));
        assert_ne!(a, hashed_chain("KUBELITE-", "SVC", "ns/web:http/udp"));
        assert!(is_owned("KUBELITE-", &a));
        assert_eq!(hashed_chain("K-", "SEP", "x").len(), 2 + 4 + 16);
    }

    #[test]
    fn ownership_is_exact() {
        assert!(is_owned("KUBELITE-", "KUBELITE-SERVICES"));
        assert!(is_owned("KUBELITE-", "KUBELITE-SEP-ABC234"));
        assert!(!is_owned("KUBELITE-", "KUBELITE-T1-SERVICES"));
        assert!(!is_owned("KUBELITE-", "KUBELITE-T1-SVC-ABC"));
        assert!(!is_owned("KUBELITE-", "KUBE-SERVICES"));
        assert!(!is_owned("KUBELITE-", "DOCKER"));
    }

    #[test]
    fn parse_and_cleanup() {
        let save = "\
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:KL-SERVICES - [0:0]
:KL-SVC-ABCDEF - [0:0]
:KLX-SERVICES - [0:0]
-A OUTPUT -m comment --comment \"kubelite service portals\" -j KL-SERVICES
-A OUTPUT -m comment --comment \"kubelite service portals\" -j KLX-SERVICES
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A KL-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KL-SVC-ABCDEF
COMMIT
*filter
:INPUT ACCEPT [0:0]
COMMIT
";
        let e = Existing::parse(save, "KL-");
        assert_eq!(e.nat.len(), 2);
        assert!(e.filter.is_empty());
        assert!(e.has_jump("nat", "OUTPUT", "KL-SERVICES"));
        assert!(!e.has_jump("nat", "PREROUTING", "KL-SERVICES"));
        assert_eq!(
            cleanup_batches(&e),
            vec![
                "*nat\n:KL-SERVICES - [0:0]\n:KL-SVC-ABCDEF - [0:0]\n\
                 -D OUTPUT -m comment --comment \"kubelite service portals\" -j KL-SERVICES\n\
                 COMMIT\n"
                    .to_string(),
                "*nat\n-X KL-SERVICES\n-X KL-SVC-ABCDEF\nCOMMIT\n".to_string(),
            ]
        );
        assert_eq!(cleanup_batch(&e), cleanup_batches(&e).concat());
        assert!(cleanup_batches(&Existing::default()).is_empty());
        assert_eq!(cleanup_batch(&Existing::default()), "");

        // The same chains and jumps compare equal whatever the jump's matches look like.
        let mut believed = e.clone();
        believed.jumps = vec![("nat".into(), "-A OUTPUT -j KL-SERVICES".into())];
        assert!(believed.same_shape(&e));
        believed.jumps.clear();
        assert!(!believed.same_shape(&e));
        let mut fewer = e.clone();
        fewer.nat.remove("KL-SVC-ABCDEF");
        assert!(!fewer.same_shape(&e));
    }
}
