//! Shared harness: a real apiserver, the controllers and a fake node agent, torn down on drop.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use kubelite_apiserver::testing::TestServer;
use kubelite_controllers::testing::{AgentOptions, FakeNodeAgent};
use kubelite_controllers::Config;

/// Everything a controller test needs.
pub struct Harness {
    pub client: kube::Client,
    pub agent: Option<FakeNodeAgent>,
    controllers: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _server: TestServer,
}

impl Harness {
    /// Path of a kubeconfig for the test apiserver (for kubectl).
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self._server.kubeconfig_path().to_path_buf()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.controllers.abort();
    }
}

/// Starts an apiserver, the given controllers and a fake agent with one node.
pub async fn start(config: Config, agent: AgentOptions) -> anyhow::Result<Harness> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    // With the namespace controller running, the server leaves namespace content to it (as
    // `kubelite up` does); otherwise both would finalize and race.
    let namespaces_here = config.enabled("namespace");
    let server = TestServer::start_embedded_configured(|c| {
        c.namespace_content_deletion = !namespaces_here;
    })
    .await?;
    let client = server.client();
    let agent = FakeNodeAgent::start(client.clone(), &["node-1", "node-2"], agent).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let c = client.clone();
    let controllers = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(err) = kubelite_controllers::run(c, config, shutdown).await {
            eprintln!("controllers failed: {err}");
        }
    });
    Ok(Harness {
        client,
        agent: Some(agent),
        controllers,
        stop: Some(stop),
        _server: server,
    })
}

/// Config running only `names`.
pub fn only(names: &[&str]) -> Config {
    Config {
        controllers: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Polls `f` every 50ms until it yields `Some`, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parses a YAML/JSON literal into a typed object.
pub fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test object parses")
}
