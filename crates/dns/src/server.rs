//! The hickory-server request handler ([`ClusterDns`]) and the UDP+TCP server around it.
//!
//! Each question is [`resolve`]d against the current [`Index`]; cluster names are answered
//! authoritatively, everything else is forwarded upstream (SERVFAIL when no upstream answers).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;

use crate::answer::{resolve, Resolution};
use crate::forward::Forwarder;
use crate::index::Index;
use crate::metrics::{Answered, Answerer, DnsMetrics};

/// The index the handler answers from; the watch loop swaps in a new one on every change.
#[derive(Debug, Clone)]
pub struct SharedIndex(Arc<RwLock<Arc<Index>>>);

impl SharedIndex {
    /// Starts with `index`.
    pub fn new(index: Index) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(index))))
    }

    /// The current index.
    pub fn get(&self) -> Arc<Index> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the index.
    pub fn set(&self, index: Index) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(index);
    }
}

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The UDP socket could not be bound.
    #[error("binding UDP {addr}: {source}")]
    BindUdp {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP listener could not be bound.
    #[error("binding TCP {addr}: {source}")]
    BindTcp {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("DNS server: {0}")]
    Serve(#[from] hickory_server::net::NetError),
}

/// Answers cluster names from the index and forwards the rest.
pub struct ClusterDns {
    index: SharedIndex,
    forwarder: Forwarder,
    metrics: DnsMetrics,
}

impl ClusterDns {
    /// A handler over `index`, forwarding through `forwarder` and counting in `metrics`.
    pub fn new(index: SharedIndex, forwarder: Forwarder, metrics: DnsMetrics) -> Self {
        Self {
            index,
            forwarder,
            metrics,
        }
    }

    /// Counts an answer to `request` received at `start`.
    fn observe(
        &self,
        request: &Request,
        start: Instant,
        query_type: Option<hickory_proto::rr::RecordType>,
        code: ResponseCode,
        by: Answerer,
    ) {
        self.metrics.observe(&Answered {
            protocol: request.protocol(),
            client: request.src(),
            query_type,
            code,
            by,
            elapsed: start.elapsed(),
        });
    }
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let response_edns = request.edns.as_ref().map(|edns| {
            let mut ours = Edns::new();
            ours.set_max_payload(edns.max_payload().max(512));
            ours.set_version(0);
            ours
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = response_edns.as_ref() {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;

        let code = if request.metadata.message_type != MessageType::Query {
            Some(ResponseCode::FormErr)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        let info = request.request_info();
        let query = match (code, &info) {
            (None, Ok(info)) => info.query.original().clone(),
            (code, _) => {
                let code = code.unwrap_or(ResponseCode::FormErr);
                let response = builder.error_msg(&request.metadata, code);
                let query_type = info.as_ref().ok().map(|i| i.query.query_type());
                self.observe(request, start, query_type, code, Answerer::Server);
                return match response_handle.send_response(response).await {
                    Ok(info) => info,
                    Err(error) => {
                        tracing::warn!(%error, "sending DNS error response");
                        failed(request, code)
                    }
                };
            }
        };

        let index = self.index.get();
        let mut by = Answerer::Server;
        let (answers, authorities, soa, additionals): (
            Vec<Record>,
            Vec<Record>,
            Vec<Record>,
            Vec<Record>,
        ) = match resolve(&index, &query) {
            Resolution::Local(answer) => {
                by = Answerer::Cluster;
                metadata.authoritative = true;
                metadata.response_code = answer.response_code;
                (answer.answers, Vec::new(), answer.soa, answer.additionals)
            }
            Resolution::Forward => match self.forwarder.forward(request.as_slice()).await {
                Ok(reply) => {
                    by = Answerer::Forward;
                    metadata.response_code = reply.metadata.response_code;
                    (
                        reply.answers,
                        reply.authorities,
                        Vec::new(),
                        reply.additionals,
                    )
                }
                Err(error) => {
                    tracing::debug!(%error, name = %query.name(), "forwarding failed");
                    metadata.response_code = ResponseCode::ServFail;
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new())
                }
            },
        };
        tracing::debug!(
            name = %query.name(),
            query_type = %query.query_type(),
            code = %metadata.response_code,
            answers = answers.len(),
            "answered"
        );
        let code = metadata.response_code;
        self.observe(request, start, Some(query.query_type()), code, by);
        let response = builder.build(
            metadata,
            answers.iter(),
            authorities.iter(),
            soa.iter(),
            additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "sending DNS response");
                failed(request, code)
            }
        }
    }
}

/// A running DNS server and the addresses it listens on.
pub struct DnsServer {
    server: Server<ClusterDns>,
    /// The bound UDP addresses.
    pub udp: Vec<SocketAddr>,
    /// The bound TCP address.
    pub tcp: SocketAddr,
}

/// The UDP addresses to bind for `bind:port`.
///
/// A UDP socket bound to the wildcard address answers from whatever source address the route
/// back to the client picks, which for a pod behind the bridge is the bridge address, not the
/// node IP the query was DNATed to; conntrack then cannot reverse the DNAT and the pod's
/// resolver drops the reply. So an unspecified IPv4 bind address becomes one socket per local
/// IPv4 address (those present at start; the node IP the EndpointSlice advertises among them).
pub fn udp_bind_addresses(bind: IpAddr, port: u16) -> Vec<SocketAddr> {
    if bind != IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        return vec![SocketAddr::new(bind, port)];
    }
    let addresses = match nix::ifaddrs::getifaddrs() {
        Ok(interfaces) => interfaces
            .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
            .collect::<BTreeSet<Ipv4Addr>>(),
        Err(error) => {
            tracing::warn!(%error, "cannot list local addresses; binding UDP to 0.0.0.0");
            BTreeSet::new()
        }
    };
    if addresses.is_empty() {
        return vec![SocketAddr::new(bind, port)];
    }
    addresses
        .into_iter()
        .map(|ip| SocketAddr::new(IpAddr::V4(ip), port))
        .collect()
}

impl DnsServer {
    /// Binds UDP on every address of `udp` and TCP on `tcp` (port 0 picks a free port for each)
    /// and starts serving.
    pub async fn bind(
        udp: &[SocketAddr],
        tcp: SocketAddr,
        handler: ClusterDns,
    ) -> Result<Self, ServerError> {
        let mut server = Server::new(handler);
        let mut udp_bound = Vec::new();
        for addr in udp {
            let addr = *addr;
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .map_err(|source| ServerError::BindUdp { addr, source })?;
            udp_bound.push(
                socket
                    .local_addr()
                    .map_err(|source| ServerError::BindUdp { addr, source })?,
            );
            server.register_socket(socket);
        }
        let listener = tokio::net::TcpListener::bind(tcp)
            .await
            .map_err(|source| ServerError::BindTcp { addr: tcp, source })?;
        let tcp = listener
            .local_addr()
            .map_err(|source| ServerError::BindTcp { addr: tcp, source })?;
        server.register_listener(listener, Duration::from_secs(5), 16);
        Ok(Self {
            server,
            udp: udp_bound,
            tcp,
        })
    }

    /// Stops accepting questions and waits for the workers.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.server.shutdown_gracefully().await?;
        Ok(())
    }

    /// Serves until the server stops on its own (normally never).
    pub async fn wait(mut self) -> Result<(), ServerError> {
        self.server.block_until_done().await?;
        Ok(())
    }
}
