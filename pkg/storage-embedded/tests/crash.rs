//! Crash safety: a child process (this test binary re-run in "child mode") writes with many
//! concurrent writers and prints every acknowledged write; the parent SIGKILLs it at a random
//! moment, reopens the store and checks that nothing acknowledged was lost and that revisions
//! never go backwards. Several rounds on the same data dir.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use kubelite_storage::{Error, ListOptions, Storage};
use kubelite_storage_embedded::{EmbeddedStore, Options};
use rand::Rng;

/// Set (to the data dir) only in the child process.
const CHILD_ENV: &str = "KUBELITE_CRASH_CHILD_DIR";
const ROUNDS: usize = 5;
const WRITERS: usize = 8;
const KEYS_PER_WRITER: u64 = 16;

/// The child half: runs only when the parent starts this binary with `CHILD_ENV` set.
#[test]
#[ignore = "child half of acknowledged_writes_survive_sigkill, started by it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // Small history window and a fast compaction tick, so crashes also hit compaction.
        let opts = Options {
            keep_revisions: 50,
            keep_for: Duration::ZERO,
            compaction_interval: Some(Duration::from_millis(20)),
            ..Options::default()
        };
        let store = std::sync::Arc::new(EmbeddedStore::open(dir.as_ref(), opts).expect("open"));
        say("READY".to_string());
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0u64.. {
                    let key = format!("/crash/w{w}/k{}", seq % KEYS_PER_WRITER);
                    // The value carries the writer's sequence number: later writes are larger.
                    let value = Bytes::from(format!("{seq}"));
                    let kv = match store.get(&key).await.expect("get") {
                        None => store.create(&key, value).await.expect("create"),
                        Some(cur) => store
                            .update(&key, value, cur.mod_revision)
                            .await
                            .expect("update"),
                    };
                    say(format!("ACK {key} {} {seq}", kv.mod_revision));
                }
            }));
        }
        // Never reached in a normal run: the parent kills us long before.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The newest acknowledged write of one key: its revision and the value written.
#[derive(Clone, Debug)]
struct Acked {
    rev: i64,
    value: String,
}

#[test]
fn acknowledged_writes_survive_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut acked: HashMap<String, Acked> = HashMap::new();
    let mut max_rev = 0i64;
    let mut total = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn child")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            // Only complete lines count: the kill may cut the last one short.
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if buf.ends_with(b"\n") && tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        });
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                // libtest may print its "test crash_child ... " prefix on the same line.
                Ok(l) if l.ends_with("READY") => break,
                Ok(l) => lines.push(l),
                Err(e) => {
                    let _ = child.kill();
                    bail!("child never became ready: {e}");
                }
            }
        }
        let delay = rand::rng().random_range(50..=500);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().context("kill child")?;
        child.wait()?;
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        lines.extend(rx.try_iter());

        let mut this_round = 0;
        for l in lines.iter().filter(|l| l.starts_with("ACK ")) {
            let parts: Vec<_> = l.split(' ').collect();
            ensure!(parts.len() == 4, "malformed ack line {l:?}");
            let rev: i64 = parts[2].parse()?;
            let value = parts[3].to_string();
            let e = acked.entry(parts[1].to_string()).or_insert_with(|| Acked {
                rev,
                value: value.clone(),
            });
            if rev >= e.rev {
                *e = Acked { rev, value };
            }
            max_rev = max_rev.max(rev);
            this_round += 1;
        }
        total += this_round;
        eprintln!("round {round}: killed after {delay} ms, {this_round} acknowledged writes");

        rt.block_on(verify(dir.path(), &acked, max_rev))?;
    }
    ensure!(total > 0, "no child ever acknowledged a write");
    Ok(())
}

/// Reopens the store and checks every acknowledged write against it.
async fn verify(
    dir: &std::path::Path,
    acked: &HashMap<String, Acked>,
    max_rev: i64,
) -> anyhow::Result<()> {
    let store = EmbeddedStore::open(dir, Options::default()).context("reopen after kill")?;
    let current = store.current_revision().await?;
    ensure!(
        current >= max_rev,
        "revision went back: {current} < acknowledged {max_rev}"
    );
    for (key, a) in acked {
        let kv = store
            .get(key)
            .await?
            .with_context(|| format!("acknowledged key {key} is gone"))?;
        ensure!(
            kv.mod_revision >= a.rev,
            "{key}: stored revision {} is older than acknowledged {}",
            kv.mod_revision,
            a.rev
        );
        if kv.mod_revision == a.rev {
            ensure!(
                kv.value == a.value.as_bytes(),
                "{key}: wrong value at revision {}",
                a.rev
            );
        }
    }
    // The whole key space reads back consistently, and history at the compaction point too.
    let all = store.list("/crash/", ListOptions::default()).await?;
    ensure!(all.items.len() >= acked.len(), "list lost keys");
    let c = store.compacted_revision().await?;
    if c > 0 {
        match store
            .list(
                "/crash/",
                ListOptions {
                    revision: Some(c),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => {}
            Err(e) => bail!("list at the compaction point {c} failed: {e}"),
        }
    }
    // New writes continue above everything acknowledged.
    let kv = store
        .create(&format!("/probe/{current}"), Bytes::from("x"))
        .await?;
    ensure!(
        kv.mod_revision > max_rev,
        "new revision {} not above {max_rev}",
        kv.mod_revision
    );
    match store
        .create(&format!("/probe/{current}"), Bytes::from("x"))
        .await
    {
        Err(Error::AlreadyExists { .. }) => {}
        other => bail!("expected AlreadyExists, got {other:?}"),
    }
    Ok(())
}
