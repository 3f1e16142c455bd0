//! kube-dns's Prometheus metrics, under the names CoreDNS (the DNS server upstream clusters run
//! as `kube-dns`) exports, so its dashboards and alerts work unchanged:
//! `coredns_dns_requests_total{proto,family,type}`, `coredns_dns_responses_total{rcode,plugin}`
//! and `coredns_dns_request_duration_seconds{type}`, each also labelled with the constant
//! `server`, `zone` and `view` of the one server block kube-dns has. Served on `/metrics` beside
//! the health routes.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use component_base::metrics::SharedRegistry;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_server::net::xfer::Protocol;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;

/// Labels as fixed-size arrays of static strings: building one for a query allocates nothing.
type RequestLabels = [(&'static str, &'static str); 3];
type ResponseLabels = [(&'static str, &'static str); 2];
type TypeLabel = [(&'static str, &'static str); 1];

/// Which part of kube-dns wrote an answer: CoreDNS's `plugin` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// A cluster name, answered from the Service index (CoreDNS's `kubernetes` plugin).
    Cluster,
    /// A name outside the cluster domain, answered by an upstream server.
    Forward,
    /// An error written before either (a malformed query, or no upstream answered).
    Server,
}

impl Answerer {
    fn label(self) -> &'static str {
        match self {
            Answerer::Cluster => "kubernetes",
            Answerer::Forward => "forward",
            Answerer::Server => "",
        }
    }
}

/// One answered query, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    /// The transport it came over.
    pub protocol: Protocol,
    /// The client's address.
    pub client: SocketAddr,
    /// The question's type (`None` when the query could not be read).
    pub query_type: Option<RecordType>,
    /// The answer's code.
    pub code: ResponseCode,
    /// Who answered.
    pub by: Answerer,
    /// From receipt to the answer being handed to the transport.
    pub elapsed: Duration,
}

/// The DNS server's metrics; clones share the same series.
#[derive(Clone)]
pub struct DnsMetrics {
    requests: Family<RequestLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    duration: Family<TypeLabel, Histogram>,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            responses: Family::default(),
            // CoreDNS's buckets: 0.25 ms doubling to about 8 s.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.00025, 2.0, 16))
            }),
        }
    }
}

impl DnsMetrics {
    /// Counts `answered`.
    pub fn observe(&self, answered: &Answered) {
        let qtype = type_label(answered.query_type);
        let proto = match answered.protocol {
            Protocol::Tcp => "tcp",
            _ => "udp",
        };
        let family = match answered.client.ip() {
            IpAddr::V4(_) => "1",
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => "1",
            IpAddr::V6(_) => "2",
        };
        self.requests
            .get_or_create(&[("proto", proto), ("family", family), ("type", qtype)])
            .inc();
        self.responses
            .get_or_create(&[
                ("rcode", rcode_label(answered.code)),
                ("plugin", answered.by.label()),
            ])
            .inc();
        self.duration
            .get_or_create(&[("type", qtype)])
            .observe(answered.elapsed.as_secs_f64());
    }

    /// Adds the metrics to `registry`, labelled with the server block serving `dns` (`server`
    /// is `dns://<bind>:<port>`, with an empty bind for all addresses, as CoreDNS writes it).
    pub fn register(&self, registry: &SharedRegistry, dns: SocketAddr) {
        let mut registry = match registry.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bind = if dns.ip().is_unspecified() {
            String::new()
        } else {
            dns.ip().to_string()
        };
        let labels = [
            (
                Cow::Borrowed("server"),
                Cow::Owned(format!("dns://{bind}:{}", dns.port())),
            ),
            (Cow::Borrowed("zone"), Cow::Borrowed(".")),
            (Cow::Borrowed("view"), Cow::Borrowed("")),
        ];
        let block = registry.sub_registry_with_labels(labels.into_iter());
        block.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family",
            self.requests.clone(),
        );
        block.register(
            "coredns_dns_responses",
            "Counter of response status codes",
            self.responses.clone(),
        );
        block.register_with_unit(
            "coredns_dns_request_duration",
            "Histogram of the time (in seconds) each request took",
            Unit::Seconds,
            self.duration.clone(),
        );
    }
}

