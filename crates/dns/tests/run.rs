//! kube-dns started in-process against a fake apiserver: it registers its Service and
//! EndpointSlice, and answers names of Services that arrive over the watch.

mod fake_apiserver;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

async fn ask(server: SocketAddr, name: &str) -> anyhow::Result<Message> {
    let mut message = Message::query();
    message.metadata.id = 99;
    message.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.send_to(&message.to_vec()?, server).await?;
    let mut buffer = vec![0u8; 4096];
    let (len, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await??;
    Ok(Message::from_vec(&buffer[..len])?)
}

async fn resolves_to(server: SocketAddr, name: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    for _ in 0..100 {
        let reply = ask(server, name).await?;
        if reply.metadata.response_code == ResponseCode::NoError
            && reply.answers.iter().any(|r| r.data == RData::A(ip.into()))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name} never resolved to {ip}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_itself_and_answers_watched_services() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n")?;
    let api = fake_apiserver::FakeApiserver::default();
    api.collection(
        "/api/v1/services",
        "ServiceList",
        vec![serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}
        })],
    );
    api.collection(
        "/apis/discovery.k8s.io/v1/endpointslices",
        "EndpointSliceList",
        vec![],
    );
    let kubeconfig = api.start(dir.path()).await?;
    let options = kube_dns::Options::try_parse_from([
        "kube-dns",
        "--kubeconfig",
        kubeconfig.to_str().unwrap_or_default(),
        "--dns-bind-address",
        "127.0.0.1",
        "--dns-port",
        "0",
        "--health-port",
        "0",
        "--advertise-address",
        "192.0.2.2",
        "--upstream-resolv-conf",
        resolv.to_str().unwrap_or_default(),
    ])?;
    let dns = kube_dns::start(options).await?;

    resolves_to(
        dns.udp[0],
        "web.default.svc.cluster.local.",
        Ipv4Addr::new(10, 96, 0, 20),
    )
    .await?;
    api.event(
        "/api/v1/services",
        "ADDED",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "api", "namespace": "prod", "resourceVersion": "2"},
            "spec": {"clusterIP": "10.96.0.21", "ports": [{"port": 443}]}
        }),
    );
    resolves_to(
        dns.udp[0],
        "api.prod.svc.cluster.local.",
        Ipv4Addr::new(10, 96, 0, 21),
    )
    .await?;

    for _ in 0..100 {
        if api.created().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = api.created();
    let paths: Vec<&str> = created.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/api/v1/namespaces/kube-system/services",
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
        ]
    );
    assert_eq!(created[0].1["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(created[1].1["endpoints"][0]["addresses"][0], "192.0.2.2");

    let mut health = String::new();
    for _ in 0..100 {
        health = http_get(dns.health, "/readyz").await?;
        if health.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Every question above was an A question over UDP from IPv4, answered from the index; the
    // answers that did not resolve yet (NXDOMAIN while the watch caught up) count too.
    let metrics = http_get(dns.health, "/metrics").await?;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let block = format!(r#"server="dns://{}",zone=".",view="""#, dns.tcp);
    let requests = sample(
        &metrics,
        &format!(r#"coredns_dns_requests_total{{{block},proto="udp",family="1",type="A"}}"#),
    );
    let found = sample(
        &metrics,
        &format!(r#"coredns_dns_responses_total{{{block},rcode="NOERROR",plugin="kubernetes"}}"#),
    );
    let missing = sample(
        &metrics,
        &format!(r#"coredns_dns_responses_total{{{block},rcode="NXDOMAIN",plugin="kubernetes"}}"#),
    );
    assert!(found >= 2.0, "{metrics}");
    assert_eq!(requests, found + missing, "{metrics}");
    let timed = sample(
        &metrics,
        &format!(r#"coredns_dns_request_duration_seconds_count{{{block},type="A"}}"#),
    );
    assert_eq!(timed, requests, "{metrics}");
    dns.stop().await?;
    Ok(())
}

/// The value of the series `series` in a Prometheus text answer (0 when it is absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .next()
        .unwrap_or(0.0)
}

/// A minimal HTTP GET of `path` (no HTTP client crate in this workspace's dev-dependencies).
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    Ok(reply)
}
