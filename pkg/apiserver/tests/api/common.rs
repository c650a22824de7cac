//! Shared helpers: a server plus a small JSON HTTP client.

use std::time::Duration;

use futures::StreamExt;
use kubelite_apiserver::testing::TestServer;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

pub struct Api {
    pub srv: TestServer,
    pub http: reqwest::Client,
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

impl Api {
    pub async fn start() -> Api {
        let srv = tokio::time::timeout(Duration::from_secs(60), TestServer::start())
            .await
            .expect("start timed out")
            .expect("server starts");
        Api {
            srv,
            http: reqwest::Client::new(),
        }
    }

    pub async fn with_server(srv: TestServer) -> Api {
        Api {
            srv,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.srv.url(), path)
    }

    pub async fn send(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = tokio::time::timeout(TIMEOUT, rb.send())
            .await
            .expect("request timed out")
            .expect("request");
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        (code, v, headers)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (c, v, _) = self.send(self.http.get(self.url(path))).await;
        (c, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (c, v, _) = self.send(self.http.post(self.url(path)).json(&body)).await;
        (c, v)
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let (c, v, _) = self.send(self.http.put(self.url(path)).json(&body)).await;
        (c, v)
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: Value) -> (u16, Value) {
        let rb = self
            .http
            .patch(self.url(path))
            .header("content-type", content_type)
            .body(body.to_string());
        let (c, v, _) = self.send(rb).await;
        (c, v)
    }

    pub async fn delete(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.http.delete(self.url(path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let (c, v, _) = self.send(rb).await;
        (c, v)
    }

    /// Open a watch and return a reader of events.
    pub async fn watch(&self, path: &str) -> Watch {
        let resp = tokio::time::timeout(TIMEOUT, self.http.get(self.url(path)).send())
            .await
            .expect("watch timed out")
            .expect("watch");
        assert_eq!(resp.status().as_u16(), 200, "watch status");
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        assert_eq!(ct, "application/json;stream=watch");
        Watch {
            stream: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }
}

pub struct Watch {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event, or None when the server closed the stream. Panics after TIMEOUT.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(TIMEOUT)
            .await
            .expect("watch event timed out")
    }

    /// Err(()) on timeout.
    pub async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(Some(serde_json::from_slice(&line).expect("event is JSON")));
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Err(()),
                Ok(None) => return Ok(None),
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.expect("chunk")),
            }
        }
    }
}

pub fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

pub fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

pub fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

pub fn rv(v: &Value) -> i64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("numeric rv")
}

/// Run the real kubectl against `api`; returns (exit code, stdout, stderr).
pub async fn kubectl(
    api: &Api,
    cache: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = kubectl_command(api, cache, args);
    cmd.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    });
    let mut child = cmd.spawn().expect("spawn kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("kubectl finished in time")
        .expect("kubectl ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn kubectl_command(
    api: &Api,
    cache: &std::path::Path,
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(api.srv.kubeconfig_path())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}
