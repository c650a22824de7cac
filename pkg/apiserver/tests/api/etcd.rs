//! The core flows again, over a real etcd (one etcd, one fresh server per flow).

use std::future::Future;
use std::pin::Pin;

use kubelite_apiserver::testing::TestServer;
use kubelite_storage_etcd::testing::EtcdServer;

use crate::common::Api;
use crate::{crud, lists, namespaces, watch};

type Flow = for<'a> fn(&'a Api) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

macro_rules! flow {
    ($f:path) => {
        (stringify!($f), (|api| Box::pin($f(api))) as Flow)
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_flows_over_etcd() {
    tokio::time::timeout(std::time::Duration::from_secs(300), etcd_flows())
        .await
        .expect("etcd flows finished in time");
}

async fn etcd_flows() {
    let etcd = EtcdServer::start().await.expect("etcd starts");
    let flows: Vec<(&str, Flow)> = vec![
        flow!(crud::configmap_crud_and_errors_flow),
        flow!(crud::generation_status_and_noop_flow),
        flow!(crud::scale_subresource_flow),
        flow!(crud::concurrent_patches_are_not_lost_flow),
        flow!(watch::watch_from_zero_then_changes_flow),
        flow!(watch::watch_from_list_rv_sees_only_later_changes_flow),
        flow!(watch::watch_with_selectors_and_timeout_flow),
        flow!(lists::selectors_flow),
        flow!(lists::pagination_is_consistent_across_writes_flow),
        flow!(lists::expired_continue_token_is_410_flow),
        flow!(namespaces::namespace_lifecycle_flow),
        flow!(namespaces::pod_graceful_deletion_binding_and_eviction_flow),
        flow!(namespaces::finalizers_and_preconditions_flow),
        flow!(namespaces::services_allocate_ips_and_ports_flow),
    ];
    for (name, f) in flows {
        let srv = TestServer::start_with_etcd(&etcd.endpoint())
            .await
            .expect("server over etcd");
        let api = Api::with_server(srv).await;
        eprintln!("etcd flow: {name}");
        f(&api).await;
    }
}
