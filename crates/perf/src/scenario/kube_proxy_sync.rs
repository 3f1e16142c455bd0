//! `kube-proxy-sync`: time of a full sync through kube-proxy's real nftables backend (rules built
//! from S Services with E endpoints each, applied by its `Syncer` through `nft`) against raw
//! `nft -f` of the same ruleset, and of a one-endpoint change (one EndpointSlice gets a new
//! endpoint IP; an incremental sync through the same `Syncer`) against raw `nft -f` of the same
//! incremental script. Uses its own table (`kube-perf-<pid>`) and addresses from the
//! benchmarking range 198.18.0.0/15, so a running kube-proxy is never touched; the table is
//! deleted at the end. Needs root and nft.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::ObjectMeta;
use kube_proxy::model::{delete_table_transaction, full_transaction, incremental_transaction};
use kube_proxy::nft::{NftCommand, Nftables};
use kube_proxy::rules::{build_ruleset, RuleConfig, SERVICE_NAME_LABEL};
use kube_proxy::sync::{SyncKind, Syncer};

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
    let nft: Arc<dyn Nftables> = Arc::new(NftCommand::new(&o.nft));
    let result = measure_in(o, &table, nft.clone());
    if let Err(error) = nft.apply(&delete_table_transaction(&table)) {
        tracing::debug!(%error, "deleting the benchmark table");
    }
    result
}

/// Timings of the one-endpoint change.
struct Change {
    /// `Syncer::sync` of the rebuilt ruleset (diff + nft).
    sync: Latencies,
    /// Rebuilding the ruleset from every object, then the sync (what kube-proxy does).
    total: Latencies,
    /// Raw `nft -f` of an incremental script of the same size.
    raw: Latencies,
}

/// Loads the table, then replaces one endpoint of service 0 `change_rounds` times through the
/// `Syncer`; after each change the reverse and the same change again go straight to `nft -f`
/// (leaving the kernel where the syncer believes it is).
fn measure_change(
    o: &KubeProxySyncOptions,
    config: &RuleConfig,
    nft: Arc<dyn Nftables>,
    services: &[Service],
    mut slices: Vec<EndpointSlice>,
) -> Result<Change, ScenarioError> {
    let mut change = Change {
        sync: Latencies::new(),
        total: Latencies::new(),
        raw: Latencies::new(),
    };
    if services.is_empty() || o.endpoints == 0 {
        return Ok(change);
    }
    let mut syncer = Syncer::new(nft.clone(), Duration::from_secs(3600));
    let mut previous = build_ruleset(config, services, &slices);
    syncer
        .sync(previous.clone(), Instant::now())
        .map_err(nft_err("loading the table"))?;
    for round in 0..o.change_rounds.max(1) {
        // A fresh address from the top of the endpoint range for the first endpoint.
        slices[0].endpoints[0].addresses = vec![ip([198, 19], 0xfff0 - (round % 8))];
        let t = Instant::now();
        let desired = build_ruleset(config, services, &slices);
        let built = t.elapsed();
        let forward = incremental_transaction(&desired, &previous);
        let backward = incremental_transaction(&previous, &desired);
        let t = Instant::now();
        let kind = syncer
            .sync(desired.clone(), Instant::now())
            .map_err(nft_err("incremental sync"))?;
        let synced = t.elapsed();
        if kind != SyncKind::Incremental {
            return Err(ScenarioError::Command {
                what: "one-endpoint change".into(),
                detail: format!("expected an incremental sync, got {kind:?}"),
            });
        }
        change.sync.push(synced);
        change.total.push(built + synced);
        nft.apply(&backward).map_err(nft_err("raw nft -f (back)"))?;
        let t = Instant::now();
        nft.apply(&forward).map_err(nft_err("raw nft -f"))?;
        change.raw.push(t.elapsed());
        previous = desired;
    }
    nft.apply(&delete_table_transaction(&config.table))
        .map_err(nft_err("deleting the table"))?;
    Ok(change)
}

fn measure_in(
    o: &KubeProxySyncOptions,
    table: &str,
    nft: Arc<dyn Nftables>,
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
    let mut build = Latencies::new();
    let mut first = Latencies::new();
    let mut full = Latencies::new();
    let mut raw = Latencies::new();
    let mut rules = 0;
    let mut script_len = 0;
    for _ in 0..o.rounds.max(1) {
        // Recreate: build + the first sync of a fresh kube-proxy.
        let mut syncer = Syncer::new(nft.clone(), Duration::ZERO);
        let t = Instant::now();
        let desired = build_ruleset(&config, &services, &slices);
        build.push(t.elapsed());
        rules = desired.rule_count();
        let script = full_transaction(&desired, None, true);
        script_len = script.len();
        syncer
            .sync(desired, Instant::now())
            .map_err(nft_err("first sync"))?;
        first.push(t.elapsed());
        // Full resync of an unchanged ruleset (the periodic full sync).
        let t = Instant::now();
        let desired = build_ruleset(&config, &services, &slices);
        syncer
            .sync(desired, Instant::now())
            .map_err(nft_err("full sync"))?;
        full.push(t.elapsed());
        nft.apply(&delete_table_transaction(table))
            .map_err(nft_err("deleting the table"))?;
        // Floor: the same script straight into nft -f.
        let t = Instant::now();
        nft.apply(&script).map_err(nft_err("raw nft -f"))?;
        raw.push(t.elapsed());
        nft.apply(&delete_table_transaction(table))
            .map_err(nft_err("deleting the table"))?;
    }
    let change = measure_change(o, &config, nft, &services, slices)?;
    report.row("ruleset build (ms)", build.ms(0.5), None, "");
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
    report.row("rules in the table", rules as f64, None, "");
    report.row(
        "nft script size (KiB)",
        script_len as f64 / 1024.0,
        None,
        "",
    );
    report.row(
        "one-endpoint change: sync (ms, median)",
        change.sync.ms(0.5),
        Some(change.raw.ms(0.5)),
        "target < 20 ms",
    );
    report.row(
        "one-endpoint change: sync (ms, p90)",
        change.sync.ms(0.9),
        Some(change.raw.ms(0.9)),
        "",
    );
    report.row(
        "one-endpoint change: rebuild + sync (ms, median)",
        change.total.ms(0.5),
        Some(change.raw.ms(0.5)),
        "",
    );
    report.notes.push(
        "floor: raw `nft -f` of the same first-sync script (no rule building); for the \
         one-endpoint change, raw `nft -f` of the same incremental script"
            .into(),
    );
    report.processes = procs::read_self("kube-perf (rule building)")
        .into_iter()
        .collect();
    Ok(report)
}
