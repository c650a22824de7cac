//! Table-driven tests of the rendered `iptables-restore` text.

use std::net::Ipv4Addr;

use super::*;
use crate::chains::{hashed_chain, Existing};
use crate::model::{Endpoint, Protocol, ServicePort};

fn cfg() -> RuleConfig {
    RuleConfig {
        prefix: "KL-".into(),
        masquerade_bit: 0x4000,
        masquerade_all: false,
        cluster_cidr: None,
    }
}

fn sp(name: &str, ip: [u8; 4], port: u16, eps: &[[u8; 4]]) -> ServicePort {
    ServicePort {
        namespace: "ns".into(),
        name: name.into(),
        port_name: "".into(),
        protocol: Protocol::Tcp,
        cluster_ip: Ipv4Addr::from(ip),
        port,
        node_port: None,
        affinity_seconds: None,
        endpoints: eps
            .iter()
            .map(|e| Endpoint {
                ip: Ipv4Addr::from(*e),
                port: 8080,
            })
            .collect(),
    }
}

fn svc_chain(s: &ServicePort) -> String {
    hashed_chain("KL-", "SVC", &format!("{}/{}", s.key(), s.protocol))
}

fn sep_chain(s: &ServicePort, i: usize) -> String {
    hashed_chain(
        "KL-",
        "SEP",
        &format!("{}/{}/{}", s.key(), s.protocol, s.endpoints[i]),
    )
}

/// Rules (lines) in our chains, dropping the fixed scaffolding.
fn service_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("-A "))
        .filter(|l| !l.contains("POSTROUTING") && !l.contains("MARK-MASQ -j MARK"))
        .filter(|l| !l.contains("kubelite service nodeports") && !l.contains("KL-FORWARD"))
        .map(str::to_string)
        .collect()
}

