//! The conformance suite every backend runs: the same cases, the same assertions.
//!
//! A backend's test file calls [`conformance_tests!`] with an async expression that yields a
//! fresh `(Arc<dyn Storage>, guard)`; the guard is dropped at the end of the case and may tear
//! down a temp dir or stop a server. Cases only touch keys under their own random prefix, but
//! the `compaction` case compacts the whole key space, so cases running in parallel must not
//! share one store (the etcd tests start one etcd per case; it takes ~100 ms). Cases never
//! assume absolute revision numbers, only their order.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;

use crate::{Error, Event, EventKind, ListOptions, Revision, Storage, WatchStream};

/// Every case's deadline for waiting on a watch event.
const WAIT: Duration = Duration::from_secs(20);

/// A unique key prefix for one case, e.g. `/conformance/a1b2c3d4/`.
pub fn unique_prefix(case: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("/conformance/{case}-{n:016x}/")
}

fn val(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

async fn next_event(w: &mut WatchStream) -> Event {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended early"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

/// Create, get, update with the right and a stale revision, delete guarded and unguarded.
pub async fn crud(s: Arc<dyn Storage>) {
    let p = unique_prefix("crud");
    let k = format!("{p}a");
    assert!(s.get(&k).await.expect("get").is_none());

    let c = s.create(&k, val("one")).await.expect("create");
    assert_eq!(c.key, k);
    assert_eq!(c.value, val("one"));
    assert_eq!(c.create_revision, c.mod_revision);
    assert_eq!(s.current_revision().await.expect("rev"), c.mod_revision);

    match s.create(&k, val("again")).await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, k),
        other => panic!("second create must fail with AlreadyExists, got {other:?}"),
    }
    let g = s.get(&k).await.expect("get").expect("present");
    assert_eq!(g, c, "a failed create must not change the key");

    let u = s
        .update(&k, val("two"), c.mod_revision)
        .await
        .expect("update");
    assert!(u.mod_revision > c.mod_revision);
    assert_eq!(u.create_revision, c.create_revision);
    assert_eq!(u.value, val("two"));

    match s.update(&k, val("stale"), c.mod_revision).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => {
            assert_eq!(expected, c.mod_revision);
            let cur = current.expect("conflict carries the current state");
            assert_eq!(*cur, u);
        }
        other => panic!("stale update must conflict, got {other:?}"),
    }
    assert_eq!(
        s.get(&k).await.expect("get").expect("present").value,
        val("two")
    );

    match s.update(&format!("{p}missing"), val("x"), 1).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("update of a missing key must be NotFound, got {other:?}"),
    }

    match s.delete(&k, Some(c.mod_revision)).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("stale delete must conflict, got {other:?}"),
    }
    let d = s.delete(&k, Some(u.mod_revision)).await.expect("delete");
    assert_eq!(d.value, val("two"), "delete returns the last value");
    assert!(
        d.mod_revision > u.mod_revision,
        "delete gets its own revision"
    );
    assert!(s.get(&k).await.expect("get").is_none());
    match s.delete(&k, None).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("delete of a missing key must be NotFound, got {other:?}"),
    }

    // A re-created key is a new incarnation.
    let c2 = s.create(&k, val("three")).await.expect("recreate");
    assert!(c2.create_revision > d.mod_revision);
    let d2 = s.delete(&k, None).await.expect("unguarded delete");
    assert_eq!(d2.value, val("three"));
}

/// Values over the limit are refused and nothing is written.
pub async fn too_large(s: Arc<dyn Storage>) {
    let p = unique_prefix("large");
    let k = format!("{p}big");
    let big = Bytes::from(vec![b'x'; crate::MAX_VALUE_BYTES + 1]);
    match s.create(&k, big.clone()).await {
        Err(Error::TooLarge { size, .. }) => assert_eq!(size, crate::MAX_VALUE_BYTES + 1),
        other => panic!("oversized create must be TooLarge, got {other:?}"),
    }
    assert!(s.get(&k).await.expect("get").is_none());
    let c = s.create(&k, val("small")).await.expect("create");
    match s.update(&k, big, c.mod_revision).await {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("oversized update must be TooLarge, got {other:?}"),
    }
    // Exactly at the limit is fine.
    let edge = Bytes::from(vec![b'y'; crate::MAX_VALUE_BYTES]);
    s.update(&k, edge, c.mod_revision)
        .await
        .expect("a value of exactly the limit is accepted");
}

