//! Measures acknowledged (fsynced) writes per second at several concurrency levels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kubelite_storage::Storage;
use kubelite_storage_embedded::{EmbeddedStore, Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(dir.path(), Options::default())?);
    let value = Bytes::from(vec![b'v'; 1024]);
    for writers in [1usize, 16, 64] {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let s = store.clone();
            let v = value.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    s.create(&format!("/bench/{writers}/{w}/{n}"), v.clone())
                        .await?;
                    n += 1;
                }
                anyhow::Ok(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{writers:>3} writers: {:>8.0} writes/s",
            total as f64 / secs
        );
    }
    Ok(())
}
