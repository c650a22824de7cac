//! `bench-apiserver`: the API server (a `kubelite-apiserver` child process) over the embedded
//! store and over a real etcd, in one run: pod creates and GETs (1 and 64 clients, HTTP/1.1 and
//! HTTP/2), a LIST of many pods, memory, and a watch fan-out, with two baselines measured
//! alongside (raw storage creates through the `Storage` trait, and `/healthz`). Prints one
//! markdown table. `--quick` is a smoke run of a few seconds.

mod load;
mod report;
mod scenarios;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use kubelite_storage::Storage;
use kubelite_storage_etcd::testing::EtcdServer;
use reqwest::StatusCode;

use kubelite_bench::{cpu_time, per_op_us};
use load::{closed_count, closed_loop, closed_loop_h1, expect, pod_json, Proto, Sample};
use report::Results;
use server::{Backend, ServerProcess};

/// Concurrency of the throughput baselines and the "many clients" rows.
const MANY: usize = 64;
/// Where the create rows POST their pods.
const PODS_PATH: &str = "/api/v1/namespaces/bench/pods";
/// At most this many pods are bound in the bind row (each pod binds once).
const MAX_BINDS: u64 = 20_000;

#[derive(Parser, Debug)]
#[command(about = "API server benchmark over the embedded store and a real etcd")]
struct Args {
    /// Smoke run: 0.3 s per measurement, 100 pods listed, 10 watchers x 50 events.
    #[arg(long)]
    quick: bool,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Pods in the listed namespace.
    #[arg(long, default_value_t = 10_000)]
    list_pods: usize,
    /// Page size of the paged LIST.
    #[arg(long, default_value_t = 500)]
    page_size: usize,
    /// Concurrent watchers in the fan-out.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Writes (so events per watcher) in the fan-out.
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Concurrent writers making the fan-out's writes.
    #[arg(long, default_value_t = 16)]
    watch_writers: usize,
    /// Give up waiting for the fan-out after this many seconds (reported as incomplete).
    #[arg(long, default_value_t = 300)]
    watch_timeout: u64,
    /// Backends to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["embedded".to_string(), "etcd".to_string()])]
    backends: Vec<String>,
    /// The server binary (default: kubelite-apiserver next to this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where stores and logs go (a temp dir inside it).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Alternating pairs (raw puts, then HTTP/1.1 creates with 64 clients) whose median ratio
    /// is the headline figure (default 3; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
}

