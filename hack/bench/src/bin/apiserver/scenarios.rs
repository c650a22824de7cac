//! The two bulk scenarios: a LIST of many pods (whole and paged) and a watch fan-out (many
//! watchers, many writes, time until the last watcher has the last event).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use crate::load::{expect, pod_json};

/// Creates pods `<prefix>-0 .. <prefix>-<n-1>` in `ns` with `concurrency` requests in flight.
pub async fn populate(
    client: &reqwest::Client,
    base: &str,
    ns: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/namespaces/{ns}/pods");
    let (client, prefix) = (client.clone(), prefix.to_string());
    crate::load::closed_count(concurrency, n, move |i| {
        let req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(pod_json(&format!("{prefix}-{i}")));
        async move { expect(req, StatusCode::CREATED).await.map(|_| ()) }
    })
    .await
}

/// One LIST's outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListTiming {
    /// Wall time of the requests (client-side JSON parsing excluded).
    pub time: Duration,
    pub items: usize,
    pub bytes: usize,
    pub pages: usize,
}

/// Lists every pod in `ns`, `limit` per page (0: everything at once), following `continue`;
/// `extra` is appended to the first request's query (e.g. `&resourceVersion=0`).
pub async fn list(
    client: &reqwest::Client,
    base: &str,
    ns: &str,
    limit: usize,
    extra: &str,
) -> anyhow::Result<ListTiming> {
    let mut out = ListTiming::default();
    let mut cont = String::new();
    loop {
        let mut url = format!("{base}/api/v1/namespaces/{ns}/pods?limit={limit}");
        if cont.is_empty() {
            url.push_str(extra);
        } else {
            url.push_str("&continue=");
            url.push_str(&cont);
        }
        let t = Instant::now();
        let body = expect(client.get(&url), StatusCode::OK).await?;
        out.time += t.elapsed();
        out.bytes += body.len();
        out.pages += 1;
        let v: serde_json::Value = serde_json::from_slice(&body).context("decoding a list")?;
        out.items += v["items"].as_array().map_or(0, Vec::len);
        match v["metadata"]["continue"].as_str() {
            // Continue tokens are base64 (may hold '=', '+', '/'): escape for the query.
            Some(c) if !c.is_empty() => cont = escape_query(c),
            _ => return Ok(out),
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn escape_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The watch fan-out's outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct FanOut {
    pub watchers: usize,
    pub events: usize,
    /// Opening every watch stream.
    pub open: Duration,
    /// From the first write until every write was acknowledged.
    pub writes: Duration,
    /// From the first write until the last watcher had its last event (or the timeout).
    pub delivered_after: Duration,
    /// Events received over all watchers (`watchers * events` when complete).
    pub received: u64,
    pub complete: bool,
}

/// Opens `watchers` watches on configmaps in `ns` from its current resourceVersion (each over
/// its own HTTP/1.1 connection), then creates `events` configmaps with `writers` concurrent
/// clients, and waits (at most `timeout`) until every watcher has received every event.
pub async fn watch_fan_out(
    base: &str,
    ns: &str,
    watchers: usize,
    events: usize,
    writers: usize,
    timeout: Duration,
) -> anyhow::Result<FanOut> {
    let url = format!("{base}/api/v1/namespaces/{ns}/configmaps");
    let admin = crate::load::client(crate::load::Proto::H2)?;
    let body = expect(admin.get(&url), StatusCode::OK).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let rv = v["metadata"]["resourceVersion"]
        .as_str()
        .context("configmap list without resourceVersion")?
        .to_string();

    // No overall request timeout: a watch body lasts as long as the measurement.
    let watch_client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let received = Arc::new(AtomicU64::new(0));
    let opening = Arc::new(Semaphore::new(64));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(watchers);
    let watch_url = format!("{url}?watch=true&resourceVersion={rv}");
    let open_begun = Instant::now();
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let (client, url) = (watch_client.clone(), watch_url.clone());
        let (received, opening, ready) = (received.clone(), opening.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await?;
            let resp = match client.get(&url).send().await {
                Ok(r) if r.status() == StatusCode::OK => r,
                Ok(r) => {
                    let err = anyhow::anyhow!("watch answered {}", r.status());
                    let _ = ready.send(Err(anyhow::anyhow!("{err}"))).await;
                    return Err(err);
                }
                Err(e) => {
                    let _ = ready
                        .send(Err(anyhow::anyhow!("opening a watch: {e}")))
                        .await;
                    return Err(e.into());
                }
            };
            drop(permit);
            let _ = ready.send(Ok(())).await;
            let mut resp = resp;
            let mut lines = Lines::default();
            while lines.added < events {
                let Some(chunk) = resp.chunk().await? else {
                    bail!("watch ended after {} of {events} events", lines.added);
                };
                let n = lines.feed(&chunk)?;
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
            anyhow::Ok(Instant::now())
        }));
    }
    drop(ready_tx);
    for _ in 0..watchers {
        let r = tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .context("watches did not open within 60 s")?;
        r.context("a watch task ended before opening")??;
    }
    let open = open_begun.elapsed();

    let write_begun = Instant::now();
    crate::load::closed_count(writers, events, {
        let (admin, url) = (admin.clone(), url.clone());
        move |i| {
            let req = admin
                .post(&url)
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}"}},"data":{{"key":"value-{i}"}}}}"#
                ));
            async move { expect(req, StatusCode::CREATED).await.map(|_| ()) }
        }
    })
    .await?;
    let writes = write_begun.elapsed();

    let mut last = write_begun;
    let mut complete = true;
    let deadline = write_begun + timeout;
    let mut pending = tasks.into_iter();
    while let Some(t) = pending.next() {
        let left = deadline.saturating_duration_since(Instant::now());
        let abort = t.abort_handle();
        match tokio::time::timeout(left, t).await {
            Ok(r) => last = last.max(r.context("watch task")??),
            Err(_) => {
                // Stop the stragglers so their connections close with this measurement.
                abort.abort();
                pending.for_each(|t| t.abort());
                complete = false;
                break;
            }
        }
    }
    let delivered_after = if complete {
        last - write_begun
    } else {
        write_begun.elapsed()
    };
    Ok(FanOut {
        watchers,
        events,
        open,
        writes,
        delivered_after,
        received: received.load(Ordering::Relaxed),
        complete,
    })
}

