//! A de-duplicating work queue of keys, as client-go's: a key is queued at most once, a key being
//! processed is not handed to a second worker (it is re-queued when done if it changed meanwhile),
//! failed keys come back after an exponential back-off. Every queue keeps upstream's workqueue
//! statistics ([`crate::metrics::QueueStats`]), exported under the controller's name once
//! [`WorkQueue::set_name`] is called (by [`crate::runner::spawn_workers`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::QueueStats;

/// First retry delay after a failure.
const BASE_DELAY: Duration = Duration::from_millis(5);
/// Longest retry delay after repeated failures.
const MAX_DELAY: Duration = Duration::from_secs(60);

struct State<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    processing: HashSet<T>,
    dirty: HashSet<T>,
    failures: HashMap<T, u32>,
    /// When each queued key was added (for `workqueue_queue_duration_seconds`).
    added_at: HashMap<T, Instant>,
}

/// A shared work queue; cloning shares it.
pub struct WorkQueue<T> {
    state: Arc<Mutex<State<T>>>,
    notify: Arc<Notify>,
    stats: Arc<QueueStats>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
                added_at: HashMap::new(),
            })),
            notify: Arc::new(Notify::new()),
            stats: Arc::default(),
        }
    }

    /// Names the queue (the controller's name) and exports its statistics under that name.
    pub fn set_name(&self, name: &'static str) {
        crate::metrics::register_queue(name, &self.stats);
    }

    /// This queue's statistics.
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Queues `key` unless it is already queued.
    pub fn add(&self, key: T) {
        let mut state = self.lock();
        if state.processing.contains(&key) {
            if state.dirty.insert(key) {
                self.stats.added();
            }
            return;
        }
        if state.queued.insert(key.clone()) {
            self.stats.added();
            state.added_at.insert(key.clone(), Instant::now());
            state.queue.push_back(key);
            self.stats.set_depth(state.queue.len());
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` after its next back-off delay (doubling with each failure).
    pub fn add_rate_limited(&self, key: T) {
        self.stats.retried();
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let delay = BASE_DELAY.saturating_mul(2u32.saturating_pow(*failures));
            *failures = failures.saturating_add(1);
            delay.min(MAX_DELAY)
        };
        self.add_after(key, delay);
    }

    /// Forgets the failure history of `key`.
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next key and marks it as being processed.
    pub async fn next(&self) -> T {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.queued.remove(&key);
                    if let Some(added) = state.added_at.remove(&key) {
                        self.stats.waited(added.elapsed());
                    }
                    self.stats.set_depth(state.queue.len());
                    state.processing.insert(key.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` as processed; re-queues it if it was added while being processed.
    pub fn done(&self, key: &T) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.remove(key) && state.queued.insert(key.clone()) {
            state.added_at.insert(key.clone(), Instant::now());
            state.queue.push_back(key.clone());
            self.stats.set_depth(state.queue.len());
            drop(state);
            self.notify.notify_one();
        }
    }

    /// How many keys wait to be processed.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_added_twice_is_queued_once() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next().await, "a");
        assert_eq!(queue.next().await, "b");
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let queue = WorkQueue::new();
        queue.add("a");
        let key = queue.next().await;
        queue.add("a");
        assert!(queue.is_empty());
        queue.done(&key);
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn statistics_count_adds_retries_depth_and_time_in_queue() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.stats().adds(), 2);
        assert_eq!(queue.stats().depth(), 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let key = queue.next().await;
        assert_eq!(queue.stats().depth(), 1);
        let (count, seconds) = queue.stats().waits();
        assert_eq!(count, 1);
        assert!(seconds >= 0.25, "{seconds}");
        queue.add_rate_limited(key);
        assert_eq!(queue.stats().retries(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_keys_come_back_after_a_growing_delay() {
        let queue = WorkQueue::new();
        queue.add_rate_limited("a");
        assert!(queue.is_empty());
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert_eq!(queue.len(), 1);
        let key = queue.next().await;
        queue.done(&key);
        queue.add_rate_limited("a");
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert!(queue.is_empty());
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert_eq!(queue.len(), 1);
    }
}