/// Prefix isolation, ordering, count, and paging at a fixed revision while writes go on.
pub async fn list_and_paginate(s: Arc<dyn Storage>) {
    let p = unique_prefix("list");
    // A sibling prefix that shares leading bytes must not leak in.
    let sibling = format!("{}x/", p.trim_end_matches('/'));
    s.create(&format!("{sibling}k"), val("other"))
        .await
        .expect("create sibling");

    let mut expected = BTreeMap::new();
    for i in 0..25 {
        let k = format!("{p}{i:03}");
        s.create(&k, val(format!("v{i}"))).await.expect("create");
        expected.insert(k, val(format!("v{i}")));
    }
    assert_eq!(s.count(&p).await.expect("count"), 25);

    let all = s.list(&p, ListOptions::default()).await.expect("list");
    assert_eq!(all.items.len(), 25);
    assert!(all.continue_key.is_none());
    assert!(
        all.revision
            >= all
                .items
                .iter()
                .map(|kv| kv.mod_revision)
                .max()
                .unwrap_or(0)
    );
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(
        keys,
        expected.keys().cloned().collect::<Vec<_>>(),
        "ascending key order"
    );

    // Page through with limit 7 while other writers change the prefix between pages.
    let first = s
        .list(
            &p,
            ListOptions {
                limit: Some(7),
                ..Default::default()
            },
        )
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 7);
    assert_eq!(first.remaining, Some(18));
    let at = first.revision;
    let mut seen: Vec<_> = first
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let mut cont = first.continue_key.clone().expect("more pages");
    let mut round = 0;
    loop {
        // Concurrent churn: a new key, an update and a delete.
        let nk = format!("{p}{:03}-new", round);
        s.create(&nk, val("late")).await.expect("churn create");
        let k5 = format!("{p}{:03}", 20 + round);
        if let Some(kv) = s.get(&k5).await.expect("get") {
            s.update(&k5, val("changed"), kv.mod_revision)
                .await
                .expect("churn update");
        }
        s.delete(&format!("{p}{:03}", 24 - round), None).await.ok();
        round += 1;

        let page = s
            .list(
                &p,
                ListOptions {
                    revision: Some(at),
                    limit: Some(7),
                    continue_after: Some(cont.clone()),
                },
            )
            .await
            .expect("next page");
        assert_eq!(
            page.revision, at,
            "later pages are read at the first page's revision"
        );
        seen.extend(
            page.items
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone())),
        );
        match page.continue_key {
            Some(c) => cont = c,
            None => break,
        }
    }
    let seen_map: BTreeMap<_, _> = seen.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        seen_map.len(),
        "no key appears twice across pages"
    );
    assert_eq!(
        seen_map, expected,
        "paging at a revision sees exactly that snapshot"
    );

    // limit larger than the result, and a continue key outside the prefix.
    let r = s
        .list(
            &p,
            ListOptions {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert!(r.continue_key.is_none() && r.remaining.is_none());
    match s
        .list(
            &p,
            ListOptions {
                continue_after: Some("/elsewhere".into()),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::InvalidContinue(_)) => {}
        other => panic!("a continue key outside the prefix must be rejected, got {other:?}"),
    }
    // An empty prefix range lists nothing.
    let none = s
        .list(&format!("{p}zzz/"), ListOptions::default())
        .await
        .expect("list");
    assert!(none.items.is_empty());
}

/// Listing at an older revision returns the state as of then (values and deleted keys).
pub async fn list_at_old_revision(s: Arc<dyn Storage>) {
    let p = unique_prefix("oldrev");
    let a = s.create(&format!("{p}a"), val("a1")).await.expect("create");
    let b = s.create(&format!("{p}b"), val("b1")).await.expect("create");
    let snap = s.current_revision().await.expect("rev");
    s.update(&a.key, val("a2"), a.mod_revision)
        .await
        .expect("update");
    s.delete(&b.key, None).await.expect("delete");
    s.create(&format!("{p}c"), val("c1")).await.expect("create");

    let old = s
        .list(
            &p,
            ListOptions {
                revision: Some(snap),
                ..Default::default()
            },
        )
        .await
        .expect("list at old revision");
    let got: Vec<_> = old
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![(a.key.clone(), val("a1")), (b.key.clone(), val("b1"))]
    );
    assert_eq!(old.revision, snap);

    let now = s.list(&p, ListOptions::default()).await.expect("list");
    let got: Vec<_> = now.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(got, vec![val("a2"), val("c1")]);

    let future = now.revision + 1000;
    match s
        .list(
            &p,
            ListOptions {
                revision: Some(future),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("listing at a future revision must fail, got {other:?}"),
    }
}

/// A watch from an old revision replays exactly the missed changes, in order, with prev values,
/// then continues live.
pub async fn watch_replay_and_live(s: Arc<dyn Storage>) {
    let p = unique_prefix("watch");
    let start = s.current_revision().await.expect("rev");
    let a = s.create(&format!("{p}a"), val("1")).await.expect("create");
    let a2 = s
        .update(&a.key, val("2"), a.mod_revision)
        .await
        .expect("update");
    // Writes outside the prefix are not delivered.
    let outside = unique_prefix("watch-outside");
    s.create(&format!("{outside}x"), val("nope"))
        .await
        .expect("create outside");
    let d = s.delete(&a.key, None).await.expect("delete");

    let mut w = s.watch(&p, start).await.expect("watch");
    let e1 = next_event(&mut w).await;
    assert_eq!(e1.kind, EventKind::Create);
    assert_eq!(e1.kv, a);
    assert!(e1.prev.is_none());
    let e2 = next_event(&mut w).await;
    assert_eq!(e2.kind, EventKind::Update);
    assert_eq!(e2.kv, a2);
    assert_eq!(e2.prev.as_ref().map(|kv| kv.value.clone()), Some(val("1")));
    let e3 = next_event(&mut w).await;
    assert_eq!(e3.kind, EventKind::Delete);
    assert_eq!(e3.revision(), d.mod_revision);
    assert_eq!(e3.kv.key, a.key);
    assert_eq!(e3.prev.as_ref().map(|kv| kv.value.clone()), Some(val("2")));

    // Live.
    let b = s
        .create(&format!("{p}b"), val("live"))
        .await
        .expect("create");
    let e4 = next_event(&mut w).await;
    assert_eq!((e4.kind, e4.kv.clone()), (EventKind::Create, b));

    // A watch from "now" sees only later changes.
    let now = s.current_revision().await.expect("rev");
    let mut w2 = s.watch(&p, now).await.expect("watch now");
    let c = s.create(&format!("{p}c"), val("c")).await.expect("create");
    let e = next_event(&mut w2).await;
    assert_eq!(e.kv, c);
    let e5 = next_event(&mut w).await;
    assert_eq!(e5.kv, c);

    // A watch from the middle of history starts right after that revision.
    let mut w3 = s.watch(&p, a2.mod_revision).await.expect("watch mid");
    let e = next_event(&mut w3).await;
    assert_eq!(e.kind, EventKind::Delete);
    assert_eq!(e.revision(), d.mod_revision);
}

/// Compaction: old revisions become unreadable with a distinct error, newer ones stay.
pub async fn compaction(s: Arc<dyn Storage>) {
    let p = unique_prefix("compact");
    let a = s.create(&format!("{p}a"), val("1")).await.expect("create");
    let old = a.mod_revision;
    let mut last = a.clone();
    for i in 2..6 {
        last = s
            .update(&a.key, val(i.to_string()), last.mod_revision)
            .await
            .expect("update");
    }
    let b = s.create(&format!("{p}b"), val("b")).await.expect("create");
    let cut = s.current_revision().await.expect("rev");
    s.compact(cut).await.expect("compact");
    assert!(s.compacted_revision().await.expect("compacted") >= cut);

    match s.watch(&p, old).await {
        Err(Error::Compacted { requested, .. }) => assert!(requested <= cut),
        Err(e) => panic!("watch from a compacted revision must be Compacted, got {e}"),
        Ok(_) => panic!("watch from a compacted revision must fail"),
    }
    match s
        .list(
            &p,
            ListOptions {
                revision: Some(old),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted { .. }) => {}
        other => panic!("list at a compacted revision must be Compacted, got {other:?}"),
    }
    // The latest state survives compaction, and so does the state as of the cut.
    let now = s
        .list(
            &p,
            ListOptions {
                revision: Some(cut),
                ..Default::default()
            },
        )
        .await;
    let now = now.expect("list at the compaction point");
    let got: Vec<_> = now.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(got, vec![val("5"), val("b")]);
    assert_eq!(s.get(&b.key).await.expect("get"), Some(b));
    // Watching from the compaction point on works.
    let mut w = s.watch(&p, cut).await.expect("watch from cut");
    let c = s.create(&format!("{p}c"), val("c")).await.expect("create");
    assert_eq!(next_event(&mut w).await.kv, c);
    // Compacting again to an older revision is a no-op.
    s.compact(old)
        .await
        .expect("compact to an older revision is a no-op");
}

/// Many watchers on one prefix each see every event exactly once, in order.
pub async fn many_watchers(s: Arc<dyn Storage>) {
    const WATCHERS: usize = 50;
    const WRITES: usize = 100;
    let p = unique_prefix("fanout");
    let start = s.current_revision().await.expect("rev");
    let mut handles = Vec::new();
    for _ in 0..WATCHERS {
        let mut w = s.watch(&p, start).await.expect("watch");
        handles.push(tokio::spawn(async move {
            let mut revs = Vec::with_capacity(WRITES);
            while revs.len() < WRITES {
                revs.push(next_event(&mut w).await.revision());
            }
            revs
        }));
    }
    let writer = {
        let s = s.clone();
        let p = p.clone();
        tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..WRITES {
                let kv = s
                    .create(&format!("{p}{i:04}"), val("x"))
                    .await
                    .expect("create");
                revs.push(kv.mod_revision);
            }
            revs
        })
    };
    let written = writer.await.expect("writer");
    for h in handles {
        let got = h.await.expect("watcher");
        assert_eq!(
            got, written,
            "each watcher sees every write once, in revision order"
        );
    }
}

