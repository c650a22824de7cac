//! The shared storage conformance suite, run against a fresh embedded store per case.

use std::sync::Arc;

use kubelite_storage::Storage;
use kubelite_storage_embedded::{EmbeddedStore, Options};

kubelite_storage::conformance_tests!(async {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("open store");
    // Declared after `dir` so the store (and its file) is gone before the dir is removed.
    let store: Arc<dyn Storage> = Arc::new(store);
    (store, dir)
});

/// The same suite with a 2-event watch ring, so watches mostly replay from disk.
mod tiny_watch_ring {
    use super::*;

    kubelite_storage::conformance_tests!(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            watch_window: 2,
            ..Options::default()
        };
        let store: Arc<dyn Storage> =
            Arc::new(EmbeddedStore::open(dir.path(), opts).expect("open store"));
        (store, dir)
    });
}
