//! Backend-specific behaviour beyond the shared suite: group commit isolation, the watch ring
//! handing over to disk replay and back, slow watchers, automatic compaction, shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kubelite_storage::{Error, Event, EventKind, ListOptions, Storage, WatchStream};
use kubelite_storage_embedded::{EmbeddedStore, Options};

const WAIT: Duration = Duration::from_secs(20);

fn store(opts: Options) -> (Arc<EmbeddedStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EmbeddedStore::open(dir.path(), opts).expect("open");
    (Arc::new(s), dir)
}

fn no_auto_compaction() -> Options {
    Options {
        compaction_interval: None,
        ..Options::default()
    }
}

async fn next(w: &mut WatchStream) -> Event {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_cas_in_a_batch_fails_only_itself() {
    let (s, _dir) = store(no_auto_compaction());
    let base = s.create("/cas/k", Bytes::from("0")).await.expect("create");
    // 64 racing updates with the same expected revision plus 64 unrelated creates: they share
    // transactions, yet exactly one update wins and every create lands.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s1 = s.clone();
        tasks.push(tokio::spawn(async move {
            s1.update("/cas/k", Bytes::from(format!("{i}")), base.mod_revision)
                .await
        }));
        let s2 = s.clone();
        tasks.push(tokio::spawn(async move {
            s2.create(&format!("/cas/other/{i:02}"), Bytes::from("x"))
                .await
        }));
    }
    let (mut won, mut conflicts, mut created) = (0, 0, 0);
    let mut revs = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(kv) if kv.key == "/cas/k" => {
                won += 1;
                revs.push(kv.mod_revision);
            }
            Ok(kv) => {
                created += 1;
                revs.push(kv.mod_revision);
            }
            Err(Error::Conflict { current, .. }) => {
                conflicts += 1;
                assert!(current.is_some(), "a conflict carries the current state");
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((won, conflicts, created), (1, 63, 64));
    revs.sort_unstable();
    let cur = s.current_revision().await.expect("rev");
    let expected: Vec<_> = (base.mod_revision + 1..=cur).collect();
    assert_eq!(
        revs, expected,
        "successful writes get dense revisions, failures none"
    );
    assert_eq!(s.count("/cas/other/").await.expect("count"), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_hands_over_from_disk_to_the_ring_without_gaps() {
    // A ring of 4 events: a watcher from revision 0 must read most history from disk, then
    // catch the live tail, while writes keep coming.
    let (s, _dir) = store(Options {
        watch_window: 4,
        ..no_auto_compaction()
    });
    for i in 0..40 {
        s.create(&format!("/w/{i:03}"), Bytes::from("v"))
            .await
            .expect("create");
    }
    let mut w = s.watch("/w/", 0).await.expect("watch");
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 40..120 {
                let kv = s
                    .create(&format!("/w/{i:03}"), Bytes::from("v"))
                    .await
                    .expect("create");
                if i % 3 == 0 {
                    s.update(&kv.key, Bytes::from("v2"), kv.mod_revision)
                        .await
                        .expect("update");
                }
            }
        })
    };
    writer.await.expect("writer");
    let cur = s.current_revision().await.expect("rev");
    let mut last = 0;
    while last < cur {
        let ev = next(&mut w).await;
        assert_eq!(ev.revision(), last + 1, "every revision once, in order");
        if ev.kind == EventKind::Update {
            assert_eq!(
                ev.prev.as_ref().map(|p| p.value.clone()),
                Some(Bytes::from("v"))
            );
        }
        last = ev.revision();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_watcher_reads_from_disk_and_other_prefixes_are_skipped() {
    let (s, _dir) = store(Options {
        watch_window: 8,
        ..no_auto_compaction()
    });
    let start = s.current_revision().await.expect("rev");
    let mut slow = s.watch("/slow/mine/", start).await.expect("watch");
    let mut mine = Vec::new();
    for i in 0..300 {
        if i % 2 == 0 {
            mine.push(
                s.create(&format!("/slow/mine/{i:04}"), Bytes::from("m"))
                    .await
                    .expect("c"),
            );
        } else {
            s.create(&format!("/slow/other/{i:04}"), Bytes::from("o"))
                .await
                .expect("c");
        }
    }
    for kv in mine {
        assert_eq!(next(&mut slow).await.kv, kv);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_compacted_past_gets_a_terminal_error() {
    let (s, _dir) = store(Options {
        watch_window: 2,
        ..no_auto_compaction()
    });
    let mut w = s.watch("/c/", 0).await.expect("watch");
    for i in 0..20 {
        s.create(&format!("/c/{i}"), Bytes::from("x"))
            .await
            .expect("create");
    }
    let cur = s.current_revision().await.expect("rev");
    s.compact(cur).await.expect("compact");
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Err(Error::Compacted { compacted, .. }))) => assert_eq!(compacted, cur),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, w.next())
        .await
        .expect("in time")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_keeps_what_events_after_the_point_need() {
    let (s, _dir) = store(no_auto_compaction());
    let a = s.create("/k/a", Bytes::from("a1")).await.expect("create");
    let b = s.create("/k/b", Bytes::from("b1")).await.expect("create");
    s.delete(&b.key, None).await.expect("delete");
    let a2 = s
        .update(&a.key, Bytes::from("a2"), a.mod_revision)
        .await
        .expect("update");
    let a3 = s
        .update(&a.key, Bytes::from("a3"), a2.mod_revision)
        .await
        .expect("update");
    // Compact to a3's revision: a2 (the previous state of the event at the point) must stay.
    s.compact(a3.mod_revision).await.expect("compact");
    let mut w = s
        .watch("/k/", a3.mod_revision - 1)
        .await
        .expect("watch from C-1");
    let ev = next(&mut w).await;
    assert_eq!(ev.kind, EventKind::Update);
    assert_eq!(ev.kv, a3);
    assert_eq!(ev.prev, Some(a2.clone()));
    let at = s
        .list(
            "/k/",
            ListOptions {
                revision: Some(a3.mod_revision),
                ..Default::default()
            },
        )
        .await
        .expect("list at C");
    assert_eq!(at.items, vec![a3.clone()]);
    let d = s
        .delete(&a.key, Some(a3.mod_revision))
        .await
        .expect("delete");
    assert_eq!(next(&mut w).await.prev, Some(a3));
    assert_eq!(d.value, Bytes::from("a3"));
    // Compacting past everything leaves an empty, still usable key space.
    let cur = s.current_revision().await.expect("rev");
    s.compact(cur).await.expect("compact all");
    assert!(s
        .list("/k/", ListOptions::default())
        .await
        .expect("list")
        .items
        .is_empty());
    match s.compact(cur + 1).await {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("compacting beyond the current revision must fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_compaction_keeps_the_configured_window() {
    let (s, _dir) = store(Options {
        keep_revisions: 10,
        keep_for: Duration::ZERO,
        compaction_interval: Some(Duration::from_millis(20)),
        ..Options::default()
    });
    let kv = s.create("/auto/k", Bytes::from("0")).await.expect("create");
    let mut last = kv;
    for i in 1..100 {
        last = s
            .update(&last.key, Bytes::from(format!("{i}")), last.mod_revision)
            .await
            .expect("update");
    }
    let cur = s.current_revision().await.expect("rev");
    let deadline = Instant::now() + WAIT;
    while s.compacted_revision().await.expect("compacted") < cur - 10 {
        assert!(Instant::now() < deadline, "automatic compaction never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = s.compacted_revision().await.expect("compacted");
    assert_eq!(
        c,
        cur - 10,
        "exactly the last keep_revisions revisions stay"
    );
    let old = s
        .list(
            "/auto/",
            ListOptions {
                revision: Some(c),
                ..Default::default()
            },
        )
        .await
        .expect("list at the compaction point");
    assert_eq!(old.items[0].mod_revision, c);
    assert!(matches!(
        s.list(
            "/auto/",
            ListOptions {
                revision: Some(c - 1),
                ..Default::default()
            }
        )
        .await,
        Err(Error::Compacted { .. })
    ));
    assert_eq!(s.get("/auto/k").await.expect("get"), Some(last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_store_ends_watches_and_frees_the_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EmbeddedStore::open(dir.path(), no_auto_compaction()).expect("open");
    let mut w = s.watch("/", 0).await.expect("watch");
    drop(s);
    assert!(tokio::time::timeout(WAIT, w.next())
        .await
        .expect("ends in time")
        .is_none());
    let again = EmbeddedStore::open(dir.path(), no_auto_compaction());
    assert!(
        again.is_ok(),
        "the dir is free once the store is dropped, even with a watch open"
    );
}

#[tokio::test]
async fn paging_at_an_old_revision_reports_remaining() {
    let (s, _dir) = store(no_auto_compaction());
    for i in 0..10 {
        s.create(&format!("/pg/{i}"), Bytes::from("x"))
            .await
            .expect("create");
    }
    let at = s.current_revision().await.expect("rev");
    for i in 0..5 {
        s.delete(&format!("/pg/{i}"), None).await.expect("delete");
    }
    let page = s
        .list(
            "/pg/",
            ListOptions {
                revision: Some(at),
                limit: Some(4),
                continue_after: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(page.items.len(), 4);
    assert_eq!(page.remaining, Some(6));
    assert_eq!(page.continue_key.as_deref(), Some("/pg/3"));
    let now = s
        .list(
            "/pg/",
            ListOptions {
                limit: Some(4),
                ..Default::default()
            },
        )
        .await
        .expect("page now");
    assert_eq!(now.items.first().map(|kv| kv.key.as_str()), Some("/pg/5"));
    assert_eq!(now.remaining, Some(1));
    let exact = s
        .list(
            "/pg/",
            ListOptions {
                limit: Some(5),
                ..Default::default()
            },
        )
        .await
        .expect("exact page");
    assert!(exact.continue_key.is_none() && exact.remaining.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_of_large_values_comes_in_small_steps_without_gaps() {
    let (s, _dir) = store(Options {
        watch_window: 2,
        ..no_auto_compaction()
    });
    let mut written = Vec::new();
    for i in 0..12u8 {
        let v = Bytes::from(vec![i; 600 * 1024]);
        written.push(s.create(&format!("/big/{i:02}"), v).await.expect("create"));
    }
    let mut w = s.watch("/big/", 0).await.expect("watch");
    for kv in written {
        let ev = next(&mut w).await;
        assert_eq!(ev.kv, kv);
    }
}
