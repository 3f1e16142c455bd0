//! The watch cache: lists and watches served from memory, in front of [`Storage`], as the
//! upstream apiserver's cacher does.
//!
//! Start at [`WatchCache::start`]. It builds one [`PrefixCache`] per resource of the registry
//! (`/registry/pods/`, `/registry/apps/deployments/`, ...), fills them with one list read at
//! the store's current revision, then follows ONE storage watch on the registry root from that
//! revision and applies each event to the cache of its prefix. Following the whole root in
//! revision order means the cache knows the store's revision exactly (every event up to it has
//! been applied), which is what a consistent read needs: get the store's current revision,
//! wait until the cache has reached it, serve from memory (upstream gets the same from etcd
//! progress notifications). A watch error resumes from the last revision; a compacted resume
//! re-lists, which terminates the watchers (they re-watch and get `410 Gone` if too far behind).
//!
//! [`prefix`] holds the per-prefix store, index, event buffer and watchers; [`object`] what is
//! shared between them; [`buffer`] the ring of recent events.

mod buffer;
pub mod object;
pub mod prefix;
mod raw;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{oneshot, watch};

pub use object::{CacheEvent, CachedObject, WatchEventType};
pub use prefix::{CacheList, CacheWatch, ListRequest, PrefixCache, WatchRequest, WatchStart};

use crate::storage::{Event, ListOptions, Revision, Storage, StorageError};

/// The logical root every cached prefix lives under.
const ROOT: &str = "/registry/";

/// Sizes and timeouts of the cache.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Events each prefix's buffer holds at least (upstream: 100).
    pub min_buffer: usize,
    /// Events each prefix's buffer may grow to (upstream: 100 * 1024).
    pub max_buffer: usize,
    /// The buffer grows instead of dropping events younger than this (upstream: 75 s).
    pub fresh: Duration,
    /// Bytes of objects each prefix's buffer holds at most (oldest events beyond `min_buffer`
    /// go first).
    pub max_buffer_bytes: usize,
    /// Events a watcher may have pending before it is terminated as too slow.
    pub watcher_channel: usize,
    /// How long a request for a revision the cache has not reached yet waits (upstream: 3 s).
    pub wait_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            min_buffer: 100,
            max_buffer: 100 * 1024,
            fresh: Duration::from_secs(75),
            max_buffer_bytes: 64 << 20,
            watcher_channel: 1024,
            wait_timeout: Duration::from_secs(3),
        }
    }
}

/// Why the cache cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A watch from a revision older than the event buffer holds (`410 Gone`).
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision a watch can start from.
        oldest: Revision,
    },
    /// A revision the cache did not reach in time (`504`, "Too large resource version").
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge {
        /// The revision asked for.
        requested: Revision,
        /// The cache's revision.
        current: Revision,
    },
    /// Reading the store's current revision failed.
    #[error("reading the current revision: {0}")]
    Storage(#[from] StorageError),
}

/// Counters for `/metrics`, over every prefix.
#[derive(Debug, Default)]
pub struct CacheMetrics {
    events: AtomicU64,
    watchers: AtomicI64,
    terminated: AtomicU64,
}

