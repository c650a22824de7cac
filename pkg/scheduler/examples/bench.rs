//! Scheduler benchmark: (1) the in-memory decision path (schedule + assume) over N nodes,
//! (2) end to end against a real apiserver (Node objects only; pods created concurrently;
//! timed until every pod is bound; p50/p99 creation->binding latency seen through a watch;
//! process RSS), and (3) the bind baseline: on the same apiserver with the scheduler stopped,
//! the same number of pods created first, then bound by a plain client with the scheduler's
//! bind concurrency. The scheduler/baseline ratio says how much of the ceiling is the scheduler.
//! (3b) The scheduler over a backlog: the same number of pods created first, then a fresh
//! scheduler started and timed until all are bound, like-for-like with (3): once from its start
//! (its initial lists of nodes and pods included) and once from its first binding (the
//! sustained rate, with the backlog in its queue, as (3)'s client has its pods' names). (3) and (3b)
//! alternate for `--rounds` rounds (3; 1 with `--quick`), baseline first in odd rounds and
//! backlog first in even ones (ABBA, so the store's growth slows both sides alike), and the
//! median ratio is reported.
//! (4) A create+bind baseline: a plain client creates each pod and binds it right away, the
//! like-for-like ceiling of (2), which also pays for creating the pods.
//! (5) The scheduler's own memory: after (2), a scheduler in a child process (this binary
//! re-executed) lists the N nodes and the pods, binds one probe pod, and reports its RSS.
//!
//! `cargo run --release -p kubelite-scheduler --example bench -- [--nodes 5000] [--pods 30000]
//! [--quick] [--rounds N] [--in-memory-only] [--backlog-only]
//! [--perf-ctl FIFO [--perf-baseline] [--perf-all-rounds]]`; `--quick` is the CI smoke (100 nodes, 500 pods).
//! `--backlog-only` runs (3) and (3b) alone; `--perf-ctl`
//! writes `enable`/`disable` to a `perf record --control fifo:FIFO -D -1` control FIFO around
//! the first round's (3b), so a profile holds the backlog scheduler and nothing else (with
//! `--perf-baseline`, around the first round's bind baseline (3) instead). With
//! `--perf-all-rounds` every round's phase is profiled and its window printed in
//! CLOCK_REALTIME seconds: record with `perf record -k realtime` and split the rounds with
//! `perf script --time A,B`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kubelite_apiserver::testing::TestServer;
use kubelite_scheduler::algorithm::{schedule, Selection};
use kubelite_scheduler::cache::Cache;
use kubelite_scheduler::framework::Framework;
use kubelite_scheduler::metrics::AttemptResult;
use kubelite_scheduler::podinfo::PodInfo;
use kubelite_scheduler::{Config, Metrics, PluginWeights};
use serde_json::json;

// As the shipped binaries: `kubelite-apiserver` and `kubelite-scheduler` use mimalloc, so the
// API server and scheduler in this one process do too.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn node(i: usize) -> anyhow::Result<Node> {
    let res = json!({"cpu": "32", "memory": "128Gi", "pods": "110"});
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"),
                     "labels": {"kubernetes.io/hostname": format!("node-{i}"),
                                "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"capacity": res, "allocatable": res},
    }))?)
}

fn pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "pause",
                  "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))?)
}

