//! pods/log, pods/exec and pods/portforward proxied to a FAKE kubelet (an axum server on
//! 127.0.0.1:0 registered as the pod's node), driven by the real kubectl where kubectl can
//! drive it, and at the byte level where the protocol is the kubelet's (SPDY port-forward).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::common::{kubectl, kubectl_command, Api, TIMEOUT};

/// Bound for every test here (kubectl starts a Go binary per call, on a busy 2-core box).
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Default)]
struct Fake {
    /// Raw query strings per kubelet path kind, in arrival order.
    queries: Arc<Mutex<Vec<(String, String)>>>,
    /// Lets a following log stream write its second line.
    release: Arc<Notify>,
}

impl Fake {
    fn record(&self, what: &str, q: Option<String>) {
        self.queries
            .lock()
            .expect("lock")
            .push((what.to_string(), q.unwrap_or_default()));
    }

    fn queries(&self, what: &str) -> Vec<String> {
        self.queries
            .lock()
            .expect("lock")
            .iter()
            .filter(|(w, _)| w == what)
            .map(|(_, q)| q.clone())
            .collect()
    }
}

struct FakeKubelet {
    addr: SocketAddr,
    state: Fake,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_fake() -> FakeKubelet {
    let state = Fake::default();
    let app = Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/exec/{ns}/{pod}/{container}", get(exec))
        .route("/attach/{ns}/{pod}/{container}", get(attach))
        .route("/portForward/{ns}/{pod}", axum::routing::any(portforward))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeKubelet { addr, state, task }
}

async fn logs(
    State(st): State<Fake>,
    Path((_ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let follow = q.as_deref().unwrap_or("").contains("follow=true");
    st.record("logs", q);
    if container == "waiting" {
        let msg = format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
        );
        return (StatusCode::BAD_REQUEST, msg).into_response();
    }
    if !follow {
        let text = format!("{container}: line 1\n{container}: line 2\n{container}: line 3\n");
        return text.into_response();
    }
    // First line at once, the second only when the test has seen the first: proves the
    // apiserver forwards each chunk without buffering.
    let release = st.release.clone();
    let chunks = futures::stream::unfold(0u8, move |step| {
        let release = release.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(Bytes::from("first\n")), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(Bytes::from("second\n")), 2))
                }
                _ => None,
            }
        }
    });
    Body::from_stream(chunks).into_response()
}

async fn exec(
    State(st): State<Fake>,
    Path((_ns, _pod, container)): Path<(String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
    RawQuery(q): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    st.record("exec", q);
    let command: Vec<String> = params
        .into_iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v)
        .collect();
    ws.protocols(["v5.channel.k8s.io"])
        .on_upgrade(move |socket| run_exec(socket, command, container))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = vec![channel];
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// The server side of `v5.channel.k8s.io`: `cat` echoes stdin until the client closes it,
/// `fail` writes to both outputs and exits 3, anything else prints its command line.
async fn run_exec(mut socket: WebSocket, command: Vec<String>, container: String) {
    let success = json!({"metadata": {}, "status": "Success"});
    let status = match command.first().map(String::as_str) {
        Some("cat") => {
            while let Some(Ok(msg)) = socket.recv().await {
                match msg {
                    Message::Binary(b) if b.first() == Some(&0) => {
                        let _ = socket.send(frame(1, &b[1..])).await;
                    }
                    // v5: stdin (stream 0) closed.
                    Message::Binary(b) if b.as_ref() == [255, 0] => break,
                    Message::Close(_) => return,
                    _ => {}
                }
            }
            success
        }
        Some("fail") => {
            let _ = socket.send(frame(1, b"out\n")).await;
            let _ = socket.send(frame(2, b"err\n")).await;
            json!({"metadata": {}, "status": "Failure",
                "message": "command terminated with non-zero exit code: exit status 3",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}})
        }
        _ => {
            let line = format!("{container}: {}\n", command.join(" "));
            let _ = socket.send(frame(1, line.as_bytes())).await;
            success
        }
    };
    let _ = socket.send(frame(3, status.to_string().as_bytes())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    // Let the client answer the close before the connection drops.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

/// An attach the kubelet refuses without upgrading: the apiserver must relay the answer.
async fn attach(State(st): State<Fake>, RawQuery(q): RawQuery) -> Response {
    st.record("attach", q);
    (
        StatusCode::BAD_REQUEST,
        "attach refused: container has no stdin",
    )
        .into_response()
}

/// A stand-in for the kubelet's SPDY port-forward: upgrade, then echo every byte.
async fn portforward(State(st): State<Fake>, mut req: Request) -> Response {
    st.record("portforward", req.uri().query().map(str::to_string));
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", "portforward.k8s.io")
        .body(Body::empty())
        .expect("101")
}

/// Register node `name` whose kubelet listens on 127.0.0.1:`port`.
async fn add_node(api: &Api, name: &str, port: u16) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    let (code, body) = api.post("/api/v1/nodes", node).await;
    assert_eq!(code, 201, "{body}");
}

async fn add_pod(api: &Api, name: &str, node: Option<&str>, containers: &[&str]) {
    let cs: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let mut spec = json!({"containers": cs});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec});
    let (code, body) = api.post("/api/v1/namespaces/default/pods", pod).await;
    assert_eq!(code, 201, "{body}");
}

