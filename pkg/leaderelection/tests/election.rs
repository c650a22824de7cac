//! Leader election against a real apiserver: one leader at a time, failover and release.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use kubelite_leaderelection::{LeaderElector, LeaseConfig};
use tokio::sync::watch;

fn config() -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>, within: Duration) -> anyhow::Result<()> {
    tokio::time::timeout(within, rx.wait_for(|v| *v))
        .await
        .context("timed out waiting for leadership")??;
    Ok(())
}

async fn holder(client: kube::Client) -> anyhow::Result<Option<String>> {
    let api: Api<Lease> = Api::namespaced(client, "default");
    let lease = api.get("sched").await?;
    Ok(lease.spec.and_then(|s| s.holder_identity))
}

#[tokio::test]
async fn one_leader_then_failover_when_leader_dies() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let a = LeaderElector::new(server.client(), "default", "sched", "a", config());
    let mut a_rx = a.leadership();
    let a_task = tokio::spawn(a.run(futures::future::pending::<()>(), futures::future::pending()));
    wait_true(&mut a_rx, Duration::from_secs(10)).await?;

    let b = LeaderElector::new(server.client(), "default", "sched", "b", config());
    let mut b_rx = b.leadership();
    let b_task = tokio::spawn(b.run(futures::future::pending::<()>(), futures::future::pending()));
    // Several lease durations pass while `a` keeps renewing: `b` must stay a follower.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*a_rx.borrow(), "a should still lead");
    assert!(!*b_rx.borrow(), "b must not lead while a renews");
    assert_eq!(holder(server.client()).await?.as_deref(), Some("a"));

    // The leader dies without releasing: `b` takes over within the lease duration (+ retry).
    a_task.abort();
    let died = std::time::Instant::now();
    wait_true(&mut b_rx, Duration::from_secs(5)).await?;
    assert!(
        died.elapsed() < Duration::from_millis(2000 + 200 + 1000),
        "takeover too slow"
    );
    assert_eq!(holder(server.client()).await?.as_deref(), Some("b"));
    let api: Api<Lease> = Api::namespaced(server.client(), "default");
    let spec = api.get("sched").await?.spec.context("lease without spec")?;
    assert_eq!(spec.lease_transitions, Some(1));
    b_task.abort();
    Ok(())
}

#[tokio::test]
async fn shutdown_releases_and_on_leading_output_is_returned() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let a = LeaderElector::new(server.client(), "default", "sched", "a", config());
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        a.run(async { 42 }, futures::future::pending()),
    )
    .await
    .context("run did not finish")??;
    assert_eq!(out, Some(42));
    // Released: no holder, so a new candidate leads at once rather than after 2 s.
    assert_eq!(holder(server.client()).await?, None);

    let b = LeaderElector::new(server.client(), "default", "sched", "b", config());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut b_rx = b.leadership();
    let task = tokio::spawn(b.run(futures::future::pending::<()>(), async move {
        let _ = rx.await;
    }));
    wait_true(&mut b_rx, Duration::from_secs(1)).await?;
    let _ = tx.send(());
    let res = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .context("no shutdown")??;
    assert!(matches!(res, Ok(None)));
    assert_eq!(holder(server.client()).await?, None);
    Ok(())
}
