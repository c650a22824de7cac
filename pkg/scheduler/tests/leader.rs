//! Two schedulers with leader election: only the leader schedules; when it dies the other
//! takes over within the lease duration.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use kubelite_scheduler::metrics::AttemptResult;
use kubelite_scheduler::{LeaderElection, LeaseConfig, Metrics};
use serde_json::json;

fn elected(identity: &str) -> kubelite_scheduler::Config {
    kubelite_scheduler::Config {
        leader_election: Some(LeaderElection {
            namespace: "default".into(),
            lease_name: "kube-scheduler".into(),
            identity: identity.into(),
            lease: LeaseConfig {
                lease_duration: Duration::from_secs(2),
                renew_deadline: Duration::from_millis(1500),
                retry_period: Duration::from_millis(200),
            },
        }),
        metrics: Arc::new(Metrics::default()),
        ..config()
    }
}

async fn holder(c: &kube::Client) -> anyhow::Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(c.clone(), "default")
        .get_opt("kube-scheduler")
        .await?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

#[tokio::test]
async fn leader_failover() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let c = server.client();
    node(&c, "n1", "4", json!({}), json!([])).await?;
    let s1 = start(c.clone(), elected("s1"));
    let first = eventually(Duration::from_secs(10), "a leader", || holder(&c)).await?;
    assert_eq!(first, "s1");
    let s2 = start(c.clone(), elected("s2"));

    for i in 0..3 {
        pod(&c, &format!("p{i}"), "100m", json!({}), json!({})).await?;
    }
    for i in 0..3 {
        bound(&c, &format!("p{i}"), Duration::from_secs(10)).await?;
    }
    // The binding is visible in the API a moment before the scheduler counts it.
    eventually(Duration::from_secs(5), "s1 counted 3 bindings", || async {
        Ok((s1.metrics.attempts(AttemptResult::Scheduled) == 3).then_some(()))
    })
    .await?;
    assert_eq!(
        s2.metrics.attempts(AttemptResult::Scheduled),
        0,
        "follower must not act"
    );

    // The leader dies without releasing the lease: s2 takes it within the lease duration
    // (2 s, timed from its last observed renewal) plus one retry period, with slack for load.
    s1.kill();
    let died = Instant::now();
    eventually(Duration::from_secs(10), "s2 holds the lease", || async {
        Ok(holder(&c).await?.filter(|h| h == "s2"))
    })
    .await?;
    assert!(
        died.elapsed() < Duration::from_millis(3500),
        "took {:?}",
        died.elapsed()
    );
    pod(&c, "after", "100m", json!({}), json!({})).await?;
    bound(&c, "after", Duration::from_secs(10)).await?;
    eventually(Duration::from_secs(5), "s2 counted its binding", || async {
        Ok((s2.metrics.attempts(AttemptResult::Scheduled) == 1).then_some(()))
    })
    .await?;
    Ok(())
}
