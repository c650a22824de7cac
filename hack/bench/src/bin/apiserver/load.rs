//! Closed-loop load: N clients each sending one request after another for a fixed time, over
//! HTTP/1.1 keep-alive or HTTP/2 (h2c with prior knowledge), with latency percentiles.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kubelite_bench::percentile;

/// The HTTP protocol a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 with keep-alive: one connection per concurrent client.
    H1,
    /// HTTP/2 over cleartext with prior knowledge: every client multiplexed on one connection.
    H2,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
        }
    }
}

/// A client for `proto` with a per-request timeout.
pub fn client(proto: Proto) -> anyhow::Result<reqwest::Client> {
    let b = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60));
    let b = match proto {
        Proto::H1 => b.http1_only(),
        Proto::H2 => b.http2_prior_knowledge(),
    };
    Ok(b.build()?)
}

/// One measurement's outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Requests completed (sequence numbers `0..count` were all used).
    pub count: u64,
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Sample {
    /// `12345/s (p50 0.41 ms, p99 3.20 ms)`.
    pub fn cell(&self) -> String {
        format!(
            "{:.0}/s (p50 {}, p99 {})",
            self.per_sec,
            ms(self.p50),
            ms(self.p99)
        )
    }
}

/// Runs `clients` loops of `op` for `run_for`; `op` gets a sequence number unique across all
/// clients of this run. Any failed request fails the measurement.
pub async fn closed_loop<F, Fut>(clients: usize, run_for: Duration, op: F) -> anyhow::Result<Sample>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let clients = clients.max(1);
    let seq = Arc::new(AtomicU64::new(0));
    let begun = Instant::now();
    let deadline = begun + run_for;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let op = op.clone();
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                op(n).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    gather(tasks, begun).await
}

/// Waits for the client tasks of a closed loop begun at `begun` and sums up their latencies.
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
    begun: Instant,
) -> anyhow::Result<Sample> {
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("client task")??);
    }
    let elapsed = begun.elapsed();
    latencies.sort_unstable();
    Ok(Sample {
        count: latencies.len() as u64,
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    })
}

/// A request the bare HTTP/1.1 loop sends: method, path and JSON body (empty for a GET).
pub type Req = (http::Method, String, bytes::Bytes);

/// [`closed_loop`] over bare HTTP/1.1 keep-alive connections, one per client: hyper's
/// client connection with no pool, no per-request URL parsing and no middleware. The load
/// generator shares the machine's two cores with the server, so what it spends per request
/// is taken from the server; reqwest spent about 20 µs of CPU per create. Every answer must
/// have status `want` within 60 s, and its body is read whole.
pub async fn closed_loop_h1<F>(
    base: &str,
    clients: usize,
    run_for: Duration,
    want: reqwest::StatusCode,
    request: F,
) -> anyhow::Result<Sample>
where
    F: Fn(u64) -> Req + Clone + Send + 'static,
{
    use http_body_util::{BodyExt, Full};

    let authority = base
        .strip_prefix("http://")
        .context("the bare HTTP/1.1 client speaks plain http")?
        .trim_end_matches('/')
        .to_string();
    let clients = clients.max(1);
    let seq = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        tcp.set_nodelay(true)?;
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        conns.push(send);
    }
    let begun = Instant::now();
    let deadline = begun + run_for;
    let mut tasks = Vec::with_capacity(clients);
    for mut send in conns {
        let (request, seq, host) = (request.clone(), seq.clone(), authority.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let (method, path, body) = request(seq.fetch_add(1, Ordering::Relaxed));
                let mut req = http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header(http::header::HOST, &host);
                if !body.is_empty() {
                    req = req.header(http::header::CONTENT_TYPE, "application/json");
                }
                let req = req.body(Full::new(body))?;
                let t = Instant::now();
                let exchange = async {
                    send.ready().await?;
                    let resp = send.send_request(req).await?;
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    anyhow::Ok((status, body))
                };
                let (status, body) = tokio::time::timeout(Duration::from_secs(60), exchange)
                    .await
                    .context("no answer within 60 s")??;
                if status.as_u16() != want.as_u16() {
                    bail!(
                        "got {status}, want {want}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    );
                }
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    gather(tasks, begun).await
}

/// Runs `op(0) .. op(total-1)` with `workers` in flight at a time; fails on the first error.
pub async fn closed_count<F, Fut>(workers: usize, total: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= total {
                    return anyhow::Ok(());
                }
                op(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await.context("worker task")??;
    }
    Ok(())
}

/// Sends `req`, fails unless the status is `want`, and reads the whole body (so the connection
/// is reused).
pub async fn expect(
    req: reqwest::RequestBuilder,
    want: reqwest::StatusCode,
) -> anyhow::Result<bytes::Bytes> {
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if status != want {
        bail!(
            "got {status}, want {want}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(body)
}

/// A small, realistic pod: one container with a port and resources, one label.
pub fn pod_json(name: &str) -> String {
    format!(
        concat!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{}","labels":{{"app":"bench"}}}},"#,
            r#""spec":{{"containers":[{{"name":"web","image":"nginx:1.27","#,
            r#""ports":[{{"containerPort":80}}],"#,
            r#""resources":{{"requests":{{"cpu":"10m","memory":"16Mi"}}}}}}]}}}}"#
        ),
        name
    )
}

/// `1.23 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_json_is_valid_json() {
        let v: serde_json::Value = serde_json::from_str(&pod_json("p-1")).expect("valid json");
        assert_eq!(v["metadata"]["name"], "p-1");
        assert_eq!(v["spec"]["containers"][0]["image"], "nginx:1.27");
    }
}
