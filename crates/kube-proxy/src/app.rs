//! The kube-proxy process: options, start-up, the watch-and-sync loop.
//!
//! Services and EndpointSlices are watched into [`Objects`], which notes the services each event
//! touches; every change wakes the sync loop, which (no more often than `--min-sync-period`)
//! hands just those services to the [`Proxier`], or every service for the full resync (at least
//! every `--sync-period`), after a relist or when the Node changed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;

use crate::conntrack::{Conntrack, ConntrackCommand};
use crate::healthcheck::HealthCheckServers;
use crate::model::{delete_table_transaction, Ruleset};
use crate::nft::{NftCommand, NftError, Nftables};
use crate::objects::{Objects, ServiceInput};
use crate::proxier::Proxier;
use crate::rules::{build_ruleset, RuleConfig, SERVICE_NAME_LABEL};
use crate::status::{self, Health, Metrics, StatusError};
use crate::sync::SyncKind;
use crate::sysctl;

/// How soon a failed sync is retried (the next one recreates the table).
const SYNC_RETRY: Duration = Duration::from_secs(2);

/// Command-line options (upstream flag names).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "kube-proxy",
    about = "Kubernetes network proxy: Service VIPs through nftables"
)]
pub struct Options {
    /// Path to a kubeconfig file with the apiserver address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The node name to use instead of the host name.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The pod CIDR of the cluster; traffic to a ClusterIP from outside it is masqueraded.
    #[arg(long, value_parser = parse_ipv4_cidr)]
    pub cluster_cidr: Option<String>,
    /// The Service ClusterIP range; traffic to an unallocated IP in it is dropped.
    #[arg(long, default_value = "10.96.0.0/12", value_parser = parse_ipv4_cidr)]
    pub service_cluster_ip_range: String,
    /// Address and port for the health check server (/healthz).
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,
    /// Address and port for the metrics server (/metrics).
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: SocketAddr,
    /// Delete the kube-proxy nftables table and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Minimum time between syncs of the rules (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub min_sync_period: Duration,
    /// Maximum time between full resyncs of the rules (e.g. 30s, 1m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// Name of the nftables table (`ip` family) to manage; change it only for tests.
    #[arg(long, default_value = "kube-proxy")]
    pub nftables_table: String,
    /// Path of the nft binary.
    #[arg(long, default_value = "/usr/sbin/nft")]
    pub nft_path: PathBuf,
}

/// Why kube-proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The API client could not be built.
    #[error("building the API client: {0}")]
    Client(#[from] component_base::client::ClientError),
    /// A status server could not start.
    #[error("starting a status server: {0}")]
    Status(#[from] StatusError),
    /// `--cleanup` could not remove the table.
    #[error("cleaning up the nftables table: {0}")]
    Cleanup(#[source] NftError),
}

/// Parses Go-style durations such as `1s`, `500ms`, `1m30s`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => value / 1e9,
            "us" | "µs" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            unit => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Checks an IPv4 CIDR such as `10.96.0.0/12` (it goes into nft rule text verbatim).
pub fn parse_ipv4_cidr(text: &str) -> Result<String, String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a CIDR (missing /prefix)"))?;
    ip.parse::<Ipv4Addr>()
        .map_err(|_| format!("{text:?}: invalid IPv4 address"))?;
    match prefix.parse::<u8>() {
        Ok(bits) if bits <= 32 => Ok(text.to_string()),
        _ => Err(format!("{text:?}: invalid prefix length")),
    }
}

/// The node name: `--hostname-override`, else the host name (lower case, as upstream).
fn node_name(options: &Options) -> String {
    options
        .hostname_override
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

/// `base` completed with what the Node object says: its IPv4 addresses (InternalIP and
/// ExternalIP, where NodePorts answer) and its labels.
pub fn with_node(base: &RuleConfig, node: Option<&Node>) -> RuleConfig {
    let mut config = base.clone();
    let Some(node) = node else {
        return config;
    };
    let mut ips: Vec<Ipv4Addr> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    config.node_ips = ips;
    config.node_labels = node.metadata.labels.clone().unwrap_or_default();
    config
}

/// Builds the desired ruleset from the reflector stores.
pub fn desired_ruleset(
    config: &RuleConfig,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> Ruleset {
    let services = services.state();
    let slices = slices.state();
    build_ruleset(
        config,
        services.iter().map(|s| s.as_ref()),
        slices.iter().map(|s| s.as_ref()),
    )
}

/// Mirrors every object of kind `K` into a store, waking `notify` on each change.
fn mirror<K>(api: Api<K>, config: watcher::Config, notify: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => notify.notify_one(),
                Err(error) => tracing::warn!(%error, kind = K::kind(&()).as_ref(), "watch error"),
            }
        }
    });
    store
}

