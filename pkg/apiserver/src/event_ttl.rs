//! Event expiry: upstream stores Events with an etcd lease of `--event-ttl` (1 h); here a small
//! background task deletes Events whose creation is older than the TTL.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::registry::{self, Registry};

/// Run until shutdown, deleting expired Events (of both Event APIs, stored together): once a minute, or once per
/// TTL when that is shorter.
pub async fn run(reg: Arc<Registry>, ttl: Duration) {
    let every = ttl.clamp(Duration::from_millis(200), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = reg.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let cutoff =
            Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
        let removed = sweep(&reg, cutoff).await;
        if removed > 0 {
            tracing::debug!(removed, "expired events deleted");
        }
    }
}

/// Delete Events last written before `cutoff`; returns how many.
pub async fn sweep(reg: &Registry, cutoff: DateTime<Utc>) -> usize {
    let mut removed = 0;
    // Both Event APIs store under the core prefix (see `registry::events`).
    let Some(info) = kubelite_api::resource::find_builtin("", "v1", "events") else {
        return 0;
    };
    let Ok(list) = reg.storage.list(&info.prefix(), Default::default()).await else {
        return 0;
    };
    for kv in &list.items {
        let Ok(obj) = registry::decode_kv(kv) else {
            continue;
        };
        // Upstream's lease restarts with every write, so the newest timestamp counts.
        let newest = [
            "/metadata/creationTimestamp",
            "/lastTimestamp",
            "/eventTime",
            "/series/lastObservedTime",
        ]
        .iter()
        .filter_map(|p| obj.pointer(p).and_then(Value::as_str))
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .max();
        if newest.is_some_and(|t| t < cutoff)
            && reg
                .storage
                .delete(&kv.key, Some(kv.mod_revision))
                .await
                .is_ok()
        {
            removed += 1;
        }
    }
    removed
}