/// Sizes of one run, after `--quick`.
struct Plan {
    per_run: Duration,
    rounds: usize,
    list_pods: usize,
    page_size: usize,
    watchers: usize,
    events: usize,
    watch_writers: usize,
    watch_timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = if args.quick {
        Plan {
            per_run: Duration::from_millis(300),
            rounds: args.rounds.unwrap_or(1).max(1),
            list_pods: 100,
            page_size: 25,
            watchers: 10,
            events: 50,
            watch_writers: 4,
            watch_timeout: Duration::from_secs(30),
        }
    } else {
        Plan {
            per_run: Duration::from_secs_f64(args.seconds.max(0.1)),
            rounds: args.rounds.unwrap_or(3).max(1),
            list_pods: args.list_pods,
            page_size: args.page_size.max(1),
            watchers: args.watchers,
            events: args.events,
            watch_writers: args.watch_writers,
            watch_timeout: Duration::from_secs(args.watch_timeout),
        }
    };
    let binary = match &args.server_bin {
        Some(b) => b.clone(),
        None => server::default_binary()?,
    };
    anyhow::ensure!(
        binary.exists(),
        "{} not found (build it: cargo build --release -p kubelite-apiserver-bin)",
        binary.display()
    );
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("bench-apiserver-")
        .tempdir_in(&parent)?;
    eprintln!(
        "bench-apiserver: {:?} per measurement, {} pods listed, {} watchers x {} events, server {}",
        plan.per_run,
        plan.list_pods,
        plan.watchers,
        plan.events,
        binary.display()
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        eprintln!(
            "cpus: {}, load average: {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    let mut columns = Vec::new();
    for name in &args.backends {
        let r = match name.as_str() {
            "embedded" => bench_embedded(&binary, work.path(), &plan).await,
            "etcd" => bench_etcd(&binary, work.path(), &plan).await,
            other => anyhow::bail!("unknown backend {other:?} (embedded, etcd)"),
        }
        .with_context(|| format!("{name} backend"))?;
        columns.push((name.clone(), r));
    }
    report::print(&columns, &plan_summary(&plan));
    Ok(())
}

fn plan_summary(plan: &Plan) -> String {
    format!(
        "{:?} per throughput row; LIST of {} pods (paged: limit={}); fan-out {} watchers x {} writes ({} writers)",
        plan.per_run, plan.list_pods, plan.page_size, plan.watchers, plan.events, plan.watch_writers
    )
}

async fn bench_embedded(binary: &Path, work: &Path, plan: &Plan) -> anyhow::Result<Results> {
    // The raw baseline uses its own store in the same place: the server holds its file open.
    // It stays open for the paired rounds and is removed with the work dir.
    let raw_dir = work.join("embedded-raw");
    let store: Arc<dyn Storage> = Arc::new(
        kubelite_storage_embedded::EmbeddedStore::open(
            &raw_dir,
            // No background compaction: the store lives in this process through the server's
            // rows, and a compaction would count as load-generator CPU.
            kubelite_storage_embedded::Options {
                compaction_interval: None,
                ..kubelite_storage_embedded::Options::default()
            },
        )
        .context("opening the embedded store")?,
    );
    let raw = raw_puts(store.clone(), plan.per_run, "first").await?;
    let backend = Backend::Embedded(work.join("embedded-server"));
    bench_server(
        binary,
        &backend,
        &work.join("embedded-server.log"),
        plan,
        raw,
        store,
    )
    .await
}

async fn bench_etcd(binary: &Path, work: &Path, plan: &Plan) -> anyhow::Result<Results> {
    let etcd = EtcdServer::start_in(work, &[])
        .await
        .context("starting etcd")?;
    let store: Arc<dyn Storage> = Arc::new(
        kubelite_storage_etcd::EtcdStore::connect_with(
            &[etcd.endpoint()],
            kubelite_storage_etcd::EtcdOptions {
                prefix: "/bench-raw".into(),
                // No compactor of this client during the server's rows (see the embedded one).
                compaction_interval: None,
                ..kubelite_storage_etcd::EtcdOptions::default()
            },
        )
        .await
        .context("connecting to etcd")?,
    );
    let raw = raw_puts(store.clone(), plan.per_run, "first").await?;
    let backend = Backend::Etcd {
        endpoint: etcd.endpoint(),
        prefix: String::new(),
    };
    let log = work.join("etcd-server.log");
    bench_server(binary, &backend, &log, plan, raw, store).await
}

/// Creates of fresh 1 KiB values through the `Storage` trait with [`MANY`] writers.
/// Also returns the CPU this process spent per put (the store's writer thread included).
async fn raw_puts(
    store: Arc<dyn Storage>,
    per_run: Duration,
    tag: &str,
) -> anyhow::Result<(Sample, f64)> {
    let value = Bytes::from(vec![b'v'; 1024]);
    for i in 0..50 {
        store
            .create(&format!("/bench/warmup-{tag}/{i}"), value.clone())
            .await?;
    }
    let cpu = cpu_time(0)?;
    let prefix = format!("/bench/raw-{tag}");
    let s = closed_loop(MANY, per_run, move |n| {
        let (store, value, key) = (store.clone(), value.clone(), format!("{prefix}/{n:09}"));
        async move {
            store.create(&key, value).await?;
            Ok(())
        }
    })
    .await?;
    let us = per_op_us(cpu_time(0)? - cpu, s.count);
    eprintln!(
        "  raw storage creates x{MANY}: {} ({us:.0} µs CPU each)",
        s.cell()
    );
    Ok((s, us))
}

/// Everything measured against one server.
async fn bench_server(
    binary: &Path,
    backend: &Backend,
    log: &Path,
    plan: &Plan,
    (raw, raw_cpu_us): (Sample, f64),
    raw_store: Arc<dyn Storage>,
) -> anyhow::Result<Results> {
    let begun = Instant::now();
    let server = ServerProcess::start(binary, backend, log).await?;
    let base = server.base.clone();
    eprintln!("  server ready after {:?} at {base}", begun.elapsed());
    let mut r = Results {
        raw_puts: raw,
        raw_cpu_us,
        rss_idle: server.memory()?.0,
        ..Results::default()
    };
    let h1 = load::client(Proto::H1)?;
    let h2 = load::client(Proto::H2)?;
    for ns in ["bench", "bench-list", "bench-watch"] {
        let req = h1
            .post(format!("{base}/api/v1/namespaces"))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#
            ));
        expect(req, StatusCode::CREATED).await?;
    }
    r.h2c = match h2.get(format!("{base}/healthz")).send().await {
        Ok(resp) if resp.version() == reqwest::Version::HTTP_2 => Ok(()),
        Ok(resp) => Err(format!("answered over {:?}", resp.version())),
        Err(e) => Err(format!("h2c rejected: {e}")),
    };
    let protos: Vec<(Proto, &reqwest::Client)> = match &r.h2c {
        Ok(()) => vec![(Proto::H1, &h1), (Proto::H2, &h2)],
        Err(e) => {
            eprintln!("  HTTP/2 not measured: {e}");
            vec![(Proto::H1, &h1)]
        }
    };

