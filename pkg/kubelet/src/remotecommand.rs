//! `exec` and `attach` over SPDY/3.1 (`X-Stream-Protocol-Version: v4.channel.k8s.io`), the
//! fallback kubectl uses when the WebSocket upgrade fails or is disabled
//! (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`).
//!
//! The client opens one stream per channel, named by the `streamtype` header: `error`,
//! `stdin`, `stdout`, `stderr` (not with a TTY) and `resize` (TTY only, newline-separated
//! `{"Width":..,"Height":..}` objects). The kubelet waits for all the streams the query asked
//! for, runs the process, half-closes stdout/stderr when it ends, then writes the final
//! `Status` as JSON on the error stream (v4) and closes the connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::exec::{parse_size, status_body, ExecRequest};
use crate::runtime::Runtime;
use crate::streams::{Conn, Stream};

/// The SPDY remote command protocols served, best first.
pub(crate) const PROTOCOLS: [&str; 1] = ["v4.channel.k8s.io"];
/// How long the client has to open every stream (upstream's default).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// The streams of one session.
#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Streams {
    fn count(&self) -> usize {
        [
            self.error.is_some(),
            self.stdin.is_some(),
            self.stdout.is_some(),
            self.stderr.is_some(),
            self.resize.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count()
    }
}

/// Which streams the request's query asks for (upstream's `expectedStreams`).
fn expected(req: &ExecRequest, stdout: bool, stderr: bool) -> usize {
    1 + usize::from(req.stdin)
        + usize::from(stdout)
        + usize::from(stderr && !req.tty)
        + usize::from(req.tty)
}

async fn collect(
    streams: &mut mpsc::Receiver<Stream>,
    want: usize,
    conn: &Conn,
) -> Result<Streams, String> {
    let mut got = Streams::default();
    let wait = async {
        while got.count() < want {
            let Some(s) = streams.recv().await else {
                return Err("connection closed before all streams were created".to_string());
            };
            let slot = match s.header("streamtype").unwrap_or_default() {
                "error" => &mut got.error,
                "stdin" => &mut got.stdin,
                "stdout" => &mut got.stdout,
                "stderr" => &mut got.stderr,
                "resize" => &mut got.resize,
                other => {
                    tracing::debug!(stream_type = other, "remotecommand: unexpected stream");
                    conn.reset(s.id, crate::spdy::RST_REFUSED_STREAM).await;
                    continue;
                }
            };
            *slot = Some(s);
        }
        Ok(())
    };
    match tokio::time::timeout(STREAMS_TIMEOUT, wait).await {
        Ok(Ok(())) => Ok(got),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out waiting for client to create streams".into()),
    }
}

/// Serves one exec/attach session on a SPDY connection, then closes it.
pub(crate) async fn serve(
    conn: Conn,
    mut incoming: mpsc::Receiver<Stream>,
    runtime: Arc<dyn Runtime>,
    req: ExecRequest,
    stdout: bool,
    stderr: bool,
) {
    let want = expected(&req, stdout, stderr);
    let streams = match collect(&mut incoming, want, &conn).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "remotecommand: streams incomplete");
            conn.close().await;
            return;
        }
    };
    let error_id = streams.error.as_ref().map(|s| s.id);
    let stdout_id = streams.stdout.as_ref().map(|s| s.id);
    // With a TTY there is no stderr stream: the terminal merges both.
    let stderr_id = streams.stderr.as_ref().map(|s| s.id).or(stdout_id);
    let result = match req.start(runtime.as_ref()).await {
        Err(e) => Err(e.to_string()),
        Ok(session) => {
            let id = session.id.clone();
            let mut tasks = Vec::new();
            if let Some(mut s) = streams.stdin {
                let mut input = session.input;
                tasks.push(tokio::spawn(async move {
                    while let Some(chunk) = s.data.recv().await {
                        if input.write_all(&chunk).await.is_err() {
                            return;
                        }
                        let _ = input.flush().await;
                    }
                    // The client's FIN on stdin is the process's end of input.
                    let _ = input.shutdown().await;
                }));
            }
            if let Some(mut s) = streams.resize {
                let (rt, rq, id) = (runtime.clone(), req.clone(), id.clone());
                tasks.push(tokio::spawn(async move {
                    let mut pending = Vec::new();
                    while let Some(chunk) = s.data.recv().await {
                        pending.extend_from_slice(&chunk);
                        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=end).collect();
                            if let Some((w, h)) = parse_size(&line) {
                                rq.resize(rt.as_ref(), &id, w, h).await;
                            }
                        }
                    }
                }));
            }
            let mut output = session.output;
            let mut failure = None;
            loop {
                let item = tokio::select! {
                    item = futures::StreamExt::next(&mut output) => item,
                    // The client went away: an attached container may stay silent for ever.
                    _ = conn.closed() => break,
                };
                let Some(item) = item else { break };
                match item {
                    Ok((ch, data)) => {
                        let target = if ch == 2 { stderr_id } else { stdout_id };
                        if let Some(t) = target {
                            if !conn.send(t, &data).await {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            for t in tasks {
                t.abort();
            }
            match failure {
                Some(msg) => Err(msg),
                None => req.outcome(runtime.as_ref(), &id).await,
            }
        }
    };
    for id in [stdout_id, streams.stderr.as_ref().map(|s| s.id)]
        .into_iter()
        .flatten()
    {
        conn.finish(id).await;
    }
    if let Some(id) = error_id {
        let body = status_body(&req.command, result);
        conn.send(id, body.to_string().as_bytes()).await;
        conn.finish(id).await;
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_streams_follow_upstream() {
        let mut req = ExecRequest::default();
        assert_eq!(expected(&req, true, true), 3);
        req.stdin = true;
        assert_eq!(expected(&req, true, true), 4);
        req.tty = true;
        // stderr folds into the terminal; resize joins.
        assert_eq!(expected(&req, true, true), 4);
        assert_eq!(expected(&ExecRequest::default(), false, false), 1);
    }
}