/// Send a raw HTTP/1.1 request head; returns the stream, status code, lowercase head, and the
/// body (the bytes after the head for a 101, the Content-Length body otherwise).
async fn raw_request(api: &Api, head: &str) -> (TcpStream, u16, String, Vec<u8>) {
    let addr = api.srv.url().trim_start_matches("http://").to_string();
    let mut s = tokio::time::timeout(TIMEOUT, TcpStream::connect(&addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    let mut buf = Vec::new();
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(TIMEOUT, s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head_text = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let code: u16 = head_text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut body = buf[end..].to_vec();
    if code != 101 {
        let len: usize = head_text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(TIMEOUT, s.read(&mut chunk))
                .await
                .expect("body in time")
                .expect("read body");
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
    }
    (s, code, head_text, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_through_the_kubelet() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let api = Api::start().await;
        let fake = start_fake().await;
        add_node(&api, "n1", fake.addr.port()).await;
        add_pod(&api, "p", Some("n1"), &["c"]).await;
        add_pod(&api, "multi", Some("n1"), &["a", "b", "waiting"]).await;
        add_pod(&api, "pending", None, &["c"]).await;
        let cache = tempfile::tempdir().expect("cache dir");

        let (code, out, err) = kubectl(&api, cache.path(), &["logs", "p"], None).await;
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out, "c: line 1\nc: line 2\nc: line 3\n");

        let args = ["logs", "multi", "-c", "b", "--tail=2", "--timestamps", "--since=1h"];
        let (code, out, err) = kubectl(&api, cache.path(), &args, None).await;
        assert_eq!(code, 0, "stderr: {err}");
        assert!(out.starts_with("b: line 1"), "{out}");
        let q = fake.state.queries("logs").pop().expect("query recorded");
        assert!(q.contains("tailLines=2"), "{q}");
        assert!(q.contains("timestamps=true"), "{q}");
        assert!(q.contains("sinceSeconds=3600"), "{q}");
        assert!(!q.contains("container"), "{q}");

        // A kubelet 400 becomes a BadRequest with its text.
        let args = ["logs", "multi", "-c", "waiting"];
        let (code, _, err) = kubectl(&api, cache.path(), &args, None).await;
        assert_eq!(code, 1);
        assert!(
            err.contains("Error from server (BadRequest): container \"waiting\" in pod \"multi\" is waiting to start: ContainerCreating"),
            "{err}"
        );

        // Container defaulting and validation happen in the apiserver.
        let (code, body) = api.get("/api/v1/namespaces/default/pods/multi/log").await;
        assert_eq!(code, 400);
        assert_eq!(
            body["message"],
            "a container name must be specified for pod multi, choose one of: [a b waiting]"
        );
        let (code, body) = api
            .get("/api/v1/namespaces/default/pods/p/log?container=zz")
            .await;
        assert_eq!(code, 400);
        assert_eq!(body["message"], "container zz is not valid for pod p");
        assert_eq!(body["reason"], "BadRequest");
        let (code, body) = api.get("/api/v1/namespaces/default/pods/nope/log").await;
        assert_eq!(code, 404, "{body}");
        // Unscheduled: nothing to stream.
        let (code, body) = api.get("/api/v1/namespaces/default/pods/pending/log").await;
        assert_eq!(code, 204, "{body}");
        let (code, body, headers) = api
            .send(api.http.get(api.url("/api/v1/namespaces/default/pods/p/log")))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(headers["content-type"], "text/plain");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow_streams_each_line() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let api = Api::start().await;
        let fake = start_fake().await;
        add_node(&api, "n1", fake.addr.port()).await;
        add_pod(&api, "p", Some("n1"), &["c"]).await;
        let cache = tempfile::tempdir().expect("cache dir");

        let mut child = kubectl_command(&api, cache.path(), &["logs", "-f", "p"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn kubectl");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("first line while the kubelet still holds the stream")
            .expect("read");
        assert_eq!(first.as_deref(), Some("first"));
        fake.state.release.notify_one();
        let second = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("second line in time")
            .expect("read");
        assert_eq!(second.as_deref(), Some("second"));
        let status = tokio::time::timeout(TIMEOUT, child.wait())
            .await
            .expect("kubectl exits when the stream ends")
            .expect("wait");
        assert!(status.success(), "{status:?}");
        let q = fake.state.queries("logs").pop().expect("query");
        assert_eq!(q, "follow=true");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_relays_streams_and_exit_code() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let api = Api::start().await;
        let fake = start_fake().await;
        add_node(&api, "n1", fake.addr.port()).await;
        add_pod(&api, "p", Some("n1"), &["c"]).await;
        let cache = tempfile::tempdir().expect("cache dir");

        let args = ["exec", "p", "--", "echo", "hi there"];
        let (code, out, err) = kubectl(&api, cache.path(), &args, None).await;
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out, "c: echo hi there\n");
        let q = fake.state.queries("exec").pop().expect("query");
        assert_eq!(q, "stdout=1&stderr=1&command=echo&command=hi%20there");

        let (code, out, err) =
            kubectl(&api, cache.path(), &["exec", "p", "--", "fail"], None).await;
        assert_eq!(code, 3, "stdout: {out} stderr: {err}");
        assert_eq!(out, "out\n");
        assert!(err.contains("err\n"), "{err}");

        let args = ["exec", "-i", "p", "--", "cat"];
        let input = "hello\nworld\n";
        let (code, out, err) = kubectl(&api, cache.path(), &args, Some(input)).await;
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out, input);
        let q = fake.state.queries("exec").pop().expect("query");
        assert!(q.starts_with("stdin=1&stdout=1&stderr=1"), "{q}");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_upgrade_is_relayed_byte_for_byte() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let api = Api::start().await;
        let fake = start_fake().await;
        add_node(&api, "n1", fake.addr.port()).await;
        add_pod(&api, "p", Some("n1"), &["c"]).await;

        let head = "POST /api/v1/namespaces/default/pods/p/portforward?ports=8080 HTTP/1.1\r\n\
            Host: kubelite\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
            X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n";
        let (mut s, code, head, rest) = raw_request(&api, head).await;
        assert_eq!(code, 101, "{head}");
        assert!(
            head.contains("x-stream-protocol-version: portforward.k8s.io"),
            "{head}"
        );
        assert!(head.contains("upgrade: spdy/3.1"), "{head}");
        assert!(rest.is_empty());
        // Arbitrary bytes (not HTTP, not UTF-8) go through unchanged, both ways.
        let payload: Vec<u8> = (0u8..=255).cycle().take(100_000).collect();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(&payload).await.expect("send");
        };
        let recv = async {
            let mut got = vec![0u8; payload.len()];
            r.read_exact(&mut got).await.expect("echo");
            got
        };
        let (_, got) = tokio::time::timeout(TIMEOUT, async { tokio::join!(send, recv) })
            .await
            .expect("echo in time");
        assert!(got == payload, "echoed bytes differ");
        s.shutdown().await.expect("shutdown");
        let q = fake.state.queries("portforward").pop().expect("query");
        assert_eq!(q, "port=8080");

        // A kubelet that answers without upgrading is relayed as is.
        let head = "GET /api/v1/namespaces/default/pods/p/attach?stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
            Host: kubelite\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
        let (_s, code, head, body) = raw_request(&api, head).await;
        assert_eq!(code, 400, "{head}");
        assert_eq!(body, b"attach refused: container has no stdin");
        let q = fake.state.queries("attach").pop().expect("query");
        assert_eq!(q, "stdin=1&stdout=1&tty=1");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_kubelet_and_bad_requests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let api = Api::start().await;
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        add_node(&api, "gone", port).await;
        add_pod(&api, "p", Some("gone"), &["c"]).await;
        add_pod(&api, "orphan", Some("no-such-node"), &["c"]).await;
        add_pod(&api, "pending", None, &["c"]).await;

        let (code, body) = api.get("/api/v1/namespaces/default/pods/p/log?follow=true").await;
        assert_eq!(code, 500, "{body}");
        assert_eq!(
            body["message"],
            format!(
                "Get \"http://127.0.0.1:{port}/containerLogs/default/p/c?follow=true\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
        assert!(body.get("reason").is_none(), "{body}");

        let upgrade = |path: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nHost: kubelite\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
            )
        };
        let exec = "/api/v1/namespaces/default/pods/p/exec?command=ls&stdout=true";
        let (_s, code, head, body) = raw_request(&api, &upgrade(exec)).await;
        assert_eq!(code, 500, "{head}");
        let status: Value = serde_json::from_slice(&body).expect("status");
        assert_eq!(
            status["message"],
            format!("error dialing backend: dial tcp 127.0.0.1:{port}: connect: connection refused")
        );

        // Without an upgrade there is nothing to relay.
        let (code, body) = api.post(exec, json!({})).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["message"], "Upgrade request required");

        let orphan = "/api/v1/namespaces/default/pods/orphan/exec?command=ls&stdout=true";
        let (_s, code, head, body) = raw_request(&api, &upgrade(orphan)).await;
        assert_eq!(code, 404, "{head}");
        let status: Value = serde_json::from_slice(&body).expect("status");
        assert_eq!(status["message"], "nodes \"no-such-node\" not found");

        let pending = "/api/v1/namespaces/default/pods/pending/portforward";
        let (_s, code, head, body) = raw_request(&api, &upgrade(pending)).await;
        assert_eq!(code, 400, "{head}");
        let status: Value = serde_json::from_slice(&body).expect("status");
        assert_eq!(status["message"], "pod pending does not have a host assigned");

        let (code, body) = api.delete("/api/v1/namespaces/default/pods/p/log", None).await;
        assert_eq!(code, 405, "{body}");
    })
    .await
    .expect("test finished in time");
}
