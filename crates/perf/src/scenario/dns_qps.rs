//! `dns-qps`: queries per second of kube-dns. The real server code (`kube_dns::server`, the
//! hickory handler over an index built by `kube_dns::index::Index` from N fake Services) runs
//! in-process on 127.0.0.1; C client tasks each send A queries for random service names over
//! their own UDP socket, one outstanding at a time, for D seconds. Floor: the same clients
//! against a trivial UDP echo server in the same process (a UDP round trip through tokio).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::ObjectMeta;
use kube_dns::forward::Forwarder;
use kube_dns::index::Index;
use kube_dns::server::{ClusterDns, DnsServer, SharedIndex};
use tokio::net::UdpSocket;

use super::ScenarioError;
use crate::procs;
use crate::report::{Latencies, Report};

/// DNS load settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsQpsOptions {
    /// Services in the index (queried at random).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Concurrent client tasks (each one query in flight).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
}

const DOMAIN: &str = "cluster.local";
/// How long a client waits for one answer before counting a loss.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

fn command(what: &str) -> impl Fn(std::io::Error) -> ScenarioError + '_ {
    move |e| ScenarioError::Command {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

fn services(count: usize) -> Vec<Service> {
    (0..count)
        .map(|i| Service {
            metadata: ObjectMeta {
                name: Some(format!("svc-{i}")),
                namespace: Some("perf".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(
                    Ipv4Addr::new(10, 96, ((i >> 8) & 0xff) as u8, (i & 0xff) as u8).to_string(),
                ),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// A DNS query for `name` type A, class IN, recursion desired (RFC 1035 wire format).
fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

/// Whether `reply` answers query `id` with NOERROR and at least one answer record (for the
/// echo floor, the query itself comes back: same id, and it is accepted as is).
fn answered(reply: &[u8], id: u16, echo: bool) -> bool {
    if reply.len() < 12 || reply[..2] != id.to_be_bytes() {
        return false;
    }
    echo || (reply[3] & 0x0f == 0 && u16::from_be_bytes([reply[6], reply[7]]) > 0)
}

/// What the clients measured against one server.
struct Load {
    latencies: Latencies,
    answered: usize,
    failed: usize,
    elapsed: Duration,
}

/// Runs `clients` tasks querying `server` for `duration`.
async fn load(
    server: SocketAddr,
    services: usize,
    clients: usize,
    duration: Duration,
    echo: bool,
) -> Result<Load, ScenarioError> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients.max(1) {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(command("binding a client socket"))?;
        socket
            .connect(server)
            .await
            .map_err(command("connecting a client socket"))?;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failed = 0usize;
            let mut buffer = vec![0u8; 4096];
            let mut n = client as u64 * 7919;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = (n >> 48) as u16;
                let service = (n >> 16) as usize % services.max(1);
                let query = a_query(id, &format!("svc-{service}.perf.svc.{DOMAIN}"));
                let sent = Instant::now();
                if socket.send(&query).await.is_err() {
                    failed += 1;
                    continue;
                }
                let ok = loop {
                    match tokio::time::timeout(ANSWER_TIMEOUT, socket.recv(&mut buffer)).await {
                        Ok(Ok(len)) if buffer[..len.min(2)] == id.to_be_bytes() => {
                            break answered(&buffer[..len], id, echo);
                        }
                        // A late answer to an earlier (timed-out) query: keep waiting.
                        Ok(Ok(_)) => continue,
                        Ok(Err(_)) | Err(_) => break false,
                    }
                };
                if ok {
                    samples.push(sent.elapsed());
                } else {
                    failed += 1;
                }
            }
            (samples, failed)
        }));
    }
    let mut samples = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (mut s, f) = task.await.map_err(|e| ScenarioError::Command {
            what: "dns client".into(),
            detail: e.to_string(),
        })?;
        samples.append(&mut s);
        failed += f;
    }
    Ok(Load {
        answered: samples.len(),
        latencies: Latencies::from_samples(samples),
        failed,
        elapsed: started.elapsed(),
    })
}

