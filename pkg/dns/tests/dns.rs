//! The DNS server against a real apiserver: service, headless, SRV, pod and negative answers,
//! watch latency, forwarding to a fake upstream over UDP and TCP, and publishing kube-dns.

#![allow(clippy::unwrap_used)] // tests: a panic is a test failure

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{answers, Env, BIG_NAME, UPSTREAM_IP, UPSTREAM_NAME};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::Api;
use kubelite_dns::Publish;
use serde_json::json;

async fn create_ns(env: &Env, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(env.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

#[tokio::test]
async fn service_a_srv_and_negative_answers() -> anyhow::Result<()> {
    let mut env = Env::start(None).await?;
    let svc: Service = env
        .create(
            "default",
            json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.7.7",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
        )
        .await?;
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("10.96.7.7"));
    env.eventually(Duration::from_secs(2), || async {
        let m = env
            .udp("web.default.svc.cluster.local.", RecordType::A)
            .await?;
        anyhow::ensure!(answers(&m) == ["A 10.96.7.7"], "got {:?}", answers(&m));
        anyhow::ensure!(m.authoritative());
        anyhow::ensure!(m.answers()[0].ttl() == 30);
        Ok(())
    })
    .await?;

    let m = env
        .udp("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)
        .await?;
    assert_eq!(answers(&m), ["SRV 0 100 80 web.default.svc.cluster.local."]);
    let extra: Vec<String> = m
        .additionals()
        .iter()
        .map(|r| format!("{} {}", r.name(), r.data()))
        .collect();
    assert_eq!(extra, ["web.default.svc.cluster.local. 10.96.7.7"]);

    let m = env.udp("7.7.96.10.in-addr.arpa.", RecordType::PTR).await?;
    assert_eq!(answers(&m), ["PTR web.default.svc.cluster.local."]);

    let m = env
        .udp("nope.default.svc.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(m.name_servers().len(), 1, "SOA in authority");
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);

    let m = env
        .udp("web.default.svc.cluster.local.", RecordType::AAAA)
        .await?;
    assert_eq!(
        (m.response_code(), m.answers().len()),
        (ResponseCode::NoError, 0),
        "NODATA"
    );
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
    env.stop().await
}

#[tokio::test]
async fn headless_service_answers_ready_endpoints_and_hostnames() -> anyhow::Result<()> {
    let mut env = Env::start(None).await?;
    create_ns(&env, "data").await?;
    env.create::<Service>(
        "data",
        json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None",
        "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await?;
    // Headless with no endpoints yet: NXDOMAIN (kubernetes/dns#245).
    env.eventually(Duration::from_secs(2), || async {
        let m = env.udp("db.data.svc.cluster.local.", RecordType::A).await?;
        anyhow::ensure!(
            m.response_code() == ResponseCode::NXDomain,
            "{}",
            m.response_code()
        );
        Ok(())
    })
    .await?;
    env.create::<EndpointSlice>(
        "data",
        json!({
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.10"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.11"], "conditions": {"ready": true}},
            {"addresses": ["10.244.1.12"], "conditions": {"ready": false}},
        ]}),
    )
    .await?;
    env.eventually(Duration::from_secs(2), || async {
        let m = env.udp("db.data.svc.cluster.local.", RecordType::A).await?;
        anyhow::ensure!(
            answers(&m) == ["A 10.244.1.10", "A 10.244.1.11"],
            "{:?}",
            answers(&m)
        );
        Ok(())
    })
    .await?;
    let m = env
        .udp("db-0.db.data.svc.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(answers(&m), ["A 10.244.1.10"]);
    let m = env
        .udp("10-244-1-11.db.data.svc.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(answers(&m), ["A 10.244.1.11"]);
    let m = env
        .udp("10-244-1-12.db.data.svc.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(
        m.response_code(),
        ResponseCode::NXDomain,
        "not-ready endpoint"
    );
    let m = env
        .udp("_pg._tcp.db.data.svc.cluster.local.", RecordType::SRV)
        .await?;
    assert_eq!(
        answers(&m),
        [
            "SRV 0 50 5432 db-0.db.data.svc.cluster.local.",
            "SRV 0 50 5432 10-244-1-11.db.data.svc.cluster.local.",
        ]
    );
    assert_eq!(m.additionals().len(), 2);
    env.stop().await
}

#[tokio::test]
async fn pod_names_external_names_and_namespaces() -> anyhow::Result<()> {
    let mut env = Env::start(None).await?;
    let m = env
        .udp("10-244-3-4.default.pod.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(answers(&m), ["A 10.244.3.4"]);
    let m = env
        .udp("10-244-3-4.missing.pod.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let m = env.udp("default.svc.cluster.local.", RecordType::A).await?;
    assert_eq!(
        (m.response_code(), m.answers().len()),
        (ResponseCode::NoError, 0)
    );

    env.create::<Service>(
        "default",
        json!({"metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": UPSTREAM_NAME}}),
    )
    .await?;
    env.eventually(Duration::from_secs(2), || async {
        let m = env
            .udp("ext.default.svc.cluster.local.", RecordType::A)
            .await?;
        // The CNAME, then the target's address resolved through the upstream.
        anyhow::ensure!(
            answers(&m)
                == [
                    format!("CNAME {UPSTREAM_NAME}."),
                    format!("A {UPSTREAM_IP}")
                ],
            "{:?}",
            answers(&m)
        );
        Ok(())
    })
    .await?;
    env.stop().await
}

#[tokio::test]
async fn a_new_service_resolves_within_a_second() -> anyhow::Result<()> {
    let mut env = Env::start(None).await?;
    let m = env
        .udp("fresh.default.svc.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let svc: Service = env
        .create(
            "default",
            json!({"metadata": {"name": "fresh"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await?;
    let created = Instant::now();
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .context("no clusterIP allocated")?;
    env.eventually(Duration::from_secs(1), || async {
        let m = env
            .udp("fresh.default.svc.cluster.local.", RecordType::A)
            .await?;
        anyhow::ensure!(answers(&m) == [format!("A {ip}")], "{:?}", answers(&m));
        Ok(())
    })
    .await?;
    assert!(
        created.elapsed() < Duration::from_secs(1),
        "took {:?}",
        created.elapsed()
    );

    let api: Api<Service> = Api::namespaced(env.client.clone(), "default");
    api.delete("fresh", &Default::default()).await?;
    env.eventually(Duration::from_secs(1), || async {
        let m = env
            .udp("fresh.default.svc.cluster.local.", RecordType::A)
            .await?;
        anyhow::ensure!(m.response_code() == ResponseCode::NXDomain);
        Ok(())
    })
    .await?;
    env.stop().await
}

#[tokio::test]
async fn forwards_other_names_over_udp_and_tcp() -> anyhow::Result<()> {
    let mut env = Env::start(None).await?;
    let m = env.udp(&format!("{UPSTREAM_NAME}."), RecordType::A).await?;
    assert_eq!(answers(&m), [format!("A {UPSTREAM_IP}")]);
    assert!(!m.authoritative());
    let m = env.udp("unknown.example.test.", RecordType::A).await?;
    assert_eq!(
        m.response_code(),
        ResponseCode::NXDomain,
        "upstream NXDOMAIN passes through"
    );

    // Too big for UDP upstream: the server retries over TCP and gets everything.
    let tcp_before = env.upstream.tcp_queries();
    let m = env.tcp(&format!("{BIG_NAME}."), RecordType::A).await?;
    assert_eq!(m.answers().len(), 120);
    assert!(
        env.upstream.tcp_queries() > tcp_before,
        "server fell back to TCP upstream"
    );

    // Cluster names over TCP too.
    let m = env
        .tcp("kubernetes.default.svc.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 1);
    env.stop().await
}

#[tokio::test]
async fn servfail_when_no_upstream_answers() -> anyhow::Result<()> {
    common::init_tracing();
    let api = kubelite_apiserver::testing::TestServer::start().await?;
    // A bound but silent UDP socket: the upstream never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let config = kubelite_dns::Config {
        listen: "127.0.0.1:0".parse()?,
        upstreams: vec![silent.local_addr()?],
        ..Default::default()
    };
    let server = kubelite_dns::Server::bind(api.client(), config).await?;
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let m = common::query_udp(addr, "anything.example.test.", RecordType::A).await?;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), task).await???;
    Ok(())
}

#[tokio::test]
async fn publishing_creates_kube_dns_service_and_endpoints() -> anyhow::Result<()> {
    let publish = Publish {
        cluster_ip: "10.96.0.10".parse()?,
        advertise_ip: "127.0.0.1".parse()?,
        port: 5353,
    };
    let mut env = Env::start(Some(publish)).await?;
    let services: Api<Service> = Api::namespaced(env.client.clone(), "kube-system");
    let slices: Api<EndpointSlice> = Api::namespaced(env.client.clone(), "kube-system");
    let endpoints: Api<Endpoints> = Api::namespaced(env.client.clone(), "kube-system");
    env.eventually(Duration::from_secs(5), || async {
        let slice = slices.get("kube-dns-kubelite").await?;
        anyhow::ensure!(slice.endpoints[0].addresses == ["127.0.0.1"]);
        Ok(())
    })
    .await?;
    let svc = services.get("kube-dns").await?;
    assert_eq!(svc.metadata.labels.unwrap()["k8s-app"], "kube-dns");
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert!(spec.selector.is_none());
    let ports: Vec<_> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".into(), 53, "UDP".into()),
            ("dns-tcp".into(), 53, "TCP".into())
        ]
    );
    let slice = slices.get("kube-dns-kubelite").await?;
    assert_eq!(
        slice.metadata.labels.unwrap()["kubernetes.io/service-name"],
        "kube-dns"
    );
    assert_eq!(slice.ports.unwrap()[0].port, Some(5353));
    let ep = endpoints.get("kube-dns").await?;
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 5353);

    // The published Service resolves through the server itself, and so does ns.dns.
    let m = env
        .udp("kube-dns.kube-system.svc.cluster.local.", RecordType::A)
        .await?;
    assert_eq!(answers(&m), ["A 10.96.0.10"]);
    let m = env.udp("ns.dns.cluster.local.", RecordType::A).await?;
    assert_eq!(answers(&m), ["A 10.96.0.10"]);

    // Shutdown takes the server out of rotation but keeps the Service (and its ClusterIP).
    env.stop().await?;
    let client = env.client.clone();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    assert!(slices.get_opt("kube-dns-kubelite").await?.is_none());
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "kube-system");
    assert!(endpoints
        .get("kube-dns")
        .await?
        .subsets
        .unwrap_or_default()
        .is_empty());
    let services: Api<Service> = Api::namespaced(client, "kube-system");
    assert!(services.get_opt("kube-dns").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn hickory_resolver_resolves_cluster_and_forwarded_names() -> anyhow::Result<()> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::Resolver;

    let mut env = Env::start(None).await?;
    let group = NameServerConfigGroup::from_ips_clear(&[env.dns.ip()], env.dns.port(), true);
    let config = ResolverConfig::from_parts(None, vec![], group);
    let mut builder = Resolver::builder_with_config(config, TokioConnectionProvider::default());
    builder.options_mut().cache_size = 0;
    builder.options_mut().timeout = Duration::from_secs(2);
    let resolver = builder.build();

    let ips = resolver
        .lookup_ip("kubernetes.default.svc.cluster.local.")
        .await?;
    assert_eq!(ips.iter().count(), 1);
    let ips: Vec<String> = resolver
        .lookup_ip(format!("{UPSTREAM_NAME}."))
        .await?
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    assert_eq!(ips, [UPSTREAM_IP]);
    let missing = resolver
        .lookup_ip("missing.default.svc.cluster.local.")
        .await;
    assert!(
        missing.is_err_and(|e| e.is_nx_domain()),
        "NXDOMAIN for an unknown service"
    );
    env.stop().await
}
