//! The shared storage conformance suite against a real etcd.
//!
//! Compaction is global to an etcd key space and cases run in parallel, so each case gets its
//! own etcd (it starts in well under a second); the guard kills it when the case ends.

use std::sync::Arc;

use kubelite_storage::Storage;
use kubelite_storage_etcd::testing::EtcdServer;
use kubelite_storage_etcd::EtcdStore;

kubelite_storage::conformance_tests!(async {
    let server = EtcdServer::start().await.expect("start etcd");
    let store = EtcdStore::connect(&[server.endpoint()], "/kubelite-test")
        .await
        .expect("connect to etcd");
    (Arc::new(store) as Arc<dyn Storage>, server)
});