/// 20 writers race compare-and-swap increments on one key: no update is lost.
pub async fn racing_cas(s: Arc<dyn Storage>) {
    const WRITERS: usize = 20;
    const INCREMENTS: usize = 10;
    let p = unique_prefix("cas");
    let k = format!("{p}counter");
    s.create(&k, val("0")).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let s = s.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            let mut conflicts = 0u64;
            while done < INCREMENTS {
                let cur = s.get(&k).await.expect("get").expect("present");
                let n: u64 = std::str::from_utf8(&cur.value)
                    .expect("utf8")
                    .parse()
                    .expect("number");
                match s
                    .update(&k, val((n + 1).to_string()), cur.mod_revision)
                    .await
                {
                    Ok(_) => done += 1,
                    Err(Error::Conflict { .. }) => conflicts += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let fin = s.get(&k).await.expect("get").expect("present");
    assert_eq!(
        fin.value,
        val((WRITERS * INCREMENTS).to_string()),
        "no lost update"
    );
}

/// Revisions are unique and strictly increasing across concurrent writers on different keys.
pub async fn revisions_monotonic(s: Arc<dyn Storage>) {
    let p = unique_prefix("revs");
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..25 {
                let kv = s
                    .create(&format!("{p}{w}-{i}"), val("x"))
                    .await
                    .expect("create");
                revs.push(kv.mod_revision);
            }
            revs
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        let revs = t.await.expect("writer");
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "one writer's revisions increase"
        );
        for r in revs {
            assert!(all.insert(r), "revision {r} handed out twice");
        }
    }
    let cur: Revision = s.current_revision().await.expect("rev");
    assert!(all.iter().all(|r| *r <= cur));
}

/// Generates one `#[tokio::test]` per conformance case. `$factory` is an async expression
/// evaluating to `(Arc<dyn Storage>, guard)`; the guard lives until the case ends.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@case $factory;
            crud, too_large, list_and_paginate, list_at_old_revision, watch_replay_and_live,
            compaction, many_watchers, racing_cas, revisions_monotonic);
    };
    (@case $factory:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, _guard) = $factory.await;
                $crate::testing::$name(store).await;
            }
        )*
    };
}
