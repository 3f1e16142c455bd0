//! The eviction manager, as upstream's: every monitoring interval it observes the eviction
//! signals (`memory.available`, `nodefs.available`, `imagefs.available`), compares them with
//! the `--eviction-hard` and `--eviction-soft` thresholds, reports `MemoryPressure` /
//! `DiskPressure` as soon as one is crossed (kept for `--eviction-pressure-transition-period`
//! after the last crossing) and, while a threshold is met, evicts one pod per interval. A hard
//! threshold is met when crossed; a soft one once it has stayed crossed for its
//! `--eviction-soft-grace-period`, and its evictions give the pod
//! `min(terminationGracePeriodSeconds, --eviction-max-pod-grace-period)` to stop.
//!
//! Ranking as upstream: pods using more than they request first, then lower priority, then
//! larger usage above the request (so BestEffort pods, requesting nothing, go first).
//! Critical pods (static or mirror pods, priority at least `system-cluster-critical`'s
//! 2000000000) are never evicted. The evicted pod's status is phase `Failed`, reason
//! `Evicted`, a `DisruptionTarget` condition and upstream's message
//! (`The node was low on resource: memory. Threshold quantity: ..., available: .... `).
//!
//! Before evicting for a disk signal, as upstream, the manager first reclaims node-level
//! resources through its [`NodeReclaimer`] (the image garbage collector deletes every unused
//! image), observes the signals again and evicts nobody if no threshold is crossed any more;
//! the pressure condition of that round is reported all the same. Memory has nothing to
//! reclaim at node level.
//!
//! Figures come from a [`SignalSource`] (the real one reads
//! [`crate::node::stats::StatsCollector`]), so tests feed fake ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::events::{NodeEvent, NodeEventSink};
use super::static_pods::{is_mirror, is_static};
use super::stats::{entries, StatsCollector};
use crate::pod::manager::ManagerCommand;
use crate::pod::{PodEntry, PodStore};

/// Upstream's default hard thresholds (without the inode signal).
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%";
/// How often signals are observed (upstream's housekeeping interval).
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);
/// Priority at or above which a pod is critical.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// An eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// `memory.available`.
    MemoryAvailable,
    /// `nodefs.available`.
    NodeFsAvailable,
    /// `imagefs.available`.
    ImageFsAvailable,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "memory.available",
            Self::NodeFsAvailable => "nodefs.available",
            Self::ImageFsAvailable => "imagefs.available",
        }
    }

    /// The resource reclaimed when this signal fires.
    pub fn resource(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "memory",
            Self::NodeFsAvailable | Self::ImageFsAvailable => "ephemeral-storage",
        }
    }
}

/// A threshold value: an absolute quantity or a share of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    /// Bytes.
    Bytes(u64),
    /// Percent of capacity.
    Percent(f64),
}

/// One threshold (`signal<value`): hard without a grace period, soft with one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The signal.
    pub signal: Signal,
    /// Met when the signal is below this.
    pub value: ThresholdValue,
    /// How long the signal must stay crossed before the threshold is met (zero: hard).
    pub grace_period: Duration,
}

impl Threshold {
    /// Whether this is a hard threshold (met at once), as upstream tells them apart.
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_zero()
    }

    /// The threshold in bytes for a resource of `capacity` bytes.
    pub fn quantity(&self, capacity: u64) -> u64 {
        match self.value {
            ThresholdValue::Bytes(bytes) => bytes,
            ThresholdValue::Percent(percent) => (capacity as f64 * percent / 100.0) as u64,
        }
    }
}

/// Why `--eviction-hard` could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    /// Not `signal<value`.
    #[error("invalid eviction threshold {0:?}: want signal<quantity or signal<percent%")]
    Syntax(String),
    /// An unknown signal.
    #[error("unsupported eviction signal {0}")]
    Signal(String),
    /// A bad value.
    #[error("invalid eviction threshold value {0:?}")]
    Value(String),
    /// Not `signal=duration`.
    #[error("invalid eviction grace period {0:?}: want signal=duration")]
    GracePeriod(String),
    /// A soft threshold without its grace period.
    #[error("grace period must be specified for the soft eviction threshold {0}")]
    MissingGracePeriod(&'static str),
}

/// Parses a byte quantity (`100Mi`, `1G`, `512`).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * factor) as u64)
}

/// Formats bytes as a Kubernetes binary quantity (`100Mi`, `1536Ki`, `1000`).
pub fn format_bytes(bytes: u64) -> String {
    for (suffix, unit) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Parses `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`).
