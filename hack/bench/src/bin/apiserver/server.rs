//! The API server under test: a `kubelite-apiserver` child process on a free 127.0.0.1 port, so
//! the load generator never shares its runtime or its memory figures. Killed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a fresh server may take to answer `/healthz`.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Which store the server is started over.
pub enum Backend {
    /// `--storage embedded:<dir>`.
    Embedded(PathBuf),
    /// `--etcd-servers <url> --etcd-prefix <prefix>`.
    Etcd { endpoint: String, prefix: String },
}

/// A running `kubelite-apiserver`.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `binary` over `backend`, logging (warnings only) to `log`, and waits for `/healthz`.
    pub async fn start(binary: &Path, backend: &Backend, log: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
        match backend {
            Backend::Embedded(dir) => {
                cmd.arg("--storage")
                    .arg(format!("embedded:{}", dir.display()));
            }
            Backend::Etcd { endpoint, prefix } => {
                cmd.arg("--etcd-servers")
                    .arg(endpoint)
                    .arg("--etcd-prefix")
                    .arg(prefix);
            }
        }
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            // Per-request logging would be part of what we measure; keep only warnings.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now and at its peak (VmRSS, VmHWM), in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .context("reading the server's /proc status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc status"))?;
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .with_context(|| format!("malformed {name} line"))?
                .parse()
                .with_context(|| format!("malformed {name} value"))?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()?;
        let deadline = Instant::now() + READY_WITHIN;
        let url = format!("{}/healthz", self.base);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("server exited with {status}; log:\n{}", self.log_tail());
            }
            if let Ok(resp) = client.get(&url).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "server not ready within {READY_WITHIN:?}; log:\n{}",
            self.log_tail()
        )
    }

    /// The last lines of the server's log (for errors).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // An error means it already exited; either way reap it before its data dir goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `kubelite-apiserver` next to this binary (both are built into target/release).
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this binary")?;
    let dir = me.parent().context("this binary has no directory")?;
    Ok(dir.join("kubelite-apiserver"))
}