/// A UDP echo server on 127.0.0.1 (the floor); stops when the returned handle is aborted.
async fn echo_server() -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ScenarioError> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(command("binding the echo server"))?;
    let addr = socket
        .local_addr()
        .map_err(command("binding the echo server"))?;
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            match socket.recv_from(&mut buffer).await {
                Ok((len, peer)) => {
                    if let Err(error) = socket.send_to(&buffer[..len], peer).await {
                        tracing::debug!(%error, "echo reply");
                    }
                }
                Err(error) => tracing::debug!(%error, "echo receive"),
            }
        }
    });
    Ok((addr, task))
}

/// Runs the scenario.
pub async fn run(o: &DnsQpsOptions) -> Result<Report, ScenarioError> {
    let objects = services(o.services);
    let index = Index::build(DOMAIN, &objects, []).map_err(|e| ScenarioError::Command {
        what: "building the DNS index".into(),
        detail: e.to_string(),
    })?;
    let handler = ClusterDns::new(
        SharedIndex::new(index),
        Forwarder::new(Vec::new(), Duration::from_secs(1)),
        kube_dns::metrics::DnsMetrics::default(),
    );
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = DnsServer::bind(&[localhost], localhost, handler)
        .await
        .map_err(|e| ScenarioError::Command {
            what: "starting the DNS server".into(),
            detail: e.to_string(),
        })?;
    let duration = Duration::from_secs(o.duration.max(1));
    let result = match server.udp.first().copied() {
        Some(addr) => load(addr, o.services, o.clients, duration, false).await,
        None => Err(ScenarioError::Command {
            what: "starting the DNS server".into(),
            detail: "no UDP socket".into(),
        }),
    };
    if let Err(error) = server.shutdown().await {
        tracing::debug!(%error, "stopping the DNS server");
    }
    let dns = result?;
    let (echo_addr, echo_task) = echo_server().await?;
    let floor = load(echo_addr, o.services, o.clients, duration, true).await;
    echo_task.abort();
    let floor = floor?;

    let qps = |l: &Load| l.answered as f64 / l.elapsed.as_secs_f64().max(1e-9);
    let mut report = Report::new(format!(
        "dns-qps: {} services, {} UDP clients, {} s (in-process kube-dns)",
        o.services, o.clients, o.duration
    ));
    report.row(
        "A queries answered per second",
        qps(&dns),
        Some(qps(&floor)),
        "",
    );
    report.row(
        "query latency p50 (ms)",
        dns.latencies.ms(0.5),
        Some(floor.latencies.ms(0.5)),
        "",
    );
    report.row(
        "query latency p99 (ms)",
        dns.latencies.ms(0.99),
        Some(floor.latencies.ms(0.99)),
        "",
    );
    report.row("failed or unanswered queries", dns.failed as f64, None, "0");
    report.notes.push(
        "floor: the same clients against a UDP echo server in the same process (one tokio UDP \
         round trip per query)"
            .into(),
    );
    report.processes = procs::read_self("kube-perf (kube-dns in-process)")
        .into_iter()
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_well_formed_and_answers_are_checked() {
        let query = a_query(0x1234, "web.default.svc.cluster.local");
        assert_eq!(&query[..2], &[0x12, 0x34]);
        assert_eq!(query[12], 3);
        assert_eq!(&query[13..16], b"web");
        assert_eq!(&query[query.len() - 5..], &[0, 0, 1, 0, 1]);
        // The echo is accepted only as the floor.
        assert!(answered(&query, 0x1234, true));
        assert!(!answered(&query, 0x1234, false));
        assert!(!answered(&query, 0x4321, true));
    }

    #[tokio::test]
    async fn the_in_process_server_answers() -> anyhow::Result<()> {
        let report = run(&DnsQpsOptions {
            services: 10,
            clients: 2,
            duration: 1,
        })
        .await?;
        assert!(report.rows[0].ours > 0.0, "{:?}", report.rows);
        assert_eq!(report.rows[3].ours, 0.0, "{:?}", report.rows);
        Ok(())
    }
}
