//! Forwarding of names outside the cluster domain to the host's resolvers (`nameserver` lines of
//! `--upstream-resolv-conf`), over UDP with a TCP retry when the reply is truncated.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why a forwarded question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The resolv.conf file could not be read.
    #[error("reading {path}: {source}")]
    ReadResolvConf {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No upstream server is configured.
    #[error("no upstream nameserver configured")]
    NoServers,
    /// A query too short to be DNS.
    #[error("query too short to forward")]
    ShortQuery,
    /// Talking to an upstream server failed.
    #[error("upstream {server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An upstream server did not answer in time.
    #[error("upstream {0} timed out")]
    Timeout(SocketAddr),
    /// An upstream reply could not be decoded.
    #[error("upstream {server} sent an undecodable reply: {source}")]
    Decode {
        /// The server.
        server: SocketAddr,
        /// The decode error.
        #[source]
        source: hickory_proto::serialize::binary::DecodeError,
    },
}

/// Sends questions to upstream servers in order until one answers.
#[derive(Debug, Clone)]
pub struct Forwarder {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

/// The `nameserver` addresses of a resolv.conf text, as `addr:53`.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|addr| addr.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

impl Forwarder {
    /// A forwarder to `servers`, waiting `timeout` for each.
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { servers, timeout }
    }

    /// A forwarder to the nameservers of the resolv.conf at `path`.
    pub fn from_resolv_conf(path: &Path, timeout: Duration) -> Result<Self, ForwardError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ForwardError::ReadResolvConf {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self::new(parse_resolv_conf(&text), timeout))
    }

    /// The configured servers.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Forwards the raw `query` (recursion desired is set) and returns the first reply.
    pub async fn forward(&self, query: &[u8]) -> Result<Message, ForwardError> {
        if query.len() < 12 {
            return Err(ForwardError::ShortQuery);
        }
        let mut query = query.to_vec();
        query[2] |= 0x01; // RD
        let mut last = ForwardError::NoServers;
        for server in &self.servers {
            match self.ask(*server, &query).await {
                Ok(reply) => return Ok(reply),
                Err(error) => {
                    tracing::debug!(%error, %server, "upstream failed; trying the next one");
                    last = error;
                }
            }
        }
        Err(last)
    }

    async fn ask(&self, server: SocketAddr, query: &[u8]) -> Result<Message, ForwardError> {
        let reply = tokio::time::timeout(self.timeout, udp_exchange(server, query))
            .await
            .map_err(|_| ForwardError::Timeout(server))??;
        if reply.metadata.truncation {
            return tokio::time::timeout(self.timeout, tcp_exchange(server, query))
                .await
                .map_err(|_| ForwardError::Timeout(server))?;
        }
        Ok(reply)
    }
}

fn io(server: SocketAddr) -> impl Fn(std::io::Error) -> ForwardError {
    move |source| ForwardError::Io { server, source }
}

fn decode(server: SocketAddr, bytes: &[u8]) -> Result<Message, ForwardError> {
    Message::from_vec(bytes).map_err(|source| ForwardError::Decode { server, source })
}

async fn udp_exchange(server: SocketAddr, query: &[u8]) -> Result<Message, ForwardError> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io(server))?;
    socket.connect(server).await.map_err(io(server))?;
    socket.send(query).await.map_err(io(server))?;
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut buffer = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buffer).await.map_err(io(server))?;
        let reply = decode(server, &buffer[..len])?;
        if reply.metadata.id == id {
            return Ok(reply);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> Result<Message, ForwardError> {
    let mut stream = TcpStream::connect(server).await.map_err(io(server))?;
    let len = u16::try_from(query.len()).map_err(|_| ForwardError::ShortQuery)?;
    stream
        .write_all(&len.to_be_bytes())
        .await
        .map_err(io(server))?;
    stream.write_all(query).await.map_err(io(server))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io(server))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await.map_err(io(server))?;
    decode(server, &reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_parsed() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver fd00::53\noptions ndots:5\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().expect("addr"),
                "[fd00::53]:53".parse().expect("addr"),
            ]
        );
    }

    #[tokio::test]
    async fn no_servers_is_an_error() {
        let forwarder = Forwarder::new(Vec::new(), Duration::from_millis(100));
        assert!(matches!(
            forwarder.forward(&[0u8; 12]).await,
            Err(ForwardError::NoServers)
        ));
    }
}
