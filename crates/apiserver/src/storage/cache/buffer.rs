//! The ring buffer of recent events of one resource prefix: what a watch from a past
//! `resourceVersion` is replayed from.
//!
//! Sized as upstream's watch cache: it starts at `min` events and doubles (up to `max`) instead of
//! dropping an event younger than `fresh`, so bursts of writes do not push recent history out;
//! once full of old events (the newest quarter older than `fresh`) it halves again. On top of
//! upstream's event count, the bytes of the held objects are capped (`max_bytes`): the oldest
//! events beyond `min` go first, so a burst of large objects cannot hold hundreds of megabytes
//! of history (a watcher that far behind gets `410 Gone` and relists, as after any eviction).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::object::CacheEvent;
use super::CacheConfig;
use crate::storage::Revision;

/// Recent events, oldest first.
pub(super) struct EventBuffer {
    events: VecDeque<(Instant, Arc<CacheEvent>)>,
    capacity: usize,
    min: usize,
    max: usize,
    fresh: Duration,
    /// Bytes of the objects of the held events.
    bytes: usize,
    max_bytes: usize,
    /// Watches from this revision on can be served (every later event of the prefix is held).
    oldest: Revision,
}

impl EventBuffer {
    /// An empty buffer sized by `config`, holding everything after `listed_at`.
    pub(super) fn new(config: &CacheConfig, listed_at: Revision) -> Self {
        let min = config.min_buffer.max(1);
        EventBuffer {
            events: VecDeque::with_capacity(min),
            capacity: min,
            min,
            max: config.max_buffer.max(min),
            fresh: config.fresh,
            bytes: 0,
            max_bytes: config.max_buffer_bytes,
            oldest: listed_at,
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, evicted)) = self.events.pop_front() {
            self.oldest = self.oldest.max(evicted.revision);
            self.bytes = self.bytes.saturating_sub(evicted.object.size());
        }
    }

    /// Appends an event, evicting (or growing, or shrinking) when full.
    pub(super) fn push(&mut self, event: Arc<CacheEvent>) {
        if self.events.len() >= self.capacity {
            let young = self
                .events
                .front()
                .is_some_and(|(at, _)| at.elapsed() < self.fresh);
            // The oldest event of the newest quarter: when even it is stale, most of the
            // history is not needed.
            let quarter_stale = self
                .events
                .get(self.events.len() - self.capacity.div_ceil(4).min(self.events.len()))
                .is_some_and(|(at, _)| at.elapsed() >= self.fresh);
            if young && self.capacity < self.max {
                self.capacity = (self.capacity * 2).min(self.max);
            } else {
                if quarter_stale && self.capacity > self.min {
                    self.capacity = (self.capacity / 2).max(self.min);
                    self.events.shrink_to(self.capacity);
                }
                while self.events.len() >= self.capacity {
                    self.evict_oldest();
                }
            }
        }
        self.bytes += event.object.size();
        self.events.push_back((Instant::now(), event));
        while self.bytes > self.max_bytes && self.events.len() > self.min {
            self.evict_oldest();
        }
    }

    /// The oldest revision a watch can start from.
    pub(super) fn oldest(&self) -> Revision {
        self.oldest
    }

    /// Events with a revision greater than `after`, oldest first (None when `after` is too old).
    pub(super) fn since(&self, after: Revision) -> Option<impl Iterator<Item = &Arc<CacheEvent>>> {
        if after < self.oldest {
            return None;
        }
        let start = self.events.partition_point(|(_, e)| e.revision <= after);
        Some(self.events.range(start..).map(|(_, e)| e))
    }

    /// How many events are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::cache::object::{CachedObject, WatchEventType};

    fn config(min: usize, max: usize, fresh: Duration) -> CacheConfig {
        CacheConfig {
            min_buffer: min,
            max_buffer: max,
            fresh,
            ..CacheConfig::default()
        }
    }

    fn event(revision: Revision) -> Arc<CacheEvent> {
        let object = Arc::new(CachedObject::new(
            format!("/registry/pods/ns/p{revision}"),
            serde_json::json!({}),
            revision,
            None,
        ));
        Arc::new(CacheEvent::new(
            WatchEventType::Added,
            object,
            None,
            revision,
        ))
    }

    #[test]
    fn a_full_buffer_evicts_the_oldest_event_and_raises_the_oldest_revision() {
        let mut buffer = EventBuffer::new(&config(3, 3, Duration::ZERO), 10);
        for rev in 11..=15 {
            buffer.push(event(rev));
        }
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.oldest(), 12);
        assert!(buffer.since(11).is_none());
        let revs: Vec<_> = buffer
            .since(12)
            .expect("servable")
            .map(|e| e.revision)
            .collect();
        assert_eq!(revs, vec![13, 14, 15]);
    }

    #[test]
    fn a_buffer_of_young_events_grows_instead_of_evicting() {
        let mut buffer = EventBuffer::new(&config(2, 8, Duration::from_secs(3600)), 0);
        for rev in 1..=6 {
            buffer.push(event(rev));
        }
        assert_eq!(buffer.len(), 6);
        assert_eq!(buffer.oldest(), 0);
        let revs: Vec<_> = buffer
            .since(4)
            .expect("servable")
            .map(|e| e.revision)
            .collect();
        assert_eq!(revs, vec![5, 6]);
    }

    #[test]
    fn a_buffer_full_of_stale_events_halves_down_to_its_minimum() {
        let mut buffer = EventBuffer::new(&config(2, 64, Duration::from_secs(3600)), 0);
        for rev in 1..=40 {
            buffer.push(event(rev));
        }
        assert_eq!(buffer.capacity, 64);
        // Every event is now older than `fresh`: each full push halves the capacity.
        buffer.fresh = Duration::ZERO;
        for rev in 41..=64 {
            buffer.push(event(rev));
        }
        for rev in 65..=70 {
            buffer.push(event(rev));
        }
        assert!(buffer.capacity < 64, "capacity {}", buffer.capacity);
        assert!(buffer.len() <= buffer.capacity);
        let revs: Vec<_> = buffer
            .since(buffer.oldest())
            .expect("servable")
            .map(|e| e.revision)
            .collect();
        assert_eq!(revs.last(), Some(&70));
        assert_eq!(revs.first(), Some(&(buffer.oldest() + 1)));
    }

    #[test]
    fn the_byte_cap_evicts_the_oldest_events_beyond_the_minimum() {
        // Revisions 10 to 99 all make objects of one size.
        let size = event(20).object.size();
        let mut buffer = EventBuffer::new(
            &CacheConfig {
                max_buffer_bytes: size * 5,
                ..config(2, 100, Duration::from_secs(3600))
            },
            0,
        );
        for rev in 1..=20 {
            buffer.push(event(rev));
        }
        assert_eq!(buffer.len(), 5);
        assert_eq!(buffer.oldest(), 15);
        assert!(buffer.since(14).is_none());
        assert_eq!(buffer.since(15).expect("servable").count(), 5);
    }
}