/// CoreDNS's `type` label: the common types by name, every other as `other`.
fn type_label(query_type: Option<RecordType>) -> &'static str {
    match query_type {
        Some(RecordType::A) => "A",
        Some(RecordType::AAAA) => "AAAA",
        Some(RecordType::MX) => "MX",
        Some(RecordType::SOA) => "SOA",
        Some(RecordType::CNAME) => "CNAME",
        Some(RecordType::PTR) => "PTR",
        Some(RecordType::TXT) => "TXT",
        Some(RecordType::NS) => "NS",
        Some(RecordType::SRV) => "SRV",
        Some(RecordType::DS) => "DS",
        Some(RecordType::DNSKEY) => "DNSKEY",
        Some(RecordType::RRSIG) => "RRSIG",
        Some(RecordType::NSEC) => "NSEC",
        Some(RecordType::NSEC3) => "NSEC3",
        Some(RecordType::HTTPS) => "HTTPS",
        Some(RecordType::IXFR) => "IXFR",
        Some(RecordType::AXFR) => "AXFR",
        Some(RecordType::ANY) => "ANY",
        _ => "other",
    }
}

/// The response code's mnemonic, as CoreDNS labels it (codes without one are `other`).
fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(
        protocol: Protocol,
        client: &str,
        query_type: Option<RecordType>,
        code: ResponseCode,
        by: Answerer,
    ) -> Answered {
        Answered {
            protocol,
            client: client.parse().expect("address"),
            query_type,
            code,
            by,
            elapsed: Duration::from_micros(300),
        }
    }

    fn scrape(metrics: &DnsMetrics, dns: &str) -> String {
        let registry = SharedRegistry::default();
        metrics.register(&registry, dns.parse().expect("address"));
        component_base::metrics::encode(&registry).expect("encode")
    }

    #[test]
    fn queries_are_counted_by_transport_family_type_code_and_answerer() {
        let metrics = DnsMetrics::default();
        let udp4 = "10.244.0.5:40000";
        let tcp6 = "[fd00::5]:40000";
        use Answerer::*;
        use ResponseCode::*;
        let a = Some(RecordType::A);
        metrics.observe(&answered(Protocol::Udp, udp4, a, NoError, Cluster));
        metrics.observe(&answered(Protocol::Udp, udp4, a, NXDomain, Cluster));
        metrics.observe(&answered(Protocol::Tcp, tcp6, a, NoError, Forward));
        let caa = Some(RecordType::CAA);
        metrics.observe(&answered(
            Protocol::Udp,
            "[::ffff:10.0.0.1]:53",
            caa,
            ServFail,
            Server,
        ));
        metrics.observe(&answered(Protocol::Udp, udp4, None, FormErr, Server));

        let text = scrape(&metrics, "0.0.0.0:53");
        let block = r#"server="dns://:53",zone=".",view="""#;
        for line in [
            format!(r#"coredns_dns_requests_total{{{block},proto="udp",family="1",type="A"}} 2"#),
            format!(r#"coredns_dns_requests_total{{{block},proto="tcp",family="2",type="A"}} 1"#),
            format!(
                r#"coredns_dns_requests_total{{{block},proto="udp",family="1",type="other"}} 2"#
            ),
            format!(
                r#"coredns_dns_responses_total{{{block},rcode="NOERROR",plugin="kubernetes"}} 1"#
            ),
            format!(
                r#"coredns_dns_responses_total{{{block},rcode="NXDOMAIN",plugin="kubernetes"}} 1"#
            ),
            format!(r#"coredns_dns_responses_total{{{block},rcode="NOERROR",plugin="forward"}} 1"#),
            format!(r#"coredns_dns_responses_total{{{block},rcode="SERVFAIL",plugin=""}} 1"#),
            format!(r#"coredns_dns_responses_total{{{block},rcode="FORMERR",plugin=""}} 1"#),
            format!(r#"coredns_dns_request_duration_seconds_count{{{block},type="A"}} 3"#),
            format!(
                r#"coredns_dns_request_duration_seconds_bucket{{{block},le="0.0005",type="A"}} 3"#
            ),
            format!(
                r#"coredns_dns_request_duration_seconds_bucket{{{block},le="0.00025",type="A"}} 0"#
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.contains("# TYPE coredns_dns_request_duration_seconds histogram"));
    }

    #[test]
    fn a_bound_address_names_the_server_block() {
        let metrics = DnsMetrics::default();
        let client = "10.0.0.2:1000";
        let q = Some(RecordType::SRV);
        metrics.observe(&answered(
            Protocol::Udp,
            client,
            q,
            ResponseCode::NoError,
            Answerer::Cluster,
        ));
        let text = scrape(&metrics, "10.0.0.1:10053");
        assert!(
            text.contains(r#"{server="dns://10.0.0.1:10053",zone=".",view="",proto="udp",family="1",type="SRV"} 1"#),
            "{text}"
        );
    }
}