pub fn parse_thresholds(text: &str) -> Result<Vec<Threshold>, EvictionError> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (signal, value) = item
            .split_once('<')
            .ok_or_else(|| EvictionError::Syntax(item.to_string()))?;
        let signal = parse_signal(signal)?;
        let value = value.trim();
        let value = match value.strip_suffix('%') {
            Some(percent) => ThresholdValue::Percent(
                percent
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| EvictionError::Value(value.to_string()))?,
            ),
            None => ThresholdValue::Bytes(
                parse_bytes(value).ok_or_else(|| EvictionError::Value(value.to_string()))?,
            ),
        };
        out.push(Threshold {
            signal,
            value,
            grace_period: Duration::ZERO,
        });
    }
    Ok(out)
}

fn parse_signal(text: &str) -> Result<Signal, EvictionError> {
    match text.trim() {
        "memory.available" => Ok(Signal::MemoryAvailable),
        "nodefs.available" => Ok(Signal::NodeFsAvailable),
        "imagefs.available" => Ok(Signal::ImageFsAvailable),
        other => Err(EvictionError::Signal(other.to_string())),
    }
}

/// Parses `--eviction-soft` with `--eviction-soft-grace-period`
/// (`memory.available=1m30s,nodefs.available=2m`); every soft threshold needs a grace period.
pub fn parse_soft_thresholds(
    soft: &str,
    grace_periods: &str,
) -> Result<Vec<Threshold>, EvictionError> {
    let mut periods = BTreeMap::new();
    for item in grace_periods
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (signal, period) = item
            .split_once('=')
            .ok_or_else(|| EvictionError::GracePeriod(item.to_string()))?;
        let period = component_base::leaderelection::parse_duration(period)
            .map_err(|_| EvictionError::GracePeriod(item.to_string()))?;
        periods.insert(parse_signal(signal)?, period);
    }
    let mut thresholds = parse_thresholds(soft)?;
    for threshold in &mut thresholds {
        threshold.grace_period = *periods
            .get(&threshold.signal)
            .ok_or(EvictionError::MissingGracePeriod(threshold.signal.name()))?;
    }
    Ok(thresholds)
}

/// Available and capacity bytes of one signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observation {
    /// Available bytes.
    pub available: u64,
    /// Capacity bytes.
    pub capacity: u64,
}

/// What one pod uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Memory working set of the pod.
    pub memory: u64,
    /// Local disk: writable layers, logs and emptyDir volumes.
    pub disk: u64,
    /// Per container: name, memory working set, disk (rootfs + logs).
    pub containers: Vec<(String, u64, u64)>,
}

/// One observation round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// Node figures by signal.
    pub signals: BTreeMap<Signal, Observation>,
    /// Usage by pod uid.
    pub pods: BTreeMap<String, PodUsage>,
}

/// Where the eviction manager gets its figures.
pub trait SignalSource: Send + Sync + 'static {
    /// Observes the node and the given pods.
    fn observe(&self, pods: &[PodEntry]) -> Observations;
}

impl SignalSource for StatsCollector {
    fn observe(&self, pods: &[PodEntry]) -> Observations {
        let node = self.node();
        let mut signals = BTreeMap::new();
        if let Some(memory) = &node.memory {
            let working_set = memory.working_set_bytes.unwrap_or(0);
            let capacity = memory.available_bytes.unwrap_or(0) + working_set;
            signals.insert(
                Signal::MemoryAvailable,
                Observation {
                    available: capacity.saturating_sub(working_set),
                    capacity,
                },
            );
        }
        let fs = |fs: Option<&super::stats::FsStats>| {
            fs.map(|fs| Observation {
                available: fs.available_bytes.unwrap_or(0),
                capacity: fs.capacity_bytes.unwrap_or(0),
            })
        };
        if let Some(o) = fs(node.fs.as_ref()) {
            signals.insert(Signal::NodeFsAvailable, o);
        }
        if let Some(o) = fs(node.runtime.as_ref().and_then(|r| r.image_fs.as_ref())) {
            signals.insert(Signal::ImageFsAvailable, o);
        }
        let pods = pods
            .iter()
            .map(|entry| {
                let stats = self.pod(entry);
                let usage = PodUsage {
                    memory: stats
                        .memory
                        .as_ref()
                        .and_then(|m| m.working_set_bytes)
                        .unwrap_or(0),
                    disk: stats
                        .ephemeral_storage
                        .as_ref()
                        .and_then(|e| e.used_bytes)
                        .unwrap_or(0),
                    containers: stats
                        .containers
                        .iter()
                        .map(|c| {
                            let used = |fs: Option<&super::stats::FsStats>| {
                                fs.and_then(|f| f.used_bytes).unwrap_or(0)
                            };
                            (
                                c.name.clone(),
                                c.memory
                                    .as_ref()
                                    .and_then(|m| m.working_set_bytes)
                                    .unwrap_or(0),
                                used(c.rootfs.as_ref()) + used(c.logs.as_ref()),
                            )
                        })
                        .collect(),
                };
                (stats.pod_ref.uid, usage)
            })
            .collect();
        Observations { signals, pods }
    }
}

