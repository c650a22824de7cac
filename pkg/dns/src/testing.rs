//! Test helpers (feature `test-util`): a fake upstream resolver on loopback, so forwarding is
//! tested without touching the real internet.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;

/// A DNS server on `127.0.0.1:<free port>` (UDP and TCP) answering fixed address records;
/// other names get NXDOMAIN. Stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    udp: AtomicUsize,
    tcp: AtomicUsize,
}

struct Fixed {
    records: HashMap<String, Vec<IpAddr>>,
    counts: Arc<Counts>,
}

impl FakeUpstream {
    /// Starts a server answering each `name` (lowercase, trailing dot optional) with its
    /// addresses, TTL 60. A name with many addresses makes a UDP answer that gets truncated.
    pub async fn start(records: &[(&str, Vec<IpAddr>)]) -> std::io::Result<Self> {
        let records = records
            .iter()
            .map(|(n, ips)| (format!("{}.", n.trim_end_matches('.')), ips.clone()))
            .collect();
        let counts = Arc::new(Counts::default());
        let mut server = ServerFuture::new(Fixed {
            records,
            counts: counts.clone(),
        });
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        Ok(Self { addr, counts, task })
    }

    /// The UDP/TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received over UDP so far.
    pub fn udp_queries(&self) -> usize {
        self.counts.udp.load(Ordering::Relaxed)
    }

    /// Queries received over TCP so far.
    pub fn tcp_queries(&self) -> usize {
        self.counts.tcp.load(Ordering::Relaxed)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait::async_trait]
impl RequestHandler for Fixed {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        let counter = if request.protocol() == Protocol::Tcp {
            &self.counts.tcp
        } else {
            &self.counts.udp
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = request.edns() {
            let mut edns = Edns::new();
            edns.set_max_payload(e.max_payload().max(512));
            builder.edns(edns);
        }
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let mut answers = Vec::new();
        if let Some(q) = request.queries().first() {
            let name = q.original().name();
            match self.records.get(&name.to_lowercase().to_ascii()) {
                Some(ips) => {
                    for ip in ips {
                        let rdata = match ip {
                            IpAddr::V4(v4) => RData::A(A(*v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                        };
                        if rdata.record_type() == q.query_type() {
                            answers.push(Record::from_rdata(name.clone(), 60, rdata));
                        }
                    }
                }
                None => {
                    header.set_response_code(ResponseCode::NXDomain);
                }
            }
        }
        let response = builder.build(header, answers.iter(), [], [], []);
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => Header::response_from_request(request.header()).into(),
        }
    }
}
