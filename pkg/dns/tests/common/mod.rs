//! Shared helpers for the DNS integration tests: a real apiserver, the DNS server on a free
//! loopback port, a fake upstream, and a raw hickory-proto client over UDP and TCP.

#![allow(dead_code)]

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use kube::api::PostParams;
use kube::Api;
use kubelite_apiserver::testing::TestServer;
use kubelite_dns::testing::FakeUpstream;
use kubelite_dns::{Config, Publish, Server};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The name the fake upstream answers, and its address.
pub const UPSTREAM_NAME: &str = "upstream.example.test";
pub const UPSTREAM_IP: &str = "192.0.2.7";
/// A name whose upstream answer is too big for UDP (forces the TCP retry).
pub const BIG_NAME: &str = "big.example.test";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// An apiserver, a fake upstream and a DNS server wired together; stops everything on drop.
pub struct Env {
    pub api: TestServer,
    pub client: kube::Client,
    pub upstream: FakeUpstream,
    pub dns: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<kubelite_dns::Result<()>>>,
}

impl Env {
    pub async fn start(publish: Option<Publish>) -> anyhow::Result<Self> {
        init_tracing();
        let api = TestServer::start().await?;
        let client = api.client();
        let big: Vec<IpAddr> = (0..120u8)
            .map(|i| IpAddr::from([198, 51, 100, i]))
            .collect();
        let upstream =
            FakeUpstream::start(&[(UPSTREAM_NAME, vec![UPSTREAM_IP.parse()?]), (BIG_NAME, big)])
                .await?;
        let config = Config {
            listen: "127.0.0.1:0".parse()?,
            upstreams: vec![upstream.addr()],
            publish,
            ..Config::default()
        };
        let server = Server::bind(client.clone(), config).await?;
        let dns = server.local_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let env = Self {
            api,
            client,
            upstream,
            dns,
            stop: Some(stop),
            task: Some(task),
        };
        // Ready once the cache has synced: zone names stop answering SERVFAIL.
        env.eventually(Duration::from_secs(10), || async {
            let m = env
                .udp("kube-system.svc.cluster.local.", RecordType::A)
                .await?;
            if m.response_code() != hickory_proto::op::ResponseCode::NoError {
                bail!("not ready: {}", m.response_code());
            }
            Ok(())
        })
        .await?;
        Ok(env)
    }

    /// Stops the server and waits for its shutdown (drain + withdrawing endpoints).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task).await???;
        }
        Ok(())
    }

    pub async fn udp(&self, name: &str, t: RecordType) -> anyhow::Result<Message> {
        query_udp(self.dns, name, t).await
    }

    pub async fn tcp(&self, name: &str, t: RecordType) -> anyhow::Result<Message> {
        query_tcp(self.dns, name, t).await
    }

    pub async fn create<K>(&self, ns: &str, body: serde_json::Value) -> anyhow::Result<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let obj: K = serde_json::from_value(body)?;
        Ok(api.create(&PostParams::default(), &obj).await?)
    }

    /// Polls `check` until it succeeds or `limit` passes (then returns the last error).
    pub async fn eventually<F, Fut>(&self, limit: Duration, check: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match check().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e.context(format!("not within {limit:?}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn request(name: &str, t: RecordType) -> anyhow::Result<Message> {
    let mut msg = Message::new();
    msg.set_id(rand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name)?, t));
    Ok(msg)
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One UDP query with a 3 s timeout.
pub async fn query_udp(server: SocketAddr, name: &str, t: RecordType) -> anyhow::Result<Message> {
    let req = request(name, t)?;
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(server).await?;
    sock.send(&req.to_vec()?).await?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .context("udp query timed out")??;
    let msg = Message::from_vec(&buf[..n])?;
    anyhow::ensure!(msg.id() == req.id(), "id mismatch");
    Ok(msg)
}

/// One TCP query with a 3 s timeout.
pub async fn query_tcp(server: SocketAddr, name: &str, t: RecordType) -> anyhow::Result<Message> {
    let req = request(name, t)?.to_vec()?;
    let exchange = async {
        let mut s = TcpStream::connect(server).await?;
        s.write_all(&u16::try_from(req.len())?.to_be_bytes())
            .await?;
        s.write_all(&req).await?;
        let len = s.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        s.read_exact(&mut buf).await?;
        anyhow::Ok(Message::from_vec(&buf)?)
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .context("tcp query timed out")?
}

/// The answer section as `"<type> <rdata>"` strings.
pub fn answers(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data()))
        .collect()
}
