//! WATCH: a chunked `application/json;stream=watch` response, one JSON event per line, fed from
//! the watch cache (or, for revisions the cache no longer holds, straight from storage).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{Ctx, Params, Registry};
use crate::body::Output;
use crate::error::{ApiError, Result};
use crate::model::Selectors;
use crate::table::{self, Include};
use crate::watch_cache::{
    decode_event, encode_line, parse, raw_line, CacheEvent, EventType, Start,
};

/// Where events come from after the initial ones.
enum Source {
    Cache(broadcast::Receiver<Arc<CacheEvent>>),
    Storage(kubelite_storage::WatchStream),
}

impl Source {
    /// The next event; `None` ends the watch (the client re-watches from its last revision).
    async fn next(&mut self) -> Option<Arc<CacheEvent>> {
        match self {
            Source::Cache(rx) => rx.recv().await.ok(),
            Source::Storage(s) => loop {
                match s.next().await {
                    Some(Ok(ev)) => match decode_event(&ev) {
                        Some(ce) => return Some(Arc::new(ce)),
                        None => continue,
                    },
                    _ => return None,
                }
            },
        }
    }
}

/// Renders events for one watcher.
struct Encoder {
    ctx: Ctx,
    output: Output,
    include: Include,
    first: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, obj: &Value) -> Bytes {
        match (self.output, kind) {
            (Output::Table(version), "ADDED" | "MODIFIED" | "DELETED") => {
                let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
                let t = table::table(
                    self.ctx.strategy.as_ref(),
                    version,
                    &[obj],
                    self.include,
                    meta,
                    self.first,
                );
                self.first = false;
                encode_line(kind, &t)
            }
            _ => encode_line(kind, obj),
        }
    }

    /// The line for a cache event as this watcher sees it, if it sees it at all. Plain JSON
    /// watchers without selectors take the shared line without the object ever being parsed.
    fn render(&mut self, ev: &CacheEvent, sel: &Selectors) -> Option<Bytes> {
        if sel.is_empty() && self.output == Output::Json && !self.ctx.converts() {
            return Some(ev.json_line(ev.kind));
        }
        let (kind, obj, shared) = filter(ev, sel, &self.ctx)?;
        Some(self.event_line(ev, kind, &obj, shared))
    }

    /// The line for a cache event: JSON watchers share the event's encoding when they see the
    /// object as stored; conversions and Tables are rendered per watcher.
    fn event_line(&mut self, ev: &CacheEvent, kind: EventType, obj: &Value, shared: bool) -> Bytes {
        if shared && matches!(self.output, Output::Json) {
            ev.json_line(kind)
        } else {
            self.line(kind.as_str(), obj)
        }
    }

    fn bookmark(&mut self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.ctx.info.kind, "apiVersion": self.ctx.info.api_version(), "metadata": meta});
        self.line("BOOKMARK", &obj)
    }
}

