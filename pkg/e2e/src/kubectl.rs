//! Runs the real `kubectl` binary against a test server: fixed `--kubeconfig`, a private discovery
//! cache, an optional namespace, and a timeout (the process is killed on expiry) on every call.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::wait_until;

/// The kubectl under test (a dispatcher that runs the release matching the server's minor).
pub const KUBECTL: &str = "kubectl";

/// How long one kubectl invocation may take before it is killed.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A kubectl bound to one server, one cache dir and optionally one namespace.
#[derive(Clone)]
pub struct Kubectl {
    // The binary to run: [`KUBECTL`] unless [`Kubectl::with_program`] chose a release.
    program: PathBuf,
    kubeconfig: PathBuf,
    // Shared by clones so a test's invocations reuse one discovery cache, and removed with the
    // last clone. Per test so that a cache never outlives the server it describes.
    cache: Arc<tempfile::TempDir>,
    namespace: Option<String>,
    timeout: Duration,
    // Print every invocation and its output (`KUBELITE_E2E_TRACE=1`), for debugging a test.
    trace: bool,
}

/// The kubectl releases installed beside the dispatcher (`kubectl.1.27` … `kubectl.1.33` in
/// the directory the `kubectl` on PATH resolves to), as (minor version, path), oldest first.
pub fn installed_releases() -> Result<Vec<(u32, PathBuf)>> {
    let path = std::env::var_os("PATH").context("PATH is not set")?;
    let dispatcher = std::env::split_paths(&path)
        .map(|dir| dir.join(KUBECTL))
        .find(|p| p.is_file())
        .context("no kubectl on PATH")?;
    let real = std::fs::canonicalize(&dispatcher)
        .with_context(|| format!("resolving {}", dispatcher.display()))?;
    let dir = real.parent().context("kubectl has no parent dir")?;
    let mut releases = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let minor = name
            .to_str()
            .and_then(|n| n.strip_prefix("kubectl.1."))
            .and_then(|m| m.parse::<u32>().ok());
        if let Some(minor) = minor {
            releases.push((minor, entry.path()));
        }
    }
    releases.sort();
    Ok(releases)
}

/// What one kubectl invocation did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// The command line, for error messages.
    pub command: String,
}

impl Output {
    /// Whether kubectl exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// This output if kubectl exited 0, else an error that shows both streams.
    pub fn ok(self) -> Result<Self> {
        if !self.success() {
            bail!("{} failed: {self}", self.command);
        }
        Ok(self)
    }

