//! etcd-specific behaviour beyond the shared suite: connection failures, the key prefix,
//! finding a compaction someone else did, background compaction, and etcd going away.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use kubelite_storage::{Error, ListOptions, Storage};
use kubelite_storage_etcd::testing::EtcdServer;
use kubelite_storage_etcd::{EtcdOptions, EtcdStore};

const WAIT: Duration = Duration::from_secs(20);

fn opts(prefix: &str) -> EtcdOptions {
    EtcdOptions {
        prefix: prefix.to_string(),
        request_timeout: Duration::from_secs(2),
        compaction_interval: None,
        ..EtcdOptions::default()
    }
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable() -> anyhow::Result<()> {
    // A port that nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let begun = Instant::now();
    let res = EtcdStore::connect_with(&[format!("http://127.0.0.1:{port}")], opts("")).await;
    match res {
        Err(Error::Unavailable(msg)) => assert!(msg.contains("cannot reach etcd"), "{msg}"),
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("connecting to a closed port must fail"),
    }
    assert!(
        begun.elapsed() < Duration::from_secs(10),
        "fails within the timeout"
    );
    assert!(matches!(
        EtcdStore::connect(&[], "").await,
        Err(Error::Unavailable(_))
    ));
    Ok(())
}

#[tokio::test]
async fn keys_live_under_the_prefix() -> anyhow::Result<()> {
    let server = EtcdServer::start().await?;
    let a = EtcdStore::connect_with(&[server.endpoint()], opts("/cluster-a")).await?;
    let b = EtcdStore::connect_with(&[server.endpoint()], opts("/cluster-b")).await?;
    let kv = a
        .create("/registry/pods/default/p", Bytes::from("x"))
        .await?;
    assert_eq!(
        kv.key, "/registry/pods/default/p",
        "keys come back without the prefix"
    );
    assert!(b.get("/registry/pods/default/p").await?.is_none());
    assert_eq!(b.count("/registry/").await?, 0);
    let listed = a.list("/registry/", ListOptions::default()).await?;
    assert_eq!(listed.items, vec![kv.clone()]);

    let mut raw = etcd_client::Client::connect([server.endpoint()], None).await?;
    let got = raw.get("/cluster-a/registry/pods/default/p", None).await?;
    assert_eq!(got.kvs().len(), 1, "stored as prefix + key");
    assert_eq!(got.kvs()[0].mod_revision(), kv.mod_revision);
    Ok(())
}

#[tokio::test]
async fn finds_a_compaction_done_by_someone_else() -> anyhow::Result<()> {
    let server = EtcdServer::start().await?;
    let store = EtcdStore::connect_with(&[server.endpoint()], opts("")).await?;
    assert!(
        store.compacted_revision().await? <= 1,
        "nothing compacted yet"
    );
    let mut last = store.create("/k", Bytes::from("0")).await?;
    for i in 1..40 {
        last = store
            .update("/k", Bytes::from(i.to_string()), last.mod_revision)
            .await?;
    }
    let cut = last.mod_revision - 7;
    let mut raw = etcd_client::Client::connect([server.endpoint()], None).await?;
    raw.compact(cut, None).await?;
    assert_eq!(store.compacted_revision().await?, cut, "exact, by probing");
    match store
        .list(
            "/",
            ListOptions {
                revision: Some(cut - 1),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (cut - 1, cut));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Compacting below the point is a no-op; beyond the current revision is refused.
    store.compact(cut - 3).await?;
    assert!(matches!(
        store.compact(last.mod_revision + 100).await,
        Err(Error::FutureRevision { .. })
    ));
    assert!(matches!(
        store.watch("/", last.mod_revision + 100).await.err(),
        Some(Error::FutureRevision { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn background_compaction_keeps_a_window() -> anyhow::Result<()> {
    let server = EtcdServer::start().await?;
    let options = EtcdOptions {
        compaction_interval: Some(Duration::from_millis(100)),
        compaction_window: 5,
        ..opts("")
    };
    let store = EtcdStore::connect_with(&[server.endpoint()], options).await?;
    let mut last = store.create("/k", Bytes::from("0")).await?;
    for i in 1..20 {
        last = store
            .update("/k", Bytes::from(i.to_string()), last.mod_revision)
            .await?;
    }
    let want = last.mod_revision - 5;
    let deadline = Instant::now() + WAIT;
    loop {
        let c = store.compacted_revision().await?;
        if c >= want {
            assert!(c <= want, "keeps the window: compacted {c}, wanted {want}");
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not compacted to {want} (at {c})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The window is still readable.
    let at = store
        .list(
            "/",
            ListOptions {
                revision: Some(want),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(at.items.len(), 1);
    Ok(())
}

#[tokio::test]
async fn etcd_going_away_is_unavailable() -> anyhow::Result<()> {
    let server = EtcdServer::start().await?;
    let store = EtcdStore::connect_with(&[server.endpoint()], opts("")).await?;
    let start = store.current_revision().await?;
    let mut watch = store.watch("/w/", start).await?;
    drop(server);

    let end = tokio::time::timeout(WAIT, watch.next())
        .await
        .context("watch ends")?;
    assert!(
        matches!(end, None | Some(Err(Error::Unavailable(_)))),
        "the watch ends or fails as unavailable, got {end:?}"
    );
    match store.create("/w/x", Bytes::from("x")).await {
        Err(Error::Unavailable(_)) => {}
        other => panic!("writes to a dead etcd must be Unavailable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn etcd_request_limit_is_too_large() -> anyhow::Result<()> {
    // etcd's default request limit equals MAX_VALUE_BYTES, so a value at the limit plus its key
    // is refused by etcd itself; that must still read as TooLarge (413), not a 500.
    let server =
        EtcdServer::start_in(&std::env::temp_dir(), &["--max-request-bytes=1572864"]).await?;
    let store = EtcdStore::connect_with(&[server.endpoint()], opts("")).await?;
    let edge = Bytes::from(vec![b'y'; kubelite_storage::MAX_VALUE_BYTES]);
    match store.create("/big", edge).await {
        Err(Error::TooLarge { key, size, .. }) => {
            assert_eq!(
                (key.as_str(), size),
                ("/big", kubelite_storage::MAX_VALUE_BYTES)
            );
        }
        other => panic!("expected TooLarge from etcd, got {other:?}"),
    }
    assert!(store.get("/big").await?.is_none(), "nothing written");
    Ok(())
}
