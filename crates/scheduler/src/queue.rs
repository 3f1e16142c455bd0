//! The scheduling queue: pods waiting for a decision (active, ordered by PrioritySort: higher
//! `spec.priority` first, then the earlier enqueued), and pods that did not fit (unschedulable)
//! which come back with exponential back-off when the cluster changes, or after a while in any
//! case. Pods held back by `spec.schedulingGates` wait in a gated set until ungated.
//!
//! A cluster event moves each parked pod once: to active if its back-off is over, otherwise
//! into the back-off set, which [`SchedulingQueue::flush_backoff`] drains as back-offs end
//! (upstream's backoffQ), so events cost nothing per pod already moved.

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
    /// Moved by an event while still backing off: (back-off end, pod), popped once it ends.
    backoff: BTreeSet<(Instant, PodKey)>,
    /// Pod -> its back-off end, for the pods in `backoff`.
    backoff_until: HashMap<PodKey, Instant>,
}

impl State {
    fn leave_backoff(&mut self, key: &str) {
        if let Some(until) = self.backoff_until.remove(key) {
            self.backoff.remove(&(until, key.to_string()));
        }
    }
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
        if Self::activate(&mut state, key) {
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
            state.leave_backoff(&key);
            state.unschedulable.insert(key, (attempts, Instant::now()));
        }
    }

    /// Holds a pod back while it has scheduling gates (out of the active and parked sets).
    pub fn gate(&self, key: PodKey) {
        let mut state = self.lock();
        state.unschedulable.remove(&key);
        state.leave_backoff(&key);
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
        state.leave_backoff(key);
        state.attempts.remove(key);
        state.priorities.remove(key);
    }

    /// Something changed in the cluster: parked pods whose back-off has passed become active,
    /// the others move to the back-off set ([`SchedulingQueue::flush_backoff`] activates them);
    /// returns how many are backing off.
    pub fn move_all_to_active(&self) -> usize {
        let now = Instant::now();
        let mut state = self.lock();
        if state.unschedulable.is_empty() {
            return state.backoff.len();
        }
        let parked: Vec<(PodKey, (u32, Instant))> = state.unschedulable.drain().collect();
        let mut woken = false;
        for (key, (attempts, since)) in parked {
            let ready_at = since + backoff(attempts);
            if ready_at <= now {
                woken |= Self::activate(&mut state, key);
            } else {
                state.backoff_until.insert(key.clone(), ready_at);
                state.backoff.insert((ready_at, key));
            }
        }
        let backing_off = state.backoff.len();
        drop(state);
        if woken {
            self.notify.notify_one();
        }
        backing_off
    }

    /// Queues `key` as active (the lock held); whether it was not queued yet.
    fn activate(state: &mut State, key: PodKey) -> bool {
        state.leave_backoff(&key);
        if !state.queued.insert(key.clone()) {
            return false;
        }
        let priority = state.priorities.get(&key).copied().unwrap_or(0);
        state.sequence += 1;
        let sequence = state.sequence;
        state.active.insert((Reverse(priority), sequence, key));
        true
    }

    /// Activates the pods of the back-off set whose back-off has ended; returns when the next
    /// one ends (`None` when the set is empty).
    pub fn flush_backoff(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut woken = false;
        while let Some((until, _)) = state.backoff.first() {
            if *until > now {
                break;
            }
            let Some((_, key)) = state.backoff.pop_first() else {
                break;
            };
            state.backoff_until.remove(&key);
            woken |= Self::activate(&mut state, key);
        }
        let next = state.backoff.first().map(|(until, _)| *until);
        drop(state);
        if woken {
            self.notify.notify_one();
        }
        next
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

    /// Whether the pod is parked (unschedulable or backing off after a move).
    pub fn is_parked(&self, key: &str) -> bool {
        let state = self.lock();
        state.unschedulable.contains_key(key) || state.backoff_until.contains_key(key)
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
        let parked_in_backoff = state
            .unschedulable
            .values()
            .filter(|(attempts, since)| *since + backoff(*attempts) > now)
            .count();
        PendingCounts {
            active: state.active.len(),
            backoff: parked_in_backoff + state.backoff.len(),
            unschedulable: state.unschedulable.len() - parked_in_backoff,
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
        assert_eq!(queue.move_all_to_active(), 1);
        assert_eq!(queue.active_len(), 0);
        assert_eq!(queue.pending().backoff, 1);
        // Still backing off: a flush leaves it, a second event does not count it twice.
        assert!(queue.flush_backoff().is_some());
        assert_eq!(queue.move_all_to_active(), 1);
        assert_eq!(queue.active_len(), 0);
        assert!(queue.is_parked("default/a"));
        queue.add("default/a".into());
        assert!(!queue.is_parked("default/a"));
        assert_eq!(queue.unschedulable_len(), 0);
        assert_eq!(queue.pending().backoff, 0);
        assert_eq!(queue.active_len(), 1);
    }

    #[tokio::test]
    async fn pods_moved_while_backing_off_become_active_once_it_ends() {
        let queue = SchedulingQueue::default();
        {
            // Failed 1.5 s ago with a 1 s back-off: ready; 0.5 s ago: still backing off.
            let mut state = queue.lock();
            let now = Instant::now();
            let ago = |ms| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
            state
                .unschedulable
                .insert("default/ready".into(), (1, ago(1500)));
            state
                .unschedulable
                .insert("default/later".into(), (1, ago(500)));
        }
        assert_eq!(queue.move_all_to_active(), 1);
        assert_eq!(queue.pop().await, "default/ready");
        let next = queue.flush_backoff();
        assert!(next.is_some_and(|at| at > Instant::now()));
        {
            // Its back-off has ended now.
            let mut state = queue.lock();
            let Some((_, key)) = state.backoff.pop_first() else {
                panic!("the pod left the back-off set early");
            };
            let past = Instant::now()
                .checked_sub(Duration::from_millis(1))
                .unwrap_or_else(Instant::now);
            state.backoff_until.insert(key.clone(), past);
            state.backoff.insert((past, key));
        }
        assert_eq!(queue.flush_backoff(), None);
        assert_eq!(queue.pop().await, "default/later");
        assert_eq!(queue.pending(), PendingCounts::default());
    }
}