/// Why reclaiming node-level resources failed.
#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    /// Deleting unused images failed.
    #[error("deleting unused images: {0}")]
    Images(#[source] super::image_gc::ImageGcError),
}

/// Frees node-level resources before pods are evicted (upstream's node reclaim functions).
#[async_trait::async_trait]
pub trait NodeReclaimer: Send + Sync + 'static {
    /// Frees what it can of the disk the `nodefs` / `imagefs` signals watch; returns the
    /// bytes freed.
    async fn reclaim_disk(&self) -> Result<u64, ReclaimError>;
}

/// Node pressure, shared with the node agent (conditions and taints).
#[derive(Debug, Clone, Default)]
pub struct Pressure {
    memory: Arc<AtomicBool>,
    disk: Arc<AtomicBool>,
}

impl Pressure {
    /// Whether the node is under memory pressure.
    pub fn memory(&self) -> bool {
        self.memory.load(Ordering::Relaxed)
    }

    /// Whether the node is under disk pressure.
    pub fn disk(&self) -> bool {
        self.disk.load(Ordering::Relaxed)
    }

    /// Sets both.
    pub fn set(&self, memory: bool, disk: bool) {
        self.memory.store(memory, Ordering::Relaxed);
        self.disk.store(disk, Ordering::Relaxed);
    }
}

/// The sum of a resource's requests over the pod's containers, in bytes.
fn requests(pod: &Pod, resource: &str) -> u64 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(resource))
        .filter_map(|q| parse_bytes(&q.0))
        .sum()
}

fn container_request(pod: &Pod, container: &str, resource: &str) -> u64 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == container)
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(resource))
        .filter_map(|q| parse_bytes(&q.0))
        .sum()
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Whether upstream would never evict `pod`.
pub fn is_critical(pod: &Pod) -> bool {
    is_static(pod) || is_mirror(pod) || priority(pod) >= SYSTEM_CRITICAL_PRIORITY
}

/// Orders `pods` for eviction under `signal`, first to evict first.
pub fn rank<'a>(
    pods: &[&'a Pod],
    usage: &BTreeMap<String, PodUsage>,
    signal: Signal,
) -> Vec<&'a Pod> {
    let resource = signal.resource();
    let used = |pod: &Pod| {
        let u = pod
            .metadata
            .uid
            .as_deref()
            .and_then(|uid| usage.get(uid))
            .cloned()
            .unwrap_or_default();
        if resource == "memory" {
            u.memory
        } else {
            u.disk
        }
    };
    let mut ranked: Vec<&Pod> = pods.to_vec();
    ranked.sort_by_key(|pod| {
        let used = used(pod);
        let requested = requests(pod, resource);
        (
            // Pods over their requests first (false sorts first).
            used <= requested,
            priority(pod),
            std::cmp::Reverse(used.saturating_sub(requested)),
        )
    });
    ranked
}

/// Upstream's eviction message for `pod` evicted under `threshold`.
pub fn eviction_message(
    pod: &Pod,
    threshold: &Threshold,
    observation: &Observation,
    usage: Option<&PodUsage>,
) -> String {
    let resource = threshold.signal.resource();
    let mut message = format!("The node was low on resource: {resource}. ");
    message.push_str(&format!(
        "Threshold quantity: {}, available: {}. ",
        format_bytes(threshold.quantity(observation.capacity)),
        format_bytes(observation.available)
    ));
    for (name, memory, disk) in usage.map(|u| u.containers.as_slice()).unwrap_or_default() {
        let used = if resource == "memory" { *memory } else { *disk };
        let request = container_request(pod, name, resource);
        if used > request {
            message.push_str(&format!(
                "Container {name} was using {}, request is {}, has larger consumption of {resource}. ",
                format_bytes(used),
                format_bytes(request)
            ));
        }
    }
    message
}

/// The status an evicted pod ends with.
pub fn evicted_status(pod: &Pod, message: &str, now: Time) -> PodStatus {
    let mut status = pod.status.clone().unwrap_or_default();
    status.phase = Some("Failed".into());
    status.reason = Some("Evicted".into());
    status.message = Some(message.to_string());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    for condition in conditions.iter_mut() {
        if condition.type_ == "Ready" || condition.type_ == "ContainersReady" {
            condition.status = "False".into();
        }
    }
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(now),
        ..Default::default()
    });
    status
}

