//! `/portForward/{ns}/{pod}`: upstream's SPDY port-forward protocol (`portforward.k8s.io`),
//! either over a plain `Upgrade: SPDY/3.1` connection or tunnelled in WebSocket binary
//! messages (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+).
//!
//! Per local connection kubectl opens two streams with the same `requestid` and `port`
//! headers: `streamtype: error` (which it half-closes at once and reads to the end) and
//! `streamtype: data`. Once both are here the kubelet dials the pod's IP on that port and
//! copies bytes both ways; a failure is written as text to the error stream. Docker pods have
//! their own routable bridge IP, so dialling it is equivalent to upstream's dial inside the
//! pod's network namespace, except for sockets bound to the pod's loopback only.
//!
//! Clients other than kubectl (kube-rs) use the older channel protocol over WebSocket
//! (`v4.channel.k8s.io`, ports in the `port` query parameter): see [`serve_channels`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::streams::{Conn, Stream, CHUNK};

/// The `X-Stream-Protocol-Version` of the SPDY upgrade.
pub(crate) const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that tunnels the SPDY byte stream.
pub(crate) const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long a request waits for its second stream (upstream's default stream creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on dialling the pod.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the forwarded connections go.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `namespace/name`, for messages.
    pub pod: String,
    /// The pod uid, for messages.
    pub uid: String,
    /// The pod's IP.
    pub ip: IpAddr,
}

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    since: Option<tokio::time::Instant>,
}

/// Serves one port-forward connection until the client closes it.
pub(crate) async fn serve(conn: Conn, mut streams: mpsc::Receiver<Stream>, target: Target) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let stream = tokio::select! {
            s = streams.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = sweep.tick() => {
                // A request whose partner never came is abandoned, as upstream does.
                pending.retain(|_, p| p.since.is_some_and(|t| t.elapsed() < PAIR_TIMEOUT));
                continue;
            }
            _ = conn.closed() => break,
        };
        let request = stream.header("requestid").unwrap_or_default().to_string();
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        let pair = pending.entry(request.clone()).or_default();
        pair.since.get_or_insert_with(tokio::time::Instant::now);
        match kind.as_str() {
            "error" => pair.error = Some(stream),
            "data" => pair.data = Some(stream),
            other => {
                tracing::debug!(stream_type = other, "port-forward: unexpected stream type");
                conn.reset(stream.id, crate::spdy::RST_REFUSED_STREAM).await;
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
                ..
            }) = pending.remove(&request)
            {
                tokio::spawn(forward(conn.clone(), error, data, target.clone()));
            }
        }
    }
}

/// Upstream's message when the pod side cannot be reached.
fn failure(target: &Target, port: &str, err: impl std::fmt::Display) -> String {
    format!(
        "error forwarding port {port} to pod {}, uid {}: {err}",
        target.pod, target.uid
    )
}

async fn forward(conn: Conn, error: Stream, data: Stream, target: Target) {
    // kubectl half-closes the error stream right away; nothing arrives on it.
    let Stream { id: error_id, .. } = error;
    let data_id = data.id;
    let port_header = data.header("port").unwrap_or_default().to_string();
    let port = match port_header.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            let msg = format!("invalid port header {port_header:?}");
            conn.send(error_id, msg.as_bytes()).await;
            conn.finish(error_id).await;
            conn.finish(data_id).await;
            return;
        }
    };
    let dial = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((target.ip, port))).await;
    let tcp = match dial {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let msg = failure(&target, &port_header, e);
            tracing::debug!(%msg, "port-forward: dial failed");
            conn.send(error_id, msg.as_bytes()).await;
            conn.finish(error_id).await;
            conn.finish(data_id).await;
            return;
        }
        Err(_) => {
            let msg = failure(&target, &port_header, "dial timed out");
            conn.send(error_id, msg.as_bytes()).await;
            conn.finish(error_id).await;
            conn.finish(data_id).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let mut inbound = data.data;
    // Client → pod; the client's FIN becomes a TCP half-close toward the pod.
    let upload = tokio::spawn(async move {
        while let Some(chunk) = inbound.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to_pod.shutdown().await;
    });
    // Pod → client, until the pod closes its side.
    let mut buf = vec![0u8; CHUNK];
    let mut failed = None;
    loop {
        let n = tokio::select! {
            n = from_pod.read(&mut buf) => n,
            _ = conn.closed() => break,
        };
        match n {
            Ok(0) => break,
            Ok(n) => {
                if !conn.send(data_id, &buf[..n]).await {
                    break;
                }
            }
            Err(e) => {
                failed = Some(failure(&target, &port_header, e));
                break;
            }
        }
    }
    conn.finish(data_id).await;
    if let Some(msg) = failed {
        conn.send(error_id, msg.as_bytes()).await;
    }
    // kubectl waits for the error stream to end before it forgets the connection.
    conn.finish(error_id).await;
    upload.abort();
}

/// The plain WebSocket port-forward subprotocol (kube-rs and other non-kubectl clients): per
/// requested port `i`, channel `2i` carries data and `2i+1` errors, each channel's first
/// server message being the port as little-endian u16.
pub(crate) const CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

