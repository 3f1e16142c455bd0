//! Optional node features the kubelet wires in at start ([`crate::app::start_with_features`]):
//! static pods from `--pod-manifest-path`, the eviction manager (`--eviction-hard`) and the
//! stats collector behind `/stats/summary`. The defaults (what [`crate::app::start`] uses)
//! collect stats from the host and leave the other two off.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::eviction::{NodeReclaimer, SignalSource, Threshold, MONITORING_INTERVAL};
use super::stats::StatsCollector;

/// Static pod settings.
#[derive(Debug, Clone)]
pub struct StaticPodSettings {
    /// `--pod-manifest-path`.
    pub dir: PathBuf,
    /// `--file-check-frequency`.
    pub period: Duration,
}

/// Eviction manager settings.
#[derive(Clone)]
pub struct EvictionSettings {
    /// `--eviction-hard` and `--eviction-soft` (with their grace periods).
    pub thresholds: Vec<Threshold>,
    /// `--eviction-max-pod-grace-period` (seconds).
    pub max_pod_grace_period: i64,
    /// `--eviction-pressure-transition-period`.
    pub transition_period: Duration,
    /// How often signals are observed.
    pub interval: Duration,
    /// Where figures come from (`None`: the stats collector).
    pub source: Option<Arc<dyn SignalSource>>,
    /// What frees disk before pods are evicted for it (the real kubelet: image GC; `None`:
    /// disk pressure evicts pods straight away).
    pub reclaimer: Option<Arc<dyn NodeReclaimer>>,
}

impl EvictionSettings {
    /// Settings for `thresholds` with upstream's timing and the real signals.
    pub fn new(thresholds: Vec<Threshold>, transition_period: Duration) -> Self {
        Self {
            thresholds,
            max_pod_grace_period: 0,
            transition_period,
            interval: MONITORING_INTERVAL,
            source: None,
            reclaimer: None,
        }
    }
}

/// Everything optional about a kubelet.
#[derive(Clone, Default)]
pub struct NodeFeatures {
    /// Static pods, when `--pod-manifest-path` is set.
    pub static_pods: Option<StaticPodSettings>,
    /// The eviction manager, when thresholds are set.
    pub eviction: Option<EvictionSettings>,
    /// The stats collector (`None`: one reading the host's cgroups and /proc).
    pub stats: Option<Arc<StatsCollector>>,
}