/// How an event looks to a watcher with selectors (upstream cacher semantics). The flag is
/// true when the object is the event's own (unconverted), so its shared encoding applies.
fn filter(ev: &CacheEvent, sel: &Selectors, ctx: &Ctx) -> Option<(EventType, Arc<Value>, bool)> {
    // Objects are cached in their stored form; a resource sharing another's storage
    // (events.k8s.io) sees them converted, before selectors apply.
    let shared = !ctx.converts();
    let (obj, prev) = if shared {
        (ev.obj()?, ev.prev())
    } else {
        let show = |o: Arc<Value>| Arc::new(ctx.present((*o).clone()));
        (show(ev.obj()?), ev.prev().map(show))
    };
    if sel.is_empty() {
        return Some((ev.kind, obj, shared));
    }
    let s = ctx.strategy.as_ref();
    let cur = sel.matches(&obj, s);
    let prev = prev.as_ref().is_some_and(|p| sel.matches(p, s));
    let kind = match ev.kind {
        EventType::Added => cur.then_some(EventType::Added),
        EventType::Deleted => (prev || cur).then_some(EventType::Deleted),
        EventType::Modified => match (prev, cur) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
    }?;
    Some((kind, obj, shared))
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;stream=watch"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// Serve a watch request.
pub async fn watch(
    reg: Arc<Registry>,
    ctx: Ctx,
    params: &Params,
    output: Output,
) -> Result<Response> {
    let selectors = Selectors::parse(
        params.get("labelSelector"),
        params.get("fieldSelector"),
        ctx.strategy.as_ref(),
    )?;
    let include = Include::parse(params.get("includeObject"))?;
    let rv = params.get("resourceVersion").filter(|s| !s.is_empty());
    let send_initial = params.get("sendInitialEvents").map(|v| v == "true");
    if send_initial == Some(true) && params.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            ctx.info,
            "",
            vec![kubelite_api::strategy::FieldCause::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ));
    }
    let bookmarks = params.flag("allowWatchBookmarks");
    let timeout = match params.get("timeoutSeconds") {
        Some(t) => {
            Some(Duration::from_secs(t.parse().map_err(|_| {
                ApiError::bad_request("invalid timeoutSeconds")
            })?))
        }
        None => None,
    };
    let cache = reg.cache(&ctx.cache_prefix());
    let prefix = ctx.collection_prefix();
    let initial_wanted = match send_initial {
        Some(v) => v,
        None => matches!(rv, None | Some("0")),
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut enc = Encoder {
        ctx: ctx.clone(),
        output,
        include,
        first: true,
    };

    // Decide the start point synchronously so errors (410) can still be sent as events.
    let mut after: i64;
    let mut initial: Vec<Bytes> = Vec::new();
    let source = if initial_wanted || rv.is_none() || rv == Some("0") {
        let start = cache.as_ref().and_then(|c| c.watch_now(&prefix));
        let Some(Start::Snapshot {
            objects,
            revision,
            rx,
        }) = start
        else {
            return Err(ApiError::internal("no watch cache for this resource"));
        };
        after = revision;
        if initial_wanted {
            let raw = selectors.is_empty() && !ctx.converts() && enc.output == Output::Json;
            for json in &objects {
                if raw {
                    initial.push(raw_line("ADDED", json));
                    continue;
                }
                let Some(o) = parse(json) else { continue };
                let o = ctx.present(o);
                if selectors.matches(&o, ctx.strategy.as_ref()) {
                    initial.push(enc.line("ADDED", &o));
                }
            }
        }
        if send_initial == Some(true) {
            initial.push(enc.bookmark(revision, true));
        }
        Source::Cache(rx)
    } else {
        after = rv.unwrap_or("0").parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version: {:?}", rv.unwrap_or("")))
        })?;
        match cache.as_ref().and_then(|c| c.watch_after(after)) {
            Some(Start::Backlog { events, rx }) => {
                for ev in events.iter().filter(|e| e.key.starts_with(&prefix)) {
                    if let Some(line) = enc.render(ev, &selectors) {
                        initial.push(line);
                    }
                    after = after.max(ev.revision);
                }
                Source::Cache(rx)
            }
            _ => match reg.storage.watch(&prefix, after).await {
                Ok(s) => Source::Storage(s),
                Err(e) => {
                    let status = ApiError::from_storage(e, ctx.target("")).status();
                    let line = enc.line("ERROR", &status);
                    let _ = tx.send(line).await;
                    drop(tx);
                    return Ok(stream_response(rx));
                }
            },
        }
    };

    let resource = ctx.info.group_resource();
    reg.metrics.watch_delta(&resource, 1);
    let interval = reg.bookmark_interval;
    tokio::spawn(async move {
        run(
            reg.clone(),
            cache,
            source,
            enc,
            selectors,
            prefix,
            after,
            initial,
            tx,
            bookmarks,
            timeout,
            interval,
        )
        .await;
        reg.metrics.watch_delta(&resource, -1);
    });
    Ok(stream_response(rx))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    reg: Arc<Registry>,
    cache: Option<Arc<crate::watch_cache::WatchCache>>,
    mut source: Source,
    mut enc: Encoder,
    selectors: Selectors,
    prefix: String,
    mut after: i64,
    initial: Vec<Bytes>,
    tx: mpsc::Sender<Bytes>,
    bookmarks: bool,
    timeout: Option<Duration>,
    interval: Duration,
) {
    for line in initial {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    // A timeout too large to represent means no timeout; a zero interval would panic in tokio.
    let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
    let interval = interval.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tx.closed() => return,
            _ = reg.shutdown.cancelled() => return,
            _ = sleep => {
                if bookmarks {
                    let rev = cache.as_ref().map_or(after, |c| c.revision().max(after));
                    let _ = tx.send(enc.bookmark(rev, false)).await;
                }
                return;
            }
            _ = tick.tick(), if bookmarks => {
                let rev = cache.as_ref().map_or(after, |c| c.revision().max(after));
                if tx.send(enc.bookmark(rev, false)).await.is_err() {
                    return;
                }
            }
            ev = source.next() => {
                let Some(ev) = ev else { return };
                if ev.revision <= after || !ev.key.starts_with(&prefix) {
                    continue;
                }
                after = ev.revision;
                if let Some(line) = enc.render(&ev, &selectors) {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