#[test]
fn table() {
    let cluster = sp(
        "web",
        [10, 96, 0, 10],
        80,
        &[[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]],
    );
    let mut node_port = sp("np", [10, 96, 0, 11], 80, &[[10, 0, 0, 4]]);
    node_port.node_port = Some(30080);
    let mut empty = sp("empty", [10, 96, 0, 12], 80, &[]);
    empty.node_port = Some(30081);
    let mut affinity = sp(
        "sticky",
        [10, 96, 0, 13],
        80,
        &[[10, 0, 0, 5], [10, 0, 0, 6]],
    );
    affinity.affinity_seconds = Some(600);
    let mut udp = sp("dns", [10, 96, 0, 14], 53, &[[10, 0, 0, 7]]);
    udp.protocol = Protocol::Udp;

    let (c0, c1, c2) = (
        sep_chain(&cluster, 0),
        sep_chain(&cluster, 1),
        sep_chain(&cluster, 2),
    );
    let (a0, a1) = (sep_chain(&affinity, 0), sep_chain(&affinity, 1));
    let cases: Vec<(&str, ServicePort, Vec<String>)> = vec![
        ("cluster ip, three endpoints", cluster.clone(), vec![
            format!("-A KL-SERVICES -m comment --comment \"ns/web: cluster IP\" -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j {}", svc_chain(&cluster)),
            format!("-A {} -m comment --comment \"ns/web: -> 10.0.0.1:8080\" -m statistic --mode random --probability 0.3333333333 -j {c0}", svc_chain(&cluster)),
            format!("-A {} -m comment --comment \"ns/web: -> 10.0.0.2:8080\" -m statistic --mode random --probability 0.5000000000 -j {c1}", svc_chain(&cluster)),
            format!("-A {} -m comment --comment \"ns/web: -> 10.0.0.3:8080\" -j {c2}", svc_chain(&cluster)),
            format!("-A {c0} -m comment --comment \"ns/web:\" -s 10.0.0.1/32 -j KL-MARK-MASQ"),
            format!("-A {c0} -m comment --comment \"ns/web:\" -p tcp -m tcp -j DNAT --to-destination 10.0.0.1:8080"),
            format!("-A {c1} -m comment --comment \"ns/web:\" -s 10.0.0.2/32 -j KL-MARK-MASQ"),
            format!("-A {c1} -m comment --comment \"ns/web:\" -p tcp -m tcp -j DNAT --to-destination 10.0.0.2:8080"),
            format!("-A {c2} -m comment --comment \"ns/web:\" -s 10.0.0.3/32 -j KL-MARK-MASQ"),
            format!("-A {c2} -m comment --comment \"ns/web:\" -p tcp -m tcp -j DNAT --to-destination 10.0.0.3:8080"),
        ]),
        ("node port", node_port.clone(), vec![
            format!("-A KL-SERVICES -m comment --comment \"ns/np: cluster IP\" -d 10.96.0.11/32 -p tcp -m tcp --dport 80 -j {}", svc_chain(&node_port)),
            "-A KL-NODEPORTS -m comment --comment \"ns/np:\" -p tcp -m tcp --dport 30080 -j KL-MARK-MASQ".into(),
            format!("-A KL-NODEPORTS -m comment --comment \"ns/np:\" -p tcp -m tcp --dport 30080 -j {}", svc_chain(&node_port)),
            format!("-A {} -m comment --comment \"ns/np: -> 10.0.0.4:8080\" -j {}", svc_chain(&node_port), sep_chain(&node_port, 0)),
            format!("-A {} -m comment --comment \"ns/np:\" -s 10.0.0.4/32 -j KL-MARK-MASQ", sep_chain(&node_port, 0)),
            format!("-A {} -m comment --comment \"ns/np:\" -p tcp -m tcp -j DNAT --to-destination 10.0.0.4:8080", sep_chain(&node_port, 0)),
        ]),
        ("no endpoints: reject cluster ip and node port", empty.clone(), vec![
            "-A KL-SERVICES -m comment --comment \"ns/empty: has no endpoints\" -d 10.96.0.12/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable".into(),
            "-A KL-EXTERNAL-SERVICES -m comment --comment \"ns/empty: has no endpoints\" -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30081 -j REJECT --reject-with icmp-port-unreachable".into(),
        ]),
        ("client ip affinity", affinity.clone(), vec![
            format!("-A KL-SERVICES -m comment --comment \"ns/sticky: cluster IP\" -d 10.96.0.13/32 -p tcp -m tcp --dport 80 -j {}", svc_chain(&affinity)),
            format!("-A {} -m comment --comment \"ns/sticky: -> 10.0.0.5:8080\" -m recent --name {a0} --mask 255.255.255.255 --rsource --rcheck --seconds 600 --reap -j {a0}", svc_chain(&affinity)),
            format!("-A {} -m comment --comment \"ns/sticky: -> 10.0.0.6:8080\" -m recent --name {a1} --mask 255.255.255.255 --rsource --rcheck --seconds 600 --reap -j {a1}", svc_chain(&affinity)),
            format!("-A {} -m comment --comment \"ns/sticky: -> 10.0.0.5:8080\" -m statistic --mode random --probability 0.5000000000 -j {a0}", svc_chain(&affinity)),
            format!("-A {} -m comment --comment \"ns/sticky: -> 10.0.0.6:8080\" -j {a1}", svc_chain(&affinity)),
            format!("-A {a0} -m comment --comment \"ns/sticky:\" -s 10.0.0.5/32 -j KL-MARK-MASQ"),
            format!("-A {a0} -m comment --comment \"ns/sticky:\" -m recent --name {a0} --mask 255.255.255.255 --rsource --set -p tcp -m tcp -j DNAT --to-destination 10.0.0.5:8080"),
            format!("-A {a1} -m comment --comment \"ns/sticky:\" -s 10.0.0.6/32 -j KL-MARK-MASQ"),
            format!("-A {a1} -m comment --comment \"ns/sticky:\" -m recent --name {a1} --mask 255.255.255.255 --rsource --set -p tcp -m tcp -j DNAT --to-destination 10.0.0.6:8080"),
        ]),
        ("udp", udp.clone(), vec![
            format!("-A KL-SERVICES -m comment --comment \"ns/dns: cluster IP\" -d 10.96.0.14/32 -p udp -m udp --dport 53 -j {}", svc_chain(&udp)),
            format!("-A {} -m comment --comment \"ns/dns: -> 10.0.0.7:8080\" -j {}", svc_chain(&udp), sep_chain(&udp, 0)),
            format!("-A {} -m comment --comment \"ns/dns:\" -s 10.0.0.7/32 -j KL-MARK-MASQ", sep_chain(&udp, 0)),
            format!("-A {} -m comment --comment \"ns/dns:\" -p udp -m udp -j DNAT --to-destination 10.0.0.7:8080", sep_chain(&udp, 0)),
        ]),
    ];
    for (name, port, want) in cases {
        let plan = render(&cfg(), std::slice::from_ref(&port), &Existing::default());
        assert_eq!(service_lines(&plan.text), want, "case {name}");
        assert_eq!(plan.has_node_ports, port.node_port.is_some(), "case {name}");
    }
}

#[test]
fn headless_renders_only_scaffolding() {
    // model::service_ports drops headless services, so the rules see an empty list.
    let plan = render(&cfg(), &[], &Existing::default());
    assert!(service_lines(&plan.text).is_empty());
    assert!(!plan.text.contains("SVC-"));
    // Scaffolding: 4 nat + 1 nodeports jump + 2 forward rules.
    assert_eq!(plan.rules, 7);
}

