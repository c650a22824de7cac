//! The test runner behind the `harness = false` test binaries: every test runs once per storage
//! backend against one shared server per backend (one etcd for the etcd variant), each test in its
//! own namespace, with a timeout; the servers (and etcd) are stopped when the run ends.
//!
//! libtest's own harness cannot do that: it gives no hook after the last test, so a shared server
//! kept in a `static` would never be dropped and etcd would outlive the test process.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use kubelite_apiserver::testing::TestServer;
use kubelite_storage_etcd::testing::EtcdServer;
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::sync::OnceCell;

use crate::kubectl::Kubectl;

/// How long one test may run before it fails.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// A storage backend the shared server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default embedded (redb) store in a temp dir.
    Embedded,
    /// A real etcd started for this run.
    Etcd,
}

impl Backend {
    /// Both backends, in the order their trials are listed.
    pub const ALL: [Backend; 2] = [Backend::Embedded, Backend::Etcd];

    /// The trial-name prefix, e.g. `embedded`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Etcd => "etcd",
        }
    }
}

/// What a test gets: its server, a kubectl and a kube client bound to it, and a namespace name
/// of its own (not yet created: tests create it with [`Env::create_namespace`]).
pub struct Env {
    /// Which backend the server runs on.
    pub backend: Backend,
    /// The server's base URL.
    pub url: String,
    /// A kubeconfig pointing at the server.
    pub kubeconfig: PathBuf,
    /// A namespace name unique to this test and backend.
    pub ns: String,
    /// A kube-rs client for the server.
    pub client: kube::Client,
    /// kubectl with a private cache dir (no namespace bound; see [`Env::kubectl_ns`]).
    pub kubectl: Kubectl,
}

impl Env {
    /// kubectl passing `--namespace` with this test's namespace.
    pub fn kubectl_ns(&self) -> Kubectl {
        self.kubectl.in_namespace(&self.ns)
    }

    /// Creates this test's namespace (through kubectl, so it also proves `create namespace`).
    pub async fn create_namespace(&self) -> Result<()> {
        self.kubectl.ok(&["create", "namespace", &self.ns]).await?;
        Ok(())
    }

    /// A further namespace name unique to this test (`<ns>-<suffix>`), not created.
    pub fn other_ns(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.ns)
    }
}

type TestFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
type TestFn = Arc<dyn Fn(Env) -> TestFuture + Send + Sync>;

/// One registered test: a name and an async body run once per backend.
pub struct Test {
    name: &'static str,
    body: TestFn,
}

impl Test {
    /// Registers `body` under `name`.
    pub fn new<F, Fut>(name: &'static str, body: F) -> Self
    where
        F: Fn(Env) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self {
            name,
            body: Arc::new(move |env| Box::pin(body(env))),
        }
    }
}

/// Registers the listed async test functions (`async fn name(env: Env) -> anyhow::Result<()>`,
/// given as paths such as `watch::raw_watch`) and generates the test binary's `main`, running each against both backends.
#[macro_export]
macro_rules! e2e_main {
    ($($name:path),* $(,)?) => {
        fn main() {
            $crate::harness::run(vec![
                $($crate::harness::Test::new(stringify!($name), $name)),*
            ]);
        }
    };
}

/// The servers shared by every test of one binary, started on first use. A failed start is
/// remembered (as its message), so the remaining tests of that backend fail at once instead of
/// each retrying a slow start.
#[derive(Default)]
struct Servers {
    embedded: OnceCell<Result<Shared, String>>,
    // Field order matters: the API server is dropped before the etcd it talks to.
    etcd_api: OnceCell<Result<Shared, String>>,
    etcd: OnceCell<Result<EtcdServer, String>>,
}

/// One running server and what tests need of it. `TestServer` is `Send` but not `Sync` (it
/// waits for its server thread on drop), hence the mutex; tests only take it to build a client.
struct Shared {
    server: Mutex<TestServer>,
    url: String,
    kubeconfig: PathBuf,
}

impl Shared {
    fn new(server: TestServer) -> Self {
        Self {
            url: server.url().to_string(),
            kubeconfig: server.kubeconfig_path().to_path_buf(),
            server: Mutex::new(server),
        }
    }

    fn client(&self) -> Result<kube::Client> {
        let server = self
            .server
            .lock()
            .map_err(|_| anyhow::anyhow!("test server mutex poisoned"))?;
        Ok(server.client())
    }
}

impl Servers {
    async fn get(&self, backend: Backend) -> Result<&Shared> {
        let started = match backend {
            Backend::Embedded => {
                self.embedded
                    .get_or_init(|| async {
                        TestServer::start()
                            .await
                            .map(Shared::new)
                            .map_err(|e| format!("starting the embedded-store test server: {e}"))
                    })
                    .await
            }
            Backend::Etcd => {
                let etcd = self
                    .etcd
                    .get_or_init(|| async {
                        EtcdServer::start()
                            .await
                            .map_err(|e| format!("starting etcd: {e}"))
                    })
                    .await;
                let endpoint = match etcd {
                    Ok(etcd) => etcd.endpoint(),
                    Err(e) => anyhow::bail!("{e}"),
                };
                self.etcd_api
                    .get_or_init(|| async {
                        TestServer::start_with_etcd(&endpoint)
                            .await
                            .map(Shared::new)
                            .map_err(|e| format!("starting the etcd-backed test server: {e}"))
                    })
                    .await
            }
        };
        started.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Parses libtest-style arguments, runs every test against both backends, stops the servers and
/// exits with libtest's exit code.
pub fn run(tests: Vec<Test>) {
    let mut args = Arguments::from_args();
    // Tests mostly wait on kubectl processes and the server, so more than one per core overlaps
    // well; `--test-threads` still wins.
    if args.test_threads.is_none() {
        args.test_threads = Some(4);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot build the tokio runtime: {e}");
            std::process::exit(101);
        }
    };
    let servers = Arc::new(Servers::default());
    let mut trials = Vec::new();
    for test in &tests {
        for backend in Backend::ALL {
            let handle = runtime.handle().clone();
            let servers = servers.clone();
            let body = test.body.clone();
            let name = test.name;
            let trial_name = format!("{}::{}", backend.name(), name);
            trials.push(Trial::test(trial_name, move || {
                handle
                    .block_on(run_one(&servers, backend, name, body))
                    .map_err(|e| Failed::from(format!("{e:#}")))
            }));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // The trials (and their clones of `servers`) are gone: this drops the last reference, inside
    // the runtime because the servers' shutdown may need it.
    {
        let _inside = runtime.enter();
        drop(servers);
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    conclusion.exit();
}

async fn run_one(servers: &Servers, backend: Backend, name: &str, body: TestFn) -> Result<()> {
    let work = async {
        let server = servers.get(backend).await?;
        let env = Env {
            backend,
            url: server.url.clone(),
            kubectl: Kubectl::new(&server.kubeconfig)?,
            kubeconfig: server.kubeconfig.clone(),
            ns: namespace_for(name, backend),
            client: server.client()?,
        };
        body(env).await
    };
    tokio::time::timeout(TEST_TIMEOUT, work)
        .await
        .with_context(|| format!("test timed out after {TEST_TIMEOUT:?}"))?
}

/// A DNS-label namespace name for a test: `e2e-<test>-<backend>`; the test part is cut to 36
/// characters so that the backend suffix and [`Env::other_ns`] suffixes still fit in 63.
pub fn namespace_for(test: &str, backend: Backend) -> String {
    let test: String = test
        .replace("::", "-")
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(36)
        .collect();
    format!("e2e-{}-{}", test.trim_end_matches('-'), backend.name())
}
