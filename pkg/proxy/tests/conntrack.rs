//! UDP conntrack cleanup against real iptables, the real `conntrack` tool (Debian's
//! `conntrack` package; `hack/test` installs it) and real Docker endpoints: when an endpoint of
//! a UDP Service goes away, the flows NATed to it are deleted, so a client that keeps sending
//! from the same port reaches a remaining endpoint instead of the dead one.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use serde_json::json;

fn conntrack(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("conntrack")
        .args(args)
        .output()
        .context("running conntrack (Debian's conntrack package; hack/test installs it)")?;
    // -L prints its summary on stderr; the entries are on stdout.
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the test's flows to the ClusterIP on drop (they would expire in 30 s anyway).
struct Flows(Ipv4Addr);

impl Drop for Flows {
    fn drop(&mut self) {
        let _ = conntrack(&["-D", "--orig-dst", &self.0.to_string(), "-p", "udp"]);
    }
}

/// Reply-side sources (the endpoints) of the UDP flows to `vip`.
fn nat_targets(vip: Ipv4Addr) -> Vec<Ipv4Addr> {
    let list = conntrack(&["-L", "-p", "udp", "--orig-dst", &vip.to_string()]).unwrap_or_default();
    list.lines()
        .filter_map(|l| {
            // "udp 17 29 src=H dst=VIP sport=.. dport=53 [UNREPLIED] src=EP dst=H ..."
            l.split_whitespace()
                .filter_map(|f| f.strip_prefix("src="))
                .nth(1)
                .and_then(|ip| ip.parse().ok())
        })
        .collect()
}

fn udp_slice(endpoints: &[Ipv4Addr]) -> anyhow::Result<EndpointSlice> {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "dns-abc", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "dns"}},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": eps,
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_udp_endpoint_flows_are_flushed() -> anyhow::Result<()> {
    if Command::new("conntrack").arg("--version").output().is_err() {
        bail!("the conntrack tool is missing: apt-get install conntrack (hack/test does)");
    }
    let server = TestServer::start().await?;
    let client = server.client();
    let backends = Backends::start(2)?;
    let ip = random_cluster_ip();
    let _flows = Flows(ip);
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dns", "namespace": "default"},
        "spec": {"clusterIP": ip.to_string(), "selector": {"app": "dns"},
            "ports": [{"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]},
    }))?;
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await?;
    let (ep0, ep1) = (backends.pods[0].1, backends.pods[1].1);
    put_slice(&client, &udp_slice(&[ep0, ep1])?).await?;
    let _proxy = Proxy::start(client.clone(), unique_config()).await?;
    let dnat = |ep: Ipv4Addr| format!("--to-destination {ep}:5353");
    let (d0, d1) = (dnat(ep0), dnat(ep1));
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), || {
            let s = iptables_save();
            (s.contains(&d0) && s.contains(&d1)).then_some(())
        })
    })
    .await??;

    // Many client ports, so both endpoints get flows (the choice is random per flow). The
    // endpoints do not listen on UDP 5353: the flows stay UNREPLIED, which is all we need.
    let vip = SocketAddr::from((ip, 53));
    let sockets: Vec<UdpSocket> = (0..24)
        .map(|_| UdpSocket::bind("0.0.0.0:0"))
        .collect::<Result<_, _>>()?;
    let send_all = |sockets: &[UdpSocket]| -> anyhow::Result<()> {
        for s in sockets {
            s.send_to(b"ping", vip)?;
        }
        Ok(())
    };
    send_all(&sockets)?;
    let before = nat_targets(ip);
    assert_eq!(before.len(), sockets.len(), "{before:?}");
    assert!(before.contains(&ep0) && before.contains(&ep1), "{before:?}");

    // ep1 goes away: its flows are deleted, ep0's are kept (a targeted flush, not all of the
    // ClusterIP's), and the same client ports now reach ep0.
    put_slice(&client, &udp_slice(&[ep0])?).await?;
    let gone = dnat(ep1);
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), || {
            (!iptables_save().contains(&gone)).then_some(())
        })
    })
    .await??;
    let after = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), || {
            let t = nat_targets(ip);
            (!t.contains(&ep1)).then_some(t)
        })
    })
    .await??;
    let kept = before.iter().filter(|e| **e == ep0).count();
    assert_eq!(after.len(), kept, "ep0's flows must stay: {after:?}");
    send_all(&sockets)?;
    let now = nat_targets(ip);
    assert_eq!(now.len(), sockets.len(), "{now:?}");
    assert!(
        now.iter().all(|e| *e == ep0),
        "flows still NATed to ep1: {now:?}"
    );
    Ok(())
}
