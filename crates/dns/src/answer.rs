//! Pure question answering: one DNS question against the [`Index`] gives either a local answer
//! (records, or NXDOMAIN / NODATA with the zone SOA in authority) or "forward it upstream".

use std::net::Ipv4Addr;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::index::Index;

/// TTL of every record kube-dns serves (as CoreDNS's kubernetes plugin defaults to).
pub const TTL: u32 = 30;

/// What to do with a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Answered from the cluster data.
    Local(LocalAnswer),
    /// Not cluster data: ask the upstream servers.
    Forward,
}

/// A locally built answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalAnswer {
    /// NOERROR or NXDOMAIN.
    pub response_code: ResponseCode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// The zone SOA for negative answers (authority section).
    pub soa: Vec<Record>,
    /// Additional section (A records of SRV targets).
    pub additionals: Vec<Record>,
}

/// The zone's SOA record (CoreDNS's shape: `ns.dns.<zone>` / `hostmaster.<zone>`).
pub fn soa_record(zone: &Name) -> Record {
    let mname = Name::from_ascii("ns.dns")
        .and_then(|n| n.append_domain(zone))
        .unwrap_or_else(|_| zone.clone());
    let rname = Name::from_ascii("hostmaster")
        .and_then(|n| n.append_domain(zone))
        .unwrap_or_else(|_| zone.clone());
    Record::from_rdata(
        zone.clone(),
        TTL,
        RData::SOA(SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL)),
    )
}

/// `<a-b-c-d>.<ns>.pod.<zone>`: pod A records are derived from the name itself, as CoreDNS's
/// `pods insecure` mode does.
fn pod_address(index: &Index, name: &Name) -> Option<Ipv4Addr> {
    let zone_labels = usize::from(index.zone().num_labels());
    let labels: Vec<&[u8]> = name.iter().collect();
    if labels.len() != zone_labels + 3 || labels[2] != b"pod" {
        return None;
    }
    std::str::from_utf8(labels[0])
        .ok()?
        .replace('-', ".")
        .parse()
        .ok()
}

fn matches(data: &RData, query_type: RecordType) -> bool {
    query_type == RecordType::ANY || data.record_type() == query_type
}

