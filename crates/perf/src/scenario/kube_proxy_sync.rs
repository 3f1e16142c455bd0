//! `kube-proxy-sync`: time of a full sync through kube-proxy's real nftables backend (S Services
//! with E endpoints each, fed to its `Proxier` as the watch would, rules built and applied
//! through `nft`) against raw `nft -f` of the same script, and of a one-endpoint change (one
//! EndpointSlice gets a new endpoint IP: the watch event, the incremental sync of that one
//! service) against raw `nft -f` of the same incremental script. Uses its own table
//! (`kube-perf-<pid>`) and addresses from the benchmarking range 198.18.0.0/15, so a running
//! kube-proxy is never touched; the table is deleted at the end. Needs root and nft.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::ObjectMeta;
use kube_proxy::model::delete_table_transaction;
use kube_proxy::nft::{NftCommand, NftError, Nftables};
use kube_proxy::objects::Objects;
use kube_proxy::proxier::Proxier;
use kube_proxy::rules::{build_table, service_key, service_rules, RuleConfig, SERVICE_NAME_LABEL};
use kube_proxy::sync::SyncKind;
use kube_proxy::table::Delta;

use super::ScenarioError;
use crate::procs;
use crate::report::{Latencies, Report};

/// kube-proxy sync settings.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeProxySyncOptions {
    /// Services (one TCP port each).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Endpoints per service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// Repetitions of each full-sync measurement.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Repetitions of the one-endpoint change.
    #[arg(long, default_value_t = 20)]
    pub change_rounds: usize,
    /// The nft binary.
    #[arg(long, default_value = "/usr/sbin/nft")]
    pub nft: String,
}

fn ip(base: [u8; 2], n: usize) -> String {
    format!("{}.{}.{}.{}", base[0], base[1], (n >> 8) & 0xff, n & 0xff)
}

fn objects(o: &KubeProxySyncOptions) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    let mut endpoint_n = 1usize;
    for i in 0..o.services {
        let name = format!("svc-{i}");
        services.push(Service {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("perf".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip([198, 18], i + 1)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let endpoints = (0..o.endpoints)
            .map(|_| {
                endpoint_n += 1;
                Endpoint {
                    addresses: vec![ip([198, 19], endpoint_n)],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    ..Default::default()
                }
            })
            .collect();
        slices.push(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{name}-abc")),
                namespace: Some("perf".into()),
                labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), name)])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        });
    }
    (services, slices)
}

fn nft_err(what: &str) -> impl FnOnce(kube_proxy::nft::NftError) -> ScenarioError {
    let what = what.to_string();
    move |e| ScenarioError::Command {
        what,
        detail: e.to_string(),
    }
}

/// Runs the scenario (blocking nft calls run on a blocking thread).
pub async fn run(o: &KubeProxySyncOptions) -> Result<Report, ScenarioError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(ScenarioError::Unsupported(
            "kube-proxy-sync applies nftables rules: run it as root".into(),
        ));
    }
    let o = o.clone();
    tokio::task::spawn_blocking(move || measure(&o))
        .await
        .map_err(|e| ScenarioError::Command {
            what: "kube-proxy-sync".into(),
            detail: e.to_string(),
        })?
}

fn measure(o: &KubeProxySyncOptions) -> Result<Report, ScenarioError> {
    let table = format!("kube-perf-{}", std::process::id());
    let nft = Arc::new(Timed::new(Arc::new(NftCommand::new(&o.nft))));
    let result = measure_in(o, &table, nft.clone());
    if let Err(error) = nft.apply(&delete_table_transaction(&table)) {
        tracing::debug!(%error, "deleting the benchmark table");
    }
    result
}

/// The real nft, remembering the last script and how long `nft -f` took for it.
struct Timed {
    inner: Arc<dyn Nftables>,
    last: Mutex<(String, Duration)>,
}

impl Timed {
    fn new(inner: Arc<dyn Nftables>) -> Self {
        Self {
            inner,
            last: Mutex::new((String::new(), Duration::ZERO)),
        }
    }

