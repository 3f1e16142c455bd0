//! kube-dns over real sockets on 127.0.0.1: cluster names over UDP and TCP, NXDOMAIN, forwarding
//! to a local fake upstream (never a public server), SERVFAIL when the upstream is unreachable.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use kube_dns::forward::Forwarder;
use kube_dns::index::Index;
use kube_dns::metrics::DnsMetrics;
use kube_dns::server::{ClusterDns, DnsServer, SharedIndex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn web_service(ip: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("valid Service")
}

fn query(name: &str, query_type: RecordType, id: u16) -> anyhow::Result<Vec<u8>> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name)?, query_type));
    Ok(message.to_vec()?)
}

async fn ask_udp(
    server: SocketAddr,
    name: &str,
    query_type: RecordType,
) -> anyhow::Result<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket
        .send_to(&query(name, query_type, 4242)?, server)
        .await?;
    let mut buffer = vec![0u8; 4096];
    let (len, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await??;
    let reply = Message::from_vec(&buffer[..len])?;
    assert_eq!(reply.metadata.id, 4242);
    Ok(reply)
}

async fn ask_tcp(
    server: SocketAddr,
    name: &str,
    query_type: RecordType,
) -> anyhow::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let bytes = query(name, query_type, 7)?;
    stream
        .write_all(&u16::try_from(bytes.len())?.to_be_bytes())
        .await?;
    stream.write_all(&bytes).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    Ok(Message::from_vec(&reply)?)
}

/// A fake upstream resolver answering every A question with 192.0.2.123.
async fn fake_upstream() -> anyhow::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            let Ok(request) = Message::from_vec(&buffer[..len]) else {
                continue;
            };
            let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
            reply.metadata.recursion_desired = request.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            // Record whether recursion was asked for in the TTL, so the test can check it.
            let ttl = if request.metadata.recursion_desired {
                300
            } else {
                1
            };
            for q in &request.queries {
                reply.add_query(q.clone());
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    ttl,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 123))),
                ));
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    Ok(addr)
}

fn a_records(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn answers_cluster_names_and_forwards_the_rest() -> anyhow::Result<()> {
    let upstream = fake_upstream().await?;
    let index = SharedIndex::new(Index::build(
        "cluster.local",
        [&web_service("10.96.0.20")],
        [],
    )?);
    let handler = ClusterDns::new(
        index.clone(),
        Forwarder::new(vec![upstream], Duration::from_secs(2)),
        DnsMetrics::default(),
    );
    let server =
        DnsServer::bind(&["127.0.0.1:0".parse()?], "127.0.0.1:0".parse()?, handler).await?;

    let reply = ask_udp(
        server.udp[0],
        "web.default.svc.cluster.local.",
        RecordType::A,
    )
    .await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 96, 0, 20)]);
    assert_eq!(reply.answers[0].ttl, 30);

    let reply = ask_tcp(server.tcp, "WEB.default.svc.cluster.local.", RecordType::A).await?;
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 96, 0, 20)]);

    let reply = ask_udp(
        server.udp[0],
        "nope.default.svc.cluster.local.",
        RecordType::A,
    )
    .await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.authorities.len(), 1);
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);

    let reply = ask_udp(server.udp[0], "example.org.", RecordType::A).await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 123)]);
    assert_eq!(
        reply.answers[0].ttl, 300,
        "forwarded with recursion desired"
    );

    // A new index is served at once.
    index.set(Index::build(
        "cluster.local",
        [&web_service("10.96.0.21")],
        [],
    )?);
    let reply = ask_udp(
        server.udp[0],
        "web.default.svc.cluster.local.",
        RecordType::A,
    )
    .await?;
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 96, 0, 21)]);

    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn unreachable_upstream_gives_servfail() -> anyhow::Result<()> {
    let dead = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.local_addr()?
    };
    let index = SharedIndex::new(Index::new("cluster.local")?);
    let handler = ClusterDns::new(
        index,
        Forwarder::new(vec![dead], Duration::from_millis(500)),
        DnsMetrics::default(),
    );
    let server =
        DnsServer::bind(&["127.0.0.1:0".parse()?], "127.0.0.1:0".parse()?, handler).await?;
    let reply = ask_udp(server.udp[0], "example.org.", RecordType::A).await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    server.shutdown().await?;
    Ok(())
}
