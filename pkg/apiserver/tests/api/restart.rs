//! A server restarted over the same embedded store: objects are back, bootstrap is idempotent
//! and revisions continue.

use std::time::Duration;

use kubelite_apiserver::{Config, StorageConfig};
use serde_json::json;
use tokio::net::TcpListener;

use crate::common::{cm, rv, TIMEOUT};

async fn start(
    dir: std::path::PathBuf,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        storage: StorageConfig::Embedded(dir.clone()),
        shutdown_grace: Duration::from_millis(100),
        ..Config::default()
    };
    // The previous server's store may still be closing (its file lock is released when the
    // last background task drops it): reopen until it is free.
    let storage = {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match kubelite_apiserver::open_storage(&config.storage).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "reopen: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        kubelite_apiserver::serve_with_storage(config, storage, listener, shutdown)
            .await
            .expect("server runs");
    });
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "server never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (url, stop, task)
}

#[tokio::test]
async fn restarted_server_over_same_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let http = reqwest::Client::new();
    let (url, stop, task) = start(dir.clone()).await;
    let created: serde_json::Value = http
        .post(format!("{url}/api/v1/namespaces/default/configmaps"))
        .json(&cm("keep", json!({"a": "b"})))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let _ = stop.send(());
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("stops")
        .expect("task");

    let (url, stop, task) = start(dir).await;
    let got: serde_json::Value = http
        .get(format!("{url}/api/v1/namespaces/default/configmaps/keep"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    let svc: serde_json::Value = http
        .get(format!(
            "{url}/api/v1/namespaces/default/services/kubernetes"
        ))
        .send()
        .await
        .expect("get svc")
        .json()
        .await
        .expect("json");
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    let next: serde_json::Value = http
        .post(format!("{url}/api/v1/namespaces/default/configmaps"))
        .json(&cm("next", json!({})))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert!(rv(&next) > rv(&created));
    let _ = stop.send(());
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("stops")
        .expect("task");
}

#[test]
fn test_server_outlives_the_runtime_that_started_it() {
    let first = tokio::runtime::Runtime::new().expect("runtime");
    let srv = first
        .block_on(async {
            tokio::time::timeout(TIMEOUT, kubelite_apiserver::testing::TestServer::start()).await
        })
        .expect("timely")
        .expect("server");
    drop(first);
    let second = tokio::runtime::Runtime::new().expect("runtime");
    let code = second.block_on(async {
        let resp = tokio::time::timeout(TIMEOUT, reqwest::get(format!("{}/readyz", srv.url())))
            .await
            .expect("timely")
            .expect("readyz");
        resp.status().as_u16()
    });
    assert_eq!(code, 200);
    drop(second);
    // Dropping outside any runtime stops the server thread cleanly.
    drop(srv);
}

#[test]
fn test_server_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<kubelite_apiserver::testing::TestServer>();
}
