//! `watch-fanout`: W watchers on one resource (ConfigMaps of one namespace), a writer patches one
//! object E times at a fixed rate, each event carries its send time; measures delivery latency
//! and events delivered per second. The floor is the same fan-out through raw etcd watches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Api;

use super::{api_err, ScenarioError};
use crate::cluster::{ensure_namespace, Cluster, ClusterOptions};
use crate::floors::FloorError;
use crate::report::{Latencies, Report};

/// Watch fan-out settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchFanoutOptions {
    /// Watchers.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Updates of the watched object.
    #[arg(long, default_value_t = 500)]
    pub events: usize,
    /// Updates per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
}

const NAMESPACE: &str = "fanout";

struct Sink {
    latencies: Mutex<Latencies>,
    delivered: std::sync::atomic::AtomicUsize,
    last: Mutex<Option<Instant>>,
}

impl Sink {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            latencies: Mutex::new(Latencies::new()),
            delivered: 0.into(),
            last: Mutex::new(None),
        })
    }

    fn record(&self, base: Instant, sent_micros: u64) {
        let sent = base + Duration::from_micros(sent_micros);
        let now = Instant::now();
        if let Ok(mut l) = self.latencies.lock() {
            l.push(now.saturating_duration_since(sent));
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(now);
        }
        self.delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn delivered(&self) -> usize {
        self.delivered.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn sent_of(cm: &ConfigMap) -> Option<u64> {
    cm.data.as_ref()?.get("sent")?.parse().ok()
}

/// Runs the scenario.
pub async fn run(
    cluster_options: &ClusterOptions,
    o: &WatchFanoutOptions,
) -> Result<Report, ScenarioError> {
    let mut options = cluster_options.clone();
    options.scheduler = false;
    options.controller_manager = false;
    let mut cluster = Cluster::start(&options).await?;
    let client = cluster.client.clone();
    let mut report = Report::new(format!(
        "watch-fanout: {} watchers, {} updates at {}/s",
        o.watchers, o.events, o.rate
    ));
    ensure_namespace(&client, NAMESPACE)
        .await
        .map_err(api_err("creating namespace"))?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let target = ConfigMap {
        metadata: ObjectMeta {
            name: Some("target".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("sent".to_string(), "0".to_string())])),
        ..Default::default()
    };
    let created = cms
        .create(&PostParams::default(), &target)
        .await
        .map_err(api_err("creating the watched configmap"))?;
    let rv = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let base = Instant::now();
    let sink = Sink::new();
    let mut watchers = Vec::new();
    for _ in 0..o.watchers {
        let stream = cms
            .watch(&WatchParams::default().timeout(290), &rv)
            .await
            .map_err(api_err("opening a watch"))?;
        let sink = sink.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let WatchEvent::Modified(cm) = event {
                    if let Some(sent) = sent_of(&cm) {
                        sink.record(base, sent);
                    }
                }
            }
        }));
    }
    let floor = match &cluster.etcd_endpoint {
        Some(endpoint) => Some(etcd_fanout(endpoint, o).await?),
        None => None,
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate.max(0.001)));
    let started = Instant::now();
    let mut write_errors = 0usize;
    for _ in 0..o.events {
        ticker.tick().await;
        let sent = base.elapsed().as_micros().to_string();
        let patch = serde_json::json!({ "data": { "sent": sent } });
        if let Err(error) = cms
            .patch("target", &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            write_errors += 1;
            tracing::warn!(%error, "update failed");
        }
    }
    let want = (o.events - write_errors) * o.watchers;
    let deadline = Instant::now() + Duration::from_secs(30 + want as u64 / 2000);
    while sink.delivered() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in &watchers {
        w.abort();
    }
    cluster.check_alive()?;
    let last = sink.last.lock().ok().and_then(|l| *l).unwrap_or(started);
    let delivered = sink.delivered();
    let latencies = sink.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let rate = delivered as f64
        / last
            .saturating_duration_since(started)
            .as_secs_f64()
            .max(1e-9);
    report.row(
        "events delivered per second (all watchers)",
        rate,
        floor.as_ref().map(|f| f.1),
        "",
    );
    report.row("events delivered", delivered as f64, Some(want as f64), "");
    report.latency_rows(
        "update -> event seen",
        &latencies,
        floor.as_ref().map(|f| &f.0),
        "",
    );
    report.notes.push(
        "floor: the same updates fanned out through raw etcd watches (etcd-client, 8 connections)"
            .into(),
    );
    if write_errors > 0 {
        report.notes.push(format!("{write_errors} update errors"));
    }
    report.processes = cluster.usage();
    Ok(report)
}

/// The fan-out through etcd itself: W watches on one key over 8 connections, the same number of
/// puts at the same rate. Returns (latency, events delivered per second).
async fn etcd_fanout(
    endpoint: &str,
    o: &WatchFanoutOptions,
) -> Result<(Latencies, f64), FloorError> {
    let key = "/kube-perf-floor/fanout";
    let base = Instant::now();
    let sink = Sink::new();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(etcd_client::Client::connect([endpoint], None).await?);
    }
    let mut tasks = Vec::new();
    for i in 0..o.watchers {
        let mut client = clients[i % clients.len()].clone();
        let mut stream = client.watch(key, None).await?;
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(response)) = stream.message().await {
                for event in response.events() {
                    let sent = event
                        .kv()
                        .and_then(|kv| std::str::from_utf8(kv.value()).ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(sent) = sent {
                        sink.record(base, sent);
                    }
                }
            }
        }));
    }
    let mut writer = clients[0].clone();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate.max(0.001)));
    let started = Instant::now();
    for _ in 0..o.events {
        ticker.tick().await;
        writer
            .put(key, base.elapsed().as_micros().to_string(), None)
            .await?;
    }
    let want = o.events * o.watchers;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.delivered() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in &tasks {
        t.abort();
    }
    writer.delete(key, None).await?;
    let last = sink.last.lock().ok().and_then(|l| *l).unwrap_or(started);
    let rate = sink.delivered() as f64
        / last
            .saturating_duration_since(started)
            .as_secs_f64()
            .max(1e-9);
    let latencies = sink.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    Ok((latencies, rate))
}
