//! How etcd / gRPC failures become [`kubelite_storage::Error`]s.
//!
//! etcd reports its own conditions as gRPC statuses with fixed messages (see etcd's
//! `api/v3rpc/rpctypes`); the few the contract distinguishes are recognised here once, and each
//! call site turns them into the error that carries its context (key, revisions).

use std::future::Future;
use std::time::Duration;

use kubelite_storage::Error;
use tonic::Code;

/// One failed etcd call, classified.
#[derive(Debug)]
pub(crate) enum Failure {
    /// `mvcc: required revision has been compacted`.
    Compacted,
    /// `mvcc: required revision is a future revision`.
    FutureRevision,
    /// The request exceeded etcd's `--max-request-bytes` (or the gRPC message limit).
    TooLarge,
    /// etcd cannot be reached, has no leader, or did not answer in time; retrying may help.
    Unavailable(String),
    /// Anything else.
    Internal(String),
}

impl Failure {
    /// The generic mapping, for call sites where a condition has no more specific meaning.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::Compacted => Error::Internal("etcd: unexpected compacted revision".into()),
            Failure::FutureRevision => Error::Internal("etcd: unexpected future revision".into()),
            Failure::TooLarge => Error::Internal("etcd: request is too large".into()),
            Failure::Unavailable(msg) => Error::Unavailable(msg),
            Failure::Internal(msg) => Error::Internal(msg),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Compacted => f.write_str("required revision has been compacted"),
            Failure::FutureRevision => f.write_str("required revision is a future revision"),
            Failure::TooLarge => f.write_str("request is too large"),
            Failure::Unavailable(msg) | Failure::Internal(msg) => f.write_str(msg),
        }
    }
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Self {
        match e {
            etcd_client::Error::GRpcStatus(status) => {
                classify_status(status.code(), status.message())
            }
            etcd_client::Error::TransportError(e) => {
                Failure::Unavailable(format!("etcd transport: {e}"))
            }
            etcd_client::Error::IoError(e) => Failure::Unavailable(format!("etcd io: {e}")),
            etcd_client::Error::EndpointError(e) => {
                Failure::Unavailable(format!("etcd endpoint: {e}"))
            }
            other => Failure::Internal(format!("etcd client: {other}")),
        }
    }
}

/// Classifies one gRPC status by code and etcd's well-known messages.
fn classify_status(code: Code, message: &str) -> Failure {
    match code {
        Code::OutOfRange if message.contains("required revision has been compacted") => {
            Failure::Compacted
        }
        Code::OutOfRange if message.contains("required revision is a future revision") => {
            Failure::FutureRevision
        }
        Code::InvalidArgument if message.contains("request is too large") => Failure::TooLarge,
        // gRPC's own size check, before etcd sees the request.
        Code::ResourceExhausted if message.contains("larger than max") => Failure::TooLarge,
        // No leader, leader changed, request timed out, too many requests, shutting down.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            Failure::Unavailable(format!("etcd: {message}"))
        }
        // tonic reports a broken connection (etcd killed mid-stream) as Unknown.
        Code::Unknown if is_transport_message(message) => {
            Failure::Unavailable(format!("etcd connection: {message}"))
        }
        Code::ResourceExhausted if message.contains("too many requests") => {
            Failure::Unavailable(format!("etcd: {message}"))
        }
        _ => Failure::Internal(format!("etcd ({code:?}): {message}")),
    }
}

/// Whether an `Unknown` status comes from the HTTP/2 transport rather than from etcd (whose own
/// unknown errors start with `etcdserver:`).
fn is_transport_message(message: &str) -> bool {
    [
        "h2 protocol error",
        "transport error",
        "connection",
        "broken pipe",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Runs one etcd call with a deadline, so a dead or partitioned etcd yields
/// [`Failure::Unavailable`] instead of a hang.
pub(crate) async fn call<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(Failure::from),
        Err(_) => Err(Failure::Unavailable(format!(
            "etcd did not answer within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_etcd_conditions() {
        let f = classify_status(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert!(matches!(f, Failure::Compacted), "{f:?}");
        let f = classify_status(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        assert!(matches!(f, Failure::FutureRevision), "{f:?}");
        let f = classify_status(Code::InvalidArgument, "etcdserver: request is too large");
        assert!(matches!(f, Failure::TooLarge), "{f:?}");
        let f = classify_status(Code::Unavailable, "etcdserver: no leader");
        assert!(
            matches!(f, Failure::Unavailable(ref m) if m.contains("no leader")),
            "{f:?}"
        );
        let f = classify_status(
            Code::Unknown,
            "h2 protocol error: error reading a body from connection",
        );
        assert!(matches!(f, Failure::Unavailable(_)), "{f:?}");
        let f = classify_status(
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        );
        assert!(matches!(f, Failure::Internal(_)), "{f:?}");
    }

    #[test]
    fn generic_mapping_keeps_retryability() {
        assert!(matches!(
            Failure::Unavailable("x".into()).into_error(),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            Failure::Compacted.into_error(),
            Error::Internal(_)
        ));
    }

    #[tokio::test]
    async fn call_times_out_as_unavailable() {
        let never = std::future::pending::<Result<(), etcd_client::Error>>();
        match call(Duration::from_millis(10), never).await {
            Err(Failure::Unavailable(msg)) => assert!(msg.contains("did not answer")),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
}
