//! Controller expectations: how many creations and which deletions a controller still waits to
//! see in its cache, so it does not act twice on a stale cache.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Expectations older than this are considered satisfied (a watch event may have been lost).
const EXPECTATIONS_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Entry {
    adds: i64,
    deletes: HashSet<String>,
    set_at: Option<Instant>,
}

/// Per-controller-key expectations.
#[derive(Default)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Whether the controller may act on `key`: nothing is pending or the entry expired.
    pub fn satisfied(&self, key: &str) -> bool {
        self.with(|m| match m.get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty())
                    || e.set_at.is_none_or(|t| t.elapsed() > EXPECTATIONS_TTL)
            }
        })
    }

    /// Expects `n` creations for `key`.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.with(|m| {
            let e = m.entry(key.to_string()).or_default();
            e.adds = i64::try_from(n).unwrap_or(i64::MAX);
            e.deletes.clear();
            e.set_at = Some(Instant::now());
        });
    }

    /// Expects the deletion of pods with these uids for `key`.
    pub fn expect_deletions(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.with(|m| {
            let e = m.entry(key.to_string()).or_default();
            e.adds = 0;
            e.deletes = uids.into_iter().collect();
            e.set_at = Some(Instant::now());
        });
    }

    /// A creation was observed (or will never happen).
    pub fn creation_observed(&self, key: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.adds -= 1;
            }
        });
    }

    /// The deletion of `uid` was observed (or will never happen).
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.deletes.remove(uid);
            }
        });
    }

    /// Forgets `key` (its owner is gone).
    pub fn delete(&self, key: &str) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn creations_and_deletions() {
        let e = Expectations::default();
        assert!(e.satisfied("a"));
        e.expect_creations("a", 2);
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(e.satisfied("a"));
        e.expect_deletions("a", ["u1".to_string()]);
        assert!(!e.satisfied("a"));
        e.deletion_observed("a", "u1");
        assert!(e.satisfied("a"));
    }
}