/// Counts ADDED events in a watch stream (one JSON object per line) without decoding them:
/// only the start of each line is kept, which holds the event type.
#[derive(Default)]
struct Lines {
    head: Vec<u8>,
    added: usize,
}

impl Lines {
    /// Bytes of a line's start to keep: `{"type":"ADDED"` with room for whitespace.
    const HEAD: usize = 40;

    /// Consumes a chunk; returns how many ADDED events it completed. An ERROR event fails.
    fn feed(&mut self, mut chunk: &[u8]) -> anyhow::Result<usize> {
        let before = self.added;
        while !chunk.is_empty() {
            let end = chunk.iter().position(|&b| b == b'\n');
            let part = &chunk[..end.unwrap_or(chunk.len())];
            let room = Self::HEAD.saturating_sub(self.head.len());
            self.head.extend_from_slice(&part[..part.len().min(room)]);
            let Some(end) = end else { break };
            let head = String::from_utf8_lossy(&self.head);
            if head.contains("\"ADDED\"") {
                self.added += 1;
            } else if head.contains("\"ERROR\"") {
                bail!("watch sent an error event: {head}");
            }
            self.head.clear();
            chunk = &chunk[end + 1..];
        }
        Ok(self.added - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_added_events_across_chunks() {
        let mut l = Lines::default();
        let n = l
            .feed(b"{\"type\":\"ADDED\",\"object\":{}}\n{\"type\":\"AD")
            .expect("feed");
        assert_eq!(n, 1);
        assert_eq!(l.feed(b"DED\",\"object\":{}}").expect("feed"), 0);
        assert_eq!(l.feed(b"\n{\"type\":\"BOOKMARK\"}\n").expect("feed"), 1);
        assert_eq!(l.added, 2);
        assert!(l.feed(b"{\"type\":\"ERROR\",\"object\":{}}\n").is_err());
    }

    #[test]
    fn escapes_continue_tokens() {
        assert_eq!(escape_query("ab+/=c-_"), "ab%2B%2F%3Dc-_");
    }
}
