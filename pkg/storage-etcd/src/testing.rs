//! A real, throw-away etcd for tests and benchmarks: Debian's `etcd` (package `etcd-server`) on
//! 127.0.0.1 free ports with a temporary data dir, killed and removed on drop.
//!
//! It starts in well under a second: a single member with short heartbeat and election timeouts
//! (etcd fast-forwards its first election). fsync stays on, so write latency is real etcd's.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

/// Where Debian's `etcd-server` package installs the binary.
const DEBIAN_ETCD: &str = "/usr/bin/etcd";

/// How long a fresh etcd may take to answer reads.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// Why an [`EtcdServer`] could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("etcd binary not found at {DEBIAN_ETCD} or on PATH (install etcd-server)")]
    Missing,
    #[error("starting etcd: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd did not become healthy: {reason}; log tail:\n{log}")]
    Unhealthy { reason: String, log: String },
}

/// A running single-member etcd. Dropping it kills the process and deletes its data, also when
/// a test panics (drop runs during unwinding).
pub struct EtcdServer {
    child: Child,
    endpoint: String,
    // Dropped after `child` is killed (see `Drop`), removing the data dir and log.
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd with its data in a fresh temp dir and waits until it serves reads.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_in(&std::env::temp_dir(), &[]).await
    }

    /// Like [`EtcdServer::start`], with the temp dir created inside `parent` (benchmarks put it
    /// on the disk under test) and `extra_args` appended to etcd's flags (a repeated flag
    /// overrides the default, e.g. `--max-request-bytes=1572864`).
    pub async fn start_in(parent: &Path, extra_args: &[&str]) -> Result<Self, StartError> {
        let binary = find_binary()?;
        let mut last = None;
        // A free port can be taken by someone else between probing and etcd's bind: retry.
        for _ in 0..3 {
            match Self::try_start(&binary, parent, extra_args).await {
                Ok(server) => return Ok(server),
                Err(e @ StartError::Unhealthy { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StartError::Missing))
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The data directory (for tests that inspect or corrupt it).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn try_start(
        binary: &Path,
        parent: &Path,
        extra_args: &[&str],
    ) -> Result<Self, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("kubelite-etcd-")
            .tempdir_in(parent)?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(binary)
            .arg("--name=kubelite-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=kubelite-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            // Fast first election for a single member; fsync stays on.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            // Room for a MAX_VALUE_BYTES value plus key and txn framing.
            .arg("--max-request-bytes=2097152")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StartError::Missing,
                _ => StartError::Io(e),
            })?;
        let mut server = Self {
            child,
            endpoint: client_url,
            dir,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    /// Polls with a real read until etcd answers, the process exits, or the deadline passes.
    async fn wait_healthy(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        let mut reason = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(self.unhealthy(format!("etcd exited with {status}")));
            }
            match probe(&self.endpoint).await {
                Ok(()) => return Ok(()),
                Err(e) => reason = e,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(self.unhealthy(format!("not healthy within {HEALTHY_WITHIN:?}: {reason}")))
    }

    fn unhealthy(&self, reason: String) -> StartError {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        StartError::Unhealthy {
            reason,
            log: tail.join("\n"),
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Errors mean it already exited; either way it must be reaped before the dir goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One read against `endpoint`, with short timeouts.
async fn probe(endpoint: &str) -> Result<(), String> {
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
    let attempt = async {
        let mut client = Client::connect([endpoint], Some(opts)).await?;
        client.get("health", None).await.map(|_| ())
    };
    match tokio::time::timeout(Duration::from_secs(1), attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("read timed out".into()),
    }
}

/// Debian's binary, else whatever `etcd` is on PATH.
fn find_binary() -> Result<PathBuf, StartError> {
    if Path::new(DEBIAN_ETCD).exists() {
        return Ok(PathBuf::from(DEBIAN_ETCD));
    }
    let found = which("etcd");
    found.ok_or(StartError::Missing)
}

/// Resolves `name` on PATH (tests may read the environment; the library never does).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_serves_and_cleans_up() {
        let begun = Instant::now();
        let server = EtcdServer::start().await.expect("start etcd");
        let elapsed = begun.elapsed();
        assert!(elapsed < HEALTHY_WITHIN, "took {elapsed:?}");
        let data = server.data_dir();
        assert!(data.exists());
        let mut client = Client::connect([server.endpoint()], None)
            .await
            .expect("connect");
        client.put("k", "v", None).await.expect("put");
        let got = client.get("k", None).await.expect("get");
        assert_eq!(got.kvs()[0].value(), b"v");
        drop(server);
        assert!(!data.exists(), "data dir removed on drop");
    }
}