    // /healthz also checks storage (an etcd round trip); /livez is the bare HTTP ceiling.
    for path in ["healthz", "livez"] {
        for &(proto, client) in &protos {
            let (client, url) = (client.clone(), format!("{base}/{path}"));
            // HTTP/1.1 through the same bare client as the create rows, so their ratios
            // compare like with like.
            let s = match proto {
                Proto::H1 => {
                    let p = format!("/{path}");
                    let get = move |_| (http::Method::GET, p.clone(), Bytes::new());
                    closed_loop_h1(&base, MANY, plan.per_run, StatusCode::OK, get).await?
                }
                Proto::H2 => {
                    closed_loop(MANY, plan.per_run, move |_| {
                        let req = client.get(&url);
                        async move { expect(req, StatusCode::OK).await.map(|_| ()) }
                    })
                    .await?
                }
            };
            eprintln!("  {path} {} x{MANY}: {}", proto.name(), s.cell());
            match path {
                "healthz" => r.healthz.push((proto, s)),
                _ => r.livez.push((proto, s)),
            }
        }
    }

    let pods = format!("{base}{PODS_PATH}");
    // The GETs read pods the biggest create run made.
    let mut targets = (String::new(), 0u64);
    for &(proto, client) in &protos {
        for clients in [1, MANY] {
            let tag = format!("c{}-{clients}", if proto == Proto::H1 { 1 } else { 2 });
            let (client, url, t) = (client.clone(), pods.clone(), tag.clone());
            let cpu = (cpu_time(server.pid())?, cpu_time(0)?);
            let s = match proto {
                Proto::H1 => {
                    let path = PODS_PATH.to_string();
                    closed_loop_h1(
                        &base,
                        clients,
                        plan.per_run,
                        StatusCode::CREATED,
                        move |n| {
                            let body = pod_json(&format!("{t}-{n}")).into();
                            (http::Method::POST, path.clone(), body)
                        },
                    )
                    .await?
                }
                Proto::H2 => {
                    closed_loop(clients, plan.per_run, move |n| {
                        let req = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(pod_json(&format!("{t}-{n}")));
                        async move { expect(req, StatusCode::CREATED).await.map(|_| ()) }
                    })
                    .await?
                }
            };
            let server_us = per_op_us(cpu_time(server.pid())? - cpu.0, s.count);
            let client_us = per_op_us(cpu_time(0)? - cpu.1, s.count);
            eprintln!(
                "  create {} x{clients}: {} (CPU each: server {server_us:.0} µs, load generator {client_us:.0} µs)",
                proto.name(),
                s.cell()
            );
            r.create_cpu.push((proto, clients, server_us, client_us));
            if s.count > targets.1 {
                targets = (tag, s.count);
            }
            r.creates.push((proto, clients, s));
        }
    }
    anyhow::ensure!(targets.1 > 0, "no pod was created");
    // The headline ratio from alternating pairs: raw puts, then creates over HTTP/1.1 with
    // the same concurrency, a few seconds apart, so both sides of each ratio see about the
    // same machine (single rows move by +-15% between identical runs here).
    for round in 0..plan.rounds {
        let (raw, _) = raw_puts(raw_store.clone(), plan.per_run, &format!("round{round}")).await?;
        let (path, t) = (PODS_PATH.to_string(), format!("r{round}"));
        let cpu = cpu_time(server.pid())?;
        let s = closed_loop_h1(&base, MANY, plan.per_run, StatusCode::CREATED, move |n| {
            let body = pod_json(&format!("{t}-{n}")).into();
            (http::Method::POST, path.clone(), body)
        })
        .await?;
        let server_us = per_op_us(cpu_time(server.pid())? - cpu, s.count);
        eprintln!(
            "  round {}: raw puts {:.0}/s, creates HTTP/1.1 x{MANY} {:.0}/s ({server_us:.0} µs \
             of server CPU each): {:.2}",
            round + 1,
            raw.per_sec,
            s.per_sec,
            s.per_sec / raw.per_sec
        );
        r.rounds.push((raw.per_sec, s.per_sec));
    }
    for &(proto, client) in &protos {
        for clients in [1, MANY] {
            let (client, url, (tag, count)) = (client.clone(), pods.clone(), targets.clone());
            let s = closed_loop(clients, plan.per_run, move |n| {
                // A stride spreads the reads over the whole set.
                let req = client.get(format!("{url}/{tag}-{}", n.wrapping_mul(7919) % count));
                async move { expect(req, StatusCode::OK).await.map(|_| ()) }
            })
            .await?;
            eprintln!("  get {} x{clients}: {}", proto.name(), s.cell());
            r.gets.push((proto, clients, s));
        }
    }