/// Records, per pod name, the first instant a watch shows it with `spec.nodeName` set; returns
/// once `pods` names have been seen. Re-watches from the last resourceVersion on timeout.
async fn watch_bound(
    api: Api<Pod>,
    pods: usize,
    bound: Arc<Mutex<HashMap<String, Instant>>>,
) -> anyhow::Result<()> {
    let mut rv = "0".to_string();
    let mut seen = 0;
    while seen < pods {
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        while let Some(ev) = stream.try_next().await? {
            let p = match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(e) => bail!("watch error: {e}"),
                WatchEvent::Deleted(_) => continue,
            };
            let now = Instant::now();
            if let Some(v) = &p.metadata.resource_version {
                rv.clone_from(v);
            }
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
                continue;
            }
            let name = p.metadata.name.unwrap_or_default();
            let mut map = bound.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if let std::collections::hash_map::Entry::Vacant(e) = map.entry(name) {
                e.insert(now);
                seen += 1;
                if seen == pods {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// CPU time this thread has run (first field of /proc/thread-self/schedstat, in ns); the
/// in-memory figure reports it next to wall time, which on a shared machine mostly measures
/// the other processes (the 35 vs 90 us/pod of two earlier runs were the same code).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// CPU time of the whole process (all threads: API server, storage, clients, scheduler), 10 ms
/// resolution. Per bound pod it is a figure that other work on a shared machine does not
/// move, unlike the rates.
fn process_cpu() -> Duration {
    kubelite_bench::cpu_time(0).unwrap_or_default()
}

/// Latency percentile `q` (0..1) in ms over sorted `v`.
fn pct(v: &[Duration], q: f64) -> f64 {
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Creates `count` bench pods named `<prefix>-<i>`, 64 requests in flight.
async fn create_named(api: &Api<Pod>, prefix: &str, count: usize) -> anyhow::Result<()> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let mut p = pod(i)?;
            p.metadata.name = Some(format!("{prefix}-{i}"));
            api.create(&PostParams::default(), &p)
                .await
                .map_err(anyhow::Error::from)
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn in_memory(nodes: usize, pods: usize) -> anyhow::Result<()> {
    let mut cache = Cache::default();
    for i in 0..nodes {
        cache.upsert_node(&node(i)?);
    }
    let fw = Framework::new(&PluginWeights::default());
    let mut sel = Selection::default();
    let infos: Vec<PodInfo> = (0..pods)
        .map(|i| pod(i).map(|p| PodInfo::from_pod(&p)))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let cpu0 = thread_cpu();
    for info in infos {
        let Ok(n) = schedule(&fw, &cache, &info, 0, &mut sel) else {
            bail!("pod {} did not fit", info.key);
        };
        cache.assume(Arc::new(info), &n);
    }
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "in-memory: {pods} pods over {nodes} nodes in {secs:.3} s = {:.0} pods/s ({:.1} us/pod; \
         {:.1} us/pod of CPU)",
        pods as f64 / secs,
        secs * 1e6 / pods as f64,
        cpu * 1e6 / pods as f64
    );
    Ok(())
}

/// The bench's options.
struct Opts {
    nodes: usize,
    pods: usize,
    backlog_only: bool,
    perf_ctl: Option<String>,
    /// Profile the bind baseline (3) instead of the backlog scheduler (3b).
    perf_baseline: bool,
    /// Profile that phase in every round, not the first only, and print each window's
    /// CLOCK_REALTIME bounds (for `perf record -k realtime` and `perf script --time A,B`), so
    /// a slow round and a fast one can be compared from one profile.
    perf_all_rounds: bool,
    /// Alternating baseline/backlog rounds.
    rounds: usize,
}

/// Writes a command (`enable`, `disable`) to a `perf record --control` FIFO.
fn perf_ctl(fifo: Option<&str>, cmd: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(path) = fifo {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening perf control fifo {path}"))?;
        f.write_all(format!("{cmd}\n").as_bytes())?;
    }
    Ok(())
}

/// Whether round `round` of the profiled phase is inside the perf window.
fn perf_round(o: &Opts, baseline: bool, round: usize) -> Option<&str> {
    o.perf_ctl
        .as_deref()
        .filter(|_| o.perf_baseline == baseline && (round == 0 || o.perf_all_rounds))
}

/// Prints the window of a profiled phase that started at `from`, in CLOCK_REALTIME seconds
/// (what `perf record -k realtime` stamps samples with), when every round is profiled.
fn perf_window(o: &Opts, ctl: Option<&str>, what: &str, round: usize, from: Instant) {
    if !(o.perf_all_rounds && ctl.is_some()) {
        return;
    }
    let to = std::time::SystemTime::now();
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let start = secs(to) - from.elapsed().as_secs_f64();
    println!(
        "perf window: round {} {what} {start:.6},{:.6}",
        round + 1,
        secs(to)
    );
}

/// POSTs `pods/<name>/binding` to `node-<i % nodes>` as a plain client.
async fn bind_plain(api: &Api<Pod>, name: &str, i: usize, nodes: usize) -> anyhow::Result<()> {
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": format!("node-{}", i % nodes)},
    });
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await?;
    Ok(())
}

/// Deletes every pod in the namespace at once and waits until none is left (5 minutes at most).
async fn delete_all_pods(api: &Api<Pod>) -> anyhow::Result<()> {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    api.delete_collection(&now, &ListParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = api.list_metadata(&ListParams::default().limit(1)).await?;
        if left.items.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pods still present 5 minutes after deleting them all");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a scheduler with fresh metrics; stop it by sending on (or dropping) the sender.
fn start_scheduler(
    client: &kube::Client,
) -> (
    Arc<Metrics>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<kubelite_scheduler::Result<()>>,
) {
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(kubelite_scheduler::run(
        client.clone(),
        Config {
            metrics: metrics.clone(),
            ..Config::default()
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    (metrics, stop_tx, task)
}

/// Waits until `metrics` counts `pods` scheduled attempts (10 minutes at most).
async fn wait_scheduled(metrics: &Metrics, pods: usize, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while metrics.attempts(AttemptResult::Scheduled) < pods as u64 {
        if Instant::now() > deadline {
            bail!(
                "{what}: timed out with {} of {pods} bound",
                metrics.attempts(AttemptResult::Scheduled)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Phase (2): creates the pods as fast as possible while a scheduler binds them. Returns the
/// rate in pods/s and the process RSS before and after (MiB).
async fn scheduled_while_creating(
    client: &kube::Client,
    o: &Opts,
) -> anyhow::Result<(f64, f64, f64)> {
    let pods = o.pods;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let bound = Arc::new(Mutex::new(HashMap::new()));
    let watcher = tokio::spawn(watch_bound(pod_api.clone(), pods, bound.clone()));
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let rss0 = kubelite_bench::status_mib("VmRSS");
    let (metrics, stop_tx, sched) = start_scheduler(client);
    let start = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            let created_at = created_at.clone();
            async move {
                let p = pod(i)?;
                let t = Instant::now();
                created_at
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(format!("pod-{i}"), t);
                api.create(&PostParams::default(), &p)
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    let created = start.elapsed();
    wait_scheduled(&metrics, pods, "end-to-end").await?;
    let secs = start.elapsed().as_secs_f64();
    let rss1 = kubelite_bench::status_mib("VmRSS");
    match tokio::time::timeout(Duration::from_secs(30), watcher).await {
        Ok(r) => r??,
        Err(_) => eprintln!(
            "warning: the watch saw {} of {pods} bindings within 30 s",
            bound.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len()
        ),
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), sched)
        .await
        .context("scheduler stop")?;
    let mut lat: Vec<Duration> = {
        let created = created_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let bound = bound.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        bound
            .iter()
            .filter_map(|(n, b)| Some(b.saturating_duration_since(*created.get(n)?)))
            .collect()
    };
    lat.sort();
    let rate = pods as f64 / secs;
    println!(
        "end-to-end: {pods} pods over {} nodes bound in {secs:.2} s = {rate:.0} pods/s \
         (creating the pods alone took {:.2} s)",
        o.nodes,
        created.as_secs_f64()
    );
    println!(
        "latency creation->binding (watch, {} pods): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    Ok((rate, rss0, rss1))
}

/// Phase (5): a scheduler in its own process (this binary with `--child-scheduler URL`)
/// lists everything, binds one probe pod, and reports its own RSS.
async fn child_scheduler_rss(
    server: &TestServer,
    pod_api: &Api<Pod>,
    nodes: usize,
    pods: usize,
) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--child-scheduler", server.url()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the child scheduler")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut probe = pod(0)?;
    probe.metadata.name = Some("probe-0".into());
    pod_api.create(&PostParams::default(), &probe).await?;
    let report = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(r) = line.strip_prefix("child-scheduler: ") {
                return Ok(r.to_string());
            }
        }
        bail!("the child scheduler exited without a report")
    })
    .await
    .context("child scheduler report")??;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    println!(
        "scheduler in its own process, {nodes} nodes and {} pods cached: {report}",
        pods + 1
    );
    Ok(())
}

/// The `--child-scheduler URL` mode: run a scheduler against URL until it binds one pod, then
/// print its own RSS (and what the process held before the scheduler started).
async fn child_scheduler(url: &str) -> anyhow::Result<()> {
    let mut config = kube::Config::new(url.parse().context("server url")?);
    config.default_namespace = "default".into();
    let client = kube::Client::try_from(config)?;
    let before = kubelite_bench::status_mib("VmRSS");
    let start = Instant::now();
    let (metrics, stop_tx, sched) = start_scheduler(&client);
    wait_scheduled(&metrics, 1, "child scheduler").await?;
    let synced = start.elapsed().as_secs_f64();
    println!(
        "child-scheduler: RSS {:.0} MiB (peak {:.0} MiB), {before:.0} MiB before the scheduler \
         started; listed everything and bound a probe pod in {synced:.2} s",
        kubelite_bench::status_mib("VmRSS"),
        kubelite_bench::status_mib("VmHWM"),
    );
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), sched).await;
    Ok(())
}

/// (3) The bind baseline: earlier pods deleted, `pods` pods created, then bound by a plain
/// client with the scheduler's bind concurrency; returns binds/s, process CPU a pod in us,
/// and the RSS growth (MiB) from creating and binding them (API server only).
async fn bind_baseline(
    o: &Opts,
    pod_api: &Api<Pod>,
    round: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let (nodes, pods) = (o.nodes, o.pods);
    let binds = Config::default().max_in_flight_binds;
    delete_all_pods(pod_api).await?;
    let rss0 = kubelite_bench::status_mib("VmRSS");
    let prefix = format!("base{round}");
    create_named(pod_api, &prefix, pods).await?;
    let ctl = perf_round(o, true, round);
    perf_ctl(ctl, "enable")?;
    let start = Instant::now();
    let cpu0 = process_cpu();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            let name = format!("{prefix}-{i}");
            async move { bind_plain(&api, &name, i, nodes).await }
        })
        .buffer_unordered(binds)
        .try_collect::<Vec<_>>()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = process_cpu().saturating_sub(cpu0).as_secs_f64() * 1e6 / pods as f64;
    perf_ctl(ctl, "disable")?;
    perf_window(o, ctl, "baseline", round, start);
    let grown = kubelite_bench::status_mib("VmRSS") - rss0;
    Ok((pods as f64 / secs, cpu, grown))
}

/// What (3b) measured.
struct Drain {
    /// Pods/s and process CPU a pod (us) from the scheduler's start, its initial lists of
    /// 5,000 nodes and every pod included.
    rate: f64,
    cpu: f64,
    /// The same after its first binding (caches synced, the backlog in its queue) until the
    /// last: the sustained binding rate. The bind baseline's client starts with its pods' names
    /// in hand, so this is the like-for-like comparison; the figure above adds the start-up.
    sustained_rate: f64,
    sustained_cpu: f64,
    /// Attempts that bound nothing: (unschedulable, API error). Each costs a decision and,
    /// for an error, a request; the backlog's pods all fit, so both should be zero.
    wasted: (u64, u64),
}

/// (3b) The scheduler over a backlog, like-for-like with the bind baseline: earlier pods
/// deleted, `pods` pending pods created, then a fresh scheduler timed from its start (initial
/// list included), and again from its first binding, until it has bound them all.
async fn backlog(
    o: &Opts,
    client: &kube::Client,
    pod_api: &Api<Pod>,
    round: usize,
) -> anyhow::Result<Drain> {
    let pods = o.pods;
    delete_all_pods(pod_api).await?;
    create_named(pod_api, "drain", pods).await?;
    let ctl = perf_round(o, false, round);
    perf_ctl(ctl, "enable")?;
    let start = Instant::now();
    let cpu0 = process_cpu();
    let (metrics, stop, sched) = start_scheduler(client);
    // Polled every 5 ms: the first binding's time is known to ~0.1% of the run.
    wait_scheduled(&metrics, 1, "backlog's first binding").await?;
    let (first, first_cpu) = (Instant::now(), process_cpu());
    let first_bound = metrics.attempts(AttemptResult::Scheduled) as usize;
    wait_scheduled(&metrics, pods, "backlog").await?;
    let secs = start.elapsed().as_secs_f64();
    let end_cpu = process_cpu();
    let us_a_pod = |from: Duration, n: usize| {
        end_cpu.saturating_sub(from).as_secs_f64() * 1e6 / n.max(1) as f64
    };
    let rest = pods.saturating_sub(first_bound);
    let drain = Drain {
        rate: pods as f64 / secs,
        cpu: us_a_pod(cpu0, pods),
        sustained_rate: rest as f64 / first.elapsed().as_secs_f64(),
        sustained_cpu: us_a_pod(first_cpu, rest),
        wasted: (
            metrics.attempts(AttemptResult::Unschedulable),
            metrics.attempts(AttemptResult::Error),
        ),
    };
    perf_ctl(ctl, "disable")?;
    perf_window(o, ctl, "backlog", round, start);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), sched)
        .await
        .context("backlog scheduler stop")?;
    Ok(drain)
}

