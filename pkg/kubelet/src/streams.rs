//! The server side of a SPDY/3.1 connection (what Go's spdystream is for kubectl): every
//! stream the client opens is answered with SYN_REPLY and handed out with its headers and an
//! inbound data channel; writes go through one writer task that owns the outbound header
//! compression. Also the byte pipe that carries SPDY inside WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`), and the HTTP `Upgrade: SPDY/3.1` handshake.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::spdy::{Decoder, Encoder, Frame, Headers};

/// How many inbound data frames may queue per stream before the connection reader waits.
const STREAM_QUEUE: usize = 64;
/// Outbound data is cut into frames of at most this size.
pub(crate) const CHUNK: usize = 32 * 1024;

/// A stream the client opened.
pub(crate) struct Stream {
    /// Its id (odd: client-initiated).
    pub id: u32,
    /// The SYN_STREAM headers (`streamtype`, `port`, `requestid`, ...).
    pub headers: Headers,
    /// Inbound payload; ends when the client half-closes (FIN) or resets the stream.
    pub data: mpsc::Receiver<Bytes>,
}

impl Stream {
    /// Header `name` of the SYN_STREAM.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        crate::spdy::header(&self.headers, name)
    }
}

enum Out {
    Frame(Frame),
    Close,
}

/// The write side of a connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn {
    tx: mpsc::Sender<Out>,
    done: CancellationToken,
}

impl Conn {
    async fn frame(&self, f: Frame) -> bool {
        self.tx.send(Out::Frame(f)).await.is_ok()
    }

    /// Sends `data` on stream `id` (in frames of at most [`CHUNK`]); false once the connection
    /// is gone.
    pub(crate) async fn send(&self, id: u32, data: &[u8]) -> bool {
        for part in data.chunks(CHUNK) {
            let frame = Frame::Data {
                id,
                fin: false,
                data: Bytes::copy_from_slice(part),
            };
            if !self.frame(frame).await {
                return false;
            }
        }
        true
    }

    /// Half-closes stream `id` from our side (empty DATA with FIN).
    pub(crate) async fn finish(&self, id: u32) {
        let _ = self
            .frame(Frame::Data {
                id,
                fin: true,
                data: Bytes::new(),
            })
            .await;
    }

    /// Resets stream `id`.
    pub(crate) async fn reset(&self, id: u32, status: u32) {
        let _ = self.frame(Frame::RstStream { id, status }).await;
    }

    /// Sends GOAWAY and closes the transport once queued frames are written.
    pub(crate) async fn close(&self) {
        let _ = self.tx.send(Out::Close).await;
    }

    /// Resolves when the connection is finished (either side closed it).
    pub(crate) async fn closed(&self) {
        self.done.cancelled().await
    }
}

/// Starts serving a SPDY connection over `io`: the returned receiver yields each stream the
/// client opens (already replied to), in order.
pub(crate) fn start<IO>(io: IO) -> (Conn, mpsc::Receiver<Stream>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel(256);
    let (accept_tx, accept_rx) = mpsc::channel(64);
    let done = CancellationToken::new();
    let conn = Conn {
        tx,
        done: done.clone(),
    };
    tokio::spawn(write_loop(wr, rx, done.clone()));
    tokio::spawn(read_loop(rd, conn.clone(), accept_tx));
    (conn, accept_rx)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Out>,
    done: CancellationToken,
) {
    let mut enc = Encoder::new();
    let mut last_accepted = 0;
    loop {
        let out = tokio::select! {
            o = rx.recv() => o,
            _ = done.cancelled() => None,
        };
        let mut buf = Vec::new();
        let closing = match out {
            Some(Out::Frame(f)) => {
                if let Frame::SynReply { id, .. } = &f {
                    last_accepted = *id;
                }
                if let Err(e) = enc.encode(&f, &mut buf) {
                    tracing::debug!(error = %e, "spdy: cannot encode a frame");
                    continue;
                }
                false
            }
            Some(Out::Close) | None => {
                let goaway = Frame::GoAway {
                    last_good: last_accepted,
                    status: 0,
                };
                let _ = enc.encode(&goaway, &mut buf);
                true
            }
        };
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        if closing {
            let _ = wr.shutdown().await;
            break;
        }
    }
    done.cancel();
}