/// The eviction manager.
pub struct EvictionManager {
    thresholds: Vec<Threshold>,
    source: Arc<dyn SignalSource>,
    store: PodStore,
    pressure: Pressure,
    reclaimer: Option<Arc<dyn NodeReclaimer>>,
    transition_period: Duration,
    max_pod_grace_period: i64,
    last_memory_met: Option<Instant>,
    last_disk_met: Option<Instant>,
    /// When each crossed threshold (by index) was first seen crossed, in this crossing.
    first_crossed: BTreeMap<usize, Instant>,
    /// Where `EvictionThresholdMet` goes (none: not recorded).
    events: Option<Arc<dyn NodeEventSink>>,
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Thresholds met this round.
    pub met: Vec<Signal>,
    /// The pod to evict (uid), its status and message.
    pub evict: Option<(String, PodStatus, String)>,
    /// The grace period the evicted pod gets (soft thresholds; `None`: a hard threshold's
    /// immediate stop).
    pub grace_period: Option<Duration>,
}

impl EvictionManager {
    /// A manager over the pods in `store`, reporting pressure into `pressure`.
    pub fn new(
        thresholds: Vec<Threshold>,
        source: Arc<dyn SignalSource>,
        store: PodStore,
        pressure: Pressure,
        transition_period: Duration,
    ) -> Self {
        Self {
            thresholds,
            source,
            store,
            pressure,
            reclaimer: None,
            transition_period,
            max_pod_grace_period: 0,
            last_memory_met: None,
            last_disk_met: None,
            first_crossed: BTreeMap::new(),
            events: None,
        }
    }

    /// Records upstream's `EvictionThresholdMet` warning about the node in `events` in each
    /// round that met a threshold, before anything is reclaimed.
    pub fn with_events(mut self, events: Arc<dyn NodeEventSink>) -> Self {
        self.events = Some(events);
        self
    }

    /// `--eviction-max-pod-grace-period`: the longest grace period (seconds) a pod evicted
    /// under a soft threshold gets.
    pub fn with_max_pod_grace_period(mut self, seconds: i64) -> Self {
        self.max_pod_grace_period = seconds;
        self
    }

    /// Frees node-level resources (unused images) under disk pressure before any pod is
    /// evicted. Without one, disk pressure evicts pods straight away.
    pub fn with_reclaimer(mut self, reclaimer: Arc<dyn NodeReclaimer>) -> Self {
        self.reclaimer = Some(reclaimer);
        self
    }

