//! Upstream's workqueue metrics (`workqueue_depth`, `workqueue_adds_total`,
//! `workqueue_retries_total`, `workqueue_queue_duration_seconds`, each by `name`), collected
//! from every named [`crate::queue::WorkQueue`] of the process at scrape time.
//!
//! As upstream's global workqueue metrics provider, queues register themselves in a
//! process-wide list when named ([`register_queue`]); [`register`] adds the collector to the
//! registry served on `/metrics`. Queues that were dropped disappear from the list.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use component_base::metrics::SharedRegistry;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::TypedMetric;

/// One queue's statistics, updated by the queue as it works.
#[derive(Debug)]
pub struct QueueStats {
    adds: AtomicU64,
    retries: AtomicU64,
    depth: AtomicU64,
    waits: AtomicU64,
    waited_nanos: AtomicU64,
    queue_duration: Histogram,
}

impl Default for QueueStats {
    fn default() -> Self {
        QueueStats {
            adds: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            depth: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            waited_nanos: AtomicU64::new(0),
            // Upstream: 10ns .. 10s (ExponentialBuckets(10e-9, 10, 10)).
            queue_duration: Histogram::new(exponential_buckets(1e-8, 10.0, 10)),
        }
    }
}

impl QueueStats {
    /// A key was added.
    pub fn added(&self) {
        self.adds.fetch_add(1, Ordering::Relaxed);
    }

    /// A key was re-queued with back-off.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of keys waiting changed.
    pub fn set_depth(&self, depth: usize) {
        self.depth
            .store(u64::try_from(depth).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A key waited `waited` between being added and handed to a worker.
    pub fn waited(&self, waited: Duration) {
        self.queue_duration.observe(waited.as_secs_f64());
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waited_nanos.fetch_add(
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Keys added so far.
    pub fn adds(&self) -> u64 {
        self.adds.load(Ordering::Relaxed)
    }

    /// Back-off re-queues so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Keys waiting now.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// How many keys were handed out and their total wait in seconds.
    pub fn waits(&self) -> (u64, f64) {
        let nanos = self.waited_nanos.load(Ordering::Relaxed);
        (
            self.waits.load(Ordering::Relaxed),
            Duration::from_nanos(nanos).as_secs_f64(),
        )
    }
}

type Queues = Vec<(&'static str, Weak<QueueStats>)>;

static QUEUES: Mutex<Queues> = Mutex::new(Vec::new());

fn queues() -> MutexGuard<'static, Queues> {
    match QUEUES.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Exports `stats` under `name` (a controller may name several queues alike: their counts add up).
pub fn register_queue(name: &'static str, stats: &Arc<QueueStats>) {
    let mut queues = queues();
    queues.retain(|(_, stats)| stats.strong_count() > 0);
    if !queues
        .iter()
        .any(|(n, s)| *n == name && s.as_ptr() == Arc::as_ptr(stats))
    {
        queues.push((name, Arc::downgrade(stats)));
    }
}

/// Adds the workqueue collector to `registry`.
pub fn register(registry: &SharedRegistry) {
    let mut registry = match registry.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    registry.register_collector(Box::new(WorkqueueCollector));
}

/// Reads the live queues at scrape time.
#[derive(Debug)]
struct WorkqueueCollector;

/// The live queues grouped by name, in first-registered order.
fn live() -> Vec<(&'static str, Vec<Arc<QueueStats>>)> {
    let mut grouped: Vec<(&'static str, Vec<Arc<QueueStats>>)> = Vec::new();
    for (name, stats) in queues().iter() {
        let Some(stats) = stats.upgrade() else {
            continue;
        };
        match grouped.iter_mut().find(|(n, _)| n == name) {
            Some((_, all)) => all.push(stats),
            None => grouped.push((name, vec![stats])),
        }
    }
    grouped
}

impl Collector for WorkqueueCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let queues = live();
        let sum = |all: &[Arc<QueueStats>], f: fn(&QueueStats) -> u64| -> u64 {
            all.iter().map(|s| f(s)).sum()
        };
        let mut depth = encoder.encode_descriptor(
            "workqueue_depth",
            "Keys waiting in the work queue.",
            None,
            ConstGauge::<i64>::TYPE,
        )?;
        for (name, all) in &queues {
            let value = i64::try_from(sum(all, QueueStats::depth)).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(depth.encode_family(&[("name", *name)])?)?;
        }
        let mut adds = encoder.encode_descriptor(
            "workqueue_adds",
            "Keys added to the work queue.",
            None,
            ConstCounter::<u64>::TYPE,
        )?;
        for (name, all) in &queues {
            ConstCounter::new(sum(all, QueueStats::adds))
                .encode(adds.encode_family(&[("name", *name)])?)?;
        }
        let mut retries = encoder.encode_descriptor(
            "workqueue_retries",
            "Keys re-queued with back-off after a failed sync.",
            None,
            ConstCounter::<u64>::TYPE,
        )?;
        for (name, all) in &queues {
            ConstCounter::new(sum(all, QueueStats::retries))
                .encode(retries.encode_family(&[("name", *name)])?)?;
        }
        let mut duration = encoder.encode_descriptor(
            "workqueue_queue_duration_seconds",
            "Seconds a key waited in the work queue before a worker took it.",
            None,
            Histogram::TYPE,
        )?;
        for (name, all) in &queues {
            // Histograms of same-named queues cannot be merged; the first one speaks for the name.
            if let Some(first) = all.first() {
                first
                    .queue_duration
                    .encode(duration.encode_family(&[("name", *name)])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::WorkQueue;

    #[tokio::test(start_paused = true)]
    async fn named_queues_are_exported_with_upstream_names() -> Result<(), std::fmt::Error> {
        let registry = SharedRegistry::default();
        register(&registry);
        let queue: WorkQueue<String> = WorkQueue::new();
        queue.set_name("metrics-test-controller");
        queue.add("a".into());
        queue.add("b".into());
        let key = queue.next().await;
        queue.add_rate_limited(key);
        let text = component_base::metrics::encode(&registry)?;
        for line in [
            "workqueue_depth{name=\"metrics-test-controller\"} 1",
            "workqueue_adds_total{name=\"metrics-test-controller\"} 2",
            "workqueue_retries_total{name=\"metrics-test-controller\"} 1",
            "workqueue_queue_duration_seconds_count{name=\"metrics-test-controller\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        drop(queue);
        // The retry's delayed add holds the queue until it fires.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let text = component_base::metrics::encode(&registry)?;
        assert!(!text.contains("metrics-test-controller"), "{text}");
        Ok(())
    }
}