    // The scheduler's write: bind each pod of the biggest create run once (a second bind of
    // a pod is a 409), so the row is a fixed count timed rather than a fixed time.
    let (tag, count) = targets.clone();
    let total = count.min(MAX_BINDS) as usize;
    let (client, url) = (h1.clone(), pods.clone());
    let t = Instant::now();
    closed_count(MANY, total, move |i| {
        let req = client
            .post(format!("{url}/{tag}-{i}/binding"))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{tag}-{i}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"bench-node"}}}}"#
            ));
        async move { expect(req, StatusCode::CREATED).await.map(|_| ()) }
    })
    .await?;
    let rate = total as f64 / t.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    eprintln!("  bind HTTP/1.1 x{MANY}: {rate:.0}/s ({total} pods)");
    r.binds = Some((rate, total));

    let t = Instant::now();
    scenarios::populate(&h2, &base, "bench-list", "l", plan.list_pods, MANY).await?;
    eprintln!("  {} pods created in {:?}", plan.list_pods, t.elapsed());
    r.rss_before_list = server.memory()?.0;
    // Best of three: the first also warms caches and allocator.
    for round in 1..=3 {
        let whole = scenarios::list(&h1, &base, "bench-list", 0, "").await?;
        let paged = scenarios::list(&h1, &base, "bench-list", plan.page_size, "").await?;
        let cached = scenarios::list(&h1, &base, "bench-list", 0, "&resourceVersion=0").await?;
        for l in [&whole, &paged, &cached] {
            anyhow::ensure!(
                l.items == plan.list_pods,
                "listed {} pods, want {}",
                l.items,
                plan.list_pods
            );
        }
        if r.list_whole.pages == 0 || whole.time < r.list_whole.time {
            r.list_whole = whole;
        }
        if r.list_paged.pages == 0 || paged.time < r.list_paged.time {
            r.list_paged = paged;
        }
        if r.list_cached.pages == 0 || cached.time < r.list_cached.time {
            r.list_cached = cached;
        }
        // Growth that stops after the first round is allocator retention, not a leak.
        eprintln!(
            "  list round {round}: server RSS {} MiB",
            server.memory()?.0 / (1024 * 1024)
        );
    }
    (r.rss_after_list, r.rss_peak) = server.memory()?;
    eprintln!(
        "  list: whole {:?}, paged {:?} ({} pages), resourceVersion=0 {:?}",
        r.list_whole.time, r.list_paged.time, r.list_paged.pages, r.list_cached.time
    );

    r.fan_out = scenarios::watch_fan_out(
        &base,
        "bench-watch",
        plan.watchers,
        plan.events,
        plan.watch_writers,
        plan.watch_timeout,
    )
    .await?;
    (r.rss_after_watch, r.rss_peak) = server.memory()?;
    eprintln!(
        "  fan-out: opened in {:?}, writes {:?}, delivered after {:?} ({} events{})",
        r.fan_out.open,
        r.fan_out.writes,
        r.fan_out.delivered_after,
        r.fan_out.received,
        if r.fan_out.complete {
            ""
        } else {
            ", INCOMPLETE"
        }
    );
    Ok(r)
}
