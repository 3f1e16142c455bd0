//! The scheduling queue: pods waiting for a decision (active, ordered by PrioritySort: higher
//! `spec.priority` first, then the earlier enqueued), and pods that did not fit (unschedulable)
//! which come back with exponential back-off when the cluster changes, or after a while in any
//! case. Pods held back by `spec.schedulingGates` wait in a gated set until ungated.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// First back-off after a failed attempt (upstream `podInitialBackoffSeconds`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off (upstream `podMaxBackoffSeconds`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried after this long even if nothing changed.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(60);

/// A pod key: `namespace/name`.
pub type PodKey = String;

/// PrioritySort's order: priority (highest first), then enqueue sequence (oldest first).
type ActiveEntry = (Reverse<i32>, u64, PodKey);

#[derive(Default)]
struct State {
    active: BTreeSet<ActiveEntry>,
    /// Known priorities of pods (0 when never told).
    priorities: HashMap<PodKey, i32>,
    sequence: u64,
    queued: HashSet<PodKey>,
    /// Failed pods: attempts and when they failed last.
    unschedulable: HashMap<PodKey, (u32, Instant)>,
    attempts: HashMap<PodKey, u32>,
    /// Pods with scheduling gates: never popped until added again without them.
    gated: HashSet<PodKey>,
}

/// How many pods wait in each sub-queue (upstream `scheduler_pending_pods{queue}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Waiting for a decision now.
    pub active: usize,
    /// Failed and still inside their back-off.
    pub backoff: usize,
    /// Failed, back-off over, waiting for a cluster change.
    pub unschedulable: usize,
    /// Held back by `spec.schedulingGates`.
    pub gated: usize,
}

/// The shared queue.
#[derive(Clone, Default)]
pub struct SchedulingQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

/// The back-off after `attempts` failures: 1s, 2s, 4s, ... up to 10s.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

impl SchedulingQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Queues a pod for a decision now.
    pub fn add(&self, key: PodKey) {
        let mut state = self.lock();
        state.unschedulable.remove(&key);
        state.gated.remove(&key);
        if state.queued.insert(key.clone()) {
            let priority = state.priorities.get(&key).copied().unwrap_or(0);
            state.sequence += 1;
            let sequence = state.sequence;
            state.active.insert((Reverse(priority), sequence, key));
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Queues a pod with its priority (kept for later re-queues).
    pub fn add_with_priority(&self, key: PodKey, priority: i32) {
        self.lock().priorities.insert(key.clone(), priority);
        self.add(key);
    }

    /// Takes the next pod to schedule.
    pub async fn pop(&self) -> PodKey {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if let Some((_, _, key)) = state.active.pop_first() {
                    state.queued.remove(&key);
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Parks a pod that did not fit.
    pub fn add_unschedulable(&self, key: PodKey) {
        let mut state = self.lock();
        let attempts = {
            let entry = state.attempts.entry(key.clone()).or_insert(0);
            *entry += 1;
            *entry
        };
        if !state.queued.contains(&key) {
            state.unschedulable.insert(key, (attempts, Instant::now()));
        }
    }

    /// Holds a pod back while it has scheduling gates (out of the active and parked sets).
    pub fn gate(&self, key: PodKey) {
        let mut state = self.lock();
        state.unschedulable.remove(&key);
        if state.queued.remove(&key) {
            state.active.retain(|(_, _, queued)| *queued != key);
        }
        state.gated.insert(key);
    }

    /// Forgets a pod (bound or deleted).
    pub fn forget(&self, key: &str) {
        let mut state = self.lock();
        state.gated.remove(key);
        state.unschedulable.remove(key);
        state.attempts.remove(key);
        state.priorities.remove(key);
    }

    /// Something changed in the cluster: retry parked pods once their back-off has passed
    /// (returns the pods still backing off with their remaining wait).
    pub fn move_all_to_active(&self) -> Vec<(PodKey, Duration)> {
        let now = Instant::now();
        let parked: Vec<(PodKey, u32, Instant)> = self
            .lock()
            .unschedulable
            .iter()
            .map(|(k, (a, t))| (k.clone(), *a, *t))
            .collect();
        let mut waiting = Vec::new();
        for (key, attempts, since) in parked {
            let ready_at = since + backoff(attempts);
            if ready_at <= now {
                self.add(key);
            } else {
                waiting.push((key, ready_at - now));
            }
        }
        waiting
    }

    /// Retries pods parked for longer than [`MAX_UNSCHEDULABLE`].
    pub fn flush_stale(&self) {
        let stale: Vec<PodKey> = self
            .lock()
            .unschedulable
            .iter()
            .filter(|(_, (_, since))| since.elapsed() >= MAX_UNSCHEDULABLE)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.add(key);
        }
    }

    /// Pods waiting for a decision.
    pub fn active_len(&self) -> usize {
        self.lock().active.len()
    }

    /// Pods parked as unschedulable.
    pub fn unschedulable_len(&self) -> usize {
        self.lock().unschedulable.len()
    }

    /// The pending pods per sub-queue; parked pods still inside their back-off count as
    /// `backoff`.
    pub fn pending(&self) -> PendingCounts {
        let now = Instant::now();
        let state = self.lock();
        let backoff = state
            .unschedulable
            .values()
            .filter(|(attempts, since)| *since + backoff(*attempts) > now)
            .count();
        PendingCounts {
            active: state.active.len(),
            backoff,
            unschedulable: state.unschedulable.len() - backoff,
            gated: state.gated.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(10), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn higher_priority_pods_pop_first_then_the_oldest() {
        let queue = SchedulingQueue::default();
        queue.add_with_priority("default/low".into(), 0);
        queue.add_with_priority("default/high".into(), 1000);
        queue.add_with_priority("default/mid-1".into(), 10);
        queue.add_with_priority("default/mid-2".into(), 10);
        queue.add("default/unknown".into());
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(queue.pop().await);
        }
        assert_eq!(
            order,
            [
                "default/high",
                "default/mid-1",
                "default/mid-2",
                "default/low",
                "default/unknown"
            ]
        );
    }

    #[tokio::test]
    async fn gated_pods_wait_outside_the_active_queue_until_added_again() {
        let queue = SchedulingQueue::default();
        queue.add("default/gated".into());
        queue.add("default/open".into());
        queue.gate("default/gated".into());
        assert_eq!(
            queue.pending(),
            PendingCounts {
                active: 1,
                gated: 1,
                ..PendingCounts::default()
            }
        );
        assert_eq!(queue.pop().await, "default/open");
        queue.add("default/gated".into());
        assert_eq!(queue.pending().gated, 0);
        assert_eq!(queue.pop().await, "default/gated");
        queue.gate("default/other".into());
        queue.forget("default/other");
        assert_eq!(queue.pending(), PendingCounts::default());
    }

    #[tokio::test]
    async fn parked_pods_return_only_after_their_backoff() {
        let queue = SchedulingQueue::default();
        queue.add("default/a".into());
        queue.add("default/a".into());
        assert_eq!(queue.active_len(), 1);
        assert_eq!(queue.pop().await, "default/a");
        queue.add_unschedulable("default/a".into());
        assert_eq!(queue.unschedulable_len(), 1);
        let waiting = queue.move_all_to_active();
        assert_eq!(waiting.len(), 1);
        assert_eq!(queue.active_len(), 0);
        queue.add("default/a".into());
        assert_eq!(queue.unschedulable_len(), 0);
        assert_eq!(queue.active_len(), 1);
    }
}