impl CacheMetrics {
    /// Events received from storage and applied.
    pub fn events_received(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Watchers currently registered.
    pub fn watchers(&self) -> i64 {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Watchers terminated for falling behind.
    pub fn terminated(&self) -> u64 {
        self.terminated.load(Ordering::Relaxed)
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        format!(
            "# HELP apiserver_watch_cache_events_received_total Counter of events received in watch cache.\n\
             # TYPE apiserver_watch_cache_events_received_total counter\n\
             apiserver_watch_cache_events_received_total {}\n\
             # HELP apiserver_registered_watchers Number of currently registered watchers.\n\
             # TYPE apiserver_registered_watchers gauge\n\
             apiserver_registered_watchers {}\n\
             # HELP apiserver_terminated_watchers_total Counter of watchers closed due to unresponsiveness.\n\
             # TYPE apiserver_terminated_watchers_total counter\n\
             apiserver_terminated_watchers_total {}\n",
            self.events_received(),
            self.watchers(),
            self.terminated()
        )
    }
}

/// What the feeding task and the request handlers share.
struct Shared {
    storage: Arc<dyn Storage>,
    caches: HashMap<String, Arc<PrefixCache>>,
    /// The revision of the last event applied (or of the last re-list).
    global: Arc<AtomicI64>,
    /// Requests waiting for a revision, by revision: an applied event wakes only those it
    /// satisfies (not every waiter on every event).
    waiters: Mutex<BTreeMap<Revision, Vec<oneshot::Sender<()>>>>,
    ready: watch::Sender<bool>,
    metrics: Arc<CacheMetrics>,
}

/// The watch cache of every resource: see the module docs.
pub struct WatchCache {
    shared: Arc<Shared>,
    config: CacheConfig,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The field a prefix is indexed by (what kubelets select their pods with).
fn index_field(prefix: &str) -> Option<&'static str> {
    (prefix == "/registry/pods/").then_some("spec.nodeName")
}

impl WatchCache {
    /// Builds the caches of every listable resource and starts filling them.
    pub fn start(storage: Arc<dyn Storage>, config: CacheConfig) -> Self {
        let global = Arc::new(AtomicI64::new(0));
        let metrics = Arc::new(CacheMetrics::default());
        let mut caches = HashMap::new();
        for resource in api_types::registry::RESOURCES {
            if !resource.verbs.iter().any(|v| *v == "list" || *v == "watch") {
                continue;
            }
            let prefix = format!("{}/", resource.storage_prefix());
            caches.entry(prefix.clone()).or_insert_with(|| {
                Arc::new(PrefixCache::new(
                    prefix.clone(),
                    index_field(&prefix),
                    config.clone(),
                    global.clone(),
                    metrics.clone(),
                ))
            });
        }
        let shared = Arc::new(Shared {
            storage,
            caches,
            global,
            waiters: Mutex::new(BTreeMap::new()),
            ready: watch::channel(false).0,
            metrics,
        });
        let task = tokio::spawn(shared.clone().run());
        WatchCache {
            shared,
            config,
            task,
        }
    }

    /// The cache of `prefix` (`/registry/pods/`), when it is cached and filled.
    pub fn cache(&self, prefix: &str) -> Option<&Arc<PrefixCache>> {
        if !*self.shared.ready.borrow() {
            return None;
        }
        self.shared.caches.get(prefix)
    }

    /// Waits until the first list has filled the caches; false on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The revision of the last event applied.
    pub fn revision(&self) -> Revision {
        self.shared.global.load(Ordering::Acquire)
    }

    /// Waits (up to the configured timeout) until the cache has applied every event up to
    /// `revision`.
    pub async fn wait_for(&self, revision: Revision) -> Result<(), CacheError> {
        self.wait_for_within(revision, self.config.wait_timeout)
            .await
    }

    async fn wait_for_within(
        &self,
        revision: Revision,
        timeout: Duration,
    ) -> Result<(), CacheError> {
        if self.revision() >= revision {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.shared.lock_waiters();
            // Checked again under the lock: the feeder raises the revision, then drains.
            if self.revision() >= revision {
                return Ok(());
            }
            waiters.entry(revision).or_default().push(tx);
        }
        let reached = tokio::time::timeout(timeout, rx)
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            let mut waiters = self.shared.lock_waiters();
            if let Some(pending) = waiters.get_mut(&revision) {
                pending.retain(|tx| !tx.is_closed());
                if pending.is_empty() {
                    waiters.remove(&revision);
                }
            }
            Err(CacheError::TooLarge {
                requested: revision,
                current: self.revision(),
            })
        }
    }

    /// For a consistent read: reads the store's current revision and waits until the cache has
    /// reached it; returns that revision.
    pub async fn wait_consistent(&self) -> Result<Revision, CacheError> {
        let current = self.shared.storage.current_revision().await?;
        self.wait_for(current).await?;
        Ok(current)
    }

    /// The counters for `/metrics`.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.shared.metrics
    }

