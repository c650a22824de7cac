//! Opening data dirs: new, reopened (everything persists), corrupt or foreign (a clear
//! `Corrupt`, never a panic or reset), and already in use.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kubelite_storage::{Error, EventKind, ListOptions, Storage};
use kubelite_storage_embedded::{EmbeddedStore, Options};
use redb::TableDefinition;

const DB_FILE: &str = "kubelite.redb";
const WAIT: Duration = Duration::from_secs(20);

fn open(dir: &Path) -> Result<EmbeddedStore, Error> {
    EmbeddedStore::open(dir, Options::default())
}

fn expect_corrupt(dir: &Path, what: &str) -> String {
    match open(dir) {
        Err(Error::Corrupt(msg)) => msg,
        Err(e) => panic!("{what}: expected Corrupt, got {e}"),
        Ok(_) => panic!("{what}: expected Corrupt, the store opened"),
    }
}

#[tokio::test]
async fn missing_dir_is_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a/b/c");
    let s = open(&dir).expect("open");
    assert_eq!(s.current_revision().await.expect("rev"), 0);
    assert!(s.compacted_revision().await.expect("compacted") <= 1);
    assert!(dir.join(DB_FILE).exists());
}

#[tokio::test]
async fn empty_file_is_a_new_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join(DB_FILE), b"").expect("write");
    let s = open(tmp.path()).expect("open");
    let kv = s.create("/a", Bytes::from("1")).await.expect("create");
    assert_eq!(kv.mod_revision, 1);
}

#[test]
fn garbage_file_is_corrupt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(DB_FILE);
    for (what, bytes) in [
        ("short text", b"hello, not a database".to_vec()),
        (
            "random page",
            (0..65536u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
    ] {
        std::fs::write(&path, &bytes).expect("write");
        let msg = expect_corrupt(tmp.path(), what);
        assert!(
            msg.contains(DB_FILE),
            "{what}: message names the file: {msg}"
        );
        // Never reset: the foreign bytes are untouched.
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "{what}: file left alone"
        );
    }
}

#[test]
fn foreign_redb_is_corrupt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let db = redb::Database::create(tmp.path().join(DB_FILE)).expect("create");
        let tx = db.begin_write().expect("tx");
        {
            let mut t = tx
                .open_table(TableDefinition::<&str, &str>::new("settings"))
                .expect("table");
            t.insert("theme", "dark").expect("insert");
        }
        tx.commit().expect("commit");
    }
    let msg = expect_corrupt(tmp.path(), "another application's redb");
    assert!(msg.contains("not a kubelite store"), "{msg}");
}

#[test]
fn same_table_name_other_types_is_corrupt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let db = redb::Database::create(tmp.path().join(DB_FILE)).expect("create");
        let tx = db.begin_write().expect("tx");
        {
            let mut t = tx
                .open_table(TableDefinition::<&str, &str>::new("kubelite_meta"))
                .expect("table");
            t.insert("format_version", "1").expect("insert");
        }
        tx.commit().expect("commit");
    }
    expect_corrupt(tmp.path(), "meta table of other types");
}

#[tokio::test]
async fn newer_format_version_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let s = open(tmp.path()).expect("open");
        s.create("/keep", Bytes::from("me")).await.expect("create");
    }
    {
        let db = redb::Database::create(tmp.path().join(DB_FILE)).expect("reopen raw");
        let tx = db.begin_write().expect("tx");
        {
            let mut t = tx
                .open_table(TableDefinition::<&str, i64>::new("kubelite_meta"))
                .expect("meta");
            t.insert("format_version", 99).expect("insert");
        }
        tx.commit().expect("commit");
    }
    let msg = expect_corrupt(tmp.path(), "newer format");
    assert!(msg.contains("99"), "{msg}");
}

#[tokio::test]
async fn second_open_of_the_same_dir_fails_until_the_first_is_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = open(tmp.path()).expect("open");
    first.create("/a", Bytes::from("1")).await.expect("create");
    match open(tmp.path()) {
        Err(Error::Unavailable(msg)) => assert!(msg.contains("already open"), "{msg}"),
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("a second open of the same dir must fail"),
    }
    // The failed open did not disturb the first store.
    assert!(first.get("/a").await.expect("get").is_some());
    drop(first);
    let again = open(tmp.path()).expect("reopen after drop");
    assert_eq!(again.current_revision().await.expect("rev"), 1);
}

