//! envtest for Rust: a real kubelite API server on `127.0.0.1:0` over a temporary embedded
//! store, started inside the test process, optionally with kubelite's own controllers (the
//! garbage collector above all), so controller authors can test a `kube-runtime` controller
//! against the real API without a cluster, Docker or a kubelet.
//!
//! ```no_run
//! # use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
//! # async fn demo(crd: CustomResourceDefinition) -> Result<(), kubelite_envtest::Error> {
//! use kubelite_envtest::TestEnv;
//! let env = TestEnv::builder().garbage_collector().start().await?;
//! env.install_crd(&crd).await?; // returns once the CRD is Established and served
//! let client = env.client();    // a kube::Client, default namespace "default"
//! // ... run the controller on `client`, create objects, assert with `wait_for` ...
//! # Ok(()) }
//! ```
//!
//! Compared with controller-runtime's envtest (which downloads etcd and kube-apiserver
//! binaries), nothing is fetched or spawned: the server is kubelite's, on its own thread and
//! runtime, and everything is torn down when the [`TestEnv`] is dropped.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, ObjectMeta, PostParams};
use kubelite_apiserver::testing::TestServer;
use tokio::sync::oneshot;

/// How long [`TestEnv::install_crd`] waits for a CRD to be Established and served.
pub const CRD_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(50);

/// Errors of the test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server did not start.
    #[error("starting the apiserver: {0}")]
    Server(#[from] kubelite_apiserver::ServerError),
    /// A request to the API server failed.
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A condition did not hold within its deadline.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
    },
    /// A [`wait_for`] check failed (not merely "not yet").
    #[error("checking {what}: {source}")]
    Check {
        /// What was awaited.
        what: String,
        /// The check's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The kubeconfig file could not be read.
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running API server (and optionally controllers), torn down on drop.
///
/// The server lives on its own thread and tokio runtime, so it keeps serving while the test's
/// runtime is busy. Controllers, when enabled, run as a task on the runtime that called
/// [`Builder::start`] and are stopped before the server.
pub struct TestEnv {
    client: kube::Client,
    // Declared before `server`: controllers stop before the server they talk to.
    _controllers: Option<Controllers>,
    server: TestServer,
}

/// Options for [`TestEnv`]; see [`TestEnv::builder`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    controllers: Vec<String>,
}

impl Builder {
    /// Also run kubelite's controller-manager with these controllers (names as in
    /// `kubelite-controller-manager --controllers`, e.g. `garbagecollector`, `deployment`,
    /// `replicaset`). Without it only the API server runs, like controller-runtime's envtest.
    pub fn controllers(mut self, names: &[&str]) -> Self {
        self.controllers
            .extend(names.iter().map(|n| (*n).to_string()));
        self
    }

    /// Run the garbage collector, so objects whose owners are deleted go away as in a cluster
    /// (ownerReferences, background and foreground deletion).
    pub fn garbage_collector(self) -> Self {
        self.controllers(&["garbagecollector"])
    }

    /// Start the server (and controllers); returns once the server answers `/readyz`.
    pub async fn start(self) -> Result<TestEnv> {
        let server = TestServer::start().await?;
        let client = server.client();
        let controllers = if self.controllers.is_empty() {
            None
        } else {
            Some(Controllers::start(client.clone(), self.controllers))
        };
        Ok(TestEnv {
            client,
            _controllers: controllers,
            server,
        })
    }
}

impl TestEnv {
    /// Start an API server only (no controllers).
    pub async fn start() -> Result<Self> {
        Builder::default().start().await
    }

    /// Options: which kubelite controllers to run alongside.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A `kube::Client` for the server (default namespace `default`). Cheap to clone.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// A kubeconfig file for the server, e.g. for `kubectl --kubeconfig` or a controller binary
    /// started as a child process.
    pub fn kubeconfig_path(&self) -> &Path {
        self.server.kubeconfig_path()
    }

    /// The kubeconfig, parsed (for `kube::Config::from_custom_kubeconfig`).
    pub fn kubeconfig(&self) -> Result<kube::config::Kubeconfig> {
        Ok(kube::config::Kubeconfig::read_from(
            self.server.kubeconfig_path(),
        )?)
    }

    /// Create `crd` (or replace an existing one of that name) and wait until it is
    /// `Established` and its resource answers a list, so objects can be created at once.
    /// Returns the stored definition.
    pub async fn install_crd(
        &self,
        crd: &CustomResourceDefinition,
    ) -> Result<CustomResourceDefinition> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client());
        let name = crd.metadata.name.clone().unwrap_or_default();
        match crds.create(&PostParams::default(), crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let mut desired = crd.clone();
                desired.metadata.resource_version =
                    crds.get(&name).await?.metadata.resource_version;
                crds.replace(&name, &PostParams::default(), &desired)
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        let what = format!("CRD {name} to be established");
        let established = wait_for(&what, CRD_TIMEOUT, || async {
            let c = crds.get(&name).await?;
            Ok::<_, kube::Error>(is_established(&c).then_some(c))
        })
        .await?;
        // Established is set once the resource is in the served table; a list proves it.
        let api = self.dynamic_api(&established);
        let what = format!("CRD {name} to be served");
        wait_for(&what, CRD_TIMEOUT, || async {
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => Ok(Some(())),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
        Ok(established)
    }

    /// Create a namespace (tests that want isolation from `default`).
    pub async fn create_namespace(&self, name: &str) -> Result<Namespace> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let api: Api<Namespace> = Api::all(self.client());
        Ok(api.create(&PostParams::default(), &ns).await?)
    }

    fn dynamic_api(&self, crd: &CustomResourceDefinition) -> Api<DynamicObject> {
        let spec = &crd.spec;
        let version = spec
            .versions
            .iter()
            .find(|v| v.storage)
            .or_else(|| spec.versions.first())
            .map(|v| v.name.clone())
            .unwrap_or_default();
        let ar = ApiResource {
            group: spec.group.clone(),
            version: version.clone(),
            api_version: format!("{}/{version}", spec.group),
            kind: spec.names.kind.clone(),
            plural: spec.names.plural.clone(),
        };
        // A cluster-wide list works for both scopes.
        Api::all_with(self.client(), &ar)
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Polls `check` every 50 ms until it returns `Ok(Some(value))`, then returns the value.
/// `Ok(None)` means "not yet"; an error ends the wait at once. Fails with
/// [`Error::Timeout`] after `timeout`. This is the assertion helper for asynchronous
/// convergence: a controller reconciles in the background, the test waits for its effect.
pub async fn wait_for<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()) + POLL,
            check(),
        )
        .await;
        match attempt {
            Ok(Ok(Some(v))) => return Ok(v),
            Ok(Ok(None)) | Err(_) => {}
            Ok(Err(e)) => {
                return Err(Error::Check {
                    what: what.to_string(),
                    source: e.into(),
                })
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// kubelite's controller-manager running as a task; stopped on drop.
struct Controllers {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Controllers {
    fn start(client: kube::Client, names: Vec<String>) -> Self {
        let config = kubelite_controllers::Config {
            controllers: names,
            // A test has a handful of objects; two workers per controller are plenty.
            workers: 2,
            ..kubelite_controllers::Config::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = kubelite_controllers::run(client, config, shutdown).await {
                tracing::error!(error = %e, "envtest controllers failed");
            }
        });
        Self {
            stop: Some(stop),
            task,
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The runtime may be shutting down already (TestEnv dropped at the end of a test);
        // abort so no controller outlives the server.
        self.task.abort();
    }
}
