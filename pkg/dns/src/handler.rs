//! The hickory `RequestHandler`: cluster-zone questions are answered from the cache, the rest
//! forwarded upstream; the single place a result becomes a DNS message.

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tracing::{debug, warn};

use crate::answer::{answer, Zone};
use crate::cache::Cache;
use crate::forward::{Forwarder, EDNS_PAYLOAD};

/// Answers DNS requests.
#[derive(Debug)]
pub struct Handler {
    cache: Arc<Cache>,
    zone: Zone,
    forwarder: Forwarder,
}

/// A finished response: header plus the three record sections.
struct Reply {
    header: Header,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
}

impl Handler {
    /// A handler over `cache` serving `zone`, forwarding everything else.
    pub fn new(cache: Arc<Cache>, zone: Zone, forwarder: Forwarder) -> Self {
        Self {
            cache,
            zone,
            forwarder,
        }
    }

    async fn reply(&self, request: &Request) -> Result<Reply, ResponseCode> {
        if request.message_type() != MessageType::Query {
            return Err(ResponseCode::FormErr);
        }
        if request.op_code() != OpCode::Query {
            return Err(ResponseCode::NotImp);
        }
        let [query] = request.queries() else {
            return Err(ResponseCode::FormErr);
        };
        let query = query.original();
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);

        let local = {
            let idx = self.cache.read();
            answer(
                &idx,
                &self.zone,
                self.cache.serial(),
                query.name(),
                query.query_type(),
            )
        };
        let Some(mut local) = local else {
            return self
                .forward(header, query, request.recursion_desired())
                .await;
        };
        if !self.cache.is_synced() {
            // Before the first list completes every name would look absent; a SERVFAIL makes
            // clients retry instead of caching a wrong NXDOMAIN.
            return Err(ResponseCode::ServFail);
        }
        if let Some(target) = local.chase.take() {
            let q = Query::query(target, query.query_type());
            if let Some(msg) = self.forwarder.resolve(&q, true).await {
                local.answers.extend(msg.answers().iter().cloned());
            }
        }
        header.set_authoritative(true);
        header.set_response_code(local.rcode);
        Ok(Reply {
            header,
            answers: local.answers,
            authority: local.authority,
            additionals: local.additionals,
        })
    }

    async fn forward(
        &self,
        mut header: Header,
        query: &Query,
        recursion_desired: bool,
    ) -> Result<Reply, ResponseCode> {
        let mut msg = self
            .forwarder
            .resolve(query, recursion_desired)
            .await
            .ok_or(ResponseCode::ServFail)?;
        header.set_response_code(msg.response_code());
        header.set_authoritative(msg.authoritative());
        header.set_authentic_data(msg.authentic_data());
        Ok(Reply {
            header,
            answers: msg.take_answers(),
            authority: msg.take_name_servers(),
            additionals: msg.take_additionals(),
        })
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(req_edns) = request.edns() {
            // Answer EDNS with EDNS; the payload bounds how much hickory puts in a UDP reply
            // before setting TC (clients then retry over TCP).
            let mut edns = Edns::new();
            edns.set_max_payload(req_edns.max_payload().clamp(512, EDNS_PAYLOAD));
            builder.edns(edns);
        }
        let result = match self.reply(request).await {
            Ok(reply) => {
                debug!(query = ?request.queries().first().map(|q| q.original()),
                    rcode = %reply.header.response_code(), "answered");
                let response = builder.build(
                    reply.header,
                    reply.answers.iter(),
                    reply.authority.iter(),
                    std::iter::empty(),
                    reply.additionals.iter(),
                );
                response_handle.send_response(response).await
            }
            Err(code) => {
                debug!(query = ?request.queries().first().map(|q| q.original()), rcode = %code, "failed");
                let response = builder.error_msg(request.header(), code);
                response_handle.send_response(response).await
            }
        };
        result.unwrap_or_else(|e| {
            warn!(error = %e, "sending dns response failed");
            let mut header = Header::response_from_request(request.header());
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        })
    }
}
