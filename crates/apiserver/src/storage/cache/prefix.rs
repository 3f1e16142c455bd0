//! The cache of one resource prefix (`/registry/pods/`): current objects in key order, an
//! optional field index (pods by `spec.nodeName`), the recent-event buffer and the watchers.
//!
//! Everything sits behind one mutex that the feeding task holds while it applies an event, so a
//! reader sees the store, the buffer and the revision at one consistent point. Watchers are kept
//! in buckets (all, per namespace, per indexed value) so an event is offered only to the
//! watchers that can want it; each watcher has a bounded channel, and one that lets it fill up
//! is dropped (its stream ends and the client re-watches), so a slow client never blocks the
//! cache or the other watchers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::mpsc;

use super::buffer::EventBuffer;
use super::object::{CacheEvent, CachedObject, WatchEventType};
use super::{CacheConfig, CacheError, CacheMetrics};
use crate::storage::{Event, EventType, KeyValue, Revision};

/// Which watchers an event is offered to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    /// Watchers of the whole prefix with no indexed selector.
    All,
    /// Watchers of one namespace with no indexed selector.
    Namespace(String),
    /// Watchers that select one value of the indexed field.
    Indexed(String),
}

/// One registered watcher.
struct Slot {
    /// Only keys under this prefix (the namespace, or the whole cache prefix).
    prefix: String,
    tx: mpsc::Sender<Arc<CacheEvent>>,
}

struct Inner {
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// Indexed value -> keys that have it.
    index: HashMap<String, BTreeSet<String>>,
    buffer: EventBuffer,
    /// The revision the store was (re)listed at; events at or below it are already in it.
    listed_at: Revision,
    watchers: HashMap<Bucket, HashMap<u64, Slot>>,
    next_id: u64,
}

/// The cache of one resource prefix.
pub struct PrefixCache {
    prefix: String,
    /// The field indexed, when this prefix has one (`spec.nodeName` for pods).
    index_field: Option<&'static str>,
    config: CacheConfig,
    /// The revision of the last event the feeding task applied, over every prefix.
    global: Arc<AtomicI64>,
    metrics: Arc<CacheMetrics>,
    inner: Mutex<Inner>,
}

/// What a LIST asks of the cache.
pub struct ListRequest<'a> {
    /// Keys under this prefix (the cache prefix or one namespace in it).
    pub prefix: &'a str,
    /// Only objects whose indexed field has this value (served through the index).
    pub indexed: Option<&'a str>,
    /// Keys strictly after this one.
    pub start_after: Option<&'a str>,
    /// At most this many matching objects.
    pub limit: Option<usize>,
}

/// A LIST answer.
pub struct CacheList {
    /// Matching objects in key order.
    pub items: Vec<Arc<CachedObject>>,
    /// The revision the list reflects.
    pub revision: Revision,
    /// When the limit cut the list short: the last key returned (the next page starts after it).
    pub continue_after: Option<String>,
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// The current state as initial objects, then live events.
    Snapshot,
    /// Events after this revision.
    After(Revision),
}

/// What a WATCH asks of the cache.
pub struct WatchRequest {
    /// Keys under this prefix.
    pub prefix: String,
    /// Only events touching this value of the indexed field.
    pub indexed: Option<String>,
    /// Where to start.
    pub start: WatchStart,
}

/// A registered watch: initial objects and replayed events, then live events on `events`.
/// Dropping it unregisters the watcher.
pub struct CacheWatch {
    /// The current objects, for [`WatchStart::Snapshot`].
    pub initial: Vec<Arc<CachedObject>>,
    /// Buffered events after the start revision, for [`WatchStart::After`].
    pub replay: Vec<Arc<CacheEvent>>,
    /// The revision the watch starts at (the snapshot's revision, or the one asked for).
    pub revision: Revision,
    /// Live events; ends when the watcher is terminated (too slow, or the cache re-listed).
    pub events: mpsc::Receiver<Arc<CacheEvent>>,
    cache: Weak<PrefixCache>,
    bucket: Bucket,
    id: u64,
}

impl CacheWatch {
    /// A revision safe to report in a BOOKMARK now: the cache's revision when every event up to
    /// it has been received, else None.
    pub fn progress(&self) -> Option<Revision> {
        let cache = self.cache.upgrade()?;
        let revision = {
            let inner = cache.lock();
            cache.revision_locked(&inner)
        };
        // Events up to `revision` were dispatched before it was read: if none is waiting, the
        // watcher has seen all of them that it selects.
        self.events.is_empty().then_some(revision)
    }
}

impl Drop for CacheWatch {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.upgrade() {
            let mut inner = cache.lock();
            if let Some(bucket) = inner.watchers.get_mut(&self.bucket) {
                if bucket.remove(&self.id).is_some() {
                    cache.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
                }
                if bucket.is_empty() {
                    inner.watchers.remove(&self.bucket);
                }
            }
        }
    }
}