    /// The thresholds crossed in `observations` (index, threshold, observation), grace periods
    /// aside.
    fn crossed(&self, observations: &Observations) -> Vec<(usize, Threshold, Observation)> {
        self.thresholds
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let o = observations.signals.get(&t.signal)?;
                (o.available < t.quantity(o.capacity)).then_some((i, *t, *o))
            })
            .collect()
    }

    /// Upstream's `reclaimNodeLevelResources`: runs the node reclaim for `signal` (disk
    /// signals only), observes again and says whether every threshold is now clear, so that
    /// no pod needs to go.
    async fn reclaim_node_level_resources(&self, signal: Signal, pods: &[PodEntry]) -> bool {
        if signal == Signal::MemoryAvailable {
            return false;
        }
        let Some(reclaimer) = &self.reclaimer else {
            return false;
        };
        match reclaimer.reclaim_disk().await {
            Ok(freed) => tracing::info!(
                signal = signal.name(),
                freed,
                "reclaimed node-level resources"
            ),
            Err(error) => tracing::warn!(
                signal = signal.name(),
                %error,
                "reclaiming node-level resources failed"
            ),
        }
        let observations = self.source.observe(pods);
        let relieved = self.crossed(&observations).is_empty();
        if relieved {
            tracing::info!(
                resource = signal.resource(),
                "node-level reclaim relieved the pressure; no pod is evicted"
            );
        }
        relieved
    }

    /// One round: observe, update pressure, reclaim node-level resources for a disk signal,
    /// then pick at most one pod.
    pub async fn synchronize(&mut self) -> Decision {
        let active: Vec<PodEntry> = entries(&self.store)
            .into_iter()
            .filter(|e| {
                let phase = e.pod.status.as_ref().and_then(|s| s.phase.as_deref());
                phase != Some("Succeeded") && phase != Some("Failed")
            })
            .collect();
        let observations = self.source.observe(&active);
        let crossed = self.crossed(&observations);
        let now = Instant::now();
        self.first_crossed
            .retain(|i, _| crossed.iter().any(|(j, _, _)| j == i));
        for (i, _, _) in &crossed {
            self.first_crossed.entry(*i).or_insert(now);
        }
        // The node conditions follow every crossed threshold, soft ones within their grace
        // period included, as upstream's do.
        if crossed
            .iter()
            .any(|(_, t, _)| t.signal == Signal::MemoryAvailable)
        {
            self.last_memory_met = Some(now);
        }
        if crossed
            .iter()
            .any(|(_, t, _)| t.signal != Signal::MemoryAvailable)
        {
            self.last_disk_met = Some(now);
        }
        let within = |at: Option<Instant>| {
            at.is_some_and(|at| now.saturating_duration_since(at) <= self.transition_period)
        };
        let (memory, disk) = (within(self.last_memory_met), within(self.last_disk_met));
        if memory != self.pressure.memory() || disk != self.pressure.disk() {
            tracing::info!(
                memory_pressure = memory,
                disk_pressure = disk,
                "node pressure changed"
            );
        }
        self.pressure.set(memory, disk);
        let met: Vec<(Threshold, Observation)> = crossed
            .iter()
            .filter(|(i, t, _)| {
                self.first_crossed
                    .get(i)
                    .is_some_and(|at| now.saturating_duration_since(*at) >= t.grace_period)
            })
            .map(|(_, t, o)| (*t, *o))
            .collect();
        let decision_met = met.iter().map(|(t, _)| t.signal).collect();
        // Memory first, as upstream orders the signals to reclaim; hard before soft.
        let Some((threshold, observation)) =
            met.iter().min_by_key(|(t, _)| (t.signal, !t.is_hard()))
        else {
            return Decision {
                met: decision_met,
                evict: None,
                grace_period: None,
            };
        };
        tracing::warn!(
            signal = threshold.signal.name(),
            available = observation.available,
            "eviction threshold met"
        );
        if let Some(events) = &self.events {
            events.record(NodeEvent::warning(
                "EvictionThresholdMet",
                format!("Attempting to reclaim {}", threshold.signal.resource()),
            ));
        }
        if self
            .reclaim_node_level_resources(threshold.signal, &active)
            .await
        {
            return Decision {
                met: decision_met,
                evict: None,
                grace_period: None,
            };
        }
        let candidates: Vec<&Pod> = active
            .iter()
            .map(|e| &e.pod)
            .filter(|p| !is_critical(p))
            .collect();
        let ranked = rank(&candidates, &observations.pods, threshold.signal);
        let grace_period = ranked
            .first()
            .filter(|_| !threshold.is_hard())
            .map(|pod| self.soft_grace_period(pod));
        let evict = ranked.first().and_then(|pod| {
            let uid = pod.metadata.uid.clone()?;
            let message =
                eviction_message(pod, threshold, observation, observations.pods.get(&uid));
            let status = evicted_status(pod, &message, Time(jiff::Timestamp::now()));
            Some((uid, status, message))
        });
        Decision {
            met: decision_met,
            evict,
            grace_period,
        }
    }

    /// The pod's own grace period, capped by `--eviction-max-pod-grace-period`.
    fn soft_grace_period(&self, pod: &Pod) -> Duration {
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let seconds = own.min(self.max_pod_grace_period).max(0);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    }

    /// Runs a round every `interval`, sending evictions to the pod manager and waiting for
    /// each to finish before the next round (one pod per interval).
    pub async fn run(mut self, interval: Duration, manager: mpsc::UnboundedSender<ManagerCommand>) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let decision = self.synchronize().await;
            let Some((uid, status, message)) = decision.evict else {
                continue;
            };
            let (done, wait) = oneshot::channel();
            let command = ManagerCommand::Evict {
                uid,
                status: Box::new(status),
                message,
                grace_period: decision.grace_period,
                done: Some(done),
            };
            if manager.send(command).is_err() {
                tracing::warn!("the pod manager is gone; eviction manager stops");
                return;
            }
            if wait.await.is_err() {
                tracing::debug!("eviction finished without confirmation");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::events::RecordedNodeEvents;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;
    use std::sync::Mutex;

    struct FakeSignals(Mutex<Observations>);

    impl SignalSource for FakeSignals {
        fn observe(&self, _pods: &[PodEntry]) -> Observations {
            self.0.lock().expect("lock").clone()
        }
    }

    fn pod(name: &str, memory_request: Option<&str>, priority: Option<i32>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority,
                containers: vec![Container {
                    name: "c".into(),
                    resources: memory_request.map(|m| ResourceRequirements {
                        requests: Some([("memory".to_string(), Quantity(m.into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    fn usage(memory: u64) -> PodUsage {
        PodUsage {
            memory,
            disk: 0,
            containers: vec![("c".into(), memory, 0)],
        }
    }

    #[test]
    fn thresholds_parse_the_upstream_syntax() {
        let parsed = parse_thresholds(DEFAULT_EVICTION_HARD).expect("parse");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].value, ThresholdValue::Bytes(100 * 1024 * 1024));
        assert_eq!(parsed[1].quantity(1000), 100);
        assert!(parse_thresholds("memory.available>1Gi").is_err());
        assert!(parse_thresholds("pid.available<10").is_err());
        assert!(parse_thresholds("memory.available<lots").is_err());
        assert_eq!(format_bytes(100 * 1024 * 1024), "100Mi");
        assert_eq!(format_bytes(1000), "1000");
    }

    #[test]
    fn ranking_puts_pods_over_requests_first_then_priority_then_usage() {
        let best_effort = pod("best-effort", None, None);
        let within = pod("within", Some("500Mi"), None);
        let over_low = pod("over-low", Some("10Mi"), Some(-5));
        let over_big = pod("over-big", Some("10Mi"), None);
        let usage: BTreeMap<String, PodUsage> = [
            ("uid-best-effort".to_string(), usage(20 << 20)),
            ("uid-within".to_string(), usage(400 << 20)),
            ("uid-over-low".to_string(), usage(11 << 20)),
            ("uid-over-big".to_string(), usage(300 << 20)),
        ]
        .into();
        let ranked = rank(
            &[&within, &best_effort, &over_big, &over_low],
            &usage,
            Signal::MemoryAvailable,
        );
        let names: Vec<&str> = ranked
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        assert_eq!(names, vec!["over-low", "over-big", "best-effort", "within"]);
    }

    #[tokio::test]
    async fn memory_pressure_evicts_one_pod_with_the_upstream_status() {
        let store = PodStore::new();
        for p in [pod("hog", None, None), pod("calm", Some("1Gi"), None)] {
            store.upsert(
                p.metadata.uid.as_deref().expect("uid"),
                PodEntry {
                    pod: p.clone(),
                    containers: [("c".to_string(), "id".to_string())].into(),
                },
            );
        }
        let mut critical = pod("critical", None, Some(SYSTEM_CRITICAL_PRIORITY));
        critical.metadata.uid = Some("uid-critical".into());
        store.upsert(
            "uid-critical",
            PodEntry {
                pod: critical,
                containers: Default::default(),
            },
        );
        let observations = Observations {
            signals: [(
                Signal::MemoryAvailable,
                Observation {
                    available: 50 << 20,
                    capacity: 4 << 30,
                },
            )]
            .into(),
            pods: [
                ("uid-hog".to_string(), usage(3 << 30)),
                ("uid-calm".to_string(), usage(100 << 20)),
                ("uid-critical".to_string(), usage(3 << 30)),
            ]
            .into(),
        };
        let signals = Arc::new(FakeSignals(Mutex::new(observations)));
        let pressure = Pressure::default();
        let events = RecordedNodeEvents::new();
        let mut manager = EvictionManager::new(
            parse_thresholds(DEFAULT_EVICTION_HARD).expect("parse"),
            signals.clone(),
            store,
            pressure.clone(),
            Duration::from_secs(300),
        )
        .with_events(events.clone());
        let decision = manager.synchronize().await;
        assert_eq!(decision.met, vec![Signal::MemoryAvailable]);
        assert!(pressure.memory() && !pressure.disk());
        assert_eq!(
            events.events(),
            [NodeEvent::warning(
                "EvictionThresholdMet",
                "Attempting to reclaim memory".into()
            )]
        );
        let (uid, status, message) = decision.evict.expect("a pod is evicted");
        assert_eq!(uid, "uid-hog");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        assert_eq!(
            message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container c was using 3Gi, request is 0, has larger consumption of memory. "
        );
        let target = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionTarget")
            .expect("DisruptionTarget");
        assert_eq!(target.reason.as_deref(), Some("TerminationByKubelet"));

        // Plenty of memory again: nothing is evicted, but the pressure holds for the
        // transition period.
        signals.0.lock().expect("lock").signals.insert(
            Signal::MemoryAvailable,
            Observation {
                available: 2 << 30,
                capacity: 4 << 30,
            },
        );
        let decision = manager.synchronize().await;
        assert!(decision.evict.is_none());
        assert!(
            pressure.memory(),
            "pressure holds for the transition period"
        );
        assert_eq!(events.events().len(), 1, "no threshold met: no event");
        manager.transition_period = Duration::ZERO;
        manager.last_memory_met = Some(Instant::now() - Duration::from_secs(1));
        manager.synchronize().await;
        assert!(!pressure.memory());
    }

    #[test]
    fn soft_thresholds_need_their_grace_periods() {
        let soft = parse_soft_thresholds(
            "memory.available<1Gi,nodefs.available<15%",
            "memory.available=1m30s, nodefs.available=2m",
        )
        .expect("parse");
        assert_eq!(soft[0].grace_period, Duration::from_secs(90));
        assert_eq!(soft[1].grace_period, Duration::from_secs(120));
        assert!(!soft[0].is_hard());
        assert!(parse_thresholds("memory.available<1Gi").expect("hard")[0].is_hard());
        assert_eq!(
            parse_soft_thresholds("memory.available<1Gi", "nodefs.available=1m")
                .expect_err("no grace period for memory")
                .to_string(),
            "grace period must be specified for the soft eviction threshold memory.available"
        );
        assert!(parse_soft_thresholds("memory.available<1Gi", "memory.available").is_err());
        assert!(parse_soft_thresholds("memory.available<1Gi", "memory.available=soon").is_err());
        assert!(parse_soft_thresholds("", "").expect("empty").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn soft_thresholds_report_pressure_at_once_and_evict_after_their_grace_period() {
        let store = PodStore::new();
        let mut patient = pod("patient", None, None);
        patient
            .spec
            .as_mut()
            .expect("spec")
            .termination_grace_period_seconds = Some(45);
        store.upsert(
            "uid-patient",
            PodEntry {
                pod: patient,
                containers: [("c".to_string(), "id".to_string())].into(),
            },
        );
        let low = Observations {
            signals: [(
                Signal::MemoryAvailable,
                Observation {
                    available: 500 << 20,
                    capacity: 4 << 30,
                },
            )]
            .into(),
            pods: [("uid-patient".to_string(), usage(3 << 30))].into(),
        };
        let signals = Arc::new(FakeSignals(Mutex::new(low.clone())));
        let pressure = Pressure::default();
        let soft =
            parse_soft_thresholds("memory.available<1Gi", "memory.available=1m").expect("parse");
        let mut manager = EvictionManager::new(
            soft,
            signals.clone(),
            store,
            pressure.clone(),
            Duration::from_secs(300),
        )
        .with_max_pod_grace_period(20);

        let decision = manager.synchronize().await;
        assert!(
            pressure.memory(),
            "pressure is reported within the grace period"
        );
        assert!(decision.met.is_empty() && decision.evict.is_none());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(manager.synchronize().await.evict.is_none());

        // Recovering resets the clock: the next crossing waits a whole grace period again.
        signals.0.lock().expect("lock").signals.insert(
            Signal::MemoryAvailable,
            Observation {
                available: 2 << 30,
                capacity: 4 << 30,
            },
        );
        assert!(manager.synchronize().await.evict.is_none());
        *signals.0.lock().expect("lock") = low;
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(manager.synchronize().await.evict.is_none());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(manager.synchronize().await.evict.is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        let decision = manager.synchronize().await;
        assert_eq!(decision.met, vec![Signal::MemoryAvailable]);
        let (uid, status, message) = decision.evict.expect("evicted after the grace period");
        assert_eq!(uid, "uid-patient");
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        assert!(
            message.starts_with(
                "The node was low on resource: memory. Threshold quantity: 1Gi, available: 500Mi. "
            ),
            "{message}"
        );
        // min(terminationGracePeriodSeconds 45, --eviction-max-pod-grace-period 20).
        assert_eq!(decision.grace_period, Some(Duration::from_secs(20)));
        manager.max_pod_grace_period = 60;
        assert_eq!(
            manager.synchronize().await.grace_period,
            Some(Duration::from_secs(45))
        );
    }

    #[tokio::test]
    async fn hard_thresholds_win_over_soft_ones_and_stop_pods_at_once() {
        let store = PodStore::new();
        store.upsert(
            "uid-hog",
            PodEntry {
                pod: pod("hog", None, None),
                containers: [("c".to_string(), "id".to_string())].into(),
            },
        );
        let observations = Observations {
            signals: [(
                Signal::MemoryAvailable,
                Observation {
                    available: 50 << 20,
                    capacity: 4 << 30,
                },
            )]
            .into(),
            pods: [("uid-hog".to_string(), usage(3 << 30))].into(),
        };
        let mut thresholds = parse_soft_thresholds("memory.available<1Gi", "memory.available=0s")
            .expect("soft with a zero grace period");
        thresholds.extend(parse_thresholds("memory.available<100Mi").expect("hard"));
        thresholds[0].grace_period = Duration::from_secs(1);
        let mut manager = EvictionManager::new(
            thresholds,
            Arc::new(FakeSignals(Mutex::new(observations))),
            store,
            Pressure::default(),
            Duration::from_secs(300),
        )
        .with_max_pod_grace_period(20);
        let decision = manager.synchronize().await;
        let (_, _, message) = decision.evict.expect("the hard threshold evicts at once");
        assert!(message.contains("Threshold quantity: 100Mi"), "{message}");
        assert_eq!(decision.grace_period, None);
    }

    /// Frees `frees` bytes of the node filesystem in the fake signals when asked.
    struct FakeReclaimer {
        signals: Arc<FakeSignals>,
        frees: u64,
        calls: Mutex<u32>,
    }

    impl FakeReclaimer {
        fn calls(&self) -> u32 {
            *self.calls.lock().expect("lock")
        }
    }

    #[async_trait::async_trait]
    impl NodeReclaimer for FakeReclaimer {
        async fn reclaim_disk(&self) -> Result<u64, ReclaimError> {
            *self.calls.lock().expect("lock") += 1;
            let mut observations = self.signals.0.lock().expect("lock");
            for observation in observations.signals.values_mut() {
                observation.available += self.frees;
            }
            Ok(self.frees)
        }
    }

    fn disk_usage(disk: u64) -> PodUsage {
        PodUsage {
            memory: 10 << 20,
            disk,
            containers: vec![("c".into(), 10 << 20, disk)],
        }
    }

    /// A manager with the default thresholds over two pods (`hog` writes 8Gi to its disk,
    /// `calm` 100Mi) on a 100Gi node filesystem with 5Gi available (below 10 %), plus
    /// `memory` available of 4Gi, and a reclaimer freeing `frees` bytes.
    fn under_pressure(frees: u64, memory: u64) -> (EvictionManager, Arc<FakeReclaimer>, Pressure) {
        let store = PodStore::new();
        for p in [pod("hog", None, None), pod("calm", None, None)] {
            store.upsert(
                p.metadata.uid.as_deref().expect("uid"),
                PodEntry {
                    pod: p.clone(),
                    containers: [("c".to_string(), "id".to_string())].into(),
                },
            );
        }
        let observations = Observations {
            signals: [
                (
                    Signal::NodeFsAvailable,
                    Observation {
                        available: 5 << 30,
                        capacity: 100 << 30,
                    },
                ),
                (
                    Signal::MemoryAvailable,
                    Observation {
                        available: memory,
                        capacity: 4 << 30,
                    },
                ),
            ]
            .into(),
            pods: [
                ("uid-hog".to_string(), disk_usage(8 << 30)),
                ("uid-calm".to_string(), disk_usage(100 << 20)),
            ]
            .into(),
        };
        let signals = Arc::new(FakeSignals(Mutex::new(observations)));
        let reclaimer = Arc::new(FakeReclaimer {
            signals: signals.clone(),
            frees,
            calls: Mutex::new(0),
        });
        let pressure = Pressure::default();
        let manager = EvictionManager::new(
            parse_thresholds(DEFAULT_EVICTION_HARD).expect("parse"),
            signals,
            store,
            pressure.clone(),
            Duration::from_secs(300),
        )
        .with_reclaimer(reclaimer.clone());
        (manager, reclaimer, pressure)
    }

    #[tokio::test]
    async fn disk_pressure_relieved_by_node_reclaim_evicts_no_pod_but_is_reported() {
        // 5Gi + 10Gi available of 100Gi: above the 10 % threshold again.
        let (mut manager, reclaimer, pressure) = under_pressure(10 << 30, 2 << 30);
        let decision = manager.synchronize().await;
        assert_eq!(reclaimer.calls(), 1);
        assert_eq!(decision.met, vec![Signal::NodeFsAvailable]);
        assert!(decision.evict.is_none(), "{decision:?}");
        assert!(pressure.disk(), "the round still reports DiskPressure");
    }

    #[tokio::test]
    async fn disk_pressure_node_reclaim_cannot_relieve_evicts_the_first_ranked_pod() {
        // 5Gi + 1Gi available of 100Gi: still below the 10 % threshold.
        let (mut manager, reclaimer, pressure) = under_pressure(1 << 30, 2 << 30);
        let decision = manager.synchronize().await;
        assert_eq!(reclaimer.calls(), 1);
        let (uid, status, message) = decision.evict.expect("a pod is evicted");
        assert_eq!(uid, "uid-hog");
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        // The message quotes the observation that met the threshold, before the reclaim.
        assert_eq!(
            message,
            "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, \
             available: 5Gi. Container c was using 8Gi, request is 0, has larger consumption \
             of ephemeral-storage. "
        );
        assert!(pressure.disk() && !pressure.memory());
    }

    #[tokio::test]
    async fn memory_pressure_never_asks_for_node_reclaim() {
        // Memory and disk both short: memory goes first and has nothing to reclaim at node
        // level, however much the reclaimer could free.
        let (mut manager, reclaimer, pressure) = under_pressure(50 << 30, 50 << 20);
        let decision = manager.synchronize().await;
        assert_eq!(reclaimer.calls(), 0);
        assert!(pressure.memory() && pressure.disk());
        let (_, _, message) = decision.evict.expect("a pod is evicted for memory");
        assert!(
            message.starts_with("The node was low on resource: memory. "),
            "{message}"
        );
    }
}
