//! The ring buffer of recent events of one resource prefix: what a watch from a past
//! `resourceVersion` is replayed from.
//!
//! Sized as upstream's watch cache: it starts at `min` events and doubles (up to `max`) instead of
//! dropping an event younger than `fresh`, so bursts of writes do not push recent history out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::object::CacheEvent;
use crate::storage::Revision;

/// Recent events, oldest first.
pub(super) struct EventBuffer {
    events: VecDeque<(Instant, Arc<CacheEvent>)>,
    capacity: usize,
    max: usize,
    fresh: Duration,
    /// Watches from this revision on can be served (every later event of the prefix is held).
    oldest: Revision,
}

impl EventBuffer {
    /// An empty buffer holding everything after `listed_at`.
    pub(super) fn new(min: usize, max: usize, fresh: Duration, listed_at: Revision) -> Self {
        let min = min.max(1);
        EventBuffer {
            events: VecDeque::with_capacity(min),
            capacity: min,
            max: max.max(min),
            fresh,
            oldest: listed_at,
        }
    }

    /// Appends an event, evicting (or growing) when full.
    pub(super) fn push(&mut self, event: Arc<CacheEvent>) {
        if self.events.len() >= self.capacity {
            let young = self
                .events
                .front()
                .is_some_and(|(at, _)| at.elapsed() < self.fresh);
            if young && self.capacity < self.max {
                self.capacity = (self.capacity * 2).min(self.max);
            } else {
                while self.events.len() >= self.capacity {
                    if let Some((_, evicted)) = self.events.pop_front() {
                        self.oldest = self.oldest.max(evicted.revision);
                    }
                }
            }
        }
        self.events.push_back((Instant::now(), event));
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
        let mut buffer = EventBuffer::new(3, 3, Duration::ZERO, 10);
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
        let mut buffer = EventBuffer::new(2, 8, Duration::from_secs(3600), 0);
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
}
