//! iptables mode against a real apiserver, real iptables and real Docker backends: ClusterIP
//! spread, NodePort on 127.0.0.1, readiness, REJECT without endpoints, service deletion,
//! restart and cleanup. Each test has its own chain prefix, interface, ClusterIP and NodePort,
//! so the tests run in parallel.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::DeleteParams;
use kube::Api;
use kubelite_apiserver::testing::TestServer;

fn svc_rules(prefix: &str) -> Vec<String> {
    iptables_save()
        .lines()
        .filter(|l| l.contains(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_spreads_node_port_on_loopback_and_restart_keeps_traffic() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let client = server.client();
    let backends = Backends::start(3)?;
    let ip = random_cluster_ip();
    let np = random_node_port();
    create_service(&client, "web", ip, Some(np), false).await?;
    let eps: Vec<_> = backends.pods.iter().map(|(_, ip)| (*ip, true)).collect();
    put_slice(&client, &slice("web", &eps)?).await?;

    let mut proxy = Proxy::start(client.clone(), unique_config()).await?;
    let vip = SocketAddr::from((ip, 80));
    tokio::task::spawn_blocking(move || eventually(Duration::from_secs(15), || get(vip).ok()))
        .await??;

    let seen = tokio::task::spawn_blocking(move || spread(vip, 60)).await?;
    for (host, _) in &backends.pods {
        assert!(
            seen.get(host).is_some_and(|n| *n > 0),
            "{host} never answered: {seen:?}"
        );
    }
    assert_eq!(seen.values().sum::<usize>(), 60, "{seen:?}");

    // Hairpin: a backend reaching the service lands on itself some of the time; that only
    // works when the proxy masquerades it (else the reply would bypass the DNAT). Other
    // backends are reached too (replies un-DNATed by br_netfilter on the bridge).
    backends.enable_hairpin(0)?;
    let (self_host, _) = backends.pods[0].clone();
    let container = backends.containers[0].clone();
    let hits = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| docker_wget(&container, vip))
            .collect::<anyhow::Result<Vec<String>>>()
    })
    .await??;
    assert!(hits.contains(&self_host), "never reached itself: {hits:?}");
    assert!(
        hits.iter().any(|h| *h != self_host),
        "never reached another backend: {hits:?}"
    );

    let node = SocketAddr::from(([127, 0, 0, 1], np));
    let seen = tokio::task::spawn_blocking(move || spread(node, 20)).await?;
    assert!(!seen.keys().any(|k| k.starts_with("error")), "{seen:?}");
    assert!(
        seen.keys()
            .all(|k| backends.pods.iter().any(|(h, _)| h == k)),
        "{seen:?}"
    );

    let localnet = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/route_localnet")?;
    assert_eq!(localnet.trim(), "1");

    // Restart: while the proxy is down the rules stay, then the new one adopts them.
    let config = proxy.config.clone();
    proxy.stop().await?;
    let seen = tokio::task::spawn_blocking(move || spread(vip, 10)).await?;
    assert!(
        !seen.keys().any(|k| k.starts_with("error")),
        "down: {seen:?}"
    );
    let before = svc_rules(&config.chain_prefix);
    let fresh = kubelite_proxy::Config {
        metrics: Default::default(),
        ..config.clone()
    };
    let proxy2 = Proxy::start(client.clone(), fresh).await?;
    let seen = tokio::task::spawn_blocking(move || spread(vip, 20)).await?;
    assert!(
        !seen.keys().any(|k| k.starts_with("error")),
        "restarted: {seen:?}"
    );
    let after = svc_rules(&config.chain_prefix);
    // Same chains and rules (hash names are stable), jumps not duplicated.
    let jumps = |rules: &[String]| {
        rules
            .iter()
            .filter(|l| {
                l.starts_with("-A PREROUTING")
                    || l.starts_with("-A OUTPUT")
                    || l.starts_with("-A INPUT")
                    || l.starts_with("-A FORWARD")
                    || l.starts_with("-A POSTROUTING")
            })
            .count()
    };
    assert_eq!(jumps(&after), 8, "{after:#?}");
    assert_eq!(before.len(), after.len());
    assert!(link_exists(&config.interface));
    drop(proxy2);
    drop(proxy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_endpoint_drops_out_and_no_endpoints_is_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let backends = Backends::start(2)?;
    let ip = random_cluster_ip();
    create_service(&client, "ready", ip, None, false).await?;
    let (h0, ip0) = backends.pods[0].clone();
    let (h1, ip1) = backends.pods[1].clone();
    put_slice(&client, &slice("ready", &[(ip0, true), (ip1, true)])?).await?;
    let _proxy = Proxy::start(client.clone(), unique_config()).await?;
    let vip = SocketAddr::from((ip, 80));
    let h1c = h1.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(15), || {
            spread(vip, 20).get(&h1c).map(|_| ())
        })
    })
    .await??;

    put_slice(&client, &slice("ready", &[(ip0, true), (ip1, false)])?).await?;
    // The deadline is `eventually`'s: how fast rules follow a change is the proxy
    // benchmark's to measure, not a wall-clock assertion on a loaded CI machine.
    let h0c = h0.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), || {
            let seen = spread(vip, 12);
            (seen.len() == 1 && seen.contains_key(&h0c)).then_some(())
        })
    })
    .await??;
    let seen = tokio::task::spawn_blocking(move || spread(vip, 20)).await?;
    assert_eq!(seen.get(&h0), Some(&20), "{seen:?}");

    put_slice(&client, &slice("ready", &[(ip0, false), (ip1, false)])?).await?;
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), || {
            matches!(get(vip), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
                .then_some(())
        })
    })
    .await??;
    let start = Instant::now();
    let err = get(vip).expect_err("no endpoints must refuse");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "refusal took {:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_deletion_removes_rules_and_cleanup_removes_everything() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let backends = Backends::start(2)?;
    let ip = random_cluster_ip();
    let sticky_ip = random_cluster_ip();
    create_service(&client, "gone", ip, None, false).await?;
    create_service(&client, "sticky", sticky_ip, None, true).await?;
    let eps: Vec<_> = backends.pods.iter().map(|(_, ip)| (*ip, true)).collect();
    put_slice(&client, &slice("gone", &eps)?).await?;
    put_slice(&client, &slice("sticky", &eps)?).await?;
    let mut proxy = Proxy::start(client.clone(), unique_config()).await?;
    let config = proxy.config.clone();
    let vip = SocketAddr::from((ip, 80));
    let sticky = SocketAddr::from((sticky_ip, 80));
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(15), || {
            get(vip).ok().and(get(sticky).ok())
        })
    })
    .await??;

    // ClientIP affinity: every connection from this host lands on the same backend.
    let seen = tokio::task::spawn_blocking(move || spread(sticky, 20)).await?;
    assert_eq!(seen.len(), 1, "affinity broken: {seen:?}");

    let needle = format!("-d {ip}/32");
    assert!(iptables_save().contains(&needle));
    Api::<Service>::namespaced(client.clone(), "default")
        .delete("gone", &DeleteParams::default())
        .await?;
    let n = needle.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(3), || {
            (!iptables_save().contains(&n)).then_some(())
        })
    })
    .await??;
    // The other service keeps its rules.
    let save = iptables_save();
    assert!(save.contains(&format!("-d {sticky_ip}/32")), "{save}");
    proxy.stop().await?;
    kubelite_proxy::cleanup(&config).await?;
    let left = svc_rules(&config.chain_prefix);
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert!(
        !link_exists(&config.interface),
        "interface {} left",
        config.interface
    );
    // Cleanup is idempotent.
    kubelite_proxy::cleanup(&config).await?;
    Ok(())
}
