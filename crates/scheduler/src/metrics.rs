//! The scheduler's Prometheus metrics, with upstream names: attempts by result and profile, the
//! attempt latency histogram, and the pending pods per sub-queue (read at scrape time).
//! [`Metrics::register`] adds them to the registry served on `/metrics`.

use std::time::Duration;

use component_base::metrics::SharedRegistry;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::queue::SchedulingQueue;

/// Labels of the attempt metrics: `result` (`scheduled`, `unschedulable`, `error`) and `profile`.
type AttemptLabels = Vec<(&'static str, String)>;

/// The outcome of one scheduling attempt, as upstream labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// A node was chosen.
    Scheduled,
    /// No node fits.
    Unschedulable,
    /// Something failed on the way (for example the binding).
    Error,
}

impl AttemptResult {
    fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

/// The scheduler's metrics; clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    attempts: Family<AttemptLabels, Counter>,
    duration: Family<AttemptLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            attempts: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
        }
    }
}

fn labels(result: AttemptResult, profile: &str) -> AttemptLabels {
    vec![
        ("result", result.label().to_string()),
        ("profile", profile.to_string()),
    ]
}

impl Metrics {
    /// Records one attempt of `profile` that took `elapsed`.
    pub fn observe_attempt(&self, result: AttemptResult, profile: &str, elapsed: Duration) {
        let labels = labels(result, profile);
        self.attempts.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// How many attempts of `profile` ended with `result` so far.
    pub fn attempts(&self, result: AttemptResult, profile: &str) -> u64 {
        self.attempts.get_or_create(&labels(result, profile)).get()
    }

    /// Adds these metrics and `scheduler_pending_pods` (read from `queue`) to `registry`.
    pub fn register(&self, registry: &SharedRegistry, queue: SchedulingQueue) {
        let mut registry = match registry.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        registry.register(
            "scheduler_schedule_attempts",
            "Scheduling attempts by result: 'scheduled', 'unschedulable' (no node fits) or 'error' (the binding failed).",
            self.attempts.clone(),
        );
        registry.register_with_unit(
            "scheduler_scheduling_attempt_duration",
            "Seconds one scheduling attempt took, from filtering through the binding.",
            prometheus_client::registry::Unit::Seconds,
            self.duration.clone(),
        );
        registry.register_collector(Box::new(PendingPods(queue)));
    }
}

/// `scheduler_pending_pods{queue}` from the queue's counts at scrape time.
struct PendingPods(SchedulingQueue);

impl std::fmt::Debug for PendingPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingPods").finish_non_exhaustive()
    }
}

impl Collector for PendingPods {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.pending();
        let mut family = encoder.encode_descriptor(
            "scheduler_pending_pods",
            "Pods waiting to be scheduled, by sub-queue: active, backoff (waiting out a back-off), unschedulable (waiting for a cluster change) and gated (held by scheduling gates).",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (queue, count) in [
            ("active", counts.active),
            ("backoff", counts.backoff),
            ("unschedulable", counts.unschedulable),
            ("gated", counts.gated),
        ] {
            let labels = [("queue", queue)];
            ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_pending_pods_are_exported_with_upstream_names() -> Result<(), std::fmt::Error> {
        let registry = SharedRegistry::default();
        let queue = SchedulingQueue::default();
        let metrics = Metrics::default();
        metrics.register(&registry, queue.clone());
        queue.add("default/a".into());
        queue.add("default/b".into());
        metrics.observe_attempt(
            AttemptResult::Scheduled,
            "default-scheduler",
            Duration::from_millis(3),
        );
        let text = component_base::metrics::encode(&registry)?;
        for line in [
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1",
            "scheduler_scheduling_attempt_duration_seconds_count{result=\"scheduled\",profile=\"default-scheduler\"} 1",
            "scheduler_pending_pods{queue=\"active\"} 2",
            "scheduler_pending_pods{queue=\"backoff\"} 0",
            "scheduler_pending_pods{queue=\"gated\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        Ok(())
    }
}