#[tokio::test]
async fn reopen_keeps_data_history_and_revisions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a1, a2, b, gone, snap, compacted_to);
    {
        let s = open(tmp.path()).expect("open");
        a1 = s.create("/p/a", Bytes::from("a1")).await.expect("create");
        b = s.create("/p/b", Bytes::from("b")).await.expect("create");
        gone = s.create("/p/gone", Bytes::from("g")).await.expect("create");
        compacted_to = s.current_revision().await.expect("rev");
        a2 = s
            .update("/p/a", Bytes::from("a2"), a1.mod_revision)
            .await
            .expect("update");
        snap = s.current_revision().await.expect("rev");
        s.delete("/p/gone", None).await.expect("delete");
        s.compact(compacted_to).await.expect("compact");
    }
    let s = open(tmp.path()).expect("reopen");
    let cur = s.current_revision().await.expect("rev");
    assert_eq!(cur, snap + 1);
    assert_eq!(
        s.compacted_revision().await.expect("compacted"),
        compacted_to
    );
    assert_eq!(s.get("/p/a").await.expect("get"), Some(a2.clone()));
    assert_eq!(s.get("/p/b").await.expect("get"), Some(b.clone()));
    assert!(s.get("/p/gone").await.expect("get").is_none());

    let old = s
        .list(
            "/p/",
            ListOptions {
                revision: Some(snap),
                ..Default::default()
            },
        )
        .await
        .expect("list at an old revision after reopen");
    let keys: Vec<_> = old.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/a", "/p/b", "/p/gone"]);
    match s
        .list(
            "/p/",
            ListOptions {
                revision: Some(compacted_to - 1),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted { .. }) => {}
        other => panic!("compaction must persist, got {other:?}"),
    }

    // The event log persists: replay from just before the compaction point, from disk.
    let mut w = s.watch("/p/", compacted_to - 1).await.expect("watch");
    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(WAIT, w.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        got.push((ev.kind, ev.kv.key.clone(), ev.prev.map(|p| p.value)));
    }
    assert_eq!(
        got,
        vec![
            (EventKind::Create, gone.key.clone(), None),
            (
                EventKind::Update,
                "/p/a".to_string(),
                Some(Bytes::from("a1"))
            ),
            (EventKind::Delete, gone.key.clone(), Some(Bytes::from("g"))),
        ]
    );
    let next = s.create("/p/c", Bytes::from("c")).await.expect("create");
    assert_eq!(
        next.mod_revision,
        cur + 1,
        "revisions continue after reopen"
    );
    let live = tokio::time::timeout(WAIT, w.next())
        .await
        .expect("live event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(live.kv, next);
}

#[tokio::test]
async fn damaged_pages_are_corrupt_at_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let s = open(tmp.path()).expect("open");
        for i in 0..200 {
            let v = Bytes::from(format!("{i:0>1000}"));
            s.create(&format!("/d/{i:04}"), v).await.expect("create");
        }
    }
    let path = tmp.path().join(DB_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    let len = bytes.len();
    // Scribble over every page past the header: whatever redb reads first is damaged.
    for page in (1..len / 4096).map(|p| p * 4096) {
        for b in &mut bytes[page + 100..page + 164] {
            *b ^= 0x5a;
        }
    }
    std::fs::write(&path, &bytes).expect("write");
    let msg = expect_corrupt(tmp.path(), "damaged pages");
    assert!(msg.contains(DB_FILE), "{msg}");
}

#[tokio::test]
async fn one_damaged_data_page_is_caught_by_verification() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let s = open(tmp.path()).expect("open");
        for i in 0..200 {
            let v = Bytes::from(format!("{i:0>1000}"));
            s.create(&format!("/d/{i:04}"), v).await.expect("create");
        }
    }
    let path = tmp.path().join(DB_FILE);
    let clean = std::fs::read(&path).expect("read");
    // Flip one byte of every on-disk copy of one stored value (copy-on-write may have left
    // stale copies in free pages; the live one is among them).
    let needle = format!("{:0>1000}", 123);
    let hits: Vec<usize> = clean
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty(), "value on disk");
    let mut bytes = clean.clone();
    for at in hits {
        bytes[at + 500] ^= 0x01;
    }
    std::fs::write(&path, &bytes).expect("write");
    let msg = expect_corrupt(tmp.path(), "one damaged value page");
    assert!(msg.contains(DB_FILE), "{msg}");
}
