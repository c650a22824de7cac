//! `bench-storage`: durable write throughput and latency of the embedded backend against a real
//! etcd (Debian's, fsync on), in one run, with 1 KiB values and several concurrent writers.
//! Prints a markdown table with the embedded/etcd throughput ratio. `--quick` is a smoke run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use kubelite_bench::percentile;
use kubelite_storage::Storage;
use kubelite_storage_embedded::{EmbeddedStore, Options};
use kubelite_storage_etcd::testing::EtcdServer;
use kubelite_storage_etcd::EtcdStore;

/// Size of every written value.
const VALUE_BYTES: usize = 1024;

#[derive(Parser, Debug)]
#[command(about = "Storage write benchmark: embedded backend vs a real etcd")]
struct Args {
    /// Smoke run: a fraction of a second per measurement (for CI).
    #[arg(long)]
    quick: bool,
    /// Seconds per measurement (one backend, one operation, one writer count).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent writer counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 16, 64])]
    writers: Vec<usize>,
    /// Where both backends keep their data (a temp dir inside it). Use a real disk: fsync cost
    /// is the point.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
        }
    }
}

/// One measurement's outcome.
#[derive(Clone, Debug)]
struct Sample {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let per_run = if args.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs_f64(args.seconds.max(0.1))
    };
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    eprintln!(
        "bench-storage: {per_run:?} per measurement, writers {:?}, {VALUE_BYTES} B values, data under {}",
        args.writers,
        parent.display()
    );

    // Other work on the machine skews both columns alike; say how busy it was.
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

    let embedded = {
        let dir = tempfile::Builder::new()
            .prefix("bench-embedded-")
            .tempdir_in(&parent)?;
        let store = open_embedded(dir.path())?;
        let results = run_backend("embedded", store, &args.writers, per_run).await?;
        drop(dir);
        results
    };
    let etcd = {
        let begun = Instant::now();
        let server = EtcdServer::start_in(&parent, &[])
            .await
            .context("starting etcd")?;
        eprintln!(
            "etcd healthy after {} ({})",
            ms(begun.elapsed()),
            server.endpoint()
        );
        let store: Arc<dyn Storage> = Arc::new(
            EtcdStore::connect(&[server.endpoint()], "")
                .await
                .context("connecting to etcd")?,
        );
        let results = run_backend("etcd", store, &args.writers, per_run).await?;
        drop(server);
        results
    };

    println!("| op | writers | embedded ops/s | etcd ops/s | embedded/etcd | embedded p50 / p99 | etcd p50 / p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((op, writers, e), (_, _, x)) in embedded.iter().zip(etcd.iter()) {
        println!(
            "| {} | {writers} | {:.0} | {:.0} | {:.2}x | {} / {} | {} / {} |",
            op.name(),
            e.ops_per_sec,
            x.ops_per_sec,
            e.ops_per_sec / x.ops_per_sec.max(f64::MIN_POSITIVE),
            ms(e.p50),
            ms(e.p99),
            ms(x.p50),
            ms(x.p99),
        );
    }
    Ok(())
}

fn open_embedded(dir: &Path) -> anyhow::Result<Arc<dyn Storage>> {
    let store =
        EmbeddedStore::open(dir, Options::default()).context("opening the embedded store")?;
    Ok(Arc::new(store))
}

/// Every (operation, writer count) measurement against one store.
async fn run_backend(
    name: &str,
    store: Arc<dyn Storage>,
    writers: &[usize],
    per_run: Duration,
) -> anyhow::Result<Vec<(Op, usize, Sample)>> {
    // Warm up connections, caches and files before anything is timed.
    for i in 0..50 {
        store
            .create(&format!("/registry/bench/warmup/{i}"), value())
            .await?;
    }
    let mut out = Vec::new();
    for op in [Op::Create, Op::Update] {
        for &w in writers {
            let sample = measure(store.clone(), op, w, per_run).await?;
            eprintln!(
                "  {name:>8} {:>6} x{w:<3} {:>9.0} ops/s  p50 {}  p99 {}",
                op.name(),
                sample.ops_per_sec,
                ms(sample.p50),
                ms(sample.p99)
            );
            out.push((op, w, sample));
        }
    }
    Ok(out)
}

/// Runs `writers` concurrent loops of `op` for `per_run` and summarises them.
async fn measure(
    store: Arc<dyn Storage>,
    op: Op,
    writers: usize,
    per_run: Duration,
) -> anyhow::Result<Sample> {
    let writers = writers.max(1);
    let mut tasks = Vec::with_capacity(writers);
    // Everyone starts together once all update keys exist.
    let barrier = Arc::new(tokio::sync::Barrier::new(writers + 1));
    for w in 0..writers {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            writer(store, op, writers, w, per_run, barrier).await
        }));
    }
    barrier.wait().await;
    let begun = Instant::now();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("writer task")??);
    }
    let elapsed = begun.elapsed();
    latencies.sort_unstable();
    Ok(Sample {
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    })
}

/// One writer: creates fresh keys, or updates its own key with compare-and-swap.
async fn writer(
    store: Arc<dyn Storage>,
    op: Op,
    writers: usize,
    w: usize,
    per_run: Duration,
    barrier: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<Vec<Duration>> {
    let base = format!("/registry/bench/{}-{writers}/{w}", op.name());
    let mut rev = match op {
        Op::Update => store.create(&base, value()).await?.mod_revision,
        Op::Create => 0,
    };
    barrier.wait().await;
    let deadline = Instant::now() + per_run;
    let mut latencies = Vec::new();
    let mut i = 0u64;
    while Instant::now() < deadline {
        let t = Instant::now();
        match op {
            Op::Create => {
                store.create(&format!("{base}/{i:09}"), value()).await?;
            }
            Op::Update => rev = store.update(&base, value(), rev).await?.mod_revision,
        }
        latencies.push(t.elapsed());
        i += 1;
    }
    Ok(latencies)
}

/// A 1 KiB value (content does not matter to either backend).
fn value() -> Bytes {
    Bytes::from_static(&[b'v'; VALUE_BYTES])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
