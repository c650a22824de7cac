//! The apiserver's side of a kubelet connection: dial, HTTP/1.1 handshake (with upgrades), and
//! the error texts upstream shows when that fails.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{ApiError, Failure};

/// How long dialing a kubelet may take (upstream's dialer uses 30 s; a local cluster answers
/// or refuses at once, so waiting longer only delays the error).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL scheme the kubelet is reached with. Plain HTTP until kubelets serve TLS.
pub const SCHEME: &str = "http";

/// A 500 without a reason: what upstream answers for errors that are not API statuses
/// (dial failures, broken backend connections).
pub fn plain_500(message: String) -> ApiError {
    Failure {
        code: 500,
        reason: "",
        message,
        target: None,
        causes: Vec::new(),
    }
    .into()
}

/// Go's wording of a dial failure (`dial tcp 10.0.0.1:10250: connect: connection refused`),
/// which is what users of upstream clusters search for.
fn dial_error(authority: &str, err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let what = match err.kind() {
        K::ConnectionRefused => "connect: connection refused".to_string(),
        K::TimedOut => "i/o timeout".to_string(),
        K::HostUnreachable => "connect: no route to host".to_string(),
        K::NetworkUnreachable => "connect: network is unreachable".to_string(),
        _ => err.to_string(),
    };
    format!("dial tcp {authority}: {what}")
}

/// Open a connection to the kubelet at `authority` (`host:port`). The error is Go's dial
/// message, for the caller to wrap as upstream does for its verb.
pub async fn connect(authority: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(authority)).await {
        Err(_) => return Err(format!("dial tcp {authority}: i/o timeout")),
        Ok(Err(e)) => return Err(dial_error(authority, &e)),
        Ok(Ok(s)) => s,
    };
    // Interactive streams (exec keystrokes, log lines) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {authority}: {e}"))?;
    let peer = authority.to_string();
    tokio::spawn(async move {
        // Ends when the response (or the upgraded stream) is dropped.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(kubelet = %peer, error = %e, "kubelet connection ended");
        }
    });
    Ok(sender)
}

/// Percent-encode a query component (RFC 3986 unreserved characters pass).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v&k=v` from pairs, encoded.
pub fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_queries() {
        assert_eq!(
            query(&[("command", "sh".into()), ("command", "echo a&b=c/d".into())]),
            "command=sh&command=echo%20a%26b%3Dc%2Fd"
        );
        assert_eq!(
            encode_component("2026-01-01T00:00:00Z"),
            "2026-01-01T00%3A00%3A00Z"
        );
    }

    #[tokio::test]
    async fn refused_dial_reads_like_go() {
        // Bind then drop to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let err = connect(&format!("127.0.0.1:{port}"))
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
