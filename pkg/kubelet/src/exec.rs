//! `/exec/{ns}/{pod}/{container}` and `/attach/{ns}/{pod}/{container}` over WebSocket
//! (`v5.channel.k8s.io`/`v4.channel.k8s.io`), and the runtime side both share with the SPDY
//! variant (`remotecommand`): starting the process (an exec, or an attach to the container's
//! main process), resizing its terminal and its final status.
//!
//! Binary frames start with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize;
//! in v5 the client closes stdin with `[255, 0]`. The status frame carries a `Status` object.

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::runtime::Runtime;

/// The WebSocket subprotocols exec speaks, best first.
pub(crate) const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecRequest {
    pub container_id: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub tty: bool,
    /// Attach to the container's own process instead of running `command`.
    pub attach: bool,
}

impl ExecRequest {
    /// Starts the exec, or attaches to the container.
    pub(crate) async fn start(
        &self,
        runtime: &dyn Runtime,
    ) -> crate::runtime::Result<crate::runtime::ExecSession> {
        if self.attach {
            runtime
                .attach(&self.container_id, self.stdin, self.tty)
                .await
        } else {
            runtime
                .exec(&self.container_id, &self.command, self.stdin, self.tty)
                .await
        }
    }

    /// Resizes the terminal of session `id` (an exec id, or the container for attach).
    pub(crate) async fn resize(&self, runtime: &dyn Runtime, id: &str, width: u16, height: u16) {
        if width == 0 || height == 0 {
            return;
        }
        let r = if self.attach {
            runtime.resize(&self.container_id, width, height).await
        } else {
            runtime.exec_resize(id, width, height).await
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "terminal resize failed");
        }
    }

    /// The status to report once the output ended: the exec's exit code; an attach ends
    /// successfully when the stream does (upstream reports no exit code for attach).
    pub(crate) async fn outcome(&self, runtime: &dyn Runtime, id: &str) -> Result<i64, String> {
        if self.attach {
            return Ok(0);
        }
        runtime.exec_exit_code(id).await.map_err(|e| e.to_string())
    }
}

/// Parses a `{"Width":..,"Height":..}` terminal size message.
pub(crate) fn parse_size(data: &[u8]) -> Option<(u16, u16)> {
    let size: serde_json::Value = serde_json::from_slice(data).ok()?;
    let w = size.get("Width").and_then(|v| v.as_u64())?;
    let h = size.get("Height").and_then(|v| v.as_u64())?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// The final status frame body for an exit code (or a runtime error).
pub(crate) fn status_body(command: &[String], result: Result<i64, String>) -> serde_json::Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(msg) => json!({"metadata": {}, "status": "Failure", "message": msg}),
    }
}

/// A close frame with status 1000: clients treat a close without a status as an error.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: 1000,
        reason: "".into(),
    }))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// Runs one exec session over an upgraded socket.
pub(crate) async fn session(
    socket: WebSocket,
    runtime: std::sync::Arc<dyn Runtime>,
    req: ExecRequest,
) {
    let (mut sink, mut incoming) = socket.split();
    let exec = match req.start(runtime.as_ref()).await {
        Ok(e) => e,
        Err(e) => {
            let body = status_body(&req.command, Err(e.to_string()));
            let _ = sink.send(frame(3, body.to_string().as_bytes())).await;
            let _ = sink.send(normal_close()).await;
            return;
        }
    };
    let exec_id = exec.id.clone();
    let mut input = exec.input;
    let resize_rt = runtime.clone();
    let resize_id = exec_id.clone();
    let resize_req = req.clone();
    // Client → process: stdin bytes, stdin close, terminal resizes.
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = incoming.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            match data.first() {
                Some(0) => {
                    if input.write_all(&data[1..]).await.is_err() {
                        break;
                    }
                    let _ = input.flush().await;
                }
                Some(255) if data.get(1) == Some(&0) => {
                    let _ = input.shutdown().await;
                }
                Some(4) => {
                    if let Some((w, h)) = parse_size(&data[1..]) {
                        resize_req
                            .resize(resize_rt.as_ref(), &resize_id, w, h)
                            .await;
                    }
                }
                _ => {}
            }
        }
    });
    let mut output = exec.output;
    let mut failure = None;
    let mut reader = reader;
    loop {
        let item = tokio::select! {
            item = output.next() => item,
            // The client went away: an attached container may stay silent for ever.
            _ = &mut reader => break,
        };
        let Some(item) = item else { break };
        match item {
            Ok((ch, data)) => {
                if sink.send(frame(ch, &data)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    reader.abort();
    let result = match failure {
        Some(msg) => Err(msg),
        None => req.outcome(runtime.as_ref(), &exec_id).await,
    };
    let body = status_body(&req.command, result);
    let _ = sink.send(frame(3, body.to_string().as_bytes())).await;
    let _ = sink.send(normal_close()).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_frames() {
        assert_eq!(
            status_body(&[], Ok(0)),
            json!({"metadata": {}, "status": "Success"})
        );
        let f = status_body(&["false".to_string()], Ok(3));
        assert_eq!(f["reason"], "NonZeroExitCode");
        assert_eq!(f["details"]["causes"][0]["message"], "3");
    }
}