/// The namespace part of `key` under `prefix` (`/registry/pods/ns/name` -> `ns`).
fn namespace_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(prefix)?
        .split_once('/')
        .map(|(namespace, _)| namespace)
}

impl PrefixCache {
    /// An empty cache of `prefix`, to be filled by [`PrefixCache::replace`].
    pub(super) fn new(
        prefix: String,
        index_field: Option<&'static str>,
        config: CacheConfig,
        global: Arc<AtomicI64>,
        metrics: Arc<CacheMetrics>,
    ) -> Self {
        let buffer = EventBuffer::new(&config, 0);
        PrefixCache {
            prefix,
            index_field,
            config,
            global,
            metrics,
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                index: HashMap::new(),
                buffer,
                listed_at: 0,
                watchers: HashMap::new(),
                next_id: 0,
            }),
        }
    }

    /// The prefix this cache holds, with its trailing slash.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The field this cache indexes, if any.
    pub fn index_field(&self) -> Option<&'static str> {
        self.index_field
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the cache: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn revision_locked(&self, inner: &Inner) -> Revision {
        self.global.load(Ordering::Acquire).max(inner.listed_at)
    }

    /// The revision the cache reflects.
    pub fn revision(&self) -> Revision {
        let inner = self.lock();
        self.revision_locked(&inner)
    }

    fn decode(&self, kv: &KeyValue) -> Option<Arc<CachedObject>> {
        match CachedObject::from_stored(
            kv.key.clone(),
            &kv.value,
            kv.mod_revision,
            self.index_field,
        ) {
            Ok(object) => Some(Arc::new(object)),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "watch cache: undecodable object skipped");
                None
            }
        }
    }

    /// Replaces the whole content with a list read at `revision`; every watcher is terminated
    /// (as upstream does when its cache re-lists) and the event buffer restarts empty.
    pub(super) fn replace(&self, items: &[KeyValue], revision: Revision) {
        let mut objects = BTreeMap::new();
        let mut index: HashMap<String, BTreeSet<String>> = HashMap::new();
        for kv in items {
            if let Some(object) = self.decode(kv) {
                if let Some(value) = &object.indexed {
                    index
                        .entry(value.clone())
                        .or_default()
                        .insert(kv.key.clone());
                }
                objects.insert(kv.key.clone(), object);
            }
        }
        let mut inner = self.lock();
        let dropped: usize = inner.watchers.values().map(HashMap::len).sum();
        self.metrics
            .watchers
            .fetch_sub(dropped as i64, Ordering::Relaxed);
        inner.watchers.clear();
        inner.objects = objects;
        inner.index = index;
        inner.listed_at = revision;
        inner.buffer = EventBuffer::new(&self.config, revision);
        tracing::debug!(prefix = %self.prefix, revision, objects = inner.objects.len(), "watch cache listed");
    }

    /// Applies one storage event and offers it to the watchers; publishes `revision` as the
    /// global revision while still holding the lock (so readers never see a revision whose
    /// events are not applied).
    pub(super) fn apply(&self, event: &Event) {
        let revision = event.revision();
        let mut inner = self.lock();
        if revision <= inner.listed_at {
            return;
        }
        self.metrics.events.fetch_add(1, Ordering::Relaxed);
        let key = event.kv.key.clone();
        let Some(object) = self.decode(&event.kv) else {
            self.global.fetch_max(revision, Ordering::AcqRel);
            return;
        };
        let (event_type, prev) = match event.event_type {
            EventType::Added | EventType::Modified => {
                let prev = inner.objects.insert(key.clone(), object.clone());
                let t = if prev.is_some() {
                    WatchEventType::Modified
                } else {
                    WatchEventType::Added
                };
                (t, prev)
            }
            EventType::Deleted => (WatchEventType::Deleted, inner.objects.remove(&key)),
        };
        if event_type == WatchEventType::Deleted && prev.is_none() {
            // A delete of a key the cache never held: nothing any client saw changes.
            self.global.fetch_max(revision, Ordering::AcqRel);
            return;
        }
        if let Some(old) = prev.as_ref().and_then(|p| p.indexed.as_ref()) {
            if let Some(keys) = inner.index.get_mut(old) {
                keys.remove(&key);
                if keys.is_empty() {
                    inner.index.remove(old);
                }
            }
        }
        if event_type != WatchEventType::Deleted {
            if let Some(new) = &object.indexed {
                inner
                    .index
                    .entry(new.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        let event = Arc::new(CacheEvent::new(event_type, object, prev, revision));
        inner.buffer.push(event.clone());
        self.dispatch(&mut inner, &event);
        self.global.fetch_max(revision, Ordering::AcqRel);
    }

    fn dispatch(&self, inner: &mut Inner, event: &Arc<CacheEvent>) {
        let mut buckets = vec![Bucket::All];
        if let Some(ns) = namespace_of(&self.prefix, &event.object.key) {
            buckets.push(Bucket::Namespace(ns.to_string()));
        }
        if let Some(v) = &event.object.indexed {
            buckets.push(Bucket::Indexed(v.clone()));
        }
        if let Some(v) = event.prev.as_ref().and_then(|p| p.indexed.as_ref()) {
            if event.object.indexed.as_ref() != Some(v) {
                buckets.push(Bucket::Indexed(v.clone()));
            }
        }
        for bucket in buckets {
            let Some(slots) = inner.watchers.get_mut(&bucket) else {
                continue;
            };
            slots.retain(|id, slot| {
                if !event.object.key.starts_with(&slot.prefix) {
                    return true;
                }
                match slot.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(prefix = %self.prefix, watcher = id, "watch cache: terminating a watcher that fell behind");
                        self.metrics.terminated.fetch_add(1, Ordering::Relaxed);
                        self.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
                        false
                    }
                }
            });
            if slots.is_empty() {
                inner.watchers.remove(&bucket);
            }
        }
    }

    /// Keys under `prefix` (through the index when `indexed` is given) after `start_after`, in
    /// key order.
    fn candidates<'a>(
        &self,
        inner: &'a Inner,
        prefix: &'a str,
        indexed: Option<&'a str>,
        start_after: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<CachedObject>> + 'a> {
        let lower = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        match (indexed, self.index_field) {
            (Some(value), Some(_)) => match inner.index.get(value) {
                Some(keys) => Box::new(
                    keys.range((lower, Bound::Unbounded))
                        .take_while(move |k| k.starts_with(prefix))
                        .filter_map(|k| inner.objects.get(k)),
                ),
                None => Box::new(std::iter::empty()),
            },
            _ => Box::new(
                inner
                    .objects
                    .range((lower, Bound::Unbounded))
                    .take_while(move |(k, _)| k.starts_with(prefix))
                    .map(|(_, o)| o),
            ),
        }
    }

    /// Lists matching objects (`filter` decides on each candidate).
    pub fn list(
        &self,
        request: &ListRequest<'_>,
        filter: &dyn Fn(&CachedObject) -> bool,
    ) -> CacheList {
        let inner = self.lock();
        let revision = self.revision_locked(&inner);
        let mut items = Vec::new();
        let mut continue_after = None;
        let mut candidates =
            self.candidates(&inner, request.prefix, request.indexed, request.start_after);
        for object in candidates.by_ref() {
            if filter(object) {
                items.push(object.clone());
                if request.limit.is_some_and(|l| items.len() >= l) {
                    break;
                }
            }
        }
        if request.limit.is_some_and(|l| items.len() >= l) && candidates.next().is_some() {
            continue_after = items.last().map(|o| o.key.clone());
        }
        CacheList {
            items,
            revision,
            continue_after,
        }
    }

    /// The current object at `key`.
    pub fn get(&self, key: &str) -> (Option<Arc<CachedObject>>, Revision) {
        let inner = self.lock();
        (
            inner.objects.get(key).cloned(),
            self.revision_locked(&inner),
        )
    }

    /// Registers a watcher. `TooOld` when `After(r)` is older than the buffer holds; the caller
    /// waits for the cache to reach `r` first.
    pub fn watch(self: &Arc<Self>, request: WatchRequest) -> Result<CacheWatch, CacheError> {
        let mut inner = self.lock();
        let current = self.revision_locked(&inner);
        let indexed = request.indexed.filter(|_| self.index_field.is_some());
        let (initial, replay, revision) = match request.start {
            WatchStart::Snapshot => {
                let initial = self
                    .candidates(&inner, &request.prefix, indexed.as_deref(), None)
                    .cloned()
                    .collect();
                (initial, Vec::new(), current)
            }
            WatchStart::After(after) => {
                if after > current {
                    return Err(CacheError::TooLarge {
                        requested: after,
                        current,
                    });
                }
                let Some(events) = inner.buffer.since(after) else {
                    return Err(CacheError::TooOld {
                        requested: after,
                        oldest: inner.buffer.oldest(),
                    });
                };
                let replay = events
                    .filter(|e| e.object.key.starts_with(&request.prefix))
                    .filter(|e| indexed.as_deref().is_none_or(|v| e.touches_index(v)))
                    .cloned()
                    .collect();
                (Vec::new(), replay, after)
            }
        };
        let bucket = match (&indexed, namespace_of(&self.prefix, &request.prefix)) {
            (Some(v), _) => Bucket::Indexed(v.clone()),
            (None, Some(ns)) => Bucket::Namespace(ns.to_string()),
            (None, None) => Bucket::All,
        };
        let (tx, rx) = mpsc::channel(self.config.watcher_channel.max(1));
        let id = inner.next_id;
        inner.next_id += 1;
        inner.watchers.entry(bucket.clone()).or_default().insert(
            id,
            Slot {
                prefix: request.prefix,
                tx,
            },
        );
        self.metrics.watchers.fetch_add(1, Ordering::Relaxed);
        Ok(CacheWatch {
            initial,
            replay,
            revision,
            events: rx,
            cache: Arc::downgrade(self),
            bucket,
            id,
        })
    }
}
