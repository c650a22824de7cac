//! `bench-crd`: what a custom resource costs next to a built-in kind, against an in-process
//! API server on the embedded store, all in one run:
//! - creates/s of a custom resource whose CRD has a 30-field schema (types, bounds, patterns,
//!   an enum, a list, a map, a nested object, a default) vs a ConfigMap of the same body size
//!   (the cost of schema pruning, defaulting and validation; the aim is under 1.5x);
//! - watch latency (create sent -> ADDED event read by a watcher) for both;
//! - server-side apply/s of a Deployment vs a JSON merge patch making the same change.
//!
//! Prints one markdown table. `--quick` is a smoke run of a few seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use kubelite_apiserver::testing::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const GROUP: &str = "bench.kubelite.dev";
const CR_PATH: &str = "/apis/bench.kubelite.dev/v1/namespaces/default/widgets";
const CM_PATH: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/default/deployments";
/// Names are this long in every body, so bodies of one kind are all the same size.
const NAME_WIDTH: usize = 12;

#[derive(Parser, Debug)]
#[command(about = "Custom resource vs ConfigMap creates and watch latency; SSA vs merge patch")]
struct Args {
    /// Smoke run: 0.5 s per throughput measurement, 30 watch samples.
    #[arg(long)]
    quick: bool,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent clients in the throughput measurements.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Sequential creates timed through a watch, per kind.
    #[arg(long, default_value_t = 300)]
    watch_samples: usize,
    /// Alternate the CR and ConfigMap create runs this many times (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (per_run, samples, rounds) = if args.quick {
        (Duration::from_millis(500), 30, 1)
    } else {
        (
            Duration::from_secs_f64(args.seconds),
            args.watch_samples,
            args.rounds.max(1),
        )
    };
    let server = TestServer::start()
        .await
        .context("starting the apiserver")?;
    let base = server.url().to_string();
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    install_crd(&http, &base).await?;
    let cr_len = cr_body(&name("x", 0), 0).to_string().len();
    let cm_len = cm_body(&name("x", 0), cr_len).to_string().len();
    eprintln!("bodies: custom resource {cr_len} bytes, ConfigMap {cm_len} bytes");

    // Alternate the two kinds so drift (disk, other load) hits both alike.
    let (mut cr_runs, mut cm_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let tag = format!("r{round}");
        cr_runs.push(creates(&http, &base, CR_PATH, args.clients, per_run, &tag, cr_body).await?);
        cm_runs.push(
            creates(
                &http,
                &base,
                CM_PATH,
                args.clients,
                per_run,
                &tag,
                move |n, _| cm_body(n, cr_len),
            )
            .await?,
        );
    }
    let cr_rate = median(cr_runs);
    let cm_rate = median(cm_runs);

    let cr_watch = watch_latency(&http, &base, CR_PATH, samples, cr_body).await?;
    let cm_watch = watch_latency(&http, &base, CM_PATH, samples, |n, _| cm_body(n, cr_len)).await?;

    let apply = patches(&http, &base, args.clients, per_run, Patch::Apply).await?;
    let merge = patches(&http, &base, args.clients, per_run, Patch::Merge).await?;

    println!(
        "\n| measurement | custom resource (30-field schema) | ConfigMap, same size | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| creates/s, {} clients ({} rounds, median) | {cr_rate:.0}/s | {cm_rate:.0}/s | {:.2}x the time per create |",
        args.clients,
        rounds,
        cm_rate / cr_rate
    );
    println!(
        "| watch latency p50 / p99 ({samples} creates) | {} / {} | {} / {} | {:.2}x at p50 |",
        ms(cr_watch.0),
        ms(cr_watch.1),
        ms(cm_watch.0),
        ms(cm_watch.1),
        cr_watch.0.as_secs_f64() / cm_watch.0.as_secs_f64()
    );
    println!(
        "\n| Deployment update, {} clients | ops/s | ratio |",
        args.clients
    );
    println!("| --- | --- | --- |");
    println!(
        "| server-side apply (full intent, force) | {apply:.0}/s | {:.2}x the time per update |",
        merge / apply
    );
    println!("| merge patch, same change | {merge:.0}/s | 1.00x |");
    drop(server);
    Ok(())
}