/// How one kind's watch events change [`Objects`].
struct Handlers<K> {
    apply: fn(&mut Objects, K),
    delete: fn(&mut Objects, &K),
    replace: fn(&mut Objects, Vec<K>),
}

/// Feeds the watch events of kind `K` into `objects`, waking `notify` on each change. The
/// returned flag turns true once the first list is in.
fn track<K>(
    api: Api<K>,
    config: watcher::Config,
    objects: Arc<Mutex<Objects>>,
    notify: Arc<Notify>,
    handlers: Handlers<K>,
) -> tokio::sync::watch::Receiver<bool>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (listed, ready) = tokio::sync::watch::channel(false);
    let stream = watcher(api, config).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        // A relist is buffered and replaces the kind at once (deletions may have been missed).
        let mut relist: Vec<K> = Vec::new();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%error, kind = K::kind(&()).as_ref(), "watch error");
                    continue;
                }
            };
            let mut objects = objects.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                watcher::Event::Init => relist.clear(),
                watcher::Event::InitApply(object) => relist.push(object),
                watcher::Event::InitDone => {
                    (handlers.replace)(&mut objects, std::mem::take(&mut relist));
                    listed.send_replace(true);
                }
                watcher::Event::Apply(object) => (handlers.apply)(&mut objects, object),
                watcher::Event::Delete(object) => (handlers.delete)(&mut objects, &object),
            }
            drop(objects);
            notify.notify_one();
        }
    });
    ready
}

/// Runs kube-proxy until SIGINT/SIGTERM (or, with `--cleanup`, removes the table and returns).
pub async fn run(options: Options) -> Result<(), RunError> {
    let nft: Arc<dyn Nftables> = Arc::new(NftCommand::new(&options.nft_path));
    run_with(options, nft, Arc::new(ConntrackCommand)).await
}

