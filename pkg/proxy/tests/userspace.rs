//! Userspace fallback: TCP NodePort proxying without iptables, against a real apiserver and
//! real Docker backends.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use kubelite_apiserver::testing::TestServer;
use kubelite_proxy::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userspace_mode_serves_node_ports() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let backends = Backends::start(2)?;
    let np = random_node_port();
    create_service(&client, "us", random_cluster_ip(), Some(np), false).await?;
    let eps: Vec<_> = backends.pods.iter().map(|(_, ip)| (*ip, true)).collect();
    put_slice(&client, &slice("us", &eps)?).await?;
    let mut config = unique_config();
    config.mode = Mode::Userspace;
    config.userspace_bind = [127, 0, 0, 1].into();
    let proxy = Proxy::start(client.clone(), config.clone()).await?;
    let node = SocketAddr::from(([127, 0, 0, 1], np));
    tokio::task::spawn_blocking(move || eventually(Duration::from_secs(15), || get(node).ok()))
        .await??;
    let seen = tokio::task::spawn_blocking(move || spread(node, 40)).await?;
    for (host, _) in &backends.pods {
        assert!(seen.contains_key(host), "{host} never answered: {seen:?}");
    }
    // Userspace mode touches neither iptables nor interfaces.
    assert!(!iptables_save().contains(&config.chain_prefix));
    assert!(!link_exists(&config.interface));
    drop(proxy);
    Ok(())
}