fn name(prefix: &str, i: u64) -> String {
    let n = format!("{prefix}-{i}");
    format!("{n:0>NAME_WIDTH$}")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The CRD: 30 spec fields of the kinds real CRDs use.
fn crd() -> Value {
    let mut props = serde_json::Map::new();
    for i in 0..8 {
        props.insert(
            format!("name{i}"),
            json!({"type": "string", "maxLength": 63,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}),
        );
    }
    for i in 0..4 {
        props.insert(
            format!("text{i}"),
            json!({"type": "string", "maxLength": 256}),
        );
    }
    props.insert(
        "mode".into(),
        json!({"type": "string", "enum": ["Fast", "Safe", "Off"]}),
    );
    props.insert(
        "policy".into(),
        json!({"type": "string", "default": "Retain"}),
    );
    for i in 0..8 {
        props.insert(
            format!("count{i}"),
            json!({"type": "integer", "format": "int32",
            "minimum": 0, "maximum": 1_000_000}),
        );
    }
    for i in 0..4 {
        props.insert(format!("flag{i}"), json!({"type": "boolean"}));
    }
    props.insert(
        "tags".into(),
        json!({"type": "array", "maxItems": 16,
        "items": {"type": "string", "maxLength": 32}}),
    );
    props.insert(
        "labels".into(),
        json!({"type": "object",
        "additionalProperties": {"type": "string"}}),
    );
    props.insert(
        "endpoint".into(),
        json!({"type": "object", "required": ["host"],
        "properties": {"host": {"type": "string"}, "port": {"type": "integer", "minimum": 1,
        "maximum": 65535}, "tls": {"type": "boolean"}}}),
    );
    props.insert(
        "quantity".into(),
        json!({"x-kubernetes-int-or-string": true}),
    );
    assert_eq!(props.len(), 30);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{GROUP}")},
        "spec": {"group": GROUP, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["name0", "mode"],
                             "properties": props}}}}}]}
    })
}

/// A custom resource filling every field but the defaulted one.
fn cr_body(name: &str, i: u64) -> Value {
    let mut spec = serde_json::Map::new();
    for f in 0..8 {
        spec.insert(
            format!("name{f}"),
            json!(format!("svc-{f}-{:06}", i % 1_000_000)),
        );
    }
    for f in 0..4 {
        spec.insert(
            format!("text{f}"),
            json!("a free-text description of moderate length"),
        );
    }
    spec.insert("mode".into(), json!("Safe"));
    for f in 0..8 {
        spec.insert(format!("count{f}"), json!(100_000 + f));
    }
    for f in 0..4 {
        spec.insert(format!("flag{f}"), json!(f % 2 == 0));
    }
    spec.insert("tags".into(), json!(["alpha", "beta", "gamma"]));
    spec.insert("labels".into(), json!({"team": "storage", "tier": "gold"}));
    spec.insert(
        "endpoint".into(),
        json!({"host": "db.example.internal", "port": 5432, "tls": true}),
    );
    spec.insert("quantity".into(), json!("10Gi"));
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// A ConfigMap with 30 keys whose body is `len` bytes (padding the last value).
fn cm_body(name: &str, len: usize) -> Value {
    let mut data = serde_json::Map::new();
    for f in 0..29 {
        data.insert(format!("key{f:02}"), json!("v"));
    }
    data.insert("key29".into(), json!(""));
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "default"}, "data": data});
    let short = len.saturating_sub(cm.to_string().len());
    cm["data"]["key29"] = json!("x".repeat(short));
    cm
}

