//! `/exec/{ns}/{pod}/{container}` over WebSocket (`v5.channel.k8s.io`/`v4.channel.k8s.io`).
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
    let exec = match runtime
        .exec(&req.container_id, &req.command, req.stdin, req.tty)
        .await
    {
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
                    let size: serde_json::Value =
                        serde_json::from_slice(&data[1..]).unwrap_or_default();
                    let w = size.get("Width").and_then(|v| v.as_u64()).unwrap_or(0) as u16;
                    let h = size.get("Height").and_then(|v| v.as_u64()).unwrap_or(0) as u16;
                    if w > 0 && h > 0 {
                        let _ = resize_rt.exec_resize(&resize_id, w, h).await;
                    }
                }
                _ => {}
            }
        }
    });
    let mut output = exec.output;
    let mut failure = None;
    while let Some(item) = output.next().await {
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
        None => runtime
            .exec_exit_code(&exec_id)
            .await
            .map_err(|e| e.to_string()),
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