/// [`run`] with the OS effects passed in (tests use the recording fakes). Needs the
/// multi-threaded tokio runtime (nft runs under `block_in_place`).
pub async fn run_with(
    options: Options,
    nft: Arc<dyn Nftables>,
    conntrack: Arc<dyn Conntrack>,
) -> Result<(), RunError> {
    if options.cleanup {
        nft.apply(&delete_table_transaction(&options.nftables_table))
            .map_err(RunError::Cleanup)?;
        tracing::info!(table = %options.nftables_table, "removed nftables table");
        return Ok(());
    }
    sysctl::ensure_forwarding();
    let client = component_base::client::from_kubeconfig(options.kubeconfig.as_deref()).await?;

    let health = Health::new(options.sync_period * 2);
    let metrics = Arc::new(Metrics::default());
    status::serve_health(options.healthz_bind_address, health.clone()).await?;
    status::serve_metrics(options.metrics_bind_address, metrics.clone()).await?;

    let node = node_name(&options);
    let notify = Arc::new(Notify::new());
    // Our own Node (not waited for: until it is known, NodePorts answer on every local address).
    let nodes = mirror(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={node}")),
        notify.clone(),
    );
    let objects = Arc::new(Mutex::new(Objects::new()));
    let mut services_listed = track(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        objects.clone(),
        notify.clone(),
        Handlers {
            apply: Objects::apply_service,
            delete: Objects::delete_service,
            replace: Objects::replace_services,
        },
    );
    let mut slices_listed = track(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
        objects.clone(),
        notify.clone(),
        Handlers {
            apply: Objects::apply_slice,
            delete: Objects::delete_slice,
            replace: Objects::replace_slices,
        },
    );
    tracing::info!(
        node = %node,
        table = %options.nftables_table,
        "kube-proxy started; waiting for the first lists"
    );

    let shutdown = component_base::signals::shutdown();
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return Ok(()),
        ready = async {
            let services = services_listed.wait_for(|l| *l).await.map(|_| ());
            let slices = slices_listed.wait_for(|l| *l).await.map(|_| ());
            (services, slices)
        } => {
            if let (Err(error), _) | (_, Err(error)) = ready {
                tracing::warn!(%error, "watch task ended before the first list");
            }
        }
    }

    let base_config = RuleConfig {
        table: options.nftables_table.clone(),
        cluster_cidr: options.cluster_cidr.clone(),
        service_cidr: Some(options.service_cluster_ip_range.clone()),
        node_name: Some(node.clone()),
        ..RuleConfig::default()
    };
    let mut health_checks =
        HealthCheckServers::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), health.clone());
    let mut proxier = Proxier::new(nft, options.sync_period);
    let mut last_sync: Option<Instant> = None;
    loop {
        if let Some(at) = last_sync {
            let wait = options.min_sync_period.saturating_sub(at.elapsed());
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let started = Instant::now();
        let own_node = nodes
            .state()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(node.as_str()));
        if let Some(own_node) = &own_node {
            health.sync_node(own_node);
        }
        let config = with_node(&base_config, own_node.as_deref());
        // Only the services that changed, unless everything must be looked at.
        let (everything, inputs): (bool, Vec<ServiceInput>) = {
            let mut objects = objects.lock().unwrap_or_else(|p| p.into_inner());
            let changes = objects.take_changes();
            if changes.everything || proxier.needs_all(&config, started) {
                (true, objects.all_inputs())
            } else {
                let inputs = changes.services.iter().map(|k| objects.input(k)).collect();
                (false, inputs)
            }
        };
        let mut next_sync = options.sync_period;
        let result = tokio::task::block_in_place(|| {
            if everything {
                proxier.sync_all(&config, &inputs, started)
            } else {
                proxier.sync_changed(&inputs)
            }
        });
        match (result, proxier.ruleset()) {
            (Ok(report), Some(desired)) => {
                let (chains, rules) = (desired.chains.len(), desired.rule_count());
                let wanted_health_checks: BTreeMap<_, _> = desired.health_checks.clone();
                let no_local = (desired.no_local_internal, desired.no_local_external);
                for flush in report.flushes {
                    if let Err(error) = tokio::task::block_in_place(|| conntrack.flush(flush)) {
                        tracing::warn!(%error, ?flush, "clearing stale UDP conntrack entries");
                    }
                }
                health_checks.sync(&wanted_health_checks).await;
                let took = started.elapsed();
                let kind = report.kind;
                if kind != SyncKind::Unchanged {
                    metrics.observe_sync(took, chains, rules);
                    metrics.observe_kind(matches!(kind, SyncKind::Recreate | SyncKind::Full), took);
                }
                metrics.set_no_local_endpoints(no_local.0, no_local.1);
                health.updated();
                tracing::debug!(
                    ?kind,
                    chains,
                    rules,
                    services = inputs.len(),
                    ?took,
                    "synced proxy rules"
                );
            }
            (Ok(_), None) => {}
            (Err(error), _) => {
                metrics.observe_error();
                tracing::error!(%error, "syncing proxy rules failed; retrying soon");
                next_sync = SYNC_RETRY.max(options.min_sync_period);
            }
        }
        last_sync = Some(started);
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = notify.notified() => metrics.queued(),
            _ = tokio::time::sleep(next_sync) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_parse() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("3x").is_err());
    }

    #[test]
    fn cidrs_are_checked_before_they_reach_rule_text() {
        assert_eq!(parse_ipv4_cidr("10.96.0.0/12"), Ok("10.96.0.0/12".into()));
        assert!(parse_ipv4_cidr("10.96.0.0").is_err());
        assert!(parse_ipv4_cidr("10.96.0.0/33").is_err());
        assert!(parse_ipv4_cidr("10.96.0.0/12; drop").is_err());
        let options =
            <Options as clap::Parser>::try_parse_from(["kube-proxy"]).expect("default options");
        assert_eq!(options.service_cluster_ip_range, "10.96.0.0/12");
    }

    #[test]
    fn the_node_object_brings_its_addresses_and_labels() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z1"}},
            "status": {"addresses": [
                {"type": "Hostname", "address": "node-a"},
                {"type": "InternalIP", "address": "192.0.2.2"},
                {"type": "ExternalIP", "address": "198.51.100.4"},
                {"type": "InternalIP", "address": "fd00::2"}
            ]}
        }))
        .expect("node");
        let base = RuleConfig::default();
        assert!(with_node(&base, None).node_ips.is_empty());
        let config = with_node(&base, Some(&node));
        assert_eq!(
            config.node_ips,
            vec![
                "192.0.2.2".parse::<Ipv4Addr>().expect("ip"),
                "198.51.100.4".parse().expect("ip")
            ]
        );
        assert_eq!(config.node_labels["topology.kubernetes.io/zone"], "z1");
    }
}