/// Answers `query` from `index`, or says it must be forwarded.
pub fn resolve(index: &Index, query: &Query) -> Resolution {
    let mut lower = query.name().to_lowercase();
    lower.set_fqdn(true);
    let query_type = query.query_type();
    let owner = query.name().clone();

    if !index.zone().zone_of(&lower) {
        if matches!(query_type, RecordType::PTR | RecordType::ANY) && index.has_reverse(&lower) {
            let answers = index
                .records(&lower)
                .iter()
                .filter(|d| matches(d, query_type))
                .map(|d| Record::from_rdata(owner.clone(), TTL, d.clone()))
                .collect();
            return Resolution::Local(LocalAnswer {
                answers,
                ..LocalAnswer::default()
            });
        }
        return Resolution::Forward;
    }

    let soa = soa_record(index.zone());
    if let Some(ip) = pod_address(index, &lower) {
        let answers = if matches!(query_type, RecordType::A | RecordType::ANY) {
            vec![Record::from_rdata(owner, TTL, RData::A(A(ip)))]
        } else {
            Vec::new()
        };
        let soa = if answers.is_empty() {
            vec![soa]
        } else {
            Vec::new()
        };
        return Resolution::Local(LocalAnswer {
            answers,
            soa,
            ..LocalAnswer::default()
        });
    }
    if !index.exists(&lower) {
        return Resolution::Local(LocalAnswer {
            response_code: ResponseCode::NXDomain,
            soa: vec![soa],
            ..LocalAnswer::default()
        });
    }
    if lower == *index.zone() && matches!(query_type, RecordType::SOA | RecordType::ANY) {
        return Resolution::Local(LocalAnswer {
            answers: vec![soa],
            ..LocalAnswer::default()
        });
    }

    let records = index.records(&lower);
    let mut selected: Vec<&RData> = records.iter().filter(|d| matches(d, query_type)).collect();
    if selected.is_empty() {
        // An alias answers every type (the client resolver follows it).
        selected = records
            .iter()
            .filter(|d| d.record_type() == RecordType::CNAME)
            .collect();
    }
    let answers: Vec<Record> = selected
        .iter()
        .map(|d| Record::from_rdata(owner.clone(), TTL, (*d).clone()))
        .collect();
    let mut additionals = Vec::new();
    for data in &selected {
        if let RData::SRV(srv) = data {
            let target = srv.target.to_lowercase();
            for address in index.records(&target) {
                if address.record_type() == RecordType::A {
                    additionals.push(Record::from_rdata(srv.target.clone(), TTL, address.clone()));
                }
            }
        }
    }
    let soa = if answers.is_empty() {
        vec![soa]
    } else {
        Vec::new()
    };
    Resolution::Local(LocalAnswer {
        response_code: ResponseCode::NoError,
        answers,
        soa,
        additionals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::fixtures::{service, slice};

    fn index() -> Index {
        let web = service("default", "web", "10.96.0.20", &[("http", 80, "TCP")]);
        let db = service("data", "db", "None", &[]);
        let eps = slice(
            "data",
            "db",
            &[("pg", 5432)],
            &[("10.244.0.5", Some("db-0"), true)],
        );
        Index::build("cluster.local", [&web, &db], [&eps]).expect("index")
    }

    fn ask(name: &str, query_type: RecordType) -> Resolution {
        let query = Query::query(Name::from_ascii(name).expect("name"), query_type);
        resolve(&index(), &query)
    }

    fn local(resolution: Resolution) -> LocalAnswer {
        match resolution {
            Resolution::Local(answer) => answer,
            Resolution::Forward => panic!("expected a local answer"),
        }
    }

    #[test]
    fn service_name_resolves_case_insensitively_keeping_the_question_case() {
        let answer = local(ask("Web.Default.SVC.cluster.local.", RecordType::A));
        assert_eq!(answer.response_code, ResponseCode::NoError);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(
            answer.answers[0].name.to_ascii(),
            "Web.Default.SVC.cluster.local."
        );
        assert_eq!(answer.answers[0].ttl, TTL);
        assert_eq!(
            answer.answers[0].data,
            RData::A(A(Ipv4Addr::new(10, 96, 0, 20)))
        );
    }

    #[test]
    fn unknown_name_in_the_zone_is_nxdomain_with_soa() {
        let answer = local(ask("nope.default.svc.cluster.local.", RecordType::A));
        assert_eq!(answer.response_code, ResponseCode::NXDomain);
        assert!(answer.answers.is_empty());
        assert_eq!(answer.soa.len(), 1);
        assert_eq!(answer.soa[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn other_types_of_existing_names_are_nodata() {
        let answer = local(ask("web.default.svc.cluster.local.", RecordType::AAAA));
        assert_eq!(answer.response_code, ResponseCode::NoError);
        assert!(answer.answers.is_empty());
        assert_eq!(answer.soa.len(), 1);
        let answer = local(ask("default.svc.cluster.local.", RecordType::A));
        assert_eq!(answer.response_code, ResponseCode::NoError);
    }

    #[test]
    fn srv_answers_carry_target_addresses() {
        let answer = local(ask("_pg._tcp.db.data.svc.cluster.local.", RecordType::SRV));
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.additionals.len(), 1);
        assert_eq!(
            answer.additionals[0].name.to_ascii(),
            "db-0.db.data.svc.cluster.local."
        );
    }

    #[test]
    fn ptr_of_a_service_ip_is_answered_and_other_reverse_names_forwarded() {
        let answer = local(ask("20.0.96.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(
            answer.answers[0].data.to_string(),
            "web.default.svc.cluster.local."
        );
        assert_eq!(
            ask("1.1.168.192.in-addr.arpa.", RecordType::PTR),
            Resolution::Forward
        );
    }

    #[test]
    fn names_outside_the_zone_are_forwarded() {
        assert_eq!(ask("example.org.", RecordType::A), Resolution::Forward);
    }

    #[test]
    fn pod_names_resolve_from_the_dashed_address() {
        let answer = local(ask("10-244-0-9.default.pod.cluster.local.", RecordType::A));
        assert_eq!(
            answer.answers[0].data,
            RData::A(A(Ipv4Addr::new(10, 244, 0, 9)))
        );
    }
}