    /// This output if kubectl exited non-zero (for negative tests), else an error.
    pub fn failed(self) -> Result<Self> {
        if self.success() {
            bail!("{} succeeded but should have failed: {self}", self.command);
        }
        Ok(self)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Kubectl {
    /// A kubectl using `kubeconfig` and a fresh cache dir.
    pub fn new(kubeconfig: &Path) -> Result<Self> {
        let cache = tempfile::Builder::new()
            .prefix("kubelite-e2e-kubectl-cache-")
            .tempdir()
            .context("creating kubectl cache dir")?;
        Ok(Self {
            program: PathBuf::from(KUBECTL),
            kubeconfig: kubeconfig.to_path_buf(),
            cache: Arc::new(cache),
            namespace: None,
            timeout: INVOCATION_TIMEOUT,
            trace: std::env::var_os("KUBELITE_E2E_TRACE").is_some_and(|v| v == "1"),
        })
    }

    /// The same kubectl, passing `--namespace ns` on every call.
    pub fn in_namespace(&self, ns: &str) -> Self {
        Self {
            namespace: Some(ns.to_string()),
            ..self.clone()
        }
    }

    /// The same kubectl settings running another binary (e.g. one release beside the
    /// dispatcher, see [`installed_releases`]).
    pub fn with_program(&self, program: &Path) -> Self {
        Self {
            program: program.to_path_buf(),
            ..self.clone()
        }
    }

    /// The same kubectl with another per-invocation timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    fn command(&self, args: &[&str]) -> (Command, String) {
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.cache.path().display()));
        if let Some(ns) = &self.namespace {
            cmd.arg(format!("--namespace={ns}"));
        }
        cmd.args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.cache.path())
            .kill_on_drop(true);
        let line = format!("{} {}", self.program.display(), args.join(" "));
        (cmd, line)
    }

    /// Runs kubectl with `args`; an error only if it could not run or timed out.
    pub async fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_with_stdin(args, None).await
    }

    /// Runs kubectl with `args`, feeding `stdin` (e.g. a manifest for `-f -`).
    pub async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let (mut cmd, line) = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {line}"))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("kubectl stdin")?;
            pipe.write_all(input.as_bytes()).await?;
            // Closing stdin ends `-f -` input.
            drop(pipe);
        }
        // On timeout the future (and the child, kill_on_drop) is dropped: the process is killed.
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("{line} timed out after {:?}", self.timeout))??;
        let output = Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command: line,
        };
        if self.trace {
            eprintln!("$ {}\n{output}", output.command);
        }
        Ok(output)
    }

    /// Runs kubectl and returns stdout, failing unless it exited 0.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        Ok(self.run(args).await?.ok()?.stdout)
    }

    /// Runs kubectl expecting a non-zero exit; returns the output for inspection.
    pub async fn fails(&self, args: &[&str]) -> Result<Output> {
        self.run(args).await?.failed()
    }

    /// `kubectl apply -f -` with `yaml` on stdin.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Output> {
        self.run_with_stdin(&["apply", "-f", "-"], Some(yaml)).await
    }

    /// `kubectl create -f -` with `yaml` on stdin.
    pub async fn create_yaml(&self, yaml: &str) -> Result<Output> {
        self.run_with_stdin(&["create", "-f", "-"], Some(yaml))
            .await
    }

    /// `kubectl get <what> -o json`, parsed.
    pub async fn get_json(&self, what: &[&str]) -> Result<serde_json::Value> {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        let out = self.ok(&args).await?;
        serde_json::from_str(&out).with_context(|| format!("parsing kubectl output {out}"))
    }

    /// Starts a long-running kubectl (e.g. `get -w`) whose stdout is collected in the background.
    /// It is killed when the returned handle is dropped.
    pub fn spawn(&self, args: &[&str]) -> Result<Background> {
        let (mut cmd, line) = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {line}"))?;
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take(), stdout.clone());
        collect(child.stderr.take(), stderr.clone());
        Ok(Background {
            child,
            stdout,
            stderr,
            command: line,
        })
    }
}

/// Appends each line of `stream` to `sink` as it arrives.
fn collect<R>(stream: Option<R>, sink: Arc<Mutex<String>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
}

/// A kubectl running in the background; killed on drop.
pub struct Background {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    command: String,
}

impl Background {
    /// Everything printed to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Everything printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until stdout has a line for which `pred` holds; returns that line.
    pub async fn wait_for_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        self.wait_for(&self.stdout, timeout, pred).await
    }

    /// Waits until stderr has a line for which `pred` holds (e.g. a `-v=6` request log line
    /// showing that a watch is established); returns that line.
    pub async fn wait_for_stderr_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        self.wait_for(&self.stderr, timeout, pred).await
    }

    async fn wait_for(
        &self,
        stream: &Mutex<String>,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let read = || stream.lock().map(|s| s.clone()).unwrap_or_default();
        let found = wait_until(timeout, || async {
            Ok(read().lines().find(|l| pred(l)).map(str::to_string))
        })
        .await;
        found.with_context(|| {
            format!(
                "{}: no matching line; stdout:\n{}\nstderr:\n{}",
                self.command,
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// Whether the process has exited (and with what code).
    pub fn try_exit_code(&mut self) -> Result<Option<Option<i32>>> {
        Ok(self.child.try_wait()?.map(|s| s.code()))
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} still running after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    self.command,
                    self.stdout(),
                    self.stderr()
                )
            })??;
        // Let the collectors drain what is left in the pipes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(status.code())
    }

    /// Kills the process and waits for it.
    pub async fn kill(mut self) -> Result<(String, String)> {
        // An error means it already exited.
        let _ = self.child.kill().await;
        // Let the collectors drain what is left in the pipes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok((self.stdout(), self.stderr()))
    }
}
