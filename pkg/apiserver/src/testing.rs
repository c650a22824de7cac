//! `TestServer`: a real apiserver on 127.0.0.1:0 over a temporary embedded store (or a given
//! etcd), for tests of this crate and of every component that talks to the API. Shuts down on
//! drop.
//!
//! The server runs on its own thread with its own tokio runtime, so one `TestServer` can be
//! shared by tests that each run on their own runtime (`#[tokio::test]`), and it keeps serving
//! while the runtime that started it is blocked or gone.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use kubelite_storage::Storage;
use tokio::sync::oneshot;

use crate::{Config, ServerError, StorageConfig};

/// How long `drop` waits for the server thread to finish (so the store is closed before its
/// temp dir is removed).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A running server.
pub struct TestServer {
    url: String,
    kubeconfig: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    // In a Mutex only so `TestServer` is `Sync` (shared by tests on many threads).
    done: Mutex<mpsc::Receiver<()>>,
    storage: Arc<dyn Storage>,
    // Declared last: removed after the server thread has stopped.
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Start over a fresh embedded store in a temp dir.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_embedded_configured(|_| {}).await
    }

    /// Start over a fresh embedded store in a temp dir, with a tweaked [`Config`].
    pub async fn start_embedded_configured(
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Self, ServerError> {
        let dir = tempdir()?;
        let storage = StorageConfig::Embedded(dir.path().join("data"));
        Self::start_configured(storage, dir, tweak).await
    }

    /// Start over an etcd at `endpoint` (keys under a fresh random prefix, so servers sharing
    /// one etcd do not see each other).
    pub async fn start_with_etcd(endpoint: &str) -> Result<Self, ServerError> {
        let prefix = format!("/kubelite-test-{}", uuid::Uuid::new_v4().simple());
        let storage = StorageConfig::Etcd {
            endpoints: vec![endpoint.to_string()],
            prefix,
        };
        Self::start_with(storage, tempdir()?).await
    }

    /// Start with explicit storage and a short bookmark interval (1 s) so tests can see them.
    pub async fn start_with(
        storage: StorageConfig,
        dir: tempfile::TempDir,
    ) -> Result<Self, ServerError> {
        Self::start_configured(storage, dir, |_| {}).await
    }

    /// Start with explicit storage and a chance to adjust the [`Config`] (listen address and
    /// storage are set by the helper).
    pub async fn start_configured(
        storage: StorageConfig,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Self, ServerError> {
        let bind_err = |source| ServerError::Bind {
            addr: ([127, 0, 0, 1], 0).into(),
            source,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let mut config = Config {
            bookmark_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_millis(200),
            ..Config::default()
        };
        tweak(&mut config);
        config.listen = addr;
        config.storage = storage;
        let url = format!("http://{addr}");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&url)).map_err(ServerError::Serve)?;

        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<Arc<dyn Storage>, String>>();
        let (done_tx, done) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name(format!("test-apiserver-{}", addr.port()))
            .spawn(move || {
                server_thread(config, listener, stopped, ready_tx);
                let _ = done_tx.send(());
            })
            .map_err(ServerError::Serve)?;
        let storage = ready_rx
            .await
            .map_err(|_| ServerError::Config("test server thread exited".into()))?
            .map_err(ServerError::Config)?;
        let server = Self {
            url,
            kubeconfig,
            stop: Some(stop),
            done: Mutex::new(done),
            storage,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> Result<(), ServerError> {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let probe = client
                .get(format!("{}/readyz", self.url))
                .timeout(Duration::from_secs(2))
                .send();
            if let Ok(r) = probe.await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ServerError::Config(
            "test server did not become ready within 30s".into(),
        ))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig file pointing at this server (no credentials).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The temp dir holding the store and kubeconfig.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's store (for tests that compact or inspect it).
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    /// A kube-rs client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        let uri: http::Uri = self
            .url
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1"));
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        match kube::Client::try_from(config) {
            Ok(c) => c,
            // A plain-HTTP client only fails to build with a broken TLS setup; a test helper
            // may stop the test there.
            Err(e) => panic!("building kube client: {e}"),
        }
    }
}

/// Open the store, signal readiness (or the error), and serve until stopped.
fn server_thread(
    config: Config,
    listener: std::net::TcpListener,
    stopped: oneshot::Receiver<()>,
    ready: oneshot::Sender<Result<Arc<dyn Storage>, String>>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("building the server runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let storage = match crate::open_storage(&config.storage).await {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("adopting the listener: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(storage.clone()));
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = crate::serve_with_storage(config, storage, listener, shutdown).await {
            tracing::error!(error = %e, "test server failed");
        }
    });
    // Background tasks (watch caches, lifecycle) end with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Ok(done) = self.done.lock() {
            let _ = done.recv_timeout(STOP_WAIT);
        }
    }
}

fn tempdir() -> Result<tempfile::TempDir, ServerError> {
    tempfile::tempdir().map_err(ServerError::Serve)
}

fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubelite\n  cluster:\n    server: {url}\n\
         users:\n- name: kubelite\n  user: {{}}\ncontexts:\n- name: kubelite\n  context:\n    cluster: kubelite\n    \
         user: kubelite\n    namespace: default\ncurrent-context: kubelite\npreferences: {{}}\n"
    )
}