async fn end_to_end(o: &Opts) -> anyhow::Result<()> {
    let (nodes, pods) = (o.nodes, o.pods);
    let binds = Config::default().max_in_flight_binds;
    let server = TestServer::start().await?;
    let client = server.client();
    let node_api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                api.create(&PostParams::default(), &node(i)?)
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let e2e = if o.backlog_only {
        None
    } else {
        let r = scheduled_while_creating(&client, o).await?;
        child_scheduler_rss(&server, &pod_api, nodes, pods).await?;
        Some(r)
    };
    // The bind baseline (3) and the backlog scheduler (3b) alternate for `rounds` rounds; each
    // round's ratio compares two runs a few seconds apart, and the median over the rounds is
    // the figure (a single pair moves by +-15% on this machine). Every phase starts from the
    // nodes and `pods` pending pods and nothing else: earlier pods are deleted first (grace 0:
    // no kubelet finishes a graceful delete here), so neither side lists or caches pods the
    // other never saw.
    let mut base_grown = 0.0;
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    let mut base_rates = Vec::new();
    let mut drain_rates = Vec::new();
    let mut sustained_ratios = Vec::new();
    let mut sustained_cpu_ratios = Vec::new();
    for round in 0..o.rounds {
        // Every phase leaves the store a little longer history and the server a little more
        // memory, so a later phase is slower; odd rounds run the backlog first, so that this
        // drift falls on both sides alike (ABBA order) instead of always on the scheduler.
        let backlog_first = round % 2 == 1;
        let mut drained = None;
        if backlog_first {
            drained = Some(backlog(o, &client, &pod_api, round).await?);
        }
        let (base_rate, bcpu, grown) = bind_baseline(o, &pod_api, round).await?;
        if round == 0 {
            base_grown = grown;
            if o.backlog_only {
                child_scheduler_rss(&server, &pod_api, nodes, pods).await?;
            }
        }
        let d = match drained {
            Some(d) => d,
            None => backlog(o, &client, &pod_api, round).await?,
        };
        println!(
            "round {} ({}): bind baseline: {pods} pre-created pods bound by a plain client \
             ({binds} concurrent) in {:.2} s = {base_rate:.0} binds/s, {bcpu:.0} us of process \
             CPU a pod{}",
            round + 1,
            if backlog_first {
                "backlog first"
            } else {
                "baseline first"
            },
            pods as f64 / base_rate,
            e2e.map(|(r, ..)| format!("; scheduler end-to-end/baseline = {:.2}", r / base_rate))
                .unwrap_or_default()
        );
        println!(
            "round {}: backlog: a fresh scheduler bound {pods} pre-created pods in {:.2} s = \
             {:.0} pods/s, {:.0} us of process CPU a pod; scheduler/bind baseline = {:.2} (by CPU \
             a pod: {:.2}); sustained, from its first binding: {:.0} pods/s, {:.0} us a pod, \
             ratio {:.2} (by CPU a pod: {:.2}); attempts that bound nothing: {} unschedulable, \
             {} errors",
            round + 1,
            pods as f64 / d.rate,
            d.rate,
            d.cpu,
            d.rate / base_rate,
            bcpu / d.cpu,
            d.sustained_rate,
            d.sustained_cpu,
            d.sustained_rate / base_rate,
            bcpu / d.sustained_cpu,
            d.wasted.0,
            d.wasted.1,
        );
        ratios.push(d.rate / base_rate);
        cpu_ratios.push(bcpu / d.cpu);
        sustained_ratios.push(d.sustained_rate / base_rate);
        sustained_cpu_ratios.push(bcpu / d.sustained_cpu);
        base_rates.push(base_rate);
        drain_rates.push(d.rate);
    }
    println!(
        "backlog over {} rounds: scheduler {:.0} pods/s, bind baseline {:.0} binds/s (medians); \
         scheduler/bind baseline median {:.2} (range {:.2}-{:.2}), by CPU a pod median {:.2}; \
         sustained (from the first binding) median {:.2} (range {:.2}-{:.2}), by CPU a pod \
         median {:.2}",
        o.rounds,
        kubelite_bench::median(&drain_rates),
        kubelite_bench::median(&base_rates),
        kubelite_bench::median(&ratios),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
        kubelite_bench::median(&cpu_ratios),
        kubelite_bench::median(&sustained_ratios),
        sustained_ratios
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min),
        sustained_ratios.iter().copied().fold(0.0, f64::max),
        kubelite_bench::median(&sustained_cpu_ratios),
    );
    let Some((sched_rate, rss0, rss1)) = e2e else {
        return Ok(());
    };
    // The same API work as the end-to-end run minus the scheduler: each pod created and then
    // bound by a plain client, 64 pods in flight. The end-to-end figure includes creating the
    // pods, so this is its like-for-like ceiling.
    let pstart = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            async move {
                let mut p = pod(i)?;
                let name = format!("pipe-{i}");
                p.metadata.name = Some(name.clone());
                api.create(&PostParams::default(), &p).await?;
                bind_plain(&api, &name, i, nodes).await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    let psecs = pstart.elapsed().as_secs_f64();
    let pipe_rate = pods as f64 / psecs;
    println!(
        "create+bind baseline: {pods} pods created and bound by a plain client (64 in flight) in \
         {psecs:.2} s = {pipe_rate:.0} pods/s; scheduler end-to-end/this = {:.2}",
        sched_rate / pipe_rate
    );
    // The baseline's growth is measured after deleting earlier pods, whose freed memory the
    // server reuses; when its RSS fell instead, no bound on the scheduler's share follows.
    let share = if base_grown >= 0.0 {
        format!(
            "scheduler share at most ~{:.0} MiB (difference of deltas)",
            (rss1 - rss0) - base_grown
        )
    } else {
        "no bound on the scheduler's share from this run (the baseline's RSS fell); see its \
         own process above"
            .to_string()
    };
    println!(
        "process RSS (apiserver + scheduler in one process): {rss0:.0} MiB after nodes, \
         {rss1:.0} MiB after scheduling (+{:.0}), {base_grown:+.0} MiB creating and binding the \
         first baseline's pods (apiserver only; after deleting earlier pods, whose freed memory \
         it reuses, so a lower bound), peak {:.0} MiB; {share}",
        rss1 - rss0,
        kubelite_bench::status_mib("VmHWM"),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| -> anyhow::Result<Option<&str>> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(Some(args.get(i + 1).context("missing value")?.as_str())),
            None => Ok(None),
        }
    };
    if let Some(url) = value("--child-scheduler")? {
        return child_scheduler(url).await;
    }
    let flag = |name: &str| -> anyhow::Result<Option<usize>> {
        value(name)?
            .map(|v| v.parse::<usize>())
            .transpose()
            .map_err(Into::into)
    };
    let quick = args.iter().any(|a| a == "--quick");
    let opts = Opts {
        nodes: flag("--nodes")?.unwrap_or(if quick { 100 } else { 5000 }),
        pods: flag("--pods")?.unwrap_or(if quick { 500 } else { 30000 }),
        backlog_only: args.iter().any(|a| a == "--backlog-only"),
        perf_ctl: value("--perf-ctl")?.map(str::to_string),
        perf_baseline: args.iter().any(|a| a == "--perf-baseline"),
        perf_all_rounds: args.iter().any(|a| a == "--perf-all-rounds"),
        rounds: flag("--rounds")?
            .unwrap_or(if quick { 1 } else { 3 })
            .max(1),
    };
    in_memory(opts.nodes, opts.pods)?;
    if args.iter().any(|a| a == "--in-memory-only") {
        return Ok(());
    }
    end_to_end(&opts).await
}