/// The ports of a WebSocket port-forward: every `port` query value, comma-separated lists
/// included (the apiserver joins kubectl's `ports` with commas).
pub(crate) fn parse_ports(pairs: &[(String, String)]) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "port") {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("invalid port {p:?}")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

fn channel_frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// Serves the channel protocol: one pod connection per requested port for the life of the
/// socket, which is closed once every pod connection has ended.
pub(crate) async fn serve_channels(socket: WebSocket, target: Target, ports: Vec<u16>) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let mut writers = Vec::with_capacity(ports.len());
    let mut readers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, error_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, error_ch] {
            let _ = tx.send(channel_frame(ch, &port.to_le_bytes())).await;
        }
        let dial = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((target.ip, *port))).await;
        let tcp = match dial {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                let msg = failure(&target, &port.to_string(), e);
                let _ = tx.send(channel_frame(error_ch, msg.as_bytes())).await;
                writers.push(None);
                continue;
            }
            Err(_) => {
                let msg = failure(&target, &port.to_string(), "dial timed out");
                let _ = tx.send(channel_frame(error_ch, msg.as_bytes())).await;
                writers.push(None);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (mut from_pod, to_pod) = tcp.into_split();
        writers.push(Some(to_pod));
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n) = from_pod.read(&mut buf).await {
                if n == 0 || tx.send(channel_frame(data_ch, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }));
    }
    // From here on only the readers hold senders: `rx` ends when every pod side has closed.
    drop(tx);
    loop {
        tokio::select! {
            msg = incoming.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&ch, data)) = b.split_first() else { continue };
                    let slot = writers.get_mut(usize::from(ch / 2)).filter(|_| ch % 2 == 0);
                    if let Some(slot) = slot {
                        if let Some(w) = slot.as_mut() {
                            if w.write_all(data).await.is_err() {
                                *slot = None;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    for r in readers {
        r.abort();
    }
    let close = axum::extract::ws::CloseFrame {
        code: 1000,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spdy::{Decoder, Encoder, Frame};
    use bytes::{Bytes, BytesMut};

    /// Plays kubectl: opens the error and data streams for `port`, sends `payload` with FIN and
    /// returns what came back on (error, data) once the server ended both streams.
    async fn request(port: u16, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (conn, streams) = crate::streams::start(server);
        let target = Target {
            pod: "default/p".into(),
            uid: "u1".into(),
            ip: "127.0.0.1".parse().unwrap(),
        };
        tokio::spawn(serve(conn, streams, target));
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for (id, kind) in [(1, "error"), (3, "data")] {
            let headers = vec![
                ("streamtype".to_string(), kind.to_string()),
                ("port".to_string(), port.to_string()),
                ("requestid".to_string(), "0".to_string()),
            ];
            let syn = Frame::SynStream {
                id,
                associated: 0,
                priority: 0,
                fin: false,
                headers,
            };
            enc.encode(&syn, &mut wire).unwrap();
        }
        let fin_error = Frame::Data {
            id: 1,
            fin: true,
            data: Bytes::new(),
        };
        enc.encode(&fin_error, &mut wire).unwrap();
        let data = Frame::Data {
            id: 3,
            fin: true,
            data: Bytes::copy_from_slice(payload),
        };
        enc.encode(&data, &mut wire).unwrap();
        wr.write_all(&wire).await.unwrap();

        let mut dec = Decoder::new().unwrap();
        let mut buf = BytesMut::new();
        let (mut error, mut out) = (Vec::new(), Vec::new());
        let mut finished = (false, false);
        let read = async {
            while !(finished.0 && finished.1) {
                assert!(
                    rd.read_buf(&mut buf).await.unwrap() > 0,
                    "connection closed"
                );
                while let Some(f) = dec.decode(&mut buf).unwrap() {
                    if let Frame::Data { id, fin, data } = f {
                        let (sink, done) = if id == 1 {
                            (&mut error, &mut finished.0)
                        } else {
                            (&mut out, &mut finished.1)
                        };
                        sink.extend_from_slice(&data);
                        *done |= fin;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .unwrap();
        (error, out)
    }

    #[tokio::test]
    async fn forwards_to_the_pod_port_and_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got.reverse();
            s.write_all(&got).await.unwrap();
        });
        let (error, data) = request(port, b"olleh").await;
        assert_eq!(data, b"hello");
        assert!(error.is_empty(), "{}", String::from_utf8_lossy(&error));
    }

    #[test]
    fn ports_come_from_repeated_or_comma_separated_params() {
        let q = |pairs: &[(&str, &str)]| {
            let v: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            parse_ports(&v)
        };
        assert_eq!(
            q(&[("port", "80,8080"), ("port", "9")]).unwrap(),
            vec![80, 8080, 9]
        );
        assert!(q(&[]).is_err());
        assert!(q(&[("port", "0")]).is_err());
        assert!(q(&[("port", "http")]).is_err());
    }

    #[tokio::test]
    async fn reports_a_refused_port_on_the_error_stream() {
        // Bind and drop to find a port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (error, data) = request(port, b"x").await;
        let msg = String::from_utf8_lossy(&error);
        assert!(
            msg.starts_with(&format!(
                "error forwarding port {port} to pod default/p, uid u1:"
            )),
            "{msg}"
        );
        assert!(data.is_empty());
    }
}
