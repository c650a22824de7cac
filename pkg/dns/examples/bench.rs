//! DNS benchmark: queries/s and latency percentiles for a cluster Service name (answered from
//! the cache) against a name forwarded to a fake upstream on loopback, in the same run, plus the
//! fake upstream queried directly as the floor. Run with `hack/bench/dns`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use kubelite_dns::testing::FakeUpstream;
use kubelite_dns::{Config, Server};
use tokio::net::UdpSocket;

/// Flags.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds per measured case.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients (each one UDP socket, one query in flight).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// A few-second smoke run.
    #[arg(long)]
    quick: bool,
}

/// What one case measured.
struct Outcome {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn query_bytes(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut msg = Message::new();
    msg.set_id(1)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(msg.to_vec()?)
}

/// `concurrency` clients each send `name` back to back for `duration`.
async fn run_case(
    server: SocketAddr,
    name: &str,
    duration: Duration,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    let template = Arc::new(query_bytes(name)?);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for client in 0..concurrency {
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(server).await?;
            let mut req = template.to_vec();
            let mut buf = vec![0u8; 4096];
            let (mut ok, mut failed, mut lat) = (0usize, 0usize, Vec::new());
            let mut id = u16::try_from(client).unwrap_or(0).wrapping_mul(4096);
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                req[..2].copy_from_slice(&id.to_be_bytes());
                let t = Instant::now();
                sock.send(&req).await?;
                match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                    Ok(Ok(n)) => match Message::from_vec(&buf[..n]) {
                        Ok(m)
                            if m.id() == id
                                && m.response_code() == ResponseCode::NoError
                                && !m.answers().is_empty() =>
                        {
                            ok += 1;
                            lat.push(t.elapsed());
                        }
                        _ => failed += 1,
                    },
                    _ => failed += 1,
                }
            }
            anyhow::Ok((ok, failed, lat))
        }));
    }
    let mut out = Outcome {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (ok, failed, lat) = t.await??;
        out.ok += ok;
        out.failed += failed;
        out.latencies.extend(lat);
    }
    out.elapsed = start.elapsed();
    out.latencies.sort_unstable();
    Ok(out)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, o: &Outcome) {
    let qps = o.ok as f64 / o.elapsed.as_secs_f64();
    println!(
        "| {label} | {qps:.0} | {:.0} | {:.0} | {:.0} | {} |",
        pct(&o.latencies, 0.50).as_secs_f64() * 1e6,
        pct(&o.latencies, 0.99).as_secs_f64() * 1e6,
        pct(&o.latencies, 0.999).as_secs_f64() * 1e6,
        o.failed,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = if args.quick { 1 } else { args.seconds };
    let duration = Duration::from_secs(seconds);

    let api = TestServer::start().await?;
    let upstream =
        FakeUpstream::start(&[("bench.example.test", vec!["192.0.2.1".parse()?])]).await?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        upstreams: vec![upstream.addr()],
        ..Config::default()
    };
    let server = Server::bind(api.client(), config).await?;
    let dns = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));

    let services: Api<Service> = Api::namespaced(api.client(), "default");
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench"}, "spec": {"ports": [{"name": "http", "port": 80}]}}))?;
    services.create(&PostParams::default(), &svc).await?;
    let svc_name = "bench.default.svc.cluster.local.";
    let ready = async {
        loop {
            if run_case(dns, svc_name, Duration::from_millis(50), 1)
                .await
                .is_ok_and(|o| o.ok > 0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .context("service never resolved")?;

    println!(
        "kubelite-dns: {} clients, {seconds}s per case, UDP A queries on loopback",
        args.concurrency
    );
    println!("| case | queries/s | p50 µs | p99 µs | p99.9 µs | failed |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    // Warm up both paths, then measure.
    run_case(
        dns,
        "bench.example.test.",
        Duration::from_millis(300),
        args.concurrency,
    )
    .await?;
    let svc = run_case(dns, svc_name, duration, args.concurrency).await?;
    report("cluster Service name (cache)", &svc);
    let fwd = run_case(dns, "bench.example.test.", duration, args.concurrency).await?;
    report("forwarded name (fake upstream via kubelite-dns)", &fwd);
    let direct = run_case(
        upstream.addr(),
        "bench.example.test.",
        duration,
        args.concurrency,
    )
    .await?;
    report("fake upstream queried directly (floor)", &direct);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task).await???;
    Ok(())
}