#[test]
fn first_sync_inserts_jumps_and_later_syncs_do_not() {
    let plan = render(&cfg(), &[], &Existing::default());
    let inserts: Vec<&str> = plan.text.lines().filter(|l| l.starts_with("-I ")).collect();
    assert_eq!(inserts.len(), 8);
    assert!(inserts
        .contains(&"-I OUTPUT 1 -m comment --comment \"kubelite service portals\" -j KL-SERVICES"));
    // After the batch, iptables-save shows the jumps: a second render adds none.
    let mut save = String::from("*nat\n");
    for l in plan.text.lines() {
        if let Some(rest) = l.strip_prefix("-I ") {
            let (chain, rule) = rest.split_once(" 1 ").expect("test fixture");
            if chain == "PREROUTING"
                || chain == "POSTROUTING"
                || (chain == "OUTPUT" && !rule.contains("conntrack"))
            {
                save.push_str(&format!("-A {chain} {rule}\n"));
            }
        }
    }
    save.push_str("COMMIT\n*filter\n");
    for l in plan.text.lines() {
        if let Some(rest) = l.strip_prefix("-I ") {
            let (chain, rule) = rest.split_once(" 1 ").expect("test fixture");
            if chain == "INPUT"
                || chain == "FORWARD"
                || (chain == "OUTPUT" && rule.contains("conntrack"))
            {
                save.push_str(&format!("-A {chain} {rule}\n"));
            }
        }
    }
    save.push_str("COMMIT\n");
    let again = render(&cfg(), &[], &Existing::parse(&save, "KL-"));
    assert!(!again.text.contains("-I "), "{}", again.text);
}

#[test]
fn stale_chains_are_flushed_and_deleted() {
    let gone = sp("gone", [10, 96, 0, 20], 80, &[[10, 0, 0, 9]]);
    let first = render(&cfg(), std::slice::from_ref(&gone), &Existing::default());
    let mut save = String::from("*nat\n");
    for l in first.text.lines().filter(|l| l.starts_with(':')) {
        save.push_str(l);
        save.push('\n');
    }
    save.push_str("COMMIT\n");
    let next = render(&cfg(), &[], &Existing::parse(&save, "KL-"));
    let svc = svc_chain(&gone);
    let sep = sep_chain(&gone, 0);
    assert!(next.text.contains(&format!(":{svc} - [0:0]\n")));
    assert!(next.text.contains(&format!("-X {svc}\n")));
    assert!(next.text.contains(&format!("-X {sep}\n")));
    assert!(!next.text.contains("-X KL-SERVICES"));
}

#[test]
fn masquerade_options() {
    let s = sp("web", [10, 96, 0, 10], 80, &[[10, 0, 0, 1]]);
    let mut c = cfg();
    c.cluster_cidr = Some("10.244.0.0/16".into());
    let plan = render(&c, std::slice::from_ref(&s), &Existing::default());
    assert!(plan.text.contains(&format!(
        "-A {} -m comment --comment \"ns/web: cluster IP\" ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KL-MARK-MASQ",
        svc_chain(&s)
    )));
    c.masquerade_all = true;
    let plan = render(&c, std::slice::from_ref(&s), &Existing::default());
    assert!(plan.text.contains(&format!(
        "-A {} -m comment --comment \"ns/web: cluster IP\" -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KL-MARK-MASQ",
        svc_chain(&s)
    )));
}

#[test]
fn partial_render_writes_only_changed_chains() {
    let a = sp("a", [10, 96, 0, 30], 80, &[[10, 0, 0, 1], [10, 0, 0, 2]]);
    let b = sp("b", [10, 96, 0, 31], 80, &[[10, 0, 1, 1]]);
    let first = render(&cfg(), &[a.clone(), b.clone()], &Existing::default());
    let mut save = String::from("*nat\n");
    for l in first.text.lines().filter(|l| l.starts_with(':')) {
        save.push_str(l);
        save.push('\n');
    }
    save.push_str("COMMIT\n");
    let existing = Existing::parse(&save, "KL-");
    let mut a2 = a.clone();
    a2.endpoints.pop();
    let next = render_partial(&cfg(), &[a2, b.clone()], &existing, Some(&first.chains));
    // a's SVC chain changes and its dropped SEP goes; b's chains are untouched.
    assert!(next.text.contains(&format!(":{} - [0:0]", svc_chain(&a))));
    assert!(next.text.contains(&format!("-X {}", sep_chain(&a, 1))));
    assert!(
        !next.text.contains(&format!("-A {} ", svc_chain(&b))),
        "{}",
        next.text
    );
    assert!(!next.text.contains(&format!(":{} ", svc_chain(&b))));
    assert!(!next.text.contains(&sep_chain(&b, 0)));
    assert!(!next
        .text
        .contains(&format!(":{} - [0:0]", sep_chain(&a, 0))));
    // Without a previous plan everything is written again.
    let full = render(&cfg(), std::slice::from_ref(&b), &existing);
    assert!(full
        .text
        .contains(&format!(":{} - [0:0]", sep_chain(&b, 0))));
}
