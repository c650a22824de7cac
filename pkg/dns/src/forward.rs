//! Forwarding names outside the cluster zone to the upstream resolvers (CoreDNS's `forward .
//! /etc/resolv.conf`): UDP first, TCP when the UDP answer is truncated, the next upstream when one
//! does not answer in time.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};
use tracing::debug;

/// The EDNS payload size advertised upstream (the DNS flag day 2020 recommendation).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The forwarder's upstreams and timing.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    /// Time allowed per upstream attempt (UDP plus a TCP retry).
    per_upstream: Duration,
    /// Rotates the first upstream tried, spreading load like CoreDNS's default random policy
    /// without needing a random source.
    next: AtomicUsize,
}

impl Forwarder {
    /// A forwarder over `upstreams`, trying each for at most `per_upstream`.
    pub fn new(upstreams: Vec<SocketAddr>, per_upstream: Duration) -> Self {
        Self {
            upstreams,
            per_upstream,
            next: AtomicUsize::new(0),
        }
    }

    /// Asks the upstreams for `query`; `None` when none answered (the caller sends SERVFAIL).
    pub async fn resolve(&self, query: &Query, recursion_desired: bool) -> Option<Message> {
        let n = self.upstreams.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let upstream = self.upstreams[(start + i) % n];
            match self.exchange(upstream, query, recursion_desired).await {
                Ok(msg) => return Some(msg),
                Err(e) => debug!(%upstream, error = %e, "upstream did not answer"),
            }
        }
        None
    }

    async fn exchange(
        &self,
        upstream: SocketAddr,
        query: &Query,
        recursion_desired: bool,
    ) -> std::io::Result<Message> {
        let deadline = Instant::now() + self.per_upstream;
        let request = request(query, recursion_desired);
        let bytes = request.to_vec().map_err(std::io::Error::other)?;
        let id = request.id();
        let udp = timeout_at(deadline, udp_exchange(upstream, &bytes, id)).await?;
        if !udp.truncated() {
            return Ok(udp);
        }
        timeout_at(deadline, tcp_exchange(upstream, &bytes, id)).await
    }
}

/// A fresh recursive query with a random id and our EDNS payload size.
fn request(query: &Query, recursion_desired: bool) -> Message {
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(recursion_desired)
        .add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    msg.set_edns(edns);
    msg
}

async fn timeout_at<T>(
    deadline: Instant,
    fut: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    timeout(left, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out"))?
}

/// One UDP round trip on a fresh ephemeral socket; answers with another id (late replies to
/// someone else) are skipped.
async fn udp_exchange(upstream: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Message> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    sock.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        match Message::from_vec(&buf[..n]) {
            Ok(msg) if msg.id() == id && msg.message_type() == MessageType::Response => {
                return Ok(msg)
            }
            _ => continue,
        }
    }
}

/// One TCP round trip: two-byte length prefix each way (RFC 1035 4.2.2).
async fn tcp_exchange(upstream: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    let msg = Message::from_vec(&buf).map_err(std::io::Error::other)?;
    if msg.id() != id {
        return Err(std::io::Error::other(
            "upstream answered another id over tcp",
        ));
    }
    Ok(msg)
}