async fn install_crd(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let r = http
        .post(format!(
            "{base}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        ))
        .json(&crd())
        .send()
        .await?;
    if r.status() != StatusCode::CREATED {
        bail!("creating the CRD: {} {}", r.status(), r.text().await?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let r = http.get(format!("{base}{CR_PATH}?limit=1")).send().await?;
        if r.status().is_success() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the CRD was not served within 30s")
}

/// `clients` closed loops POSTing to `path` for `dur`; returns creates/s.
async fn creates(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    clients: usize,
    dur: Duration,
    tag: &str,
    body: impl Fn(&str, u64) -> Value + Send + Sync + Copy + 'static,
) -> anyhow::Result<f64> {
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, seq, tag) = (
            http.clone(),
            format!("{base}{path}"),
            seq.clone(),
            tag.to_string(),
        );
        set.spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < dur {
                let i = seq.fetch_add(1, Ordering::Relaxed);
                let bytes = body(&name(&tag, i), i).to_string();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bytes)
                    .send()
                    .await?;
                if r.status() != StatusCode::CREATED {
                    bail!("create: {} {}", r.status(), r.text().await?);
                }
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Sequential creates, each timed from sending the POST to reading its ADDED event on a watch
/// opened before; returns (p50, p99).
async fn watch_latency(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    samples: usize,
    body: impl Fn(&str, u64) -> Value,
) -> anyhow::Result<(Duration, Duration)> {
    let list: Value = http
        .get(format!("{base}{path}?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let mut watch = http
        .get(format!("{base}{path}?watch=1&resourceVersion={rv}"))
        .timeout(Duration::from_secs(3600))
        .send()
        .await?;
    let (tx, mut added) = mpsc::unbounded_channel::<(String, Instant)>();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = watch.chunk().await {
            let now = Instant::now();
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if ev["type"] == "ADDED" {
                    let n = ev["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    if tx.send((n, now)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        let n = name("w", i);
        let sent = Instant::now();
        let r = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body(&n, i).to_string())
            .send()
            .await?;
        if r.status() != StatusCode::CREATED {
            bail!("create: {} {}", r.status(), r.text().await?);
        }
        loop {
            let got = tokio::time::timeout(Duration::from_secs(10), added.recv()).await;
            match got {
                Ok(Some((name, at))) if name == n => {
                    lat.push(at - sent);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the watch ended"),
                Err(_) => bail!("no ADDED event for {n} within 10s"),
            }
        }
    }
    reader.abort();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    Ok((pct(0.5), pct(0.99)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Patch {
    Apply,
    Merge,
}

fn deployment(name: &str, replicas: u64, rev: u64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"app": name}, "annotations": {"bench/revision": rev.to_string()}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": 80}],
                    "env": [{"name": "MODE", "value": "bench"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
    })
}

/// One Deployment per client, each updated in a closed loop for `dur` (changing replicas and an
/// annotation): server-side apply of the whole intent, or a merge patch of just the change.
/// Returns updates/s.
async fn patches(
    http: &reqwest::Client,
    base: &str,
    clients: usize,
    dur: Duration,
    kind: Patch,
) -> anyhow::Result<f64> {
    let prefix = match kind {
        Patch::Apply => "ssa",
        Patch::Merge => "merge",
    };
    for c in 0..clients {
        let r = http
            .post(format!("{base}{DEPLOY_PATH}"))
            .json(&deployment(&format!("{prefix}-{c}"), 1, 0))
            .send()
            .await?;
        if r.status() != StatusCode::CREATED {
            bail!("creating a deployment: {} {}", r.status(), r.text().await?);
        }
    }
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let http = http.clone();
        let n = format!("{prefix}-{c}");
        let url = format!("{base}{DEPLOY_PATH}/{n}");
        set.spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < dur {
                let (replicas, rev) = (done % 5 + 2, done + 1);
                let req = match kind {
                    Patch::Apply => http
                        .patch(format!("{url}?fieldManager=bench&force=true"))
                        .header("content-type", "application/apply-patch+yaml")
                        .body(deployment(&n, replicas, rev).to_string()),
                    Patch::Merge => http
                        .patch(&url)
                        .header("content-type", "application/merge-patch+json")
                        .body(
                            json!({"metadata": {"annotations": {"bench/revision": rev.to_string()}},
                                   "spec": {"replicas": replicas}})
                            .to_string(),
                        ),
                };
                let r = req.send().await?;
                if r.status() != StatusCode::OK {
                    bail!("patch: {} {}", r.status(), r.text().await?);
                }
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
