//! Proxy benchmark: full sync and single-endpoint-change sync of N services x M endpoints
//! through the real `iptables-restore` (partial syncs from the proxier's in-memory state, and
//! the previous read-back-first way as the baseline), and HTTP connections/s through a ClusterIP vs straight
//! to the pod IP (one busybox httpd on a Docker network the bench creates).
//!
//! `cargo run -p kubelite-proxy --example bench -- [services] [endpoints]` (root, Docker,
//! `kubelite/busybox` image). Everything it creates is removed at the end, also on failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kubelite_proxy::chains::Existing;
use kubelite_proxy::host::{Host, RealHost};
use kubelite_proxy::model::{Endpoint, Protocol, ServicePort};
use kubelite_proxy::rules::{render_partial, RuleConfig};
use kubelite_proxy::{netif, Config};

fn sh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes the chains, interface, container and network on drop.
struct Guard {
    config: Config,
    network: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = sh(&["docker", "rm", "-f", &format!("{}-b", self.network)]);
        let _ = sh(&["docker", "network", "rm", &self.network]);
        // A runtime of its own on a plain thread: drop may run inside main's runtime.
        let config = self.config.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Runtime::new() {
                if let Err(e) = rt.block_on(kubelite_proxy::cleanup(&config)) {
                    eprintln!("cleanup failed: {e}");
                }
            }
        })
        .join();
    }
}

fn synthetic(services: usize, endpoints: usize) -> Vec<ServicePort> {
    (0..services)
        .map(|i| ServicePort {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            // 10.104.0.0/14 is inside the default service CIDR; nothing is sent to these.
            cluster_ip: Ipv4Addr::new(10, 104 + (i >> 16) as u8, (i >> 8) as u8, i as u8),
            port: 80,
            node_port: None,
            affinity_seconds: None,
            endpoints: (0..endpoints)
                .map(|j| Endpoint {
                    ip: Ipv4Addr::new(10, 244, (i % 250) as u8, j as u8 + 1),
                    port: 8080,
                })
                .collect(),
        })
        .collect()
}

/// What a sync leaves for the next one (the proxier keeps the same in memory).
struct State {
    existing: Existing,
    chains: BTreeMap<String, u64>,
}

/// One sync as the proxier does it: read the tables back only when `read_back` (start, after a
/// failure, periodic check), render the chains that differ from `previous` (all when None),
/// apply in one `iptables-restore --noflush`.
async fn sync(
    host: &RealHost,
    cfg: &RuleConfig,
    ports: &[ServicePort],
    known: Option<&State>,
    previous: bool,
    read_back: bool,
) -> anyhow::Result<(Duration, usize, State)> {
    let start = Instant::now();
    let existing = match known {
        Some(k) if !read_back => k.existing.clone(),
        _ => Existing::parse(&host.iptables_save().await?, &cfg.prefix),
    };
    let prev = known.filter(|_| previous).map(|k| &k.chains);
    let plan = render_partial(cfg, ports, &existing, prev);
    host.iptables_restore(&plan.text).await?;
    let state = State {
        existing: plan.installed,
        chains: plan.chains,
    };
    Ok((start.elapsed(), plan.rules, state))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn get(addr: SocketAddr) -> anyhow::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    if buf.is_empty() {
        bail!("empty response");
    }
    Ok(())
}

fn rate(addr: SocketAddr, secs: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        get(addr).with_context(|| format!("GET {addr}"))?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let endpoints: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let tag = format!("{:05X}", rand::random::<u32>() & 0xf_ffff);
    let config = Config {
        chain_prefix: format!("KLB{tag}-"),
        interface: format!("klb{}", tag.to_lowercase()),
        ..Config::default()
    };
    let guard = Guard {
        config: config.clone(),
        network: format!("klproxy-bench-{}", tag.to_lowercase()),
    };
    let host = RealHost;
    let cfg = RuleConfig {
        prefix: config.chain_prefix.clone(),
        masquerade_bit: 0x4000,
        masquerade_all: false,
        cluster_cidr: None,
    };
    netif::ensure(&host, &config.interface, &config.service_cidr).await?;

    // One real backend, placed last so every packet walks the whole SERVICES chain.
    let mut created = false;
    for _ in 0..20 {
        let subnet = format!("10.213.{}.0/24", rand::random::<u8>().max(1));
        if sh(&[
            "docker",
            "network",
            "create",
            "--subnet",
            &subnet,
            &guard.network,
        ])
        .is_ok()
        {
            created = true;
            break;
        }
    }
    if !created {
        bail!("no free 10.213.x.0/24");
    }
    let name = format!("{}-b", guard.network);
    sh(&[
        "docker",
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &guard.network,
        "kubelite/busybox:v1",
        "sh",
        "-c",
        "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www",
    ])?;
    let pod: Ipv4Addr = sh(&[
        "docker",
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ])?
    .parse()?;
    let mut ports = synthetic(services, endpoints);
    let vip = Ipv4Addr::new(10, 111, 255, 200);
    ports.push(ServicePort {
        namespace: "bench".into(),
        name: "real".into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: vip,
        port: 80,
        node_port: None,
        affinity_seconds: None,
        endpoints: vec![Endpoint {
            ip: pod,
            port: 8080,
        }],
    });

    let (first, rules, state) = sync(&host, &cfg, &ports, None, false, true).await?;
    let (resync, _, state) = sync(&host, &cfg, &ports, Some(&state), false, false).await?;
    // The proxier's path for an endpoint change: in-memory state, changed chains only.
    let mut partial = Vec::new();
    let mut state = state;
    for k in 1..=5 {
        ports[services * k / 7].endpoints.pop();
        let (took, _, next) = sync(&host, &cfg, &ports, Some(&state), true, false).await?;
        partial.push(took);
        state = next;
    }
    partial.sort();
    // The previous approach (and the baseline): read the tables back before every sync.
    ports[services / 9].endpoints.pop();
    let (with_save, _, state) = sync(&host, &cfg, &ports, Some(&state), true, true).await?;
    let save_start = Instant::now();
    let _ = Existing::parse(&host.iptables_save().await?, &cfg.prefix);
    let save = save_start.elapsed();
    ports[services / 11].endpoints.pop();
    let (change_full, _, _) = sync(&host, &cfg, &ports, Some(&state), false, false).await?;
    println!("services={services} endpoints/service={endpoints} rules={rules}");
    println!("full sync (create, after reading back): {}", ms(first));
    println!("full sync (existing chains, all rewritten): {}", ms(resync));
    println!(
        "one endpoint removed, partial sync from memory (median of 5, min {}, max {}): {}",
        ms(partial[0]),
        ms(partial[4]),
        ms(partial[2])
    );
    println!(
        "one endpoint removed, partial sync reading back first (previous approach): {}",
        ms(with_save)
    );
    println!(
        "iptables-save + parse alone (start, periodic check): {}",
        ms(save)
    );
    println!("one endpoint removed, full rewrite: {}", ms(change_full));

    let direct = SocketAddr::from((pod, 8080));
    let through = SocketAddr::from((vip, 80));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(direct).is_err() || get(through).is_err() {
        if Instant::now() > deadline {
            bail!("backend not reachable");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = tokio::task::spawn_blocking(move || rate(direct, 3)).await??;
    let c = tokio::task::spawn_blocking(move || rate(through, 3)).await??;
    println!("HTTP GETs/s (new connection each, sequential): pod IP {d:.0}, ClusterIP {c:.0} (after {} services)", services + 1);
    drop(guard);
    Ok(())
}