async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, conn: Conn, accept: mpsc::Sender<Stream>) {
    let mut dec = match Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "spdy: no header decoder");
            conn.done.cancel();
            return;
        }
    };
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            let frame = match dec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "spdy: bad frame, closing the connection");
                    break 'read;
                }
            };
            match frame {
                Frame::SynStream {
                    id, fin, headers, ..
                } => {
                    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                    if !fin {
                        open.insert(id, tx);
                    }
                    // spdystream drops data on a stream until it has seen our reply.
                    conn.frame(Frame::SynReply {
                        id,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await;
                    let stream = Stream {
                        id,
                        headers,
                        data: rx,
                    };
                    if accept.send(stream).await.is_err() {
                        conn.reset(id, crate::spdy::RST_REFUSED_STREAM).await;
                    }
                }
                Frame::Data { id, fin, data } => {
                    if let Some(tx) = open.get(&id) {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            // Nobody reads this stream (e.g. kubectl's error stream): drop it.
                            open.remove(&id);
                        }
                    }
                    if fin {
                        open.remove(&id);
                    }
                }
                Frame::RstStream { id, .. } => {
                    open.remove(&id);
                }
                Frame::Ping(id) => {
                    conn.frame(Frame::Ping(id)).await;
                }
                Frame::GoAway { .. } => break 'read,
                // No flow control in spdystream; settings and extra headers carry nothing we use.
                _ => {}
            }
        }
        let n = tokio::select! {
            n = rd.read_buf(&mut buf) => n,
            _ = conn.done.cancelled() => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(open);
    conn.done.cancel();
}

/// A byte stream carried in the binary messages of `socket` (each message a run of bytes, as
/// client-go's tunnelling connection writes them). Ends the socket with a normal close.
pub(crate) fn websocket_io(socket: WebSocket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut incoming) = socket.split();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let mut buf = vec![0u8; CHUNK];
        loop {
            tokio::select! {
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        let close = axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    });
    ours
}

/// Whether the request asks to upgrade to SPDY/3.1.
pub(crate) fn wants_spdy(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("SPDY/3.1"))
}

/// Whether the request asks to upgrade to a WebSocket.
pub(crate) fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Upstream's `httpstream.Handshake`: the first protocol the client lists (in
/// `X-Stream-Protocol-Version`, repeated or comma-separated) that we support; `Ok(None)` when
/// the client lists none (legacy clients); a 403 naming ours when nothing matches.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    ours: &[&str],
) -> Result<Option<String>, Box<Response>> {
    let theirs: Vec<&str> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if theirs.is_empty() {
        return Ok(None);
    }
    if let Some(p) = theirs.iter().find(|p| ours.contains(p)) {
        return Ok(Some(p.to_string()));
    }
    let msg = format!(
        "unable to upgrade: unable to negotiate protocol: client supports {theirs:?}, server supports {ours:?}"
    );
    Err(Box::new(
        Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("x-accepted-stream-protocol-versions", ours.join(", "))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(msg))
            .unwrap_or_else(|_| Response::new(Body::empty())),
    ))
}

/// The 101 answer to a SPDY upgrade, naming the negotiated protocol.
pub(crate) fn switching_protocols(protocol: Option<&str>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    if let Some(p) = protocol {
        b = b.header("x-stream-protocol-version", p);
    }
    b.body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A client opens a stream, sends data with FIN and pings; the server replies, delivers
    /// the data, echoes the ping and its own data reaches the client.
    #[tokio::test]
    async fn serves_streams_pings_and_data() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (conn, mut streams) = start(server);
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        let syn = Frame::SynStream {
            id: 1,
            associated: 0,
            priority: 0,
            fin: false,
            headers: vec![("streamtype".into(), "data".into())],
        };
        enc.encode(&syn, &mut wire).unwrap();
        let data = Frame::Data {
            id: 1,
            fin: true,
            data: Bytes::from_static(b"ping?"),
        };
        enc.encode(&data, &mut wire).unwrap();
        enc.encode(&Frame::Ping(1), &mut wire).unwrap();
        cwr.write_all(&wire).await.unwrap();

        let mut s = tokio::time::timeout(Duration::from_secs(5), streams.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.header("streamType"), Some("data"));
        assert_eq!(s.data.recv().await.unwrap(), Bytes::from_static(b"ping?"));
        assert!(s.data.recv().await.is_none(), "FIN ends the stream");
        assert!(conn.send(1, b"pong!").await);
        conn.finish(1).await;
        conn.close().await;

        let mut dec = Decoder::new().unwrap();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let read = async {
            while crd.read_buf(&mut buf).await.unwrap() > 0 {
                while let Some(f) = dec.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap();
        assert!(got.contains(&Frame::SynReply {
            id: 1,
            fin: false,
            headers: vec![]
        }));
        assert!(got.contains(&Frame::Ping(1)));
        assert!(got.contains(&Frame::Data {
            id: 1,
            fin: false,
            data: Bytes::from_static(b"pong!")
        }));
        assert!(matches!(
            got.last(),
            Some(Frame::GoAway { last_good: 1, .. })
        ));
    }

    #[test]
    fn negotiates_like_upstream() {
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h, &["v4.channel.k8s.io"]).unwrap(), None);
        h.append(
            "x-stream-protocol-version",
            "v5.channel.k8s.io".parse().unwrap(),
        );
        h.append(
            "x-stream-protocol-version",
            "v4.channel.k8s.io, v3.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            negotiate(&h, &["v4.channel.k8s.io"]).unwrap().as_deref(),
            Some("v4.channel.k8s.io")
        );
        let refused = negotiate(&h, &["portforward.k8s.io"]).unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
}