    fn last(&self) -> (String, Duration) {
        self.last
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

impl Nftables for Timed {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        let t = Instant::now();
        let result = self.inner.apply(script);
        let took = t.elapsed();
        if let Ok(mut last) = self.last.lock() {
            *last = (script.to_string(), took);
        }
        result
    }

    fn list_table(&self, table: &str) -> Result<String, NftError> {
        self.inner.list_table(table)
    }
}

/// Timings of the one-endpoint change.
struct Change {
    /// Watch event in, incremental sync of the one service through the `Proxier` (nft included).
    sync: Latencies,
    /// The nft part of it.
    nft: Latencies,
    /// Raw `nft -f` of the same incremental script.
    raw: Latencies,
    /// The script of the last change.
    script: String,
}

fn wrong_kind(what: &str, kind: SyncKind) -> ScenarioError {
    ScenarioError::Command {
        what: what.into(),
        detail: format!("unexpected sync kind {kind:?}"),
    }
}

/// Loads the table through a `Proxier`, then replaces one endpoint of service 0
/// `change_rounds` times (an EndpointSlice watch event, then the incremental sync). After each
/// change the reverse and the same change again go straight to `nft -f` (leaving the kernel
/// where the proxier believes it is); the reverse comes from a shadow copy of the table.
fn measure_change(
    o: &KubeProxySyncOptions,
    config: &RuleConfig,
    nft: Arc<Timed>,
    services: &[Service],
    slices: &[EndpointSlice],
) -> Result<Change, ScenarioError> {
    let mut change = Change {
        sync: Latencies::new(),
        nft: Latencies::new(),
        raw: Latencies::new(),
        script: String::new(),
    };
    if services.is_empty() || o.endpoints == 0 {
        return Ok(change);
    }
    let mut objects = Objects::new();
    objects.replace_services(services.to_vec());
    objects.replace_slices(slices.to_vec());
    objects.take_changes();
    let mut proxier = Proxier::new(nft.clone(), Duration::from_secs(3600));
    let now = Instant::now();
    proxier
        .sync_all(config, &objects.all_inputs(), now)
        .map_err(nft_err("loading the table"))?;
    let mut shadow = build_table(config, services, slices);
    let key = service_key(&services[0]);
    let mut slice = slices[0].clone();
    for round in 0..o.change_rounds.max(1) {
        let previous = service_rules(config, &services[0], &[&slice]);
        // A fresh address from the top of the endpoint range for the first endpoint.
        slice.endpoints[0].addresses = vec![ip([198, 19], 0xfff0 - (round % 8))];
        let t = Instant::now();
        objects.apply_slice(slice.clone());
        let changes = objects.take_changes();
        let inputs: Vec<_> = changes.services.iter().map(|k| objects.input(k)).collect();
        let report = proxier
            .sync_changed(&inputs)
            .map_err(nft_err("incremental sync"))?;
        let synced = t.elapsed();
        if report.kind != SyncKind::Incremental {
            return Err(wrong_kind("one-endpoint change", report.kind));
        }
        let (script, nft_took) = nft.last();
        change.sync.push(synced);
        change.nft.push(nft_took);
        // The same change on the shadow table gives the same script, and its reverse.
        shadow.set_service(key.clone(), service_rules(config, &services[0], &[&slice]));
        shadow.mark_applied();
        shadow.set_service(key.clone(), previous.clone());
        let Delta::Script(backward) = shadow.delta() else {
            return Err(wrong_kind("reverse change", SyncKind::Recreate));
        };
        shadow.mark_applied();
        shadow.set_service(key.clone(), service_rules(config, &services[0], &[&slice]));
        shadow.mark_applied();
        nft.apply(&backward).map_err(nft_err("raw nft -f (back)"))?;
        let t = Instant::now();
        nft.apply(&script).map_err(nft_err("raw nft -f"))?;
        change.raw.push(t.elapsed());
        change.script = script;
    }
    nft.apply(&delete_table_transaction(&config.table))
        .map_err(nft_err("deleting the table"))?;
    Ok(change)
}

fn measure_in(
    o: &KubeProxySyncOptions,
    table: &str,
    nft: Arc<Timed>,
) -> Result<Report, ScenarioError> {
    let (services, slices) = objects(o);
    let config = RuleConfig {
        table: table.to_string(),
        cluster_cidr: None,
        service_cidr: None,
        node_name: Some("kube-perf".into()),
        ..Default::default()
    };
    let mut report = Report::new(format!(
        "kube-proxy-sync: {} services x {} endpoints (nftables)",
        o.services, o.endpoints
    ));
    let mut objects_in = Objects::new();
    objects_in.replace_services(services.clone());
    objects_in.replace_slices(slices.clone());
    let mut build = Latencies::new();
    let mut first = Latencies::new();
    let mut full = Latencies::new();
    let mut full_build = Latencies::new();
    let mut raw = Latencies::new();
    let mut rules = 0;
    let mut script_len = 0;
    let period = Duration::from_secs(30);
    for _ in 0..o.rounds.max(1) {
        // Recreate: the first sync of a fresh kube-proxy (every service built and applied).
        let mut proxier = Proxier::new(nft.clone(), period);
        let now = Instant::now();
        let t = Instant::now();
        let kind = proxier
            .sync_all(&config, &objects_in.all_inputs(), now)
            .map_err(nft_err("first sync"))?
            .kind;
        first.push(t.elapsed());
        if kind != SyncKind::Recreate {
            return Err(wrong_kind("first sync", kind));
        }
        let (script, nft_took) = nft.last();
        build.push(t.elapsed().saturating_sub(nft_took));
        rules = proxier.ruleset().map(|r| r.rule_count()).unwrap_or(0);
        script_len = script.len();
        // The periodic full resync of an unchanged table (everything rewritten).
        let t = Instant::now();
        let kind = proxier
            .sync_all(&config, &objects_in.all_inputs(), now + period)
            .map_err(nft_err("full sync"))?
            .kind;
        full.push(t.elapsed());
        full_build.push(t.elapsed().saturating_sub(nft.last().1));
        if kind != SyncKind::Full {
            return Err(wrong_kind("full resync", kind));
        }
        nft.apply(&delete_table_transaction(table))
            .map_err(nft_err("deleting the table"))?;
        // Floor: the same script straight into nft -f.
        let t = Instant::now();
        nft.apply(&script).map_err(nft_err("raw nft -f"))?;
        raw.push(t.elapsed());
        nft.apply(&delete_table_transaction(table))
            .map_err(nft_err("deleting the table"))?;
    }
    let change = measure_change(o, &config, nft, &services, &slices)?;
    report.row(
        "first sync: rules built and rendered, no nft (ms, median)",
        build.ms(0.5),
        None,
        "",
    );
    report.row(
        "first sync: build + nft (ms, median)",
        first.ms(0.5),
        Some(raw.ms(0.5)),
        "network programming p99 <= 30 s (SLO)",
    );
    report.row(
        "full resync (ms, median)",
        full.ms(0.5),
        Some(raw.ms(0.5)),
        "",
    );
    report.row(
        "full resync: rules built and rendered, no nft (ms, median)",
        full_build.ms(0.5),
        None,
        "",
    );
    report.row("rules in the table", rules as f64, None, "");
    report.row(
        "nft script size (KiB)",
        script_len as f64 / 1024.0,
        None,
        "",
    );
    report.row(
        "one-endpoint change: event to applied (ms, median)",
        change.sync.ms(0.5),
        Some(change.raw.ms(0.5)),
        "target < 20 ms",
    );
    report.row(
        "one-endpoint change: event to applied (ms, p90)",
        change.sync.ms(0.9),
        Some(change.raw.ms(0.9)),
        "",
    );
    report.row(
        "one-endpoint change: its nft -f (ms, median)",
        change.nft.ms(0.5),
        Some(change.raw.ms(0.5)),
        "",
    );
    report.notes.push(
        "floor: raw `nft -f` of the same first-sync script (no rule building); for the \
         one-endpoint change, raw `nft -f` of the same incremental script"
            .into(),
    );
    report
        .notes
        .push(format!("one-endpoint change script: {:?}", change.script));
    report.processes = procs::read_self("kube-perf (rule building)")
        .into_iter()
        .collect();
    Ok(report)
}