    /// A shared handle on the counters.
    pub fn metrics_handle(&self) -> Arc<CacheMetrics> {
        self.shared.metrics.clone()
    }
}

impl Shared {
    /// Lists, then follows the root watch; re-lists whenever the watch cannot resume.
    async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.relist().await {
                Ok(revision) => {
                    backoff = Duration::from_millis(100);
                    self.ready.send_replace(true);
                    self.follow(revision).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: list failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Lists every prefix at one revision and replaces the caches' content.
    async fn relist(&self) -> Result<Revision, StorageError> {
        let mut revision = self.storage.current_revision().await?;
        while revision <= 0 {
            // An empty store: nothing to list at yet, and "watch from 0" would mean "from now".
            tokio::time::sleep(Duration::from_millis(100)).await;
            revision = self.storage.current_revision().await?;
        }
        let mut lists = Vec::with_capacity(self.caches.len());
        for (prefix, cache) in &self.caches {
            let options = ListOptions {
                revision: Some(revision),
                ..Default::default()
            };
            let list = self.storage.list(prefix, &options).await?;
            lists.push((cache, list.items));
        }
        for (cache, items) in lists {
            cache.replace(&items, revision);
        }
        self.global.fetch_max(revision, Ordering::AcqRel);
        self.wake();
        tracing::info!(revision, prefixes = self.caches.len(), "watch cache filled");
        Ok(revision)
    }

    /// Follows the root watch from `after`; returns when a re-list is needed.
    async fn follow(&self, mut after: Revision) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut stream = match self.storage.watch(ROOT, after).await {
                Ok(stream) => stream,
                Err(StorageError::Compacted { .. }) => {
                    tracing::info!(after, "watch cache: resume revision compacted, re-listing");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, after, "watch cache: watch failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => {
                        after = after.max(event.revision());
                        self.apply(&event);
                    }
                    Err(StorageError::Compacted { .. }) => {
                        tracing::info!(after, "watch cache: watch compacted, re-listing");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, after, "watch cache: watch ended, resuming");
                        break;
                    }
                }
            }
        }
    }

    /// The cache of the prefix `key` is under.
    fn cache_of(&self, key: &str) -> Option<&Arc<PrefixCache>> {
        let rest = key.strip_prefix(ROOT)?;
        // `/registry/<plural>/...` or `/registry/<group>/<plural>/...`.
        let mut end = ROOT.len();
        for segment in rest.split('/').take(2) {
            end += segment.len() + 1;
            if let Some(cache) = key.get(..end).and_then(|p| self.caches.get(p)) {
                return Some(cache);
            }
        }
        None
    }

    fn apply(&self, event: &Event) {
        let revision = event.revision();
        match self.cache_of(&event.kv.key) {
            Some(cache) => cache.apply(event),
            None => {
                self.global.fetch_max(revision, Ordering::AcqRel);
            }
        }
        self.wake();
    }

    fn lock_waiters(&self) -> MutexGuard<'_, BTreeMap<Revision, Vec<oneshot::Sender<()>>>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the requests waiting for a revision the cache has reached.
    fn wake(&self) {
        let reached = self.global.load(Ordering::Acquire);
        let mut waiters = self.lock_waiters();
        if waiters.first_key_value().is_none_or(|(r, _)| *r > reached) {
            return;
        }
        let later = waiters.split_off(&(reached + 1));
        let due = std::mem::replace(&mut *waiters, later);
        drop(waiters);
        for tx in due.into_values().flatten() {
            // A waiter that timed out has dropped its receiver: nothing to wake.
            tx.send(()).ok();
        }
    }
}

#[cfg(test)]
mod tests;
